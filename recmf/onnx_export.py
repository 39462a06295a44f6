"""ONNX export of NeuralMF, BPRMF, ALS and SASRec, built directly with the ``onnx``
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


def export_sasrec(model, path):
    """SASRec's scores of every item after a sequence: input ``item_seq``
    (int64 [batch, seq], seq <= max_len: each row a user's most recent item
    indices, oldest first, **left**-padded), output ``scores`` (float32
    [batch, n_items]).  An index outside ``[0, n_items)`` (the -1 of
    ``data_.item_index`` for an unknown id, or padding) is left out of the
    sequence: it is masked out of attention as the C model never sees it; a
    row with no item in range scores NaN.  Position embeddings count from
    the sequence's end (the last column is distance 0), as the C model."""
    onnx, TensorProto, helper, nh = _onnx()
    d, H, B = int(model.emb_dim), int(model.n_heads), int(model.n_blocks)
    dh = d // H
    f32 = np.float32

    def w(a):
        return np.ascontiguousarray(a, dtype=f32)

    p = {name: np.asarray(getattr(model, name + "_")) for name in (
        "item_emb", "pos_emb", "ln1_gamma", "ln1_beta", "in_proj", "in_bias", "out_proj", "out_bias",
        "ln2_gamma", "ln2_beta", "ff1_weight", "ff1_bias", "ff2_weight", "ff2_bias", "last_gamma",
        "last_beta")}
    n_items = int(p["item_emb"].shape[0])
    inits = [nh.from_array(w(p["item_emb"]), "item_emb"), nh.from_array(w(p["pos_emb"]), "pos_emb")]
    const = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "n_items": np.array(n_items, np.int64),
             "neg_big": np.array(-1e9, f32), "fzero": np.array(0.0, f32), "nan": np.array(np.nan, f32),
             "emb_scale": np.array(np.sqrt(d) if model.scale_emb else 1.0, f32),
             "att_scale": np.array(1.0 / np.sqrt(dh), f32),
             "heads_shape": np.array([0, 0, H, dh], np.int64), "merge_shape": np.array([0, 0, d], np.int64)}
    inits += [nh.from_array(v, k) for k, v in const.items()]
    N = helper.make_node
    nodes = [
        # which columns hold an item, and their embeddings (masked columns read row 0)
        N("GreaterOrEqual", ["item_seq", "zero"], ["ge0"]),
        N("Less", ["item_seq", "n_items"], ["ltn"]),
        N("And", ["ge0", "ltn"], ["valid"]),
        N("Where", ["valid", "item_seq", "zero"], ["safe"]),
        N("Gather", ["item_emb", "safe"], ["e"], axis=0),
        N("Mul", ["e", "emb_scale"], ["e_s"]),
        # positions: column c of S is distance S - 1 - c from the end
        N("Shape", ["item_seq"], ["shape"]),
        N("Gather", ["shape", "one"], ["S"], axis=0),
        N("Sub", ["S", "one"], ["S1"]),
        N("Range", ["zero", "S", "one"], ["cols"]),
        N("Sub", ["S1", "cols"], ["dist"]),
        N("Gather", ["pos_emb", "dist"], ["pos"], axis=0),
        N("Add", ["e_s", "pos"], ["x0"]),
        # attention bias [batch, 1, S, S]: 0 where key <= query and the key holds an item
        N("Unsqueeze", ["S", "zero_axis"], ["S_1"]),
        N("Concat", ["S_1", "S_1"], ["SS"], axis=0),
        N("ConstantOfShape", ["SS"], ["ones_ss"], value=nh.from_array(np.array([1], np.int64))),
        N("Trilu", ["ones_ss"], ["tril"], upper=0),
        N("Cast", ["tril"], ["causal"], to=TensorProto.BOOL),
        N("Unsqueeze", ["valid", "key_axes"], ["key_ok"]),
        N("And", ["causal", "key_ok"], ["allowed"]),
        N("Where", ["allowed", "fzero", "neg_big"], ["att_bias"]),
    ]
    inits += [nh.from_array(np.array([0], np.int64), "zero_axis"),
              nh.from_array(np.array([1, 2], np.int64), "key_axes")]

    def linear(x, W, b, out):
        """x @ W^T + b, W (out, in) as stored."""
        inits.extend([nh.from_array(w(W.T), out + ".W"), nh.from_array(w(b), out + ".b")])
        return [N("MatMul", [x, out + ".W"], [out + ".xw"]), N("Add", [out + ".xw", out + ".b"], [out])]

    def heads(x, out):
        return [N("Reshape", [x, "heads_shape"], [out + ".r"]),
                N("Transpose", [out + ".r"], [out], perm=[0, 2, 1, 3])]

    def layernorm(x, g, b, eps, out):
        inits.extend([nh.from_array(w(g), out + ".g"), nh.from_array(w(b), out + ".b")])
        return [N("LayerNormalization", [x, out + ".g", out + ".b"], [out], axis=-1, epsilon=eps)]

    x = "x0"
    for b in range(B):
        k = f"b{b}."
        Win, bin_ = p["in_proj"][3 * d * b:3 * d * (b + 1)], p["in_bias"][b]
        nodes += layernorm(x, p["ln1_gamma"][b], p["ln1_beta"][b], 1e-5, k + "q_in")
        # the SASRec authors' layout: queries from LN1(x), keys and values from x
        nodes += linear(k + "q_in", Win[:d], bin_[:d], k + "Q")
        nodes += linear(x, Win[d:2 * d], bin_[d:2 * d], k + "K")
        nodes += linear(x, Win[2 * d:], bin_[2 * d:], k + "V")
        nodes += heads(k + "Q", k + "Qh") + heads(k + "K", k + "Kh") + heads(k + "V", k + "Vh")
        nodes += [
            N("Transpose", [k + "Kh"], [k + "KhT"], perm=[0, 1, 3, 2]),
            N("MatMul", [k + "Qh", k + "KhT"], [k + "qk"]),
            N("Mul", [k + "qk", "att_scale"], [k + "qk_s"]),
            N("Add", [k + "qk_s", "att_bias"], [k + "logits"]),
            N("Softmax", [k + "logits"], [k + "probs"], axis=-1),
            N("MatMul", [k + "probs", k + "Vh"], [k + "ah"]),
            N("Transpose", [k + "ah"], [k + "a_t"], perm=[0, 2, 1, 3]),
            N("Reshape", [k + "a_t", "merge_shape"], [k + "att"]),
        ]
        nodes += linear(k + "att", p["out_proj"][d * b:d * (b + 1)], p["out_bias"][b], k + "o")
        nodes += [N("Add", [k + "q_in", k + "o"], [k + "x1"])]
        nodes += layernorm(k + "x1", p["ln2_gamma"][b], p["ln2_beta"][b], 1e-5, k + "f")
        nodes += linear(k + "f", p["ff1_weight"][d * b:d * (b + 1)], p["ff1_bias"][b], k + "h1")
        nodes += [N("Relu", [k + "h1"], [k + "r1"])]
        nodes += linear(k + "r1", p["ff2_weight"][d * b:d * (b + 1)], p["ff2_bias"][b], k + "h2")
        nodes += [N("Add", [k + "f", k + "h2"], [k + "out"])]
        x = k + "out"
    nodes += layernorm(x, p["last_gamma"], p["last_beta"], 1e-8, "h")
    nodes += [
        N("Gather", ["h", "S1"], ["h_last"], axis=1),                 # [batch, d]
        N("Gemm", ["h_last", "item_emb"], ["raw"], transB=1),        # [batch, n_items]
        N("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
        N("ReduceMax", ["valid_f"], ["any_f"], axes=[1], keepdims=1),   # axes an attribute before opset 18
        N("Greater", ["any_f", "fzero"], ["any"]),
        N("Where", ["any", "raw", "nan"], ["scores"]),
    ]
    inputs = [helper.make_tensor_value_info("item_seq", TensorProto.INT64, ["batch", "seq"])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_items])]
    _save(onnx, helper, helper.make_graph(nodes, "recmf_sasrec", inputs, outputs, inits), path)
