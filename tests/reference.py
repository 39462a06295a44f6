"""Plain NumPy/pandas reference implementations for the recmf test suite.

Everything here is written for clarity, not speed: the test suite compares the
C core against these functions, so each one follows SPEC.md (and the seed
notebook it reproduces) as literally as possible.  Floating-point maths is done
in float64.  Nothing in this module imports recmf.

Conventions shared with csrc/recmf.h:

* CSR: row u holds the sorted, distinct column indices
  ``indices[indptr[u]:indptr[u + 1]]``; indptr is int64, indices int32.
* NeuralMF flat parameters::

      [user_emb n_users*D | item_emb n_items*D | W1 H*(2D) | b1 H | w2 H | b2 1]

  with row h of W1 = [user half D | item half D] (PyTorch's Linear weight,
  shape (out_features, in_features) = (H, 2D), row-major).
* BPRMF flat parameters: ``[user_emb n_users*D | item_emb n_items*D]``.
* A dropout mask is an n x H array of scale factors (0 or 1/(1-p)); None means
  no dropout (eval mode).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def ratings_sanity_ref(path):
    """Read ML-1M ``ratings.dat(.gz)`` (``UserID::MovieID::Rating::Timestamp``)
    with plain pandas; ``path`` is the file or the ml-1m directory.

    Returns a frame with int64 columns user_id, movie_id, rating, timestamp in
    file order (RangeIndex).  Slow (python engine, ~8 s) but obviously right.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        gz = os.path.join(path, "ratings.dat.gz")
        path = gz if os.path.exists(gz) else os.path.join(path, "ratings.dat")
    return pd.read_csv(path, sep="::", engine="python", names=RATING_COLUMNS)


def read_ml100k_ref(path):
    """Read ML-100K ``u.data`` (tab-separated, no header); ``path`` is the file
    or the ml-100k directory.  Columns user_id, movie_id, rating, timestamp
    (int64), file order."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "u.data")
    return pd.read_csv(path, sep="\t", header=None, names=RATING_COLUMNS)


def read_latest_small_ref(path):
    """Read ml-latest-small ``ratings.csv`` (header ``userId,movieId,rating,
    timestamp``, CRLF, half-star float ratings); ``path`` is the file or the
    directory.  Columns user_id, movie_id, timestamp int64, rating float64."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "ratings.csv")
    df = pd.read_csv(path)
    df = df.rename(columns={"userId": "user_id", "movieId": "movie_id"})
    df = df[RATING_COLUMNS]
    df["rating"] = df["rating"].astype(np.float64)
    return df


# --------------------------------------------------------------------------
# Temporal split (SPEC 2)
# --------------------------------------------------------------------------


def temporal_split_ref(ratings, n_val=1, n_test=5, min_train=5,
                       user_col="user_id", time_col="timestamp",
                       item_col="movie_id"):
    """The seed notebook's ``temporal_split_per_user``, column names as
    arguments.

    ``sort_values([user, time])`` orders rows by (user, time); for a
    multi-column sort pandas ignores ``kind`` and uses a lexsort, which is
    stable, so rows with equal (user, time) keep their input order
    (test_reference.py checks this against ``np.lexsort`` and a pure-Python
    ``sorted``).  rank = 1-based position within the user; users with fewer
    than ``min_train + n_val + n_test`` rows go to train entirely; otherwise
    the last ``n_test`` rows -> test and the ``n_val`` before them -> val.
    The three frames keep the original index and columns, in sorted order.
    """
    r = ratings.sort_values([user_col, time_col]).copy()

    rank = r.groupby(user_col).cumcount() + 1
    user_cnt = r.groupby(user_col)[item_col].transform("size")

    eligible = user_cnt >= (min_train + n_val + n_test)
    test_mask = eligible & (rank > user_cnt - n_test)
    val_mask = eligible & (rank > user_cnt - (n_test + n_val)) & ~test_mask
    train_mask = ~test_mask & ~val_mask

    return r.loc[train_mask], r.loc[val_mask], r.loc[test_mask]


def temporal_split_loop_ref(users, times, n_val=1, n_test=5, min_train=5):
    """Same split from plain Python: returns (order, part) like
    ``rmf_temporal_split``: ``order`` are row positions sorted stably by
    (user, time) (Python's ``sorted`` is guaranteed stable), ``part[k]`` is
    0 (train), 1 (val) or 2 (test) for row ``order[k]``."""
    users = [int(x) for x in users]
    times = [int(x) for x in times]
    order = sorted(range(len(users)), key=lambda r: (users[r], times[r]))

    count = {}
    for u in users:
        count[u] = count.get(u, 0) + 1

    part = []
    seen = {}
    for r in order:
        u = users[r]
        seen[u] = seen.get(u, 0) + 1
        rank, cnt = seen[u], count[u]
        if cnt < min_train + n_val + n_test:
            part.append(0)
        elif rank > cnt - n_test:
            part.append(2)
        elif rank > cnt - n_test - n_val:
            part.append(1)
        else:
            part.append(0)
    return np.asarray(order, dtype=np.int64), np.asarray(part, dtype=np.int8)


# --------------------------------------------------------------------------
# Index and CSR (SPEC 3)
# --------------------------------------------------------------------------


def index_ref(train, threshold=4, user_col="user_id", item_col="movie_id",
              rating_col="rating"):
    """Factorize the train positives (``rating >= threshold``) and build the
    user x item CSR.

    Users and items are numbered by ``pd.factorize(sort=True)`` (ascending
    id).  Each CSR row holds the sorted distinct item indices of the user: a
    duplicated (user, item) pair counts once.  Returns dict(user_ids,
    item_ids (int64 arrays, dense index -> original id), indptr (int64),
    indices (int32), n_users, n_items, nnz).
    """
    pos = train[train[rating_col] >= threshold]
    u_codes, u_uniques = pd.factorize(pos[user_col], sort=True)
    i_codes, i_uniques = pd.factorize(pos[item_col], sort=True)
    n_users, n_items = len(u_uniques), len(i_uniques)

    rows = [set() for _ in range(n_users)]
    for u, i in zip(u_codes.tolist(), i_codes.tolist()):
        rows[u].add(i)

    indptr = np.zeros(n_users + 1, dtype=np.int64)
    indices = []
    for u in range(n_users):
        row = sorted(rows[u])
        indices.extend(row)
        indptr[u + 1] = indptr[u] + len(row)

    return {
        "user_ids": np.asarray(u_uniques, dtype=np.int64),
        "item_ids": np.asarray(i_uniques, dtype=np.int64),
        "indptr": indptr,
        "indices": np.asarray(indices, dtype=np.int32),
        "n_users": n_users,
        "n_items": n_items,
        "nnz": int(indptr[-1]),
    }


def csr_row_sets(indptr, indices):
    """CSR -> list of Python sets, one per row."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    return [set(indices[indptr[r]:indptr[r + 1]].tolist())
            for r in range(len(indptr) - 1)]


def train_positive_sets(train, threshold=4, user_col="user_id",
                        item_col="movie_id", rating_col="rating"):
    """dict original user id -> set of original item ids of its train
    positives (``rating >= threshold``)."""
    pos = train[train[rating_col] >= threshold]
    seen = {}
    for u, i in zip(pos[user_col].tolist(), pos[item_col].tolist()):
        seen.setdefault(u, set()).add(i)
    return seen


# --------------------------------------------------------------------------
# Popularity (SPEC 4)
# --------------------------------------------------------------------------


def popularity_ref(train, threshold=4, user_col="user_id",
                   item_col="movie_id", rating_col="rating"):
    """Number of train positives per item (distinct (user, item) pairs with
    ``rating >= threshold``), as a Series indexed by item id, sorted by
    descending count with ties broken by ascending item id.

    (``Series.sort_values(ascending=False)`` is not stable by default, so the
    order is built explicitly from the key (-count, item id).)
    """
    seen = train_positive_sets(train, threshold, user_col, item_col,
                               rating_col)
    counts = {}
    for items in seen.values():
        for i in items:
            counts[i] = counts.get(i, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    index = pd.Index([i for i, _ in ranked], name=item_col)
    return pd.Series([c for _, c in ranked], index=index, dtype=np.int64,
                     name="count")


def seed_popularity_order_ref(train, threshold=4, item_col="movie_id",
                              rating_col="rating"):
    """The seed notebook's ``item_popularity`` verbatim:
    ``train_pos.groupby(item).size().sort_values(ascending=False)``.

    Same counts as ``popularity_ref`` but pandas' default (unstable
    quicksort) order among equal counts, which depends on the CPU: numpy's
    AVX-512 sort orders ties differently from its generic one.  Tests may
    only assert that it is *a* descending order of the same counts.
    """
    pos = train[train[rating_col] >= threshold]
    return pos.groupby(item_col).size().sort_values(ascending=False)


def spec_printed_order_ref(train, threshold=4, item_col="movie_id",
                           rating_col="rating"):
    """The popularity order behind SPEC 10's printed Popularity row, made
    CPU-independent: SPEC 4's order (ties to the lower id) with item 1265
    moved just ahead of item 1 (both 1612 train positives on the ML-1M
    split), the one tie that the machine which printed the row broke the
    other way and that reaches the top-10 lists."""
    order = popularity_ref(train, threshold, item_col=item_col, rating_col=rating_col)
    ids = [i for i in order.index if i != 1265]
    ids.insert(ids.index(1), 1265)
    return order.reindex(ids)


def rated_sets(train, user_col="user_id", item_col="movie_id"):
    """dict original user id -> set of original item ids they rated in
    ``train``, whatever the rating."""
    rated = {}
    for u, i in zip(train[user_col].tolist(), train[item_col].tolist()):
        rated.setdefault(u, set()).add(i)
    return rated


def popularity_recommend_ref(train, user_ids, k, threshold=4,
                             user_col="user_id", item_col="movie_id",
                             rating_col="rating", ranking=None, seen="positives",
                             unknown="empty"):
    """For each user id: the ``k`` most popular items (``popularity_ref``
    order, or the item ids of ``ranking`` when given) that the user has not
    seen in ``train``.

    Seen: the user's train positives (``seen="positives"``), every item
    they rated in train, whatever the rating (``seen="rated"``), or nothing
    (``seen=None``).  Users
    outside the index -- without train positives, whether they rated nothing
    in train or only below the threshold -- get ``[]`` with
    ``unknown="empty"``, and with ``unknown="popular"`` the same ranking minus
    what they have seen (so under ``seen="rated"`` never an item they rated).
    """
    if ranking is None:
        ranking = popularity_ref(train, threshold, user_col, item_col,
                                 rating_col).index
    ranking = list(ranking)
    positives = train_positive_sets(train, threshold, user_col, item_col,
                                    rating_col)
    seen_sets = {} if seen is None else positives if seen == "positives" else \
        rated_sets(train, user_col, item_col)
    out = []
    for u in user_ids:
        if u not in positives and unknown == "empty":
            out.append([])
            continue
        excluded = seen_sets.get(u, set())
        out.append([item for item in ranking if item not in excluded][:k])
    return out


# --------------------------------------------------------------------------
# Top-K (SPEC 8)
# --------------------------------------------------------------------------


def topk_ref(scores, seen_lists, k):
    """Brute-force top-k per row of a 2-D score array.

    Higher score first, ties by lower column index, NaN below everything
    (also below -inf).  Columns in ``seen_lists[r]`` (an iterable of column
    indices, or None; ``seen_lists`` itself may be None) are removed first.
    Returns (items, scores): lists of per-row lists, each of length
    ``min(k, columns left)``.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    items_out, scores_out = [], []
    for r in range(n_rows):
        seen = set()
        if seen_lists is not None and seen_lists[r] is not None:
            seen = set(int(c) for c in seen_lists[r])

        def key(c, row=scores[r]):
            s = float(row[c])
            if math.isnan(s):
                return (1, 0.0, c)      # NaN: after every number
            return (0, -s, c)           # higher score first, then lower col

        cols = sorted((c for c in range(n_cols) if c not in seen), key=key)
        cols = cols[:k]
        items_out.append(cols)
        scores_out.append([scores[r, c] for c in cols])
    return items_out, scores_out


def recommend_ref(data, scores, users, k):
    """What ``_recommend_index(users, k, exclude_seen=True)`` must give for
    these score rows: the padded top-k (``pad_topk``) of each user's row
    without the user's seen items (``data.seen_indptr``/``seen_indices``)."""
    seen = [data.seen_indices[data.seen_indptr[u]:data.seen_indptr[u + 1]] for u in users]
    return pad_topk(*topk_ref(scores, seen, k), k)


def assert_valid_topk(items, scores, lens, ref_scores, seen, k):
    """items/scores (n x k) are a top-k of ref_scores (n x n_items, float64)
    with seen[r] removed, up to the tolerance."""
    for r in range(len(items)):
        cand = np.setdiff1d(np.arange(ref_scores.shape[1]), seen[r])
        m = min(k, len(cand))
        assert lens[r] == m
        got = items[r, :m]
        assert len(set(got)) == m and not set(got) & set(seen[r])
        assert (items[r, m:] == -1).all()
        row = ref_scores[r]
        tol = 1e-4 * (np.abs(row).max() + 1)
        np.testing.assert_allclose(scores[r, :m], row[got], rtol=0, atol=tol)
        kth = np.sort(row[cand])[::-1][m - 1]
        assert row[got].min() >= kth - tol
        assert np.all(np.diff(scores[r, :m]) <= tol)  # best first


def pad_topk(items, scores, k):
    """Lists from ``topk_ref`` -> (items int32 n x k padded with -1,
    scores float32 n x k padded with -inf, lengths int32), the layout of
    ``rmf_topk_rows``."""
    n = len(items)
    out_i = np.full((n, k), -1, dtype=np.int32)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_len = np.zeros(n, dtype=np.int32)
    for r in range(n):
        m = len(items[r])
        out_i[r, :m] = items[r]
        out_s[r, :m] = scores[r]
        out_len[r] = m
    return out_i, out_s, out_len


# --------------------------------------------------------------------------
# Metrics (SPEC 9)
# --------------------------------------------------------------------------


def ndcg_at_k_ref(recommended, relevant, k=10):
    """The seed's ``ndcg_at_k``: DCG over hits in the first k positions
    (1/log2(p + 1), p 1-based) divided by the ideal DCG of
    min(|relevant|, k) hits.  A repeated item is a hit once, at its first
    position (the seed counted it again, which can push ndcg above 1)."""
    rel = set(relevant)
    dcg = 0.0
    counted = set()
    for p, item in enumerate(recommended[:k], start=1):
        if item in rel and item not in counted:
            counted.add(item)
            dcg += 1.0 / math.log2(p + 1)
    ideal_hits = min(len(rel), k)
    idcg = sum(1.0 / math.log2(p + 1) for p in range(1, ideal_hits + 1))
    return 0.0 if idcg == 0 else dcg / idcg


def metrics_ref(recs_by_user, test, k=10, threshold=4, coverage_users=None,
                catalog=None, item_popularity=None, user_col="user_id",
                item_col="movie_id", rating_col="rating"):
    """SPEC 9 metrics from ``recs_by_user`` (dict user id -> list of item
    ids, best first; a missing user counts as an empty list).

    Ranking metrics average over users with at least one relevant test item
    (``rating >= threshold``, distinct items) and a non-empty list (first k
    entries used; ``n_users_skipped`` counts those with an empty one): recall = |recs & rel| / |rel|, ndcg (``ndcg_at_k_ref``),
    mrr = 1/p of the first hit (0 if none), hitrate = 1 if any hit.
    coverage = |union of the recs of ``coverage_users`` that are in
    ``catalog``| / |distinct catalog| (an item outside the catalogue covers
    none of it, so coverage <= 1); avg_popularity = mean of ``item_popularity`` (dict or Series,
    0 for unknown items) over every (coverage user, recommended item) pair.
    Values that cannot be computed (no users, no coverage inputs) are NaN.
    """
    pos = test[test[rating_col] >= threshold]
    relevant = {}
    for u, i in zip(pos[user_col].tolist(), pos[item_col].tolist()):
        relevant.setdefault(u, set()).add(i)

    recalls, ndcgs, mrrs, hits = [], [], [], []
    skipped = 0
    for u in sorted(relevant):
        rel = relevant[u]
        recs = list(recs_by_user.get(u, []))[:k]
        if not recs:
            skipped += 1
            continue
        recalls.append(len(set(recs) & rel) / len(rel))
        ndcgs.append(ndcg_at_k_ref(recs, rel, k))
        rr = 0.0
        for p, item in enumerate(recs, start=1):
            if item in rel:
                rr = 1.0 / p
                break
        mrrs.append(rr)
        hits.append(1.0 if rr > 0 else 0.0)

    def mean(xs):
        return float(np.mean(np.asarray(xs, dtype=np.float64))) if xs \
            else float("nan")

    out = {
        f"recall@{k}": mean(recalls),
        f"ndcg@{k}": mean(ndcgs),
        f"mrr@{k}": mean(mrrs),
        f"hitrate@{k}": mean(hits),
        "n_users_eval": len(recalls),
        "n_users_skipped": skipped,
        f"coverage@{k}": float("nan"),
        f"avg_popularity@{k}": float("nan"),
    }

    if coverage_users is not None:
        rec_lists = [list(recs_by_user.get(u, []))[:k] for u in coverage_users]
        if catalog is not None:
            union = set()
            for recs in rec_lists:
                union.update(recs)
            out[f"coverage@{k}"] = len(union & set(catalog)) / len(set(catalog))
        if item_popularity is not None:
            pop = dict(item_popularity.items()) \
                if hasattr(item_popularity, "items") else dict(item_popularity)
            values = [pop.get(i, 0) for recs in rec_lists for i in recs]
            out[f"avg_popularity@{k}"] = mean(values)
    return out


# --------------------------------------------------------------------------
# NeuralMF (SPEC 6)
# --------------------------------------------------------------------------


def ncf_n_params(n_users, n_items, D, H):
    """Length of the NeuralMF flat parameter vector."""
    return (n_users + n_items) * D + H * 2 * D + H + H + 1


def mf_n_params(n_users, n_items, D):
    """Length of the BPRMF flat parameter vector."""
    return (n_users + n_items) * D


def ncf_unpack(theta, n_users, n_items, D, H):
    """Views into the flat NeuralMF vector: user_emb (n_users, D), item_emb
    (n_items, D), W1 (H, 2D), b1 (H,), w2 (H,), b2 (1,)."""
    theta = np.asarray(theta)
    assert theta.ndim == 1 and theta.size == ncf_n_params(n_users, n_items, D, H)
    sizes = [("user_emb", (n_users, D)), ("item_emb", (n_items, D)),
             ("W1", (H, 2 * D)), ("b1", (H,)), ("w2", (H,)), ("b2", (1,))]
    out, off = {}, 0
    for name, shape in sizes:
        n = int(np.prod(shape))
        out[name] = theta[off:off + n].reshape(shape)
        off += n
    return out


def mf_unpack(theta, n_users, n_items, D):
    """Views into the flat BPRMF vector: user_emb (n_users, D), item_emb
    (n_items, D)."""
    theta = np.asarray(theta)
    assert theta.ndim == 1 and theta.size == mf_n_params(n_users, n_items, D)
    nu = n_users * D
    return {"user_emb": theta[:nu].reshape(n_users, D),
            "item_emb": theta[nu:].reshape(n_items, D)}


def sigmoid(z):
    """Numerically stable logistic function (float64)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    p = z >= 0
    out[p] = 1.0 / (1.0 + np.exp(-z[p]))
    e = np.exp(z[~p])
    out[~p] = e / (1.0 + e)
    return out


def softplus(x):
    """log(1 + exp(x)), stable: max(x, 0) + log1p(exp(-|x|))."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _ncf_forward(p, u, i, mask):
    """Forward pass in float64; returns the intermediates backward needs."""
    x = np.concatenate([p["user_emb"][u], p["item_emb"][i]], axis=1)  # n x 2D
    a = x @ p["W1"].T + p["b1"]                                         # n x H
    r = np.maximum(a, 0.0)                                              # ReLU
    h = r if mask is None else r * mask                                 # dropout
    z = h @ p["w2"] + p["b2"][0]                                        # logits
    return x, a, h, z


def ncf_logits_ref(theta, n_users, n_items, D, H, u, i):
    """NeuralMF logits (eval mode: no dropout) for pairs (u[k], i[k]) of
    dense indices, float64."""
    p = ncf_unpack(np.asarray(theta, dtype=np.float64), n_users, n_items, D, H)
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    return _ncf_forward(p, u, i, None)[3]


def ncf_loss_grad_ref(theta, n_users, n_items, D, H, u, i, y, mask=None):
    """Mean BCE-with-logits loss of a NeuralMF batch and its gradient with
    respect to every parameter (float64, same length as theta, no weight
    decay).

    Forward: x = [user_emb[u] | item_emb[i]]; a = x W1^T + b1; h = relu(a) *
    mask; z = h w2 + b2; loss = mean(max(z, 0) - z y + log1p(exp(-|z|))).
    Backward by hand: dL/dz = (sigmoid(z) - y) / n; ReLU passes gradient
    where a > 0 (PyTorch: zero gradient at a == 0); embedding gradients are
    scatter-added over repeated rows.
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = ncf_unpack(theta, n_users, n_items, D, H)
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float64)
    n = len(u)

    x, a, h, z = _ncf_forward(p, u, i, mask)
    loss = float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))

    grad = np.zeros_like(theta)
    g = ncf_unpack(grad, n_users, n_items, D, H)   # views into grad

    dz = (sigmoid(z) - y) / n                       # n
    g["w2"][:] = h.T @ dz                           # H
    g["b2"][0] = dz.sum()
    dh = np.outer(dz, p["w2"])                      # n x H
    dr = dh if mask is None else dh * mask
    da = dr * (a > 0)
    g["W1"][:] = da.T @ x                           # H x 2D
    g["b1"][:] = da.sum(axis=0)
    dx = da @ p["W1"]                               # n x 2D
    np.add.at(g["user_emb"], u, dx[:, :D])
    np.add.at(g["item_emb"], i, dx[:, D:])
    return loss, grad


# --------------------------------------------------------------------------
# BPRMF (SPEC 7)
# --------------------------------------------------------------------------


def mf_scores_ref(theta, n_users, n_items, D, u, i):
    """BPRMF scores dot(user_emb[u], item_emb[i]) for index pairs, float64."""
    p = mf_unpack(np.asarray(theta, dtype=np.float64), n_users, n_items, D)
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    return np.sum(p["user_emb"][u] * p["item_emb"][i], axis=1)


def bpr_loss_grad_ref(theta, n_users, n_items, D, u, i, j):
    """Mean BPR loss -log sigmoid(s_ui - s_uj) = softplus(-(s_ui - s_uj)) of
    a batch of triplets, and its gradient (float64, no weight decay).

    With d = P[u].(Q[i] - Q[j]) and c = dL/dd = -sigmoid(-d) / n:
    dP[u] += c (Q[i] - Q[j]), dQ[i] += c P[u], dQ[j] -= c P[u].
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = mf_unpack(theta, n_users, n_items, D)
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    n = len(u)

    pu, qi, qj = p["user_emb"][u], p["item_emb"][i], p["item_emb"][j]
    d = np.sum(pu * (qi - qj), axis=1)
    loss = float(np.mean(softplus(-d)))

    grad = np.zeros_like(theta)
    g = mf_unpack(grad, n_users, n_items, D)
    c = -sigmoid(-d) / n
    np.add.at(g["user_emb"], u, c[:, None] * (qi - qj))
    np.add.at(g["item_emb"], i, c[:, None] * pu)
    np.add.at(g["item_emb"], j, -c[:, None] * pu)
    return loss, grad


# --------------------------------------------------------------------------
# Adam (SPEC 6)
# --------------------------------------------------------------------------


def adam_step_ref(theta, g, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999,
                  eps=1e-8, weight_decay=1e-6):
    """One step of torch.optim.Adam (amsgrad=False, maximize=False,
    single-tensor path), computed in float64; returns new (theta, m, v) and
    leaves the inputs untouched.  ``step`` is the 1-based step count after
    this update; ``g`` is the gradient without weight decay.

    PyTorch's documented algorithm (torch.optim.Adam docs and
    torch/optim/adam.py ``_single_tensor_adam``):

        g_t   = g + weight_decay * theta_{t-1}          # L2, not AdamW
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t     # exp_avg.lerp_(g, 1-beta1)
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        denom     = sqrt(v_t) / sqrt(bias_correction2) + eps
        theta_t   = theta_{t-1} - step_size * m_t / denom
    """
    theta = np.asarray(theta, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)

    grad = g + weight_decay * theta
    m_new = beta1 * m + (1.0 - beta1) * grad
    v_new = beta2 * v + (1.0 - beta2) * grad * grad
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    step_size = lr / bias_correction1
    denom = np.sqrt(v_new) / math.sqrt(bias_correction2) + eps
    theta_new = theta - step_size * m_new / denom
    return theta_new, m_new, v_new


# --------------------------------------------------------------------------
# Negative-sampling checks (SPEC 5)
# --------------------------------------------------------------------------


def uniform_negatives_check(indptr, indices, negatives, n_neg, n_items=None):
    """Assert that ``negatives`` has the ``rmf_sample_uniform`` layout:
    ``negatives[p * n_neg + r]`` for positive p (CSR order, row u) is an item
    in [0, n_items) that is not a positive of u.  Returns True."""
    indptr = np.asarray(indptr)
    negatives = np.asarray(negatives)
    rows = csr_row_sets(indptr, indices)
    nnz = int(indptr[-1])
    assert negatives.shape == (nnz * n_neg,), (negatives.shape, nnz * n_neg)
    for u in range(len(rows)):
        for p in range(indptr[u], indptr[u + 1]):
            for r in range(n_neg):
                j = int(negatives[p * n_neg + r])
                assert j >= 0 and (n_items is None or j < n_items), (u, p, j)
                assert j not in rows[u], f"negative {j} is a positive of {u}"
    return True


def triplets_check(indptr, indices, u, i, j, candidates):
    """Assert that each triplet (u, i, j) has i a positive of u and j in
    ``candidates`` and not a positive of u.  Returns True."""
    rows = csr_row_sets(indptr, indices)
    cand = set(int(c) for c in candidates)
    for uu, ii, jj in zip(np.asarray(u).tolist(), np.asarray(i).tolist(),
                          np.asarray(j).tolist()):
        assert ii in rows[uu], f"{ii} is not a positive of {uu}"
        assert jj in cand, f"{jj} is not a candidate"
        assert jj not in rows[uu], f"negative {jj} is a positive of {uu}"
    return True


# -- item transitions and blends ---------------------------------------------

def ordered_positives_ref(train, threshold=4, user_col="user_id", item_col="movie_id",
                          rating_col="rating", time_col="timestamp"):
    """Each user's distinct positives oldest first, as a frame
    ``user, item, position, age`` (original ids).

    Rows are ordered per user by time, ties in input order (pandas' stable
    multi-column sort, as the temporal split); a (user, item) pair repeated
    among the positives keeps the place of its last row.  ``position`` counts
    from 0 (oldest); ``age`` is the number of the user's later positives.
    """
    pos = train[train[rating_col] >= threshold]
    pos = pos.sort_values([user_col, time_col], kind="stable")
    pos = pos.drop_duplicates([user_col, item_col], keep="last")
    out = pd.DataFrame({"user": pos[user_col].to_numpy(), "item": pos[item_col].to_numpy()})
    out["position"] = out.groupby("user").cumcount()
    out["age"] = out.groupby("user")["user"].transform("size") - 1 - out["position"]
    return out


def transition_counts_ref(ordered, window=1, gap_decay=0.5):
    """``{(i, j): weight}``: over every user's sequence (``ordered`` from
    :func:`ordered_positives_ref`), each time item j comes g places after
    item i, 1 <= g <= window, adds ``gap_decay ** (g - 1)`` (window 1: how
    often j directly follows i)."""
    out = {}
    for g in range(1, window + 1):
        nxt = ordered.groupby("user")["item"].shift(-g)
        has = nxt.notna()
        pairs = pd.DataFrame({"i": ordered["item"][has].to_numpy(), "j": nxt[has].to_numpy()})
        for (i, j), c in pairs.value_counts().items():
            out[(i, j)] = out.get((i, j), 0.0) + c * gap_decay ** (g - 1)
    return out


def transition_scores_ref(ordered, item_ids, users, half_life, window=1, gap_decay=0.5):
    """Dense float64 scores (len(users), len(item_ids)) of the transition
    model: score(u, j) = sum over u's positives i at age a of
    2^(-a / half_life) T[i, j], T = counts with each row divided by its sum
    (half_life None: weight 1).  Columns follow ``item_ids``."""
    col = {item: c for c, item in enumerate(item_ids)}
    n = len(item_ids)
    counts = np.zeros((n, n))
    for (i, j), c in transition_counts_ref(ordered, window, gap_decay).items():
        counts[col[i], col[j]] = c
    totals = counts.sum(axis=1, keepdims=True)
    T = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    out = np.zeros((len(users), n))
    for r, u in enumerate(users):
        mine = ordered[ordered["user"] == u]
        for item, age in zip(mine["item"], mine["age"]):
            w = 1.0 if half_life is None else 2.0 ** (-age / half_life)
            out[r] += w * T[col[item]]
    return out


def normalise_rows_ref(scores, how):
    """Row by row in float64: min-max to [0, 1] or z-scores (population
    standard deviation); a constant row becomes 0."""
    out = np.zeros(scores.shape)
    for r in range(scores.shape[0]):
        s = scores[r].astype(np.float64)
        if how == "minmax":
            lo, hi = s.min(), s.max()
            if hi > lo:
                out[r] = (s - lo) / (hi - lo)
        else:
            mu, sd = s.mean(), s.std()
            if sd > 0:
                out[r] = (s - mu) / sd
    return out
# ---------------------------------------------------------------------------
# Implicit ALS (Hu, Koren & Volinsky 2008), dense float64
# ---------------------------------------------------------------------------

def dense_from_csr(indptr, indices, n_cols, values=None):
    """The CSR as a dense float64 matrix (``values`` or ones)."""
    indptr = np.asarray(indptr)
    out = np.zeros((len(indptr) - 1, n_cols))
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    out[rows, np.asarray(indices)] = 1.0 if values is None else np.asarray(values, dtype=np.float64)
    return out


def als_row_system_ref(R, Y, reg, alpha, u):
    """A x = b of row u: A = Y^T C_u Y + reg I, b = Y^T C_u p_u with
    c = 1 + alpha r and p = (r > 0)."""
    Y = np.asarray(Y, dtype=np.float64)
    c = 1.0 + alpha * R[u]
    p = (R[u] > 0).astype(np.float64)
    A = Y.T @ (c[:, None] * Y) + reg * np.eye(Y.shape[1])
    return A, Y.T @ (c * p)


def als_exact_half_ref(R, Y, reg, alpha):
    """Every row of X solved exactly against Y (np.linalg.solve, float64);
    rows without entries are 0."""
    X = np.zeros((R.shape[0], Y.shape[1]))
    for u in range(R.shape[0]):
        if (R[u] > 0).any():
            X[u] = np.linalg.solve(*als_row_system_ref(R, Y, reg, alpha, u))
    return X


def als_cg_half_ref(R, Y, X0, reg, alpha, steps):
    """``steps`` conjugate-gradient steps per row from X0 (Takacs et al.
    2011), in float64: the textbook iteration on A x = b."""
    X = np.array(X0, dtype=np.float64)
    for u in range(R.shape[0]):
        if not (R[u] > 0).any():
            X[u] = 0.0
            continue
        A, b = als_row_system_ref(R, Y, reg, alpha, u)
        x = X[u]
        r = b - A @ x
        p = r.copy()
        rs = r @ r
        for _ in range(steps):
            if rs <= 1e-20:
                break
            Ap = A @ p
            a = rs / (p @ Ap)
            x = x + a * p
            r = r - a * Ap
            rs_new = r @ r
            p = r + (rs_new / rs) * p
            rs = rs_new
        X[u] = x
    return X


def als_objective_ref(R, X, Y, reg, alpha):
    """sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    C = 1.0 + alpha * R
    P = (R > 0).astype(np.float64)
    return float((C * (P - X @ Y.T) ** 2).sum() + reg * ((X ** 2).sum() + (Y ** 2).sum()))


def cosine_topk_ref(Y, queries, k):
    """The k most cosine-similar rows of Y to each query row, the query
    itself excluded: (items, similarities), best first, ties to the lower
    index."""
    Y = np.asarray(Y, dtype=np.float64)
    norms = np.linalg.norm(Y, axis=1)
    Yn = Y / np.where(norms > 0, norms, 1.0)[:, None]
    items, sims = [], []
    for q in queries:
        s = Yn @ Yn[q]
        s[q] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        items.append(order)
        sims.append(s[order])
    return np.array(items), np.array(sims)

# --------------------------------------------------------------------------
# EASE (Steck, WWW 2019) and recency
# --------------------------------------------------------------------------


def ease_ref(indptr, indices, n_items, l2):
    """B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, diag(B) = 0, all in
    float64 with ``np.linalg.inv`` (the usual NumPy implementation)."""
    X = csr_dense(indptr, indices, n_items)
    P = np.linalg.inv(X.T @ X + l2 * np.eye(n_items))
    B = P / (-np.diag(P))
    np.fill_diagonal(B, 0.0)
    return B


def csr_dense(indptr, indices, n_cols, values=None):
    """The CSR as a dense float64 array (values default to 1)."""
    indptr = np.asarray(indptr)
    X = np.zeros((len(indptr) - 1, n_cols))
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    X[rows, np.asarray(indices)] = 1.0 if values is None else values
    return X


def recency_ages_ref(frame, threshold=4, user_col="user_id", item_col="movie_id",
                     rating_col="rating", time_col="timestamp"):
    """Age of each distinct positive (user, item): how many of the user's
    distinct positives are later, 0 = the most recent.  Order: a stable sort
    by (user, time) (input order on ties), a repeated pair at its last
    occurrence.  Returns a dict {(user, item): age}."""
    pos = frame[frame[rating_col] >= threshold]
    pos = pos.sort_values([user_col, time_col], kind="stable")
    pos = pos.drop_duplicates([user_col, item_col], keep="last")
    later = pos.groupby(user_col).cumcount(ascending=False)
    return dict(zip(zip(pos[user_col], pos[item_col]), later.astype(int)))


def recency_weights_ref(ages, half_life):
    """exp(-age ln 2 / half_life): 1 for the most recent positive, 1/2 at an
    age of half_life."""
    return np.exp(-np.asarray(ages, dtype=np.float64) * math.log(2.0) / half_life)


def slist_rows_ref(indptr, items, n_items, window, position_decay):
    """S and T of SLIST as ``scipy.sparse`` float64 matrices, one row per
    place t < L - 1 of every sequence (row u of ``indptr``/``items``,
    oldest first): S_t holds the items at places j in (t - window, t]
    weighted exp(-(t - j) / position_decay), T_t those at j in
    (t, t + window] weighted exp(-(j - t - 1) / position_decay).
    ``position_decay=None``: weight 1; ``window=None``: the whole sequence.
    Built row by row, as the authors' make_train_matrix does."""
    from scipy.sparse import csr_matrix

    def weight(d):
        return 1.0 if position_decay is None else math.exp(-d / position_decay)

    cells = {"S": ([], [], []), "T": ([], [], [])}
    row = 0
    for u in range(len(indptr) - 1):
        seq = [int(x) for x in items[indptr[u]:indptr[u + 1]]]
        w = len(seq) if window is None else window
        for t in range(len(seq) - 1):
            for name, places, origin in (("S", range(max(0, t - w + 1), t + 1), t),
                                         ("T", range(t + 1, min(len(seq), t + 1 + w)), t + 1)):
                r, c, v = cells[name]
                for j in places:
                    r.append(row)
                    c.append(seq[j])
                    v.append(weight(abs(j - origin)))
            row += 1
    return tuple(csr_matrix((v, (r, c)), shape=(row, n_items)) for r, c, v in (cells["S"], cells["T"]))


def slist_ref(indptr, items, n_items, alpha, l2, position_decay, window, x_weights=None):
    """SLIST's B in float64 with materialised X, S and T (sparse) and
    ``np.linalg.solve``:
    B = (alpha X^T X + (1 - alpha) S^T S + l2 I)^-1 (alpha X^T X + (1 - alpha) S^T T),
    X one row per sequence (``x_weights`` aligned with ``items``, default 1)."""
    from scipy.sparse import csr_matrix
    X = csr_matrix((np.ones(len(items)) if x_weights is None else x_weights, np.asarray(items),
                    np.asarray(indptr)), shape=(len(indptr) - 1, n_items))
    S, T = slist_rows_ref(indptr, items, n_items, window, position_decay)
    XX = (X.T @ X).toarray()
    A = alpha * XX + (1 - alpha) * (S.T @ S).toarray() + l2 * np.eye(n_items)
    R = alpha * XX + (1 - alpha) * (S.T @ T).toarray()
    return np.linalg.solve(A, R)


def slist_scores_ref(B, indptr, items, users, half_life):
    """Dense float64 scores s_u B, s_u[item] = 0.5 ** (age / half_life) over
    user u's sequence (age 0 = the last item; half_life None: 1)."""
    out = np.zeros((len(users), B.shape[0]))
    for r, u in enumerate(users):
        seq = items[indptr[u]:indptr[u + 1]]
        for age, item in enumerate(seq[::-1]):
            w = 1.0 if half_life is None else 0.5 ** (age / half_life)
            out[r] += w * B[item]
    return out


def ratings_frame(rows, string_ids=False):
    """A ratings frame from (user, movie, rating, timestamp) tuples (the
    hypothesis tests' random frames); ``string_ids``: ids as "u3", "m5"."""
    f = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    if string_ids:
        f["user_id"] = "u" + f["user_id"].astype(str)
        f["movie_id"] = "m" + f["movie_id"].astype(str)
    return f


def assert_fold_in_equals_trained(model, frame, users, k=10):
    """Users scored from their own training rows (``history=``) get the
    lists and scores the fitted model gives them: fold-in is exact."""
    history = frame[frame["user_id"].isin(users)]
    a_ids, a_sc = model.recommend(users, k=k, return_scores=True)
    b_ids, b_sc = model.recommend(users, k=k, return_scores=True, history=history)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_sc, b_sc)
