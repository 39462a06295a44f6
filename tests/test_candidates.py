"""Candidate lists in the core's top-k (``allowed=``, the item mask of
issue 19): only flagged items are recommended, seen items are still
removed, and the filter works inside the selection, so a list stays k long
while k candidates remain.  Every C entry point that selects is compared
with the plain reference (tests/reference.py's topk_ref with the unflagged
columns removed), ties, NaN and infinities included."""
import os
import sys

import numpy as np
import pytest

import recmf
from recmf import _core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
from test_data_core import tied_scores  # noqa: E402


def masks(rng, n_cols):
    """Candidate masks from none to all, as uint8 and bool."""
    out = [np.zeros(n_cols, np.uint8), np.ones(n_cols, np.uint8)]
    for share in (0.03, 0.3, 0.9):
        out.append((rng.random(n_cols) < share).astype(np.uint8))
    out.append(rng.random(n_cols) < 0.5)            # bool works too
    few = np.zeros(n_cols, np.uint8)
    few[rng.choice(n_cols, 3, replace=False)] = 7   # any non-zero flag
    out.append(few)
    return out


def expected(scores, seen_lists, allowed, k):
    """The reference lists with the non-candidates removed like seen items."""
    off = np.flatnonzero(np.asarray(allowed) == 0)
    rows = [set(off.tolist()) | set(() if seen_lists is None or seen_lists[r] is None else seen_lists[r])
            for r in range(len(scores))]
    return ref.pad_topk(*ref.topk_ref(scores, rows, k), k)


def random_seen(rng, n_rows, n_cols):
    lists = [np.sort(rng.choice(n_cols, size=rng.integers(0, n_cols // 3), replace=False)) for _ in range(n_rows)]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in lists])]).astype(np.int64)
    return lists, (indptr, np.concatenate(lists).astype(np.int32), n_cols)


def assert_lists(got, want, allowed, k, seen_lists):
    items, scores, lens = got
    w_items, w_scores, w_lens = want
    np.testing.assert_array_equal(lens, w_lens)
    np.testing.assert_array_equal(items, w_items)
    np.testing.assert_array_equal(scores, w_scores)
    # k long while k candidates remain
    flagged = set(np.flatnonzero(np.asarray(allowed)).tolist())
    for r in range(len(lens)):
        left = flagged - set(() if seen_lists is None else seen_lists[r].tolist())
        assert lens[r] == min(k, len(left))
        assert set(items[r, :lens[r]].tolist()) <= left


@pytest.mark.parametrize("k", [1, 5, 40])
def test_topk_rows_keeps_only_candidates(k):
    rng = np.random.default_rng(k)
    n_rows, n_cols = 30, 300      # wide rows: the 32-column block skip runs
    scores = tied_scores(rng, (n_rows, n_cols), 4, [(0.05, np.nan), (0.03, -np.inf), (0.02, np.inf)])
    scores[0] = np.nan
    scores[1] = 1.0
    seen_lists, seen = random_seen(rng, n_rows, n_cols)
    rows = np.arange(n_rows, dtype=np.int32)
    for allowed in masks(rng, n_cols):
        for with_seen in (False, True):
            got = _core.topk_rows(scores, seen if with_seen else None, rows, k, 2, allowed=allowed)
            lists = seen_lists if with_seen else None
            assert_lists(got, expected(scores, lists, allowed, k), allowed, k, lists)
    # no mask is every item
    np.testing.assert_array_equal(_core.topk_rows(scores, None, rows, k, 2)[0],
                                  _core.topk_rows(scores, None, rows, k, 2, allowed=np.ones(n_cols, bool))[0])


@pytest.fixture(scope="module")
def fitted():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=60, n_items=90, seed=4)
    data = recmf.Interactions.from_frame(ratings)
    models = {kind: cls(**cls._test_params()).fit(ratings if kind in ("transition", "blend") else data)
              for kind, cls in recmf.available_models().items()}
    return data, models


def core_call(kind, model):
    """(arrays for _core.recommend) of a fitted model whose kind the core's
    table holds: its parameters, config and, for history models, its rows."""
    d = model.data_
    if kind in ("ease", "slist"):     # the item-item models: B, scored from a history
        return model.B_, model._config(), dict(history=(d.indptr, d.indices))
    if kind == "sasrec":            # scores each user from their sequence
        return model.theta_, model._config(), dict(history=model.sequences_)
    return model.theta_, model._config(), {}


@pytest.mark.parametrize("kind", _core.models())
def test_model_recommend_keeps_only_candidates(kind, fitted):
    data, models = fitted
    model = models[kind]
    theta, config, extra = core_call(kind, model)
    users = np.arange(data.n_users, dtype=np.int32)
    # every item's score, from the core's own ranking (no seen, no mask)
    items, sc, _ = _core.recommend(kind, config, theta, users, None, data.n_items, 2, **extra)
    scores = np.empty((len(users), data.n_items), np.float32)
    scores[np.arange(len(users))[:, None], items] = sc
    seen = data.seen_csr()
    seen_lists = [data.seen_indices[data.seen_indptr[u]:data.seen_indptr[u + 1]] for u in users]
    rng = np.random.default_rng(7)
    for allowed in masks(rng, data.n_items):
        for k in (3, 10):
            got = _core.recommend(kind, config, theta, users, seen, k, 2, allowed=allowed, **extra)
            assert_lists(got, expected(scores, seen_lists, allowed, k), allowed, k, seen_lists)


def test_transition_and_popularity_keep_only_candidates(fitted):
    data, models = fitted
    tr = models["transition"]
    users = np.arange(data.n_users, dtype=np.int32)
    scores = tr._score_all(users)
    seen_lists = [data.seen_indices[data.seen_indptr[u]:data.seen_indptr[u + 1]] for u in users]
    rng = np.random.default_rng(8)
    for allowed in masks(rng, data.n_items):
        got = _core.transition_recommend(tr._trans(), tr.probs_, tr._history(), users, tr._decay(),
                                         data.seen_csr(), 10, 2, allowed=allowed)
        assert_lists(got, expected(scores, seen_lists, allowed, 10), allowed, 10, seen_lists)
        # popularity: one ranking for every row
        order = models["popularity"].order_
        items, lens = _core.topk_ranked(order, data.seen_csr(), users, 10, allowed=allowed)
        rank_scores = np.empty((len(users), data.n_items), np.float32)
        rank_scores[:, order] = -np.arange(data.n_items, dtype=np.float32)
        want = expected(rank_scores, seen_lists, allowed, 10)
        np.testing.assert_array_equal(items, want[0])
        np.testing.assert_array_equal(lens, want[2])


def test_bad_candidate_masks_are_named():
    scores = np.zeros((2, 5), np.float32)
    rows = np.arange(2, dtype=np.int32)
    with pytest.raises(ValueError, match="allowed must have 5 elements"):
        _core.topk_rows(scores, None, rows, 2, 1, allowed=np.ones(4, np.uint8))
    with pytest.raises(TypeError, match="allowed must have dtype"):
        _core.topk_rows(scores, None, rows, 2, 1, allowed=np.ones(5, np.int64))
    with pytest.raises(ValueError, match="ranking"):
        _core.topk_ranked(np.array([0, 7], np.int32), None, rows, 2, allowed=np.ones(5, np.uint8))
    config = dict(n_users=2, n_items=5, emb_dim=2)
    theta = np.zeros(14, np.float32)
    with pytest.raises(ValueError, match="allowed must have 5 elements"):
        _core.recommend("bprmf", config, theta, rows, None, 2, 1, allowed=np.ones(6, np.uint8))
