"""ctypes access to the C sequence layers (csrc/nn/nn.h), and SASRec's NumPy side for tests.

The layer kernels are plain C functions of the extension (``rmf_*`` symbols); the layer tests
call them directly rather than through test-only glue.  SASRec itself goes through the core's
model table (``_core.layout``, ``batch_grad``, ``score_pairs``); this module holds its NumPy
initialisation, whole-model forward and loss (the references of tests/test_sasrec.py).
"""
from __future__ import annotations

import ctypes as C

import numpy as np

import recmf._core as core

F32P = C.POINTER(C.c_float)
I32P = C.POINTER(C.c_int32)
I64P = C.POINTER(C.c_int64)
U8P = C.POINTER(C.c_uint8)


class Drop(C.Structure):
    """rmf_drop (csrc/nn/nn.h)."""
    _fields_ = [("key", C.c_uint64), ("thr", C.c_uint32), ("scale", C.c_float)]


class FFN(C.Structure):
    """rmf_ffn (csrc/nn/nn.h)."""
    _fields_ = [(n, F32P) for n in ("W1", "b1", "W2", "b2", "dW1", "db1", "dW2", "db2")] + \
               [("d", C.c_int), ("dff", C.c_int), ("drop1", Drop), ("drop2", Drop)]


_i, _i32, _i64, _u64, _f = C.c_int, C.c_int32, C.c_int64, C.c_uint64, C.c_float
DROPP, FFNP = C.POINTER(Drop), C.POINTER(FFN)
# Every prototype the layer tests call, copied from csrc/nn/nn.h: with argtypes declared,
# ctypes converts (or refuses) each argument instead of passing a Python int as a C int
# where the kernel reads an int64_t (undefined upper bits on x86-64).
PROTOTYPES = {
    "rmf_drop_site": (Drop, [_f, _u64, _u64, _u64, _u64]),
    "rmf_drop_mask": (None, [DROPP, _u64, _i64, _i, F32P]),
    "rmf_exp_inplace": (None, [F32P, _i64]),
    "rmf_layernorm_forward": (None, [F32P, _i64, _i, F32P, F32P, _f, F32P, F32P]),
    "rmf_layernorm_backward": (None, [F32P, F32P, _i64, _i, F32P, F32P, F32P, F32P, F32P]),
    "rmf_linear_forward": (None, [F32P, _i64, _i64, _i, F32P, F32P, _i, F32P, _i64]),
    "rmf_linear_backward": (None, [F32P, _i64, _i64, _i, F32P, _i, F32P, _i64, F32P, _i64, _i,
                                   F32P, F32P]),
    "rmf_ffn_forward": (None, [FFNP, F32P, _i64, _u64, F32P, F32P]),
    "rmf_ffn_backward": (None, [FFNP, F32P, _i64, _u64, F32P, F32P, F32P, F32P]),
    "rmf_attention_scratch": (_i64, [_i]),
    "rmf_attention_forward": (None, [F32P, _i, _i, _i, DROPP, _u64, F32P, F32P, F32P]),
    "rmf_attention_backward": (None, [F32P, _i, _i, _i, DROPP, _u64, F32P, F32P, F32P, F32P]),
    "rmf_softmax_ce_scratch": (_i64, [_i32]),
    "rmf_softmax_ce": (C.c_double, [F32P, _i64, _i, F32P, _i32, I32P, _f, F32P, F32P, F32P]),
    "rmf_sampled_ce_scratch": (_i64, [_i32]),
    "rmf_sampled_ce": (C.c_double, [F32P, _i64, _i, F32P, I32P, I32P, F32P, _i32, U8P, I32P, _f,
                                    F32P, F32P, F32P, F32P]),
}


def load():
    """The extension's layer kernels with their prototypes declared.

    The extension is the module Python already loaded (dlopen returns its handle, so the
    bundled BLAS and OpenMP it links are the ones in use).  A build that hides the ``rmf_*``
    symbols fails here with the missing names, not with a crash in a test.
    """
    so = C.CDLL(core.__file__)
    missing = [name for name in PROTOTYPES if not hasattr(so, name)]
    if missing:
        raise ImportError(f"{core.__file__} does not export the layer kernels {missing}: the "
                          "layer tests call them through ctypes (build without -fvisibility=hidden)")
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(so, name)
        fn.restype, fn.argtypes = restype, argtypes
    return so


LIB = load()


def ptr(a):
    """Pointer to a contiguous array's data, NULL for None."""
    if a is None:
        return None
    assert a.flags.c_contiguous
    kind = {np.dtype(np.float32): F32P, np.dtype(np.int32): I32P, np.dtype(np.int64): I64P,
            np.dtype(np.uint8): U8P}
    return a.ctypes.data_as(kind[a.dtype])


# ---------------------------------------------------------------------------
# SASRec through the core's model table
# ---------------------------------------------------------------------------

def config(n_items, emb_dim=16, n_heads=2, n_blocks=2, max_len=10, **kw):
    """The core's config of a SASRec over n_items items (n_users is the batch's sequences)."""
    return {"n_users": kw.pop("n_users", 1), "n_items": n_items, "emb_dim": emb_dim,
            "n_heads": n_heads, "n_blocks": n_blocks, "max_len": max_len, **kw}


def views(theta, cfg):
    """{block name: view} of theta (any float dtype), as the core lays it out."""
    _, blocks = core.layout("sasrec", cfg)
    return {name: theta[off:off + int(np.prod(shape))].reshape(shape)
            for name, off, shape, *_ in blocks}


def init_theta(cfg, seed=0):
    """Weights drawn as recmf.SASRec draws them (the layout's inits)."""
    n, blocks = core.layout("sasrec", cfg)
    rng = np.random.default_rng(seed)
    theta = np.zeros(n, np.float32)
    for _, off, shape, _, init, arg in blocks:
        size = int(np.prod(shape))
        if init == "normal":
            theta[off:off + size] = rng.standard_normal(size) * arg
        elif init == "uniform":
            theta[off:off + size] = rng.uniform(-1, 1, size) / np.sqrt(arg)
        elif init == "one":
            theta[off:off + size] = 1
    return theta


def block(v, cfg, b):
    """Block b's parameters (float64) from the stacked views."""
    d = cfg["emb_dim"]
    g = {k: a.astype(np.float64) for k, a in v.items()}
    return dict(ln1_g=g["ln1_gamma"][b], ln1_b=g["ln1_beta"][b],
                in_W=g["in_proj"][3 * d * b:3 * d * (b + 1)], in_b=g["in_bias"][b],
                out_W=g["out_proj"][d * b:d * (b + 1)], out_b=g["out_bias"][b],
                ln2_g=g["ln2_gamma"][b], ln2_b=g["ln2_beta"][b],
                W1=g["ff1_weight"][d * b:d * (b + 1)], b1=g["ff1_bias"][b],
                W2=g["ff2_weight"][d * b:d * (b + 1)], b2=g["ff2_bias"][b])


def forward_reference(theta, cfg, items):
    """h (n, d) of every token of one sequence of items (oldest first, <= max_len), float64."""
    import seq_reference as ref
    v = views(theta, cfg)
    d, n = cfg["emb_dim"], len(items)
    scale = np.sqrt(d) if cfg.get("scale_emb") else 1.0
    x = v["item_emb"].astype(np.float64)[items] * scale + \
        v["pos_emb"].astype(np.float64)[n - 1 - np.arange(n)]
    for b in range(cfg["n_blocks"]):
        g = block(v, cfg, b)
        q = ref.layernorm_forward(x, g["ln1_g"], g["ln1_b"], 1e-5)
        W, bias = g["in_W"], g["in_b"]
        qkv = np.concatenate([q @ W[:d].T + bias[:d], x @ W[d:].T + bias[d:]], 1)
        att, _ = ref.attention_forward(qkv, cfg["n_heads"])
        x = q + att @ g["out_W"].T + g["out_b"]
        f = ref.layernorm_forward(x, g["ln2_g"], g["ln2_b"], 1e-5)
        x = ref.ffn_forward(f, g["W1"], g["b1"], g["W2"], g["b2"])
    return ref.layernorm_forward(x, v["last_gamma"].astype(np.float64),
                                 v["last_beta"].astype(np.float64), 1e-8)


def loss_reference(theta, cfg, windows):
    """Mean full-softmax cross-entropy of the next item over the windows' tokens (float64)."""
    E = views(theta, cfg)["item_emb"].astype(np.float64)
    total, n = 0.0, 0
    for w in windows:
        h = forward_reference(theta, cfg, np.asarray(w[:-1]))
        L = h @ E.T
        m = L.max(1, keepdims=True)
        lse = np.log(np.exp(L - m).sum(1)) + m[:, 0]
        total += (lse - L[np.arange(len(h)), np.asarray(w[1:])]).sum()
        n += len(h)
    return total / n


def sequences(windows):
    lens = [len(w) for w in windows]
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return indptr, np.concatenate(windows).astype(np.int32)


def batch_grad(theta, cfg, windows, epoch=None, index=0, n_threads=2):
    """(loss, grad) of one batch of windows (lists of item indices, oldest first) through
    the core's batch_grad; ``epoch`` draws training's masks and negatives for (seed, epoch,
    index), else no dropout."""
    indptr, items = sequences(windows)
    cfg = {**cfg, "n_users": len(windows)}
    rows = np.arange(len(windows), dtype=np.int32)
    return core.batch_grad("sasrec", cfg, theta, (indptr, items, rows), n_threads, epoch=epoch,
                           index=index)
