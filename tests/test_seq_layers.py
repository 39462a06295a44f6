"""The sequence-model layers of ``csrc/nn/`` (nn/nn.h) against the NumPy reference.

Every layer's forward and backward is compared with ``tests/seq_reference.py`` (float64),
whose backward is itself checked against central finite differences.  The kernels are
called through ctypes: they are plain C functions of the extension (``rmf_*`` symbols), not
Python entry points, and a layer test needs no glue.
"""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

import seq_reference as ref
from seq_kernels import FFN, LIB
from seq_kernels import ptr as p


@pytest.fixture(scope="module")
def lib():
    return LIB


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def close(got, want, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)


RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return RNG.standard_normal(shape) * scale


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------

def site(lib, p_drop, seed=3, epoch=1, batch=2, s=5):
    return lib.rmf_drop_site(C.c_float(p_drop), seed, epoch, batch, s)


def c_mask(lib, d, row0, n_rows, n_cols):
    out = np.empty((n_rows, n_cols), dtype=np.float32)
    lib.rmf_drop_mask(C.byref(d), C.c_uint64(row0), C.c_int64(n_rows), n_cols, p(out))
    return out


def test_dropout_mask_is_the_documented_hash(lib):
    d = site(lib, 0.2)
    keep = 1.0 - float(np.float32(0.2))      # p arrives as a float
    assert d.key != 0 and d.scale == np.float32(1 / keep)
    assert d.thr == round(keep * 2 ** 32)
    got = c_mask(lib, d, 1000, 37, 70)
    want = ref.drop_mask(d.key, d.thr, d.scale, 1000, 37, 70)
    np.testing.assert_array_equal(got, want)
    # a part of the rows drawn alone is the same part of the whole
    np.testing.assert_array_equal(c_mask(lib, d, 1010, 5, 70), got[10:15])


def test_dropout_keep_rate_and_independence(lib):
    d = site(lib, 0.3, seed=11)
    m = c_mask(lib, d, 0, 2000, 256) > 0
    # 512k Bernoulli(0.7) draws: the mean is within 5 sigma (sigma = 6.4e-4)
    assert abs(m.mean() - 0.7) < 5 * np.sqrt(0.21 / m.size)
    # neighbouring units and rows are uncorrelated
    for a, b in ((m[:, :-1], m[:, 1:]), (m[:-1], m[1:])):
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < 0.01
    # sites, batches, epochs and seeds give different masks
    others = [site(lib, 0.3, seed=11, s=6), site(lib, 0.3, seed=11, batch=3),
              site(lib, 0.3, seed=11, epoch=2), site(lib, 0.3, seed=12)]
    for o in others:
        assert (c_mask(lib, o, 0, 50, 64) > 0).mean() > 0.5
        assert not np.array_equal(c_mask(lib, o, 0, 50, 64), c_mask(lib, d, 0, 50, 64))


def test_dropout_zero_probability_draws_nothing(lib):
    d = site(lib, 0.0)
    assert d.key == 0
    np.testing.assert_array_equal(c_mask(lib, d, 0, 3, 9), np.ones((3, 9), np.float32))


# ---------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------

def test_exp_matches_numpy_within_two_ulp(lib):
    x = np.concatenate([np.linspace(-87, 88, 100003), rand(1000) * 5,
                        [0.0, -0.0, 1e-30, -1e-30, 88.0, -87.0]]).astype(np.float32)
    y = x.copy()
    lib.rmf_exp_inplace(p(y), C.c_int64(len(y)))
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(y - want) / ulp) <= 2.0
    # every length's tail goes through the same lanes as the body
    for n in range(1, 20):
        z = x[:n].copy()
        lib.rmf_exp_inplace(p(z), C.c_int64(n))
        np.testing.assert_array_equal(z, y[:n])


def test_exp_of_masked_logits_is_zero(lib):
    x = np.array([-np.inf, -1e30, -88.0, -200.0, -87.5], dtype=np.float32)
    lib.rmf_exp_inplace(p(x), C.c_int64(len(x)))
    np.testing.assert_array_equal(x, np.zeros(5, np.float32))


# ---------------------------------------------------------------------------
# layer norm
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 7, 64, 100])
def test_layernorm_forward_backward(lib, d):
    n, eps = 13, 1e-5
    x, g, b, dy = rand(n, d, scale=3) + 1, rand(d), rand(d), rand(n, d)
    y = np.empty((n, d), np.float32)
    stats = np.empty(2 * n, np.float32)
    x32, g32, b32 = f32(x), f32(g), f32(b)
    lib.rmf_layernorm_forward(p(x32), C.c_int64(n), d, p(g32), p(b32), C.c_float(eps), p(y),
                              p(stats))
    x = x32.astype(np.float64)
    g, b = g32.astype(np.float64), b32.astype(np.float64)
    close(y, ref.layernorm_forward(x, g, b, eps))
    dx = np.empty((n, d), np.float32)
    dg, db = np.ones(d, np.float32), np.ones(d, np.float32)  # accumulated onto
    dy32 = f32(dy)
    lib.rmf_layernorm_backward(p(x32), p(dy32), C.c_int64(n), d, p(g32), p(stats), p(dx),
                               p(dg), p(db))
    wdx, wdg, wdb = ref.layernorm_backward(x, dy32.astype(np.float64), g, eps)
    close(dx, wdx, atol=1e-4)
    close(dg, wdg + 1)
    close(db, wdb + 1)


def test_layernorm_reference_backward_is_the_gradient():
    x, g, b, w = rand(4, 6), rand(6), rand(6), rand(4, 6)
    eps = 1e-5
    dx, dg, db = ref.layernorm_backward(x, w, g, eps)

    def loss():
        return (ref.layernorm_forward(x, g, b, eps) * w).sum()
    close(dx, ref.numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    close(dg, ref.numeric_grad(loss, g), rtol=1e-5, atol=1e-7)
    close(db, ref.numeric_grad(loss, b), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# dense layers and the feed-forward block
# ---------------------------------------------------------------------------

def test_linear_forward_backward_with_strides(lib):
    n, din, dout = 9, 5, 7
    x = f32(rand(n, din + 3))       # row stride din + 3: a slice of wider rows
    W, b, dy = f32(rand(dout, din)), f32(rand(dout)), f32(rand(n, dout + 2))
    y = np.full((n, dout + 2), 9.0, np.float32)
    lib.rmf_linear_forward(p(x), C.c_int64(din + 3), C.c_int64(n), din, p(W), p(b), dout,
                           p(y), C.c_int64(dout + 2))
    X, Wd = x[:, :din].astype(np.float64), W.astype(np.float64)
    close(y[:, :dout], ref.linear_forward(X, Wd, b.astype(np.float64)))
    assert (y[:, dout:] == 9.0).all()
    dx = np.full((n, din), 1.0, np.float32)
    dW, db = np.zeros((dout, din), np.float32), np.zeros(dout, np.float32)
    lib.rmf_linear_backward(p(x), C.c_int64(din + 3), C.c_int64(n), din, p(W), dout, p(dy),
                            C.c_int64(dout + 2), p(dx), C.c_int64(din), 1, p(dW), p(db))
    wdx, wdW, wdb = ref.linear_backward(X, Wd, dy[:, :dout].astype(np.float64))
    close(dx, wdx + 1)
    close(dW, wdW)
    close(db, wdb)


@pytest.mark.parametrize("p_drop", [0.0, 0.3])
def test_ffn_forward_backward(lib, p_drop):
    n, d, dff, row0 = 11, 8, 12, 40
    x, dy = f32(rand(n, d)), f32(rand(n, d))
    W1, b1, W2, b2 = f32(rand(dff, d, scale=.5)), f32(rand(dff)), f32(rand(d, dff, scale=.5)), \
        f32(rand(d))
    grads = [np.zeros_like(a) for a in (W1, b1, W2, b2)]
    d1, d2 = site(lib, p_drop, s=1), site(lib, p_drop, s=2)
    f = FFN(*(p(a) for a in (W1, b1, W2, b2)), *(p(g) for g in grads), d, dff, d1, d2)
    hid = np.empty((n, dff), np.float32)
    y = np.empty((n, d), np.float32)
    lib.rmf_ffn_forward(C.byref(f), p(x), C.c_int64(n), C.c_uint64(row0), p(hid), p(y))
    m1 = c_mask(lib, d1, row0, n, dff) if p_drop else None
    m2 = c_mask(lib, d2, row0, n, d) if p_drop else None
    if p_drop:
        assert (m1 == 0).any() and (m2 == 0).any()
    X = [a.astype(np.float64) for a in (x, W1, b1, W2, b2)]
    close(y, ref.ffn_forward(*X, m1, m2))
    dx = np.empty((n, d), np.float32)
    scratch = np.empty(n * (d + dff), np.float32)
    lib.rmf_ffn_backward(C.byref(f), p(x), C.c_int64(n), C.c_uint64(row0), p(hid), p(dy),
                         p(dx), p(scratch))
    want = ref.ffn_backward(*X, dy.astype(np.float64), m1, m2)
    for got, w in zip([dx] + grads, want):
        close(got, w, atol=5e-5)


def test_ffn_reference_backward_is_the_gradient():
    n, d, dff = 3, 4, 5
    x, W1, b1, W2, b2, w = rand(n, d), rand(dff, d), rand(dff), rand(d, dff), rand(d), rand(n, d)
    m1 = (RNG.random((n, dff)) > 0.3) / 0.7
    m2 = (RNG.random((n, d)) > 0.3) / 0.7

    def loss():
        return (ref.ffn_forward(x, W1, b1, W2, b2, m1, m2) * w).sum()
    got = ref.ffn_backward(x, W1, b1, W2, b2, w, m1, m2)
    for g, a in zip(got, (x, W1, b1, W2, b2)):
        close(g, ref.numeric_grad(loss, a), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------

def attn_masks(lib, d, row0, n, H):
    """(H, n, n) masks as attention.c draws them: row (row0 + i) H + h, columns 0..i."""
    if d.key == 0:
        return None
    m = np.zeros((H, n, n))
    for h in range(H):
        for i in range(n):
            m[h, i, :i + 1] = c_mask(lib, d, (row0 + i) * H + h, 1, i + 1)[0]
    return m


@pytest.mark.parametrize("n,d,H,p_drop", [(1, 8, 2, 0.0), (7, 8, 1, 0.0), (13, 12, 3, 0.0),
                                          (13, 8, 2, 0.4), (40, 16, 4, 0.2), (64, 8, 2, 0.3),
                                          (150, 8, 2, 0.2)])
def test_attention_forward_backward(lib, n, d, H, p_drop):
    row0 = 17
    qkv, dout = f32(rand(n, 3 * d)), f32(rand(n, d))
    dr = site(lib, p_drop, s=9)
    probs = np.empty(H * n * n, np.float32)
    out = np.empty((n, d), np.float32)
    scratch = np.empty(lib.rmf_attention_scratch(n), np.float32)
    lib.rmf_attention_forward(p(qkv), n, d, H, C.byref(dr), C.c_uint64(row0), p(probs), p(out),
                              p(scratch))
    masks = attn_masks(lib, dr, row0, n, H)
    Q = qkv.astype(np.float64)
    want_out, want_probs = ref.attention_forward(Q, H, masks)
    close(out, want_out)
    # probabilities are kept on and below the diagonal (the rest is scratch)
    close(np.tril(probs.reshape(H, n, n)), want_probs)
    dqkv = np.empty((n, 3 * d), np.float32)
    lib.rmf_attention_backward(p(qkv), n, d, H, C.byref(dr), C.c_uint64(row0), p(probs), p(dout),
                               p(dqkv), p(scratch))
    close(dqkv, ref.attention_backward(Q, H, dout.astype(np.float64), masks), atol=5e-5)


def test_attention_reference_backward_is_the_gradient():
    n, d, H = 5, 6, 2
    qkv, w = rand(n, 3 * d), rand(n, d)
    masks = (RNG.random((H, n, n)) > 0.25) / 0.75

    def loss():
        return (ref.attention_forward(qkv, H, masks)[0] * w).sum()
    close(ref.attention_backward(qkv, H, w, masks), ref.numeric_grad(loss, qkv),
          rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# softmax cross-entropy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n,n_items", [(1, 5), (130, 37), (300, 301)])
def test_softmax_ce_matches_reference_across_chunks(lib, n, n_items):
    d = 16
    h, E = f32(rand(n, d)), f32(rand(n_items, d, scale=.5))
    t = RNG.integers(0, n_items, n).astype(np.int32)
    dh = np.empty((n, d), np.float32)
    dE = np.ones((n_items, d), np.float32)
    scratch = np.empty(lib.rmf_softmax_ce_scratch(n_items), np.float32)
    scale = 1.0 / n
    loss = lib.rmf_softmax_ce(p(h), C.c_int64(n), d, p(E), n_items, p(t), C.c_float(scale),
                              p(dh), p(dE), p(scratch))
    wl, wdh, wdE = ref.softmax_ce(h.astype(np.float64), E.astype(np.float64), t, scale)
    assert loss == pytest.approx(wl, rel=1e-5)
    close(dh, wdh, atol=1e-6)
    close(dE, wdE + 1, atol=1e-6)


def test_softmax_ce_reference_backward_is_the_gradient():
    h, E = rand(4, 3), rand(6, 3)
    t = np.array([0, 5, 2, 2])
    _, dh, dE = ref.softmax_ce(h, E, t, 1.0)
    close(dh, ref.numeric_grad(lambda: ref.softmax_ce(h, E, t, 1.0)[0], h), rtol=1e-5, atol=1e-7)
    close(dE, ref.numeric_grad(lambda: ref.softmax_ce(h, E, t, 1.0)[0], E), rtol=1e-5, atol=1e-7)


def test_sampled_ce_matches_reference(lib):
    n, d, n_items, n_neg, n_seq = 200, 8, 50, 17, 3
    h, E = f32(rand(n, d)), f32(rand(n_items, d, scale=.5))
    t = RNG.integers(0, n_items, n).astype(np.int32)
    neg = RNG.choice(n_items, n_neg, replace=False).astype(np.int32)
    seq_of_row = np.sort(RNG.integers(0, n_seq, n)).astype(np.int32)
    negmask = (RNG.random((n_seq, n_neg)) < 0.3).astype(np.uint8)
    Eneg = f32(E[neg])
    dh = np.empty((n, d), np.float32)
    dE = np.zeros((n_items, d), np.float32)
    dEneg = np.zeros((n_neg, d), np.float32)
    scratch = np.empty(lib.rmf_sampled_ce_scratch(n_neg), np.float32)
    loss = lib.rmf_sampled_ce(p(h), C.c_int64(n), d, p(E), p(t), None, p(Eneg), n_neg, p(negmask),
                              p(seq_of_row), C.c_float(0.5), p(dh), p(dE), p(dEneg), p(scratch))
    np.add.at(dE, neg, dEneg)
    wl, wdh, wdE = ref.sampled_ce(h.astype(np.float64), E.astype(np.float64), t, neg, negmask,
                                  seq_of_row, 0.5)
    assert loss == pytest.approx(wl, rel=1e-5)
    close(dh, wdh, atol=1e-6)
    close(dE, wdE, atol=1e-6)


def test_sampled_ce_reference_backward_is_the_gradient():
    h, E = rand(5, 3), rand(8, 3)
    t, neg = np.array([0, 1, 2, 3, 4]), np.array([5, 6, 7, 1])
    negmask = np.array([[0, 1, 0, 0], [0, 0, 0, 1]], np.uint8)
    sr = np.array([0, 0, 1, 1, 1])

    def f():
        return ref.sampled_ce(h, E, t, neg, negmask, sr, 1.0)[0]
    _, dh, dE = ref.sampled_ce(h, E, t, neg, negmask, sr, 1.0)
    close(dh, ref.numeric_grad(f, h), rtol=1e-5, atol=1e-7)
    close(dE, ref.numeric_grad(f, E), rtol=1e-5, atol=1e-7)
