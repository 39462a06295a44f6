"""Ranking metrics of SPEC section 9, computed by the C core from top-K lists."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import _core
from ._checks import as_core_array, as_id_array, check_frame, check_positive_int, id_column, numeric_column

__all__ = ["evaluate", "METRIC_NAMES"]

METRIC_NAMES = ("recall", "ndcg", "mrr", "hitrate")


def evaluate(model, test, k=10, *, coverage_users=None, catalog=None, threshold=4,
             item_popularity=None, user_col="user_id", item_col="movie_id",
             rating_col="rating", per_user=False, unknown="empty"):
    """Evaluate top-``k`` recommendations against held-out interactions.

    For every user with at least one relevant test row (``rating >=
    threshold``) and a non-empty recommendation list:
    recall@K = hits / relevant, ndcg@K (binary gains, 1/log2(rank+1)),
    mrr@K (1/rank of the first hit), hitrate@K (any hit); reported as means
    over those users (``n_users_eval``); ``n_users_skipped`` counts the users
    with a relevant row whose list was empty.  Then coverage@K = distinct items
    recommended to ``coverage_users`` / catalogue size, and
    avg_popularity@K = mean train popularity of those recommendations.

    Parameters
    ----------
    model : fitted recmf model, Mapping, or callable
        A recmf model (its ``recommend`` is used, seen items excluded); a
        mapping ``user_id -> list of item ids``; or ``f(user_id, k) -> list``
        (the notebook's ``recommend_fn`` signature).
    test : DataFrame
        Held-out rows with user, item and rating columns.
    k : int
    coverage_users : array-like, optional
        Users whose lists count for coverage and popularity.  Default: the
        first 1,000 distinct users of ``test`` in order of appearance.
    catalog : array-like, optional
        Every item id of the catalogue (e.g. ``movies["movie_id"]``).
        Default: the items the model knows.
    threshold : float
        Relevance threshold on ``rating_col`` (``None``: every row relevant).
    item_popularity : Mapping or Series, optional
        item id -> popularity.  Default: the model's train positives per item.
    per_user : bool
        Also return a frame of per-user metrics (NaN for skipped users).
    unknown : {"empty", "popular"}
        What a recmf model recommends to users outside its index (passed to
        ``recommend``).  Outside the index are test users absent from
        training and users whose training ratings were all below the
        threshold (see ``Interactions.from_frame``).  "empty" (default, the
        reference workflow's rule) gives them no list, so they are skipped and
        counted in ``n_users_skipped``; "popular" evaluates them on the most
        popular items, minus the items they rated when the model's data
        remembers them (``seen="rated"``).

    Returns
    -------
    dict with keys ``recall@K, ndcg@K, mrr@K, hitrate@K, n_users_eval,
    n_users_skipped, coverage@K, avg_popularity@K`` (and a DataFrame when
    ``per_user``).
    """
    k = check_positive_int(k, "k")
    if unknown not in ("empty", "popular"):
        raise ValueError(f"unknown must be 'empty' or 'popular', got {unknown!r}")
    check_frame(test, "test", [user_col, item_col, rating_col])
    t_users, _ = id_column(test, user_col, "test")
    t_items, _ = id_column(test, item_col, "test")
    rel = np.ones(len(test), dtype=bool) if threshold is None or rating_col is None else \
        numeric_column(test, rating_col, "test") >= threshold

    rel_frame = pd.DataFrame({"u": t_users[rel], "i": t_items[rel]}).drop_duplicates()
    eval_users = pd.unique(rel_frame["u"].to_numpy())
    recs, lens = _top_k(model, eval_users, k, unknown)
    cov_users = pd.unique(t_users)[:1000] if coverage_users is None else \
        pd.unique(as_id_array(coverage_users, "coverage_users")[0])
    cov_recs, cov_lens = _top_k(model, cov_users, k, unknown)

    if catalog is None:
        if not hasattr(model, "data_"):
            raise ValueError("catalog is required when model is not a fitted recmf model")
        catalog = model.data_.item_ids
    catalog_ids = pd.unique(as_id_array(catalog, "catalog")[0])
    if len(catalog_ids) == 0:
        raise ValueError("catalog is empty")
    pop_ids, pop_counts = _popularity_table(model, item_popularity)

    # Map every id (relevant, recommended, popularity) to one int64 code
    # space so the core compares integers whatever the id type.
    encode = _Encoder([rel_frame["i"].to_numpy(), recs.ravel(), cov_recs.ravel(), pop_ids])
    rel_frame = rel_frame.assign(code=encode(rel_frame["i"].to_numpy()))
    rel_frame["u_pos"] = pd.Index(eval_users).get_indexer(rel_frame["u"])
    rel_frame = rel_frame.sort_values(["u_pos", "code"])
    rel_indptr = np.zeros(len(eval_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rel_frame["u_pos"], minlength=len(eval_users)), out=rel_indptr[1:])
    rel_items = np.ascontiguousarray(rel_frame["code"].to_numpy(), dtype=np.int64)

    per, means, n_eval = _core.ranking_metrics(encode(recs), lens, rel_indptr, rel_items)
    pop_codes = encode(pop_ids)
    order = np.argsort(pop_codes, kind="stable")
    coverage, avg_pop, _ = _core.coverage_popularity(
        encode(cov_recs), cov_lens, len(catalog_ids),
        np.ascontiguousarray(pop_codes[order]), np.ascontiguousarray(pop_counts[order]))

    report = {f"{name}@{k}": float(v) for name, v in zip(METRIC_NAMES, means)}
    report["n_users_eval"] = int(n_eval)
    report["n_users_skipped"] = len(eval_users) - int(n_eval)
    report[f"coverage@{k}"] = float(coverage)
    report[f"avg_popularity@{k}"] = float(avg_pop)
    if per_user:
        frame = pd.DataFrame(per, columns=[f"{m}@{k}" for m in METRIC_NAMES])
        frame.insert(0, user_col, eval_users)
        frame["n_relevant"] = np.diff(rel_indptr)
        return report, frame
    return report


def _top_k(model, users, k, unknown="empty"):
    """(ids 2-D, lens int32) for users, from a model, mapping or callable."""
    if hasattr(model, "_recommend_ids"):
        return model._recommend_ids(users, k, unknown)
    lists = []
    if isinstance(model, Mapping):
        lists = [list(model.get(u, []))[:k] for u in users]
    elif callable(model):
        lists = [list(model(u, k))[:k] for u in users]
    else:
        raise TypeError("model must be a fitted recmf model, a mapping user -> items, "
                        f"or a callable (user, k) -> items; got {type(model).__name__}")
    lens = np.array([len(x) for x in lists], dtype=np.int32)
    flat = [x for row in lists for x in row]
    ids = as_id_array(flat, "recommended items")[0] if flat else np.zeros(0, dtype=np.int64)
    out = np.empty((len(users), k), dtype=ids.dtype)
    out[:] = -1 if ids.dtype == np.int64 else None
    pos = 0
    for r, n in enumerate(lens):
        out[r, :n] = ids[pos:pos + n]
        pos += n
    return out, lens


def _popularity_table(model, item_popularity):
    if item_popularity is None:
        if not hasattr(model, "data_"):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return model.data_.item_ids, model.data_.popularity()
    s = pd.Series(item_popularity)
    ids = as_id_array(s.index, "item_popularity ids")[0]
    counts = s.to_numpy()
    if not np.issubdtype(counts.dtype, np.number):
        raise TypeError("item_popularity values must be numbers")
    return ids, np.rint(counts).astype(np.int64)


class _Encoder:
    """Maps ids of any type to int64 codes consistently across arrays."""

    def __init__(self, arrays):
        arrays = [np.asarray(a) for a in arrays]
        self.identity = all(a.dtype == np.int64 for a in arrays)
        if not self.identity:
            values = np.concatenate([a.astype(object) for a in arrays])
            self.index = pd.Index(pd.unique(values[pd.notna(values)]))

    def __call__(self, a):
        a = np.asarray(a)
        if self.identity:
            return as_core_array(a, np.int64)
        flat = a.astype(object).ravel()
        codes = self.index.get_indexer(flat).astype(np.int64)
        return np.ascontiguousarray(codes.reshape(a.shape))
