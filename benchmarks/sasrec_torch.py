"""SASRec written in PyTorch: the reference recmf.SASRec is timed and checked against.

The model (Kang & McAuley, ICDM 2018, in RecTools 0.19's form; full-softmax training as
Klenitskiy & Vasilev, RecSys 2023, "SASRec+"):

* input of token t of a user's sequence (n items, oldest first, at most ``max_len``):
  ``x_t = E[item_t] * s + P[n - 1 - t]`` (``P`` indexed by the distance from the sequence's
  end, RecTools' "inverse" positions, so the last token always has ``P[0]``; ``s = sqrt(d)``
  with ``scale_emb``, else 1), then dropout;
* ``n_blocks`` blocks, each (the SASRec authors' layout, as RecTools):
  ``q = LN1(x); x = q + MHA(q, x, x); f = LN2(x); x = f + drop(W2 drop(relu(W1 f + b1)) + b2)``
  where MHA is causal multi-head attention with dropout on the attention probabilities
  (torch.nn.MultiheadAttention's maths: one in-projection ``[Wq; Wk; Wv]`` with bias, an
  out-projection with bias; queries from ``q``, keys and values from ``x``);
* a last layer norm (eps 1e-8); the score of item j after token t is ``h_t . E[j]``;
* loss: cross-entropy of the next item over every item (``loss="softmax"``), or over the
  target and ``n_negatives`` items drawn uniformly per batch and shared by its tokens, the
  user's own sequence items masked out (``loss="sampled"``); the mean over the batch's tokens.

Sequences are right-padded to the batch's longest one: with a causal mask a real token never
sees a pad, so the model is exactly the packed one recmf trains, and pad positions are left
out of the loss (RecTools computes logits for them and multiplies by 0).  Parameters start
as RecTools: Xavier-normal for every matrix (embeddings included), zero in-projection and
out-projection biases, PyTorch's default uniform biases for the feed-forward layers, layer
norms at (1, 0).  Adam, betas (0.9, 0.98), no weight decay.

Used by ``benchmarks/sasrec.py`` (side by side with recmf) and runnable alone to explore::

    python benchmarks/sasrec_torch.py --epochs 30 --lr 2e-3 --threads 2 --protocol seed
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TorchConfig:
    n_blocks: int = 2
    n_heads: int = 2
    emb_dim: int = 64
    max_len: int = 200
    dropout: float = 0.2
    scale_emb: bool = False
    loss: str = "softmax"
    n_negatives: int = 256
    lr: float = 2e-3
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    extra: dict = field(default_factory=dict)


def training_windows(indptr, items, max_len):
    """Per user with at least 2 items: the last ``max_len + 1`` items (inputs are all but the
    last, targets all but the first).  Returns (starts, lengths) into ``items`` of the kept
    windows, lengths = number of input tokens."""
    lens = np.diff(indptr)
    keep = np.flatnonzero(lens >= 2)
    n_in = np.minimum(lens[keep] - 1, max_len)
    starts = indptr[1:][keep] - n_in - 1
    return starts.astype(np.int64), n_in.astype(np.int64), keep


def import_torch(threads):
    import torch
    torch.set_num_threads(int(threads))
    return torch


def build_model(torch, cfg, n_items):
    nn = torch.nn
    F = torch.nn.functional
    d, H = cfg.emb_dim, cfg.n_heads

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.in_proj = nn.Linear(d, 3 * d)
            self.out_proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.ff1 = nn.Linear(d, d)
            self.ff2 = nn.Linear(d, d)

        def forward(self, x):
            B, T, _ = x.shape
            p = cfg.dropout if self.training else 0.0
            q = self.ln1(x)
            w, b = self.in_proj.weight, self.in_proj.bias
            Q = F.linear(q, w[:d], b[:d])
            KV = F.linear(x, w[d:], b[d:])
            K, V = KV[..., :d], KV[..., d:]

            def heads(t):
                return t.reshape(B, T, H, d // H).transpose(1, 2)
            a = F.scaled_dot_product_attention(heads(Q), heads(K), heads(V), dropout_p=p,
                                               is_causal=True)
            a = self.out_proj(a.transpose(1, 2).reshape(B, T, d))
            x = q + a
            f = self.ln2(x)
            h = F.dropout(F.relu(self.ff1(f)), p, self.training)
            return f + F.dropout(self.ff2(h), p, self.training)

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(n_items, d)
            self.pos = nn.Embedding(cfg.max_len, d)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_blocks)])
            self.last_ln = nn.LayerNorm(d, eps=1e-8)
            for name, prm in self.named_parameters():
                if prm.dim() > 1:
                    nn.init.xavier_normal_(prm)
            for blk in self.blocks:
                nn.init.zeros_(blk.in_proj.bias)
                nn.init.zeros_(blk.out_proj.bias)

        def encode(self, seq, lens):
            """seq: (B, T) item indices right-padded; lens: (B,) -> (B, T, d)."""
            T = seq.shape[1]
            t = torch.arange(T).unsqueeze(0)
            inv = (lens.unsqueeze(1) - 1 - t).clamp(min=0)
            x = self.item(seq)
            if cfg.scale_emb:
                x = x * math.sqrt(d)
            x = F.dropout(x + self.pos(inv), cfg.dropout, self.training)
            for blk in self.blocks:
                x = blk(x)
            return self.last_ln(x)

    return SASRec()


class TorchSASRec:
    """Train and score the PyTorch model on recmf's sequences (dense indices)."""

    def __init__(self, cfg, n_items, threads=2):
        self.torch = import_torch(threads)
        torch = self.torch
        self.cfg = cfg
        self.n_items = n_items
        torch.manual_seed(cfg.seed)
        self.model = build_model(torch, cfg, n_items)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                    weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)

    def _batch(self, indptr, items, starts, n_in, rows):
        torch = self.torch
        T = int(n_in[rows].max())
        B = len(rows)
        seq = np.zeros((B, T), dtype=np.int64)
        tgt = np.full((B, T), -1, dtype=np.int64)
        for r, w in enumerate(rows):
            s, n = starts[w], n_in[w]
            seq[r, :n] = items[s:s + n]
            tgt[r, :n] = items[s + 1:s + 1 + n]
        return torch.from_numpy(seq), torch.from_numpy(tgt), torch.from_numpy(n_in[rows])

    def train_epoch(self, indptr, items):
        """One epoch over every user's last window, users shuffled; returns mean loss."""
        torch, cfg = self.torch, self.cfg
        F = torch.nn.functional
        starts, n_in, keep = training_windows(indptr, items, cfg.max_len)
        order = self.rng.permutation(len(starts))
        self.model.train()
        total, n_tok = 0.0, 0
        for b0 in range(0, len(order), cfg.batch_size):
            rows = order[b0:b0 + cfg.batch_size]
            seq, tgt, lens = self._batch(indptr, items, starts, n_in, rows)
            h = self.model.encode(seq, lens)
            mask = tgt >= 0
            hv, tv = h[mask], tgt[mask]
            E = self.model.item.weight
            if cfg.loss == "softmax":
                logits = hv @ E.T
                loss = F.cross_entropy(logits, tv)
            else:
                neg = torch.from_numpy(self.rng.integers(0, self.n_items, cfg.n_negatives))
                pos = (hv * E[tv]).sum(-1, keepdim=True)
                nl = hv @ E[neg].T
                # mask the negatives that are in the token's user's sequence
                bi = torch.nonzero(mask)[:, 0]
                own = torch.zeros((len(rows), self.n_items), dtype=torch.bool)
                own[torch.arange(len(rows)).unsqueeze(1).expand_as(seq)[mask], seq[mask]] = True
                own[bi, tv] = True
                nl = nl.masked_fill(own[bi][:, neg], float("-inf"))
                logits = torch.cat([pos, nl], 1)
                loss = F.cross_entropy(logits, torch.zeros(len(tv), dtype=torch.long))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(tv)
            n_tok += len(tv)
        return total / max(n_tok, 1)

    def user_vectors(self, indptr, items, users):
        """h at the last position of each user's last max_len items: (len(users), d)."""
        torch, L = self.torch, self.cfg.max_len
        self.model.eval()
        out = np.zeros((len(users), self.cfg.emb_dim), dtype=np.float32)
        with torch.no_grad():
            for b0 in range(0, len(users), 256):
                us = users[b0:b0 + 256]
                lens = np.minimum(np.diff(indptr)[us], L)
                ok = lens > 0
                T = max(int(lens.max()), 1)
                seq = np.zeros((len(us), T), dtype=np.int64)
                for r, u in enumerate(us):
                    n = lens[r]
                    if n:
                        seq[r, :n] = items[indptr[u + 1] - n:indptr[u + 1]]
                h = self.model.encode(torch.from_numpy(seq), torch.from_numpy(np.maximum(lens, 1)))
                last = h[torch.arange(len(us)), torch.from_numpy(np.maximum(lens, 1) - 1)]
                out[b0:b0 + len(us)][ok] = last.numpy()[ok]
        return out

    def item_table(self):
        return self.model.item.weight.detach().numpy().copy()


def topk_unseen(U, E, seen_indptr, seen_indices, k=10, block=1024):
    """Top-k item indices of U @ E.T per row, seen items (CSR rows aligned with U) removed."""
    out = np.empty((len(U), k), dtype=np.int64)
    for b0 in range(0, len(U), block):
        s = U[b0:b0 + block] @ E.T
        for r in range(len(s)):
            u = b0 + r
            s[r, seen_indices[seen_indptr[u]:seen_indptr[u + 1]]] = -np.inf
        part = np.argpartition(-s, k, axis=1)[:, :k]
        o = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        out[b0:b0 + len(s)] = np.take_along_axis(part, o, 1)
    return out


# ---------------------------------------------------------------------------
# standalone exploration on the seed split
# ---------------------------------------------------------------------------

def seed_data(protocol, data_dir=None):
    """(data, indptr, items, val, test) of ML-1M's seed split: sequences of positives
    (protocol "seed") or of every rated item (protocol "watched": ``seen="rated"``, items
    without a train positive dropped from the input: they are outside the index)."""
    import recmf
    from _common import default_data_dir
    ratings, _, movies = recmf.load_movielens(str(data_dir or default_data_dir()))
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4,
                                         seen="rated" if protocol == "watched" else "positives")
    indptr, items = rated_sequences(data, train, protocol == "watched")
    return data, indptr, items, val, test, movies


def rated_sequences(data, train, rated):
    """Each indexed user's items oldest first (train order: time, ties in input order)."""
    if not rated:
        rows = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(data.indptr))
        order = np.lexsort((data.positions, rows))
        return data.indptr.copy(), np.ascontiguousarray(data.indices[order])
    import recmf
    t = train.reset_index(drop=True)
    u = data.user_index(t["user_id"].to_numpy())
    i = data.item_index(t["movie_id"].to_numpy())
    ok = (u >= 0) & (i >= 0)
    order, _ = recmf._core.temporal_split(np.ascontiguousarray(u[ok], dtype=np.int64),
                                          np.ascontiguousarray(t["timestamp"].to_numpy()[ok],
                                                               dtype=np.int64), 0, 0, 0)
    uu, ii = u[ok][order], i[ok][order]
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(uu, minlength=data.n_users), out=indptr[1:])
    return indptr, ii.astype(np.int32)


def evaluate_vectors(data, U, E, frame, k=10):
    import recmf
    seen_indptr, seen_indices, _ = data.seen_csr()
    recs = topk_unseen(U, E, seen_indptr, seen_indices, k)
    ids = data.item_ids[recs]
    mapping = dict(zip(data.user_ids.tolist(), ids.tolist()))
    rep = recmf.evaluate(mapping, frame, k=k, catalog=data.item_ids)
    return rep


def main(argv=None):
    import argparse
    from _common import pin_threads_from_argv
    threads = pin_threads_from_argv(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default=threads)
    ap.add_argument("--protocol", choices=["seed", "watched"], default="seed")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=1)
    for f in ("lr", "dropout"):
        ap.add_argument("--" + f, type=float, default=getattr(TorchConfig, f))
    for f in ("max_len", "batch_size", "n_blocks", "n_heads", "emb_dim", "n_negatives", "seed"):
        ap.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(TorchConfig, f))
    ap.add_argument("--loss", choices=["softmax", "sampled"], default="softmax")
    ap.add_argument("--scale-emb", action="store_true")
    ap.add_argument("--beta2", type=float, default=0.98)
    a = ap.parse_args(argv)
    cfg = TorchConfig(n_blocks=a.n_blocks, n_heads=a.n_heads, emb_dim=a.emb_dim,
                      max_len=a.max_len, dropout=a.dropout, scale_emb=a.scale_emb, loss=a.loss,
                      n_negatives=a.n_negatives, lr=a.lr, betas=(0.9, a.beta2),
                      batch_size=a.batch_size, epochs=a.epochs, seed=a.seed)
    data, indptr, items, val, test, _ = seed_data(a.protocol)
    m = TorchSASRec(cfg, data.n_items, threads=int(a.threads))
    users = np.arange(data.n_users)
    print(f"# {cfg}", flush=True)
    train_s = 0.0
    best = (-1, 0, None)
    for ep in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss = m.train_epoch(indptr, items)
        dt = time.perf_counter() - t0
        train_s += dt
        line = f"epoch {ep:3d} loss {loss:.4f} {dt:6.1f}s total {train_s:7.1f}s"
        if a.eval_every and ep % a.eval_every == 0:
            U, E = m.user_vectors(indptr, items, users), m.item_table()
            rv = evaluate_vectors(data, U, E, val)
            rt = evaluate_vectors(data, U, E, test)
            line += f" val {rv['recall@10']:.4f} test {rt['recall@10']:.4f} ndcg {rt['ndcg@10']:.4f}"
            if rv["recall@10"] > best[0]:
                best = (rv["recall@10"], ep, rt["recall@10"])
        print(line, flush=True)
    print(f"# best val {best[0]:.4f} at epoch {best[1]} -> test {best[2]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    sys.exit(main())
