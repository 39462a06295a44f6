"""Ranking metrics of SPEC section 9, computed by the C core from top-K lists."""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import _core
from ._checks import (as_core_array, as_id_array, check_frame, check_number, check_positive_int,
                      check_same_kind, id_column, numeric_column)
from ._config import FROM_CONFIG, resolve_columns

__all__ = ["evaluate", "METRIC_NAMES", "ranking_sums", "recommended_counts", "coverage_popularity", "combine"]

METRIC_NAMES = ("recall", "ndcg", "mrr", "hitrate")


def evaluate(model: Any, test: Any, k: int = 10, *, coverage_users: Any = None, catalog: Any = None,
             threshold: float | None = FROM_CONFIG, item_popularity: Any = None,
             user_col: Hashable = FROM_CONFIG, item_col: Hashable = FROM_CONFIG,
             rating_col: Hashable | None = FROM_CONFIG, per_user: bool = False, unknown: str = "empty",
             _name: str = "test") -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """Evaluate top-``k`` recommendations against held-out interactions.

    For every user with at least one relevant test row (``rating >=
    threshold``) and a non-empty recommendation list:
    recall@K = hits / relevant, ndcg@K (binary gains, 1/log2(rank+1)),
    mrr@K (1/rank of the first hit), hitrate@K (any hit); reported as means
    over those users (``n_users_eval``; NaN when there is none);
    ``n_users_skipped`` counts the users with a relevant row whose list was
    empty.  Then coverage@K = distinct *catalogue* items recommended to
    ``coverage_users`` / catalogue size, and avg_popularity@K = mean
    popularity of every (coverage user, recommended item) pair.

    Every input is checked against its domain rather than quietly giving a
    figure outside it:

    - coverage counts only recommended items that are in ``catalog``: it is
      the share of the catalogue that was recommended, so it lies in [0, 1]
      (an item outside the catalogue covers no part of it; this is what
      ``catalog`` is for, e.g. the titles still on offer).
    - a recommendation list must hold distinct items (``ValueError`` naming
      the user otherwise: a repeated item would count a hit twice or hide a
      short list); lists longer than ``k`` are cut to their first ``k``.
    - ids must be of the model's kind: integer test ids against a model
      trained on string ids (or the reverse) match nothing, so that is a
      ``TypeError``, not a score of 0.  The same holds for ``catalog``,
      ``coverage_users`` and ``item_popularity``.

    Parameters
    ----------
    model : fitted recmf model, Mapping, or callable
        A recmf model (its ``recommend`` is used, seen items excluded); a
        mapping ``user_id -> list of item ids``; or ``f(user_id, k) -> list``
        (the notebook's ``recommend_fn`` signature).
    test : DataFrame or Arrow table
        Held-out rows with user, item and rating columns (not empty; ratings
        finite).  A pandas frame or any table with the Arrow stream
        interface (pyarrow, Polars, DuckDB): only these columns are read.
    k : int
        At least 1.  May exceed a model's catalogue: lists are then shorter.
    coverage_users : array-like, optional
        Users whose lists count for coverage and popularity (not empty;
        repeats are counted once).  They need not be in ``test``; users the
        model does not know have an empty list (they cover nothing and add
        no pair).  Default: the first 1,000 distinct users of ``test`` in
        order of appearance.
    catalog : array-like, optional
        Every item id of the catalogue (e.g. ``movies["movie_id"]``; repeats
        are counted once).  Default: the items the model knows.
    threshold : float or None
        Relevance threshold on ``rating_col`` (a finite number); ``None``:
        every row is relevant.  Default: the configured threshold (4).
    item_popularity : Mapping or Series, optional
        item id -> popularity (a finite number >= 0; one entry per item).
        Items absent from it count 0.  Default: the model's train positives
        per item; for a mapping or callable model without it,
        ``avg_popularity@K`` is NaN.
    user_col, item_col, rating_col : str
        Column names of ``test`` (default: the configured ones, see
        :func:`recmf.set_config`); ``rating_col=None``: every row is
        relevant.
    per_user : bool
        Also return a frame of per-user metrics: one row per user with a
        relevant test row (column ``user_col``, the metrics, NaN for users
        with an empty list, and ``n_relevant``).
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
    report : dict
        Keys ``recall@K``, ``ndcg@K``, ``mrr@K``, ``hitrate@K``,
        ``n_users_eval``, ``n_users_skipped``, ``coverage@K``,
        ``avg_popularity@K``.
    per_user_frame : DataFrame
        Only when ``per_user``: ``(report, frame)`` is returned.

    Raises
    ------
    TypeError
        An argument of the wrong type, or ids of the wrong kind (see above).
    ValueError
        An empty ``test``/``catalog``/``coverage_users``, a non-finite
        ``threshold``, rating or popularity, a list repeating an item, or an
        ``unknown`` other than "empty"/"popular".
    """
    k = check_positive_int(k, "k")
    if unknown not in ("empty", "popular"):
        raise ValueError(f"unknown must be 'empty' or 'popular', got {unknown!r}")
    c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col)
    threshold, user_col, item_col, rating_col = c["threshold"], c["user_col"], c["item_col"], c["rating_col"]
    test = check_frame(test, _name, dict(user_col=user_col, item_col=item_col, rating_col=rating_col))
    check_number(threshold, "threshold", none=True)
    t_users, users_int = id_column(test, user_col, _name)
    t_items, items_int = id_column(test, item_col, _name)
    rel = relevant_rows(test, threshold, rating_col, _name)

    model_users_int, model_items_int = _model_id_kinds(model)
    check_same_kind(users_int, f"{_name}[{user_col!r}]", model_users_int, "the model's user ids")
    check_same_kind(items_int, f"{_name}[{item_col!r}]", model_items_int, "the model's item ids")

    rel_frame = pd.DataFrame({"u": t_users[rel], "i": t_items[rel]}).drop_duplicates()
    eval_users = pd.unique(rel_frame["u"].to_numpy())
    if coverage_users is None:
        cov_users = pd.unique(t_users)[:1000]
    else:
        cov_users, cov_int = as_id_array(coverage_users, "coverage_users")
        if len(cov_users) == 0:
            raise ValueError("coverage_users is empty")
        check_same_kind(cov_int, "coverage_users", users_int, f"{_name}[{user_col!r}]")
        cov_users = pd.unique(cov_users)
    recs, lens = _top_k(model, eval_users, k, unknown)
    cov_recs, cov_lens = _top_k(model, cov_users, k, unknown)
    recs_int = _list_kind(recs, lens, cov_recs, cov_lens)
    check_same_kind(recs_int, "the recommended items", items_int, f"{_name}[{item_col!r}]")
    catalog_ids, pop = _catalog_popularity(model, catalog, item_popularity, items_int,
                                           f"{_name}[{item_col!r}]")

    report, per, rel_indptr = _ranking(recs, lens, rel_frame, eval_users, k)
    coverage, avg_pop = _coverage(cov_recs, cov_lens, catalog_ids, pop)
    report[f"coverage@{k}"] = coverage
    report[f"avg_popularity@{k}"] = avg_pop
    if per_user:
        frame = pd.DataFrame(per, columns=[f"{m}@{k}" for m in METRIC_NAMES])
        frame.insert(0, user_col, eval_users)
        frame["n_relevant"] = np.diff(rel_indptr)
        return report, frame
    return report


def _ranking(recs, lens, rel_frame, eval_users, k):
    """(report of the means and user counts, per-user rows, rel_indptr) from
    the top-k lists of ``eval_users`` and their relevant rows (``rel_frame``
    columns ``u``, ``i``), by the core's ranking_metrics."""
    encode = _Encoder([rel_frame["i"].to_numpy(), recs.ravel()])
    rel_frame = rel_frame.assign(code=encode(rel_frame["i"].to_numpy()))
    rel_frame["u_pos"] = pd.Index(eval_users).get_indexer(rel_frame["u"])
    rel_frame = rel_frame.sort_values(["u_pos", "code"])
    rel_indptr = np.zeros(len(eval_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rel_frame["u_pos"], minlength=len(eval_users)), out=rel_indptr[1:])
    rel_items = np.ascontiguousarray(rel_frame["code"].to_numpy(), dtype=np.int64)
    per, means, n_eval = _core.ranking_metrics(_width(encode(recs), k, rel_indptr), lens, rel_indptr,
                                               rel_items)
    report = {f"{name}@{k}": float(v) for name, v in zip(METRIC_NAMES, means)}
    report["n_users_eval"] = int(n_eval)
    report["n_users_skipped"] = len(eval_users) - int(n_eval)
    return report, per, rel_indptr


def _catalog_popularity(model, catalog, item_popularity, items_int, items_name):
    """(distinct catalogue ids, (popularity ids, values, ids are int)), each
    checked to be of the items' kind."""
    if catalog is None:
        if not hasattr(model, "data_"):
            raise ValueError("catalog is required when model is not a fitted recmf model")
        catalog = model.data_.item_ids
    catalog_ids, catalog_int = as_id_array(catalog, "catalog")
    if len(catalog_ids) == 0:
        raise ValueError("catalog is empty")
    check_same_kind(catalog_int, "catalog", items_int, items_name)
    pop = _popularity_table(model, item_popularity)
    check_same_kind(pop[2], "item_popularity", items_int, items_name)
    return pd.unique(catalog_ids), pop


def _coverage(recs, lens, catalog_ids, pop):
    """(coverage, average popularity) of top-k rows (``lens`` valid entries
    each) by the core's coverage_popularity; NaN popularity when none is
    known."""
    pop_ids, pop_values, pop_int = pop
    encode = _Encoder([recs.ravel(), catalog_ids, pop_ids])
    pop_codes = encode(pop_ids)
    order = np.argsort(pop_codes, kind="stable")
    coverage, avg_pop, _ = _core.coverage_popularity(
        encode(recs), lens, np.sort(encode(catalog_ids)),
        np.ascontiguousarray(pop_codes[order]), np.ascontiguousarray(pop_values[order]))
    if pop_int is None:         # no popularity known: not "popularity 0"
        avg_pop = float("nan")
    return float(coverage), float(avg_pop)


# -- the reductions of a distributed evaluate (recmf.dask.evaluate) --------

def ranking_sums(model, test, k=10, *, threshold=FROM_CONFIG, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                 rating_col=FROM_CONFIG, unknown="empty", catalog=None, item_popularity=None,
                 per_user=False, _name="test"):
    """The additive part of :func:`evaluate` on ``test``, which must hold
    every test row of its users (a partition of a frame shuffled by user).
    ``catalog`` and ``item_popularity``, when given, are only checked here
    (:func:`coverage_popularity` uses them).

    Returns
    -------
    dict (and, with ``per_user``, :func:`evaluate`'s per-user frame)
        ``sum_recall, sum_ndcg, sum_mrr, sum_hitrate`` (float64 sums over
        the evaluated users, ``math.fsum``) and the user counts
        ``n_users_eval``, ``n_users_skipped``.  Over disjoint sets of users
        they add up to the whole frame's; :func:`combine` turns the totals
        into :func:`evaluate`'s means.

    Raises
    ------
    TypeError, ValueError
        As :func:`evaluate`.
    """
    if len(test) == 0:
        return ({}, None) if per_user else {}
    c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col)
    threshold, user_col, item_col, rating_col = c["threshold"], c["user_col"], c["item_col"], c["rating_col"]
    cover = test[user_col].iloc[:1]      # coverage is reduced apart (coverage_popularity)
    if catalog is None and not hasattr(model, "data_"):
        catalog = test[item_col].iloc[:1]   # only its checks run: coverage is not reported here
    report, per = evaluate(model, test, k, coverage_users=cover, threshold=threshold, user_col=user_col,
                           item_col=item_col, rating_col=rating_col, per_user=True, unknown=unknown,
                           catalog=catalog, item_popularity=item_popularity, _name=_name)
    values = per[[f"{m}@{k}" for m in METRIC_NAMES]].to_numpy(dtype=np.float64)
    counted = ~np.isnan(values).any(axis=1)
    if int(counted.sum()) != report["n_users_eval"]:
        raise RuntimeError(f"evaluate counted {report['n_users_eval']} users but gave "
                           f"{int(counted.sum())} per-user rows: the sums would not add up")
    sums = {f"sum_{name}": math.fsum(column) for name, column in zip(METRIC_NAMES, values[counted].T)}
    sums.update(n_users_eval=report["n_users_eval"], n_users_skipped=report["n_users_skipped"])
    return (sums, per) if per_user else sums


def recommended_counts(model, users, k=10, *, unknown="empty"):
    """How often each item is in the top-``k`` lists of ``users``: the
    multiset behind coverage and average popularity, additive over disjoint
    sets of users.

    Returns
    -------
    Series
        item id -> count (int64), items in ascending order.
    """
    ids, lens = _top_k(model, as_id_array(users, "users")[0], k, unknown)
    items = ids[np.arange(ids.shape[1])[None, :] < lens[:, None]]
    return pd.Series(items, dtype=object if items.dtype == object else items.dtype) \
        .value_counts().sort_index().astype(np.int64)


def coverage_popularity(counts, k=10, *, catalog=None, item_popularity=None, model=None):
    """coverage@k and avg_popularity@k of a multiset of recommended items,
    as :func:`evaluate` computes them from the coverage users' lists.

    Parameters
    ----------
    counts : Series
        item id -> times recommended (:func:`recommended_counts`, possibly
        summed over several sets of users).
    k : int
        Names the keys.
    catalog, item_popularity : as in :func:`evaluate`.
    model : fitted recmf model, optional
        Default catalogue and popularity (its items and train positives).

    Returns
    -------
    dict with keys ``coverage@K`` and ``avg_popularity@K``.
    """
    k = check_positive_int(k, "k")
    items, items_int = (as_id_array(counts.index.to_numpy(), "recommended items") if len(counts)
                        else (np.zeros(0, dtype=np.int64), None))
    catalog_ids, pop = _catalog_popularity(model, catalog, item_popularity, items_int, "the recommended items")
    ids, lens = _multiset_rows(items, counts.to_numpy(np.int64), k)
    coverage, avg_pop = _coverage(ids, lens, catalog_ids, pop)
    return {f"coverage@{k}": coverage, f"avg_popularity@{k}": avg_pop}


def _multiset_rows(items, counts, k):
    """The multiset laid out in rows of at most k, no item twice in a row."""
    flat = np.repeat(items, counts)
    n_rows = max(1, math.ceil(len(flat) / k), int(counts.max()) if len(counts) else 0)
    # as many columns as the rows need (at most k; never k itself, which
    # may be any size)
    ids = np.zeros((n_rows, max(1, math.ceil(len(flat) / n_rows))), dtype=flat.dtype)
    # flat[j] goes to row j % n_rows: equal items sit next to each other in
    # flat and there are at most n_rows of each, so they land in different rows.
    pos = np.arange(len(flat))
    ids[pos % n_rows, pos // n_rows] = flat
    lens = np.bincount(pos % n_rows, minlength=n_rows).astype(np.int32)
    return ids, lens


def combine(sums, coverage, k=10):
    """:func:`evaluate`'s report from the totals of :func:`ranking_sums`
    and the result of :func:`coverage_popularity`: means = sum /
    n_users_eval (NaN when nobody was evaluated)."""
    n_eval = int(sums.get("n_users_eval", 0))
    report = {f"{name}@{k}": (sums.get(f"sum_{name}", 0.0) / n_eval if n_eval else float("nan"))
              for name in METRIC_NAMES}
    report["n_users_eval"] = n_eval
    report["n_users_skipped"] = int(sums.get("n_users_skipped", 0))
    report.update(coverage)
    return report


def relevant_rows(test, threshold, rating_col, name="test"):
    """Which rows of ``test`` are relevant (bool array): ``rating >=
    threshold``, every row when either is None."""
    if threshold is None or rating_col is None:
        return np.ones(len(test), dtype=bool)
    return numeric_column(test, rating_col, name) >= threshold


def _model_id_kinds(model):
    """(users are int, items are int) of a recmf model; users of a mapping
    from its keys; None where unknown."""
    if hasattr(model, "_recommend_ids"):
        model._check_fitted()
        return model.data_.user_ids.dtype == np.int64, model.data_.item_ids.dtype == np.int64
    if isinstance(model, Mapping) and len(model):
        return as_id_array(list(model.keys()), "model's keys (user ids)")[1], None
    return None, None


def _list_kind(recs, lens, cov_recs, cov_lens):
    """Whether the recommended ids are integers (None: no list is non-empty)."""
    if not (lens.any() or cov_lens.any()):
        return None
    return recs.dtype == np.int64


def _width(recs, k, rel_indptr):
    """``recs`` (encoded) with enough columns for the core's ranking metrics
    at ``k``: NDCG's ideal list holds min(relevant, k) items, and the core
    takes k from the width, so lists narrower than k are padded up to the
    most relevant items any user has (never to a silly k: its size is
    bounded by the data)."""
    most = int(np.diff(rel_indptr).max(initial=0))
    width = max(1, min(k, max(recs.shape[1], most)))
    if width == recs.shape[1]:
        return recs
    out = np.zeros((recs.shape[0], width), dtype=recs.dtype)
    out[:, :recs.shape[1]] = recs
    return out


def _as_list(items, what):
    """One recommendation list of a mapping or callable model, as a list;
    a string (whose characters would read as items) or a non-sequence is a
    TypeError naming where it came from."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(f"{what} must be a list of item ids, got {type(items).__name__} {items!r:.60}")
    return list(items)


def _top_k(model, users, k, unknown="empty"):
    """(ids 2-D, lens int32) for users, from a model, mapping or callable.
    At most k columns (fewer when no list is that long); slots past
    lens[r] are padding (never read); lists hold distinct items."""
    if hasattr(model, "_recommend_ids"):
        return model._recommend_ids(users, k, unknown)
    if isinstance(model, Mapping):
        lists = [_as_list(model.get(u, []), f"model[{_plain(u)!r}]")[:k] for u in users]
    elif callable(model):
        lists = [_as_list(model(u, k), f"model({_plain(u)!r}, {k}), the list it returned,")[:k]
                 for u in users]
    else:
        raise TypeError("model must be a fitted recmf model, a mapping user -> items, "
                        f"or a callable (user, k) -> items; got {type(model).__name__}")
    lens = np.array([len(x) for x in lists], dtype=np.int32)
    flat = [x for row in lists for x in row]
    ids = as_id_array(flat, "recommended items")[0] if flat else np.zeros(0, dtype=np.int64)
    out = np.zeros((len(users), max(1, int(lens.max(initial=0)))), dtype=ids.dtype)
    pos = 0
    for r, n in enumerate(lens):
        row = ids[pos:pos + n]
        if len(pd.unique(row)) != n:
            dup = pd.Series(row)[pd.Series(row).duplicated()].iloc[0]
            raise ValueError(f"the recommendations for user {_plain(users[r])!r} repeat item "
                             f"{_plain(dup)!r}: "
                             "a top-k list holds distinct items")
        out[r, :n] = row
        pos += n
    return out, lens


def _plain(x):
    """A NumPy scalar as the Python value users wrote (2, not np.int64(2))."""
    return x.item() if isinstance(x, np.generic) else x


def _popularity_table(model, item_popularity):
    """(ids, float64 values, ids are int) -- (empty, empty, None) when no
    popularity is known."""
    if item_popularity is None:
        if not hasattr(model, "data_"):
            return np.zeros(0, dtype=np.int64), np.zeros(0), None
        ids = model.data_.item_ids
        return ids, model.data_.popularity().astype(np.float64), ids.dtype == np.int64
    s = pd.Series(item_popularity)
    ids, is_int = as_id_array(s.index, "item_popularity ids")
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        raise TypeError(f"item_popularity values must be numbers, got dtype {s.dtype}")
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"item_popularity must be finite and >= 0; item {_plain(ids[pos])!r} "
                         f"has {_plain(values[pos])!r}")
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ValueError(f"item_popularity has item {_plain(ids[int(np.flatnonzero(dup)[0])])!r} "
                         "more than once")
    return ids, values, is_int


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
