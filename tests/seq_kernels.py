"""ctypes access to the C sequence-model kernels (csrc/nn/seq.h, csrc/models/sasrec.h).

The layer kernels and SASRec's batch gradient are plain C functions of the extension
(``rmf_*`` symbols); tests call them directly rather than through test-only glue.  Also
holds the NumPy initialisation and whole-model forward used by the SASRec tests.
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
    _fields_ = [("key", C.c_uint64), ("thr", C.c_uint32), ("scale", C.c_float)]


class Error(C.Structure):
    _fields_ = [("msg", C.c_char * 256), ("row", C.c_int64)]


class Seq(C.Structure):
    _fields_ = [("indptr", I64P), ("items", I32P), ("n_users", C.c_int32), ("n_items", C.c_int32)]


class Shape(C.Structure):
    _fields_ = [(n, C.c_int32) for n in ("n_items", "emb_dim", "n_heads", "n_blocks", "max_len")]


class Adam(C.Structure):
    _fields_ = [(n, C.c_float) for n in ("lr", "beta1", "beta2", "eps", "weight_decay")]


class Params(C.Structure):
    _fields_ = [("dropout", C.c_float), ("batch_size", C.c_int32), ("loss", C.c_int32),
                ("n_negatives", C.c_int32), ("scale_emb", C.c_int32), ("seed", C.c_uint64),
                ("n_threads", C.c_int), ("adam", Adam)]


class OptState(C.Structure):
    _fields_ = [("theta", F32P), ("m", F32P), ("v", F32P), ("n_params", C.c_int64),
                ("step", C.c_int64), ("team_threads", C.c_double)]


def load():
    so = C.CDLL(core.__file__)
    so.rmf_drop_site.restype = Drop
    so.rmf_drop_site.argtypes = [C.c_float, C.c_uint64, C.c_uint64, C.c_uint64, C.c_uint64]
    so.rmf_softmax_ce.restype = C.c_double
    so.rmf_sampled_ce.restype = C.c_double
    for f in ("rmf_softmax_ce_scratch", "rmf_sampled_ce_scratch", "rmf_attention_scratch",
              "rmf_sasrec_n_params"):
        getattr(so, f).restype = C.c_int64
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


def check(status, err):
    if status != 0:
        raise ValueError(err.msg.decode())


def seq(indptr, items, n_items):
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    items = np.ascontiguousarray(items, dtype=np.int32)
    s = Seq(ptr(indptr), ptr(items), len(indptr) - 1, n_items)
    s._keep = (indptr, items)
    return s


def shape(n_items, emb_dim=16, n_heads=2, n_blocks=2, max_len=10):
    return Shape(n_items, emb_dim, n_heads, n_blocks, max_len)


def params(**kw):
    p = Params()
    LIB.rmf_sasrec_default_params(C.byref(p))
    adam = {k: kw.pop(k) for k in ("lr", "beta1", "beta2", "eps", "weight_decay") if k in kw}
    for k, v in adam.items():
        setattr(p.adam, k, v)
    loss = kw.pop("loss", None)
    if loss is not None:
        p.loss = {"softmax": 0, "sampled": 1}[loss]
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def layout(sh):
    """{name: (offset, shape)} of theta, as models/sasrec.h lays it out."""
    d, L, n = sh.emb_dim, sh.max_len, sh.n_items
    out, off = {}, 0

    def add(name, *shp):
        nonlocal off
        out[name] = (off, shp)
        off += int(np.prod(shp))
    add("item", n, d)
    add("pos", L, d)
    for b in range(sh.n_blocks):
        for name, shp in (("ln1_g", (d,)), ("ln1_b", (d,)), ("in_W", (3 * d, d)),
                          ("in_b", (3 * d,)), ("out_W", (d, d)), ("out_b", (d,)),
                          ("ln2_g", (d,)), ("ln2_b", (d,)), ("W1", (d, d)), ("b1", (d,)),
                          ("W2", (d, d)), ("b2", (d,))):
            add(f"{b}.{name}", *shp)
    add("last_g", d)
    add("last_b", d)
    return out, off


def views(theta, sh):
    lay, n = layout(sh)
    assert len(theta) == n == LIB.rmf_sasrec_n_params(C.byref(sh))
    return {k: theta[o:o + int(np.prod(s))].reshape(s) for k, (o, s) in lay.items()}


def init_theta(sh, seed=0, scale=1.0):
    """RecTools' start: Xavier-normal matrices, zero attention biases, uniform feed-forward
    biases, layer norms at (1, 0); ``scale`` multiplies every value for tests."""
    rng = np.random.default_rng(seed)
    _, n = layout(sh)
    theta = np.zeros(n, dtype=np.float32)
    v = views(theta, sh)
    for k, a in v.items():
        name = k.split(".")[-1]
        if a.ndim == 2:
            a[:] = rng.standard_normal(a.shape) * np.sqrt(2.0 / sum(a.shape))
        elif name.endswith("_g"):
            a[:] = 1
        elif name in ("b1", "b2"):
            a[:] = rng.uniform(-1, 1, a.shape) / np.sqrt(sh.emb_dim)
    if scale != 1.0:
        theta *= scale
    return theta


# ---------------------------------------------------------------------------
# whole-model NumPy reference (no dropout)
# ---------------------------------------------------------------------------

def forward_reference(theta, sh, items, scale_emb=False):
    """h (n, d) of every token of one sequence of items (oldest first, <= max_len), float64."""
    import seq_reference as ref
    v = {k: a.astype(np.float64) for k, a in views(theta, sh).items()}
    d, n = sh.emb_dim, len(items)
    x = v["item"][items] * (np.sqrt(d) if scale_emb else 1.0) + v["pos"][n - 1 - np.arange(n)]
    for b in range(sh.n_blocks):
        g = lambda name: v[f"{b}.{name}"]  # noqa: E731
        q = ref.layernorm_forward(x, g("ln1_g"), g("ln1_b"), 1e-5)
        W, bias = g("in_W"), g("in_b")
        qkv = np.concatenate([q @ W[:d].T + bias[:d], x @ W[d:].T + bias[d:]], 1)
        att, _ = ref.attention_forward(qkv, sh.n_heads)
        x = q + att @ g("out_W").T + g("out_b")
        f = ref.layernorm_forward(x, g("ln2_g"), g("ln2_b"), 1e-5)
        x = ref.ffn_forward(f, g("W1"), g("b1"), g("W2"), g("b2"))
    return ref.layernorm_forward(x, v["last_g"], v["last_b"], 1e-8)


def loss_reference(theta, sh, windows, scale_emb=False):
    """Mean full-softmax cross-entropy of the next item over the windows' tokens (float64)."""
    E = views(theta, sh)["item"].astype(np.float64)
    total, n = 0.0, 0
    for w in windows:
        h = forward_reference(theta, sh, np.asarray(w[:-1]), scale_emb)
        L = h @ E.T
        m = L.max(1, keepdims=True)
        lse = np.log(np.exp(L - m).sum(1)) + m[:, 0]
        total += (lse - L[np.arange(len(h)), np.asarray(w[1:])]).sum()
        n += len(h)
    return total / n


def batch_grad(theta, sh, p, windows, epoch=0, batch=0):
    """(loss, grad) of rmf_sasrec_batch_grad over windows (lists of item indices)."""
    lens = [len(w) for w in windows]
    indptr = np.concatenate([[0], np.cumsum(lens)])
    s = seq(indptr, np.concatenate(windows), sh.n_items)
    rows = np.arange(len(windows), dtype=np.int32)
    grad = np.empty_like(theta)
    loss = C.c_double()
    err = Error()
    check(LIB.rmf_sasrec_batch_grad(C.byref(p), C.byref(sh), ptr(theta), C.byref(s), ptr(rows),
                                    C.c_int64(len(rows)), C.c_uint64(epoch), C.c_uint64(batch),
                                    ptr(grad), C.byref(loss), C.byref(err)), err)
    return loss.value, grad


def encode(theta, sh, indptr, items, rows=None, all_tokens=False, n_threads=1):
    s = seq(indptr, items, sh.n_items)
    rows = np.arange(s.n_users, dtype=np.int32) if rows is None else \
        np.ascontiguousarray(rows, dtype=np.int32)
    d = sh.emb_dim
    if all_tokens:
        lens = np.minimum(np.diff(np.asarray(indptr))[rows], sh.max_len)
        out = np.empty((int(lens.sum()), d), np.float32)
        fn = LIB.rmf_sasrec_encode_all
    else:
        out = np.empty((len(rows), d), np.float32)
        fn = LIB.rmf_sasrec_encode
    err = Error()
    check(fn(C.byref(sh), ptr(theta), C.byref(s), ptr(rows), C.c_int64(len(rows)), n_threads,
             ptr(out), C.byref(err)), err)
    return out


class Trainer:
    """Adam state and epochs of rmf_sasrec_train_epoch (for tests and exploration)."""

    def __init__(self, sh, p, theta):
        self.sh, self.p = sh, p
        self.theta = np.ascontiguousarray(theta, dtype=np.float32).copy()
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.st = OptState(ptr(self.theta), ptr(self.m), ptr(self.v), len(self.theta), 0, 0.0)
        self.epoch = 0

    def epoch_(self, indptr, items):
        s = seq(indptr, items, self.sh.n_items)
        loss, done, err = C.c_double(), C.c_int64(), Error()
        check(LIB.rmf_sasrec_train_epoch(C.byref(self.p), C.byref(self.sh), C.byref(s),
                                         C.c_uint64(self.epoch), C.byref(self.st), None, None,
                                         C.byref(loss), C.byref(done), C.byref(err)), err)
        self.epoch += 1
        return loss.value, done.value
