"""ONNX export of NeuralMF, BPRMF and ALS, built directly with the ``onnx``
package (no PyTorch).  Inputs are dense indices, as the reference
notebook's export: map original ids with ``model.data_.user_index`` /
``item_index`` first."""
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


def export_neuralmf(model, path):
    onnx, TensorProto, helper, nh = _onnx()
    inits = [nh.from_array(np.ascontiguousarray(a, dtype=np.float32), name) for name, a in (
        ("user_emb.weight", model.user_emb_), ("item_emb.weight", model.item_emb_),
        ("mlp.0.weight", model.W1_), ("mlp.0.bias", model.b1_),
        ("mlp.3.weight", model.w2_.reshape(1, -1)), ("mlp.3.bias", model.b2_))]
    inits.append(nh.from_array(np.array([1], dtype=np.int64), "squeeze_axes"))
    nodes = [
        helper.make_node("Gather", ["user_emb.weight", "user_id"], ["ue"], axis=0),
        helper.make_node("Gather", ["item_emb.weight", "item_id"], ["ie"], axis=0),
        helper.make_node("Concat", ["ue", "ie"], ["x"], axis=1),
        helper.make_node("Gemm", ["x", "mlp.0.weight", "mlp.0.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "mlp.3.weight", "mlp.3.bias"], ["z"], transB=1),
        helper.make_node("Squeeze", ["z", "squeeze_axes"], ["logit"]),
    ]
    inputs, outputs = _io(helper, TensorProto, "logit")
    _save(onnx, helper, helper.make_graph(nodes, "recmf_neuralmf", inputs, outputs, inits), path)


def export_bprmf(model, path):
    export_dot_product(model.user_emb_, model.item_emb_, path, "recmf_bprmf")


def export_dot_product(user_factors, item_factors, path, graph_name):
    """A dot-product model (BPRMF, ALS): score = sum(user[u] * item[i])."""
    onnx, TensorProto, helper, nh = _onnx()
    inits = [nh.from_array(np.ascontiguousarray(user_factors, dtype=np.float32), "user_emb.weight"),
             nh.from_array(np.ascontiguousarray(item_factors, dtype=np.float32), "item_emb.weight"),
             nh.from_array(np.array([1], dtype=np.int64), "sum_axes")]
    nodes = [
        helper.make_node("Gather", ["user_emb.weight", "user_id"], ["ue"], axis=0),
        helper.make_node("Gather", ["item_emb.weight", "item_id"], ["ie"], axis=0),
        helper.make_node("Mul", ["ue", "ie"], ["p"]),
        helper.make_node("ReduceSum", ["p", "sum_axes"], ["score"], keepdims=0),
    ]
    inputs, outputs = _io(helper, TensorProto, "score")
    _save(onnx, helper, helper.make_graph(nodes, graph_name, inputs, outputs, inits), path)
