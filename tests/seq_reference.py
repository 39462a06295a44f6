"""Plain NumPy versions of the sequence-model layers in ``csrc/nn/`` (bottleneck's slow/ habit).

Each layer's forward and backward written the obvious way, in float64, for
``tests/test_seq_layers.py`` to compare the C kernels with (and to check against
finite differences itself).  Conventions follow ``csrc/nn/seq.h``: row-major
arrays of rows x features, weights ``(out, in)`` as ``torch.nn.Linear``.
"""
from __future__ import annotations

import numpy as np

M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# counter-based dropout (nn/seq.h)
# ---------------------------------------------------------------------------

def mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def mix32(h):
    h = np.asarray(h, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def drop_mask(key, thr, scale, row0, n_rows, n_cols):
    """The mask of ``rmf_drop_apply``: 0 or ``scale`` for rows row0.., columns 0..n_cols."""
    rows = np.arange(n_rows, dtype=np.uint64) + np.uint64(row0)
    with np.errstate(over="ignore"):
        rk = mix64(np.uint64(key) + (rows + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
        lo = (rk & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        hi = (rk >> np.uint64(32)).astype(np.uint32)
        cols = np.arange(n_cols, dtype=np.uint32) * np.uint32(0x9E3779B9)
        bits = mix32(lo[:, None] + cols[None, :]) ^ hi[:, None]
    return np.where(bits < np.uint32(thr), np.float32(scale), np.float32(0)).astype(np.float32)


# ---------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------

def layernorm_forward(x, gamma, beta, eps):
    mean = x.mean(1, keepdims=True)
    var = ((x - mean) ** 2).mean(1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - mean) * rstd * gamma + beta


def layernorm_backward(x, dy, gamma, eps):
    mean = x.mean(1, keepdims=True)
    var = ((x - mean) ** 2).mean(1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xh = (x - mean) * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(1, keepdims=True) - xh * (g * xh).mean(1, keepdims=True))
    return dx, (dy * xh).sum(0), dy.sum(0)


def linear_forward(x, W, b):
    return x @ W.T + (0 if b is None else b)


def linear_backward(x, W, dy):
    return dy @ W, dy.T @ x, dy.sum(0)


def ffn_forward(x, W1, b1, W2, b2, m1=None, m2=None):
    """y = x + m2 * (W2 (m1 * relu(W1 x + b1)) + b2); masks hold 0 or 1/(1-p)."""
    h = np.maximum(x @ W1.T + b1, 0)
    if m1 is not None:
        h = h * m1
    o = h @ W2.T + b2
    if m2 is not None:
        o = o * m2
    return x + o


def ffn_backward(x, W1, b1, W2, b2, dy, m1=None, m2=None):
    pre = x @ W1.T + b1
    h = np.maximum(pre, 0)
    hd = h * m1 if m1 is not None else h
    s = dy * m2 if m2 is not None else dy
    dW2, db2 = s.T @ hd, s.sum(0)
    g = s @ W2
    if m1 is not None:
        g = g * m1
    g = g * (pre > 0)
    dW1, db1 = g.T @ x, g.sum(0)
    return dy + g @ W1, dW1, db1, dW2, db2


def attention_forward(qkv, H, masks=None):
    """Causal multi-head attention of one sequence: qkv (n, 3d) -> out (n, d), probs (H, n, n).
    masks: (H, n, n) dropout factors on the probabilities, or None."""
    n, d3 = qkv.shape
    d = d3 // 3
    dh = d // H
    out = np.zeros((n, d))
    probs = np.zeros((H, n, n))
    causal = np.tril(np.ones((n, n), dtype=bool))
    for h in range(H):
        Q, K, V = (qkv[:, k * d + h * dh:k * d + (h + 1) * dh] for k in range(3))
        S = Q @ K.T / np.sqrt(dh)
        S = np.where(causal, S, -np.inf)
        S = S - S.max(1, keepdims=True)
        P = np.exp(S)
        P /= P.sum(1, keepdims=True)
        probs[h] = P
        A = P * masks[h] if masks is not None else P
        out[:, h * dh:(h + 1) * dh] = A @ V
    return out, probs


def attention_backward(qkv, H, dout, masks=None):
    n, d3 = qkv.shape
    d = d3 // 3
    dh = d // H
    _, probs = attention_forward(qkv, H, masks)
    dqkv = np.zeros_like(qkv)
    for h in range(H):
        Q, K, V = (qkv[:, k * d + h * dh:k * d + (h + 1) * dh] for k in range(3))
        P = probs[h]
        A = P * masks[h] if masks is not None else P
        dO = dout[:, h * dh:(h + 1) * dh]
        dV = A.T @ dO
        dA = dO @ V.T
        dP = dA * masks[h] if masks is not None else dA
        dS = P * (dP - (P * dP).sum(1, keepdims=True)) / np.sqrt(dh)
        dqkv[:, h * dh:(h + 1) * dh] = dS @ K
        dqkv[:, d + h * dh:d + (h + 1) * dh] = dS.T @ Q
        dqkv[:, 2 * d + h * dh:2 * d + (h + 1) * dh] = dV
    return dqkv


def softmax_ce(h, E, target, scale):
    """(sum of losses, dh, dE) of the full-softmax cross-entropy, gradients times scale."""
    L = h @ E.T
    L = L - L.max(1, keepdims=True)
    P = np.exp(L)
    s = P.sum(1, keepdims=True)
    loss = (np.log(s[:, 0]) - L[np.arange(len(h)), target]).sum()
    G = P / s
    G[np.arange(len(h)), target] -= 1
    G *= scale
    return loss, G @ E, G.T @ h


def sampled_ce(h, E, target, neg, negmask, seq_of_row, scale):
    """Sampled form: candidates [target, neg...]; negmask[seq_of_row[r], j] masks neg j for
    row r.  Returns (loss sum, dh, dE over the table: targets' and negatives' rows)."""
    pos = (h * E[target]).sum(1, keepdims=True)
    nl = h @ E[neg].T
    nl = np.where(negmask[seq_of_row].astype(bool), -np.inf, nl)
    L = np.concatenate([pos, nl], 1)
    L = L - L.max(1, keepdims=True)
    P = np.exp(L)
    s = P.sum(1, keepdims=True)
    loss = (np.log(s[:, 0]) - L[:, 0]).sum()
    G = P / s
    G[:, 0] -= 1
    G *= scale
    dh = G[:, :1] * E[target] + G[:, 1:] @ E[neg]
    dE = np.zeros_like(E)
    np.add.at(dE, target, G[:, :1] * h)
    np.add.at(dE, neg, G[:, 1:].T @ h)
    return loss, dh, dE


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (float64, in
    place and restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g
