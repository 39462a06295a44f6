"""ONNX export of NeuralMF, BPRMF and ALS, built directly with the ``onnx``
package (no PyTorch).  Inputs are int64 dense indices, as the reference
notebook's export: map original ids with ``model.data_.user_index`` /
``item_index`` first (they return int64, -1 for an unknown id).

ONNX ``Gather`` reads a negative index from the end (onnxruntime#1533), so
-1 would score an unknown id as the last user.  Every graph therefore checks
its indices: a pair whose user or item index lies outside ``[0, n)`` gets a
NaN output (a flagged result), never another row's score."""
from __future__ import annotations

import numpy as np

OPSET = 17


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'recmf[onnx]'") from e
    return onnx, TensorProto, helper, numpy_helper


def _io(helper, TensorProto, output):
    inputs = [helper.make_tensor_value_info("user_id", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("item_id", TensorProto.INT64, ["batch"])]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch"])]
    return inputs, outputs


def _save(onnx, helper, graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="recmf")
    model.ir_version = 8     # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _guarded_gathers(helper, nh, model):
    """Nodes and initializers that gather ``ue``/``ie`` only from in-range
    indices (out-of-range ones read row 0, then masked) and the boolean
    ``valid`` of each pair."""
    n_users, n_items = model.data_.n_users, model.data_.n_items
    inits = [nh.from_array(np.array(0, dtype=np.int64), "zero"),
             nh.from_array(np.array(n_users, dtype=np.int64), "n_users"),
             nh.from_array(np.array(n_items, dtype=np.int64), "n_items"),
             nh.from_array(np.array(np.nan, dtype=np.float32), "nan")]
    nodes = []
    for name, n, table, out in (("user_id", "n_users", "user_emb.weight", "ue"),
                                ("item_id", "n_items", "item_emb.weight", "ie")):
        nodes += [
            helper.make_node("GreaterOrEqual", [name, "zero"], [f"{name}_ge0"]),
            helper.make_node("Less", [name, n], [f"{name}_ltn"]),
            helper.make_node("And", [f"{name}_ge0", f"{name}_ltn"], [f"{name}_ok"]),
            helper.make_node("Where", [f"{name}_ok", name, "zero"], [f"{name}_safe"]),
            helper.make_node("Gather", [table, f"{name}_safe"], [out], axis=0),
        ]
    nodes.append(helper.make_node("And", ["user_id_ok", "item_id_ok"], ["valid"]))
    return nodes, inits


def _flag(helper, raw, output):
    """output = raw where the pair is valid, NaN elsewhere."""
    return helper.make_node("Where", ["valid", raw, "nan"], [output])


def export_neuralmf(model, path):
    onnx, TensorProto, helper, nh = _onnx()
    inits = [nh.from_array(np.ascontiguousarray(a, dtype=np.float32), name) for name, a in (
        ("user_emb.weight", model.user_emb_), ("item_emb.weight", model.item_emb_),
        ("mlp.0.weight", model.W1_), ("mlp.0.bias", model.b1_),
        ("mlp.3.weight", model.w2_.reshape(1, -1)), ("mlp.3.bias", model.b2_))]
    inits.append(nh.from_array(np.array([1], dtype=np.int64), "squeeze_axes"))
    gathers, guard_inits = _guarded_gathers(helper, nh, model)
    nodes = gathers + [
        helper.make_node("Concat", ["ue", "ie"], ["x"], axis=1),
        helper.make_node("Gemm", ["x", "mlp.0.weight", "mlp.0.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "mlp.3.weight", "mlp.3.bias"], ["z"], transB=1),
        helper.make_node("Squeeze", ["z", "squeeze_axes"], ["raw"]),
        _flag(helper, "raw", "logit"),
    ]
    inputs, outputs = _io(helper, TensorProto, "logit")
    _save(onnx, helper, helper.make_graph(nodes, "recmf_neuralmf", inputs, outputs, inits + guard_inits),
          path)


def export_bprmf(model, path):
    export_dot_product(model, model.user_emb_, model.item_emb_, path, "recmf_bprmf")


def export_dot_product(model, user_factors, item_factors, path, graph_name):
    """A dot-product model (BPRMF, ALS): score = sum(user[u] * item[i])."""
    onnx, TensorProto, helper, nh = _onnx()
    inits = [nh.from_array(np.ascontiguousarray(user_factors, dtype=np.float32), "user_emb.weight"),
             nh.from_array(np.ascontiguousarray(item_factors, dtype=np.float32), "item_emb.weight"),
             nh.from_array(np.array([1], dtype=np.int64), "sum_axes")]
    gathers, guard_inits = _guarded_gathers(helper, nh, model)
    nodes = gathers + [
        helper.make_node("Mul", ["ue", "ie"], ["p"]),
        helper.make_node("ReduceSum", ["p", "sum_axes"], ["raw"], keepdims=0),
        _flag(helper, "raw", "score"),
    ]
    inputs, outputs = _io(helper, TensorProto, "score")
    _save(onnx, helper, helper.make_graph(nodes, graph_name, inputs, outputs, inits + guard_inits), path)
