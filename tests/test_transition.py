"""ItemTransition: transition counts, decayed scores and recommendations
against the pandas/NumPy references, thread independence, persistence and
bad input."""
import math
import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import _core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402


def tie_frame(seed=0, n_users=40, n_items=30, n_rows=900, string_ids=False):
    """Ratings with many equal timestamps per user, repeated (user, item)
    pairs and non-positive rows, in shuffled input order."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, n_users, n_rows) * 7 - 50,
        "movie_id": rng.integers(0, n_items, n_rows) * 3 + 1000,
        "rating": rng.integers(1, 6, n_rows).astype(float),
        "timestamp": rng.integers(0, 12, n_rows),
    })
    if string_ids:
        frame["user_id"] = "u" + frame["user_id"].astype(str)
        frame["movie_id"] = "m" + frame["movie_id"].astype(str)
    return frame


@pytest.fixture(scope="module")
def ml_or_synthetic():
    from conftest import HAVE_ML1M, ML1M_DIR
    if HAVE_ML1M:
        ratings, _, _ = recmf.load_movielens(ML1M_DIR)
    else:
        ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=300, n_items=400, seed=0)
    return recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)


def counts_of(model):
    d = model.data_
    rows = np.repeat(np.arange(d.n_items), np.diff(model.trans_indptr_))
    ids = d.item_ids
    return {(ids[i], ids[j]): c for i, j, c in
            zip(rows, model.trans_indices_, model.trans_weights_)}


@pytest.mark.parametrize("string_ids,window,gap_decay", [(False, 1, 0.5), (True, 1, 0.5), (False, 3, 0.5),
                                                         (True, 4, 1.0)])
def test_counts_match_pandas_with_ties_and_repeats(string_ids, window, gap_decay):
    frame = tie_frame(string_ids=string_ids)
    model = recmf.ItemTransition(window=window, gap_decay=gap_decay).fit(frame)
    ordered = ref.ordered_positives_ref(frame)
    got, want = counts_of(model), ref.transition_counts_ref(ordered, window, gap_decay)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[p] for p in want], list(want.values()), rtol=1e-12)
    # each user's history is the reference order
    d = model.data_
    for u in range(d.n_users):
        got = d.item_ids[model.history_items_[d.indptr[u]:d.indptr[u + 1]]]
        want = ordered.loc[ordered["user"] == d.user_ids[u], "item"].to_numpy()
        assert list(got) == list(want)
    # T's rows sum to 1 where an item has a successor
    T = model.transition_matrix()
    sums = np.asarray(T.sum(axis=1)).ravel()
    has = np.diff(model.trans_indptr_) > 0
    np.testing.assert_allclose(sums[has], 1.0, rtol=1e-6)
    assert (sums[~has] == 0).all()


def test_counts_match_pandas_on_movielens(ml_or_synthetic):
    train = ml_or_synthetic[0]
    model = recmf.ItemTransition().fit(train)
    assert counts_of(model) == ref.transition_counts_ref(ref.ordered_positives_ref(train))


@pytest.mark.parametrize("half_life,window", [(0.5, 1), (1.0, 1), (3.0, 2), (None, 3)])
def test_scores_match_numpy(half_life, window):
    frame = tie_frame(seed=1)
    model = recmf.ItemTransition(half_life=half_life, window=window, gap_decay=0.7, n_threads=2).fit(frame)
    d = model.data_
    users = np.arange(d.n_users, dtype=np.int32)
    got = model._score_all(users)
    want = ref.transition_scores_ref(ref.ordered_positives_ref(frame), d.item_ids, d.user_ids,
                                     half_life, window, 0.7)
    assert got.dtype == np.float32 and got.shape == (d.n_users, d.n_items)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # score() of pairs is the same matrix
    uu, ii = np.meshgrid(users, np.arange(d.n_items, dtype=np.int32), indexing="ij")
    pairs = model.score(d.user_ids[uu.ravel()], d.item_ids[ii.ravel()])
    np.testing.assert_array_equal(pairs, got.ravel())


def test_recommend_is_top_k_of_scores_without_seen():
    frame = tie_frame(seed=2)
    model = recmf.ItemTransition(half_life=2.0).fit(frame)
    d = model.data_
    users = np.arange(d.n_users, dtype=np.int32)
    scores = model._score_all(users)
    want_items, want_scores, want_len = ref.recommend_ref(d, scores, users, 5)
    got_items, got_scores, got_len = model._recommend_index(users, 5, True)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(got_len, want_len)
    # and through the public API, in original ids
    recs = model.recommend(d.user_ids, k=5)
    np.testing.assert_array_equal(recs, np.where(want_items >= 0, d.item_ids[want_items], -1))


def test_results_do_not_depend_on_threads(ml_or_synthetic):
    train = ml_or_synthetic[0]
    one = recmf.ItemTransition(half_life=2.0, window=3, n_threads=1).fit(train)
    two = recmf.ItemTransition(half_life=2.0, window=3, n_threads=2).fit(train)
    for name in ("trans_indptr_", "trans_indices_", "trans_weights_", "probs_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    users = one.data_.user_ids
    a, sa = one.recommend(users, k=10, return_scores=True)
    b, sb = two.recommend(users, k=10, return_scores=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_beats_popularity_on_test(ml_or_synthetic):
    train, _, test = ml_or_synthetic
    trans = recmf.evaluate(recmf.ItemTransition(half_life=2.0).fit(train), test)
    pop = recmf.evaluate(recmf.Popularity().fit(train), test)
    assert trans["recall@10"] > pop["recall@10"]


def test_save_load_and_pickle(tmp_path):
    frame = tie_frame(seed=3, string_ids=True)
    model = recmf.ItemTransition(half_life=1.5, time_col="timestamp").fit(frame)
    users = model.data_.user_ids
    want, want_s = model.recommend(users, k=4, return_scores=True)
    path = tmp_path / "t.npz"
    model.save(path)
    for other in (recmf.load(path), pickle.loads(pickle.dumps(model))):
        assert isinstance(other, recmf.ItemTransition) and other.half_life == 1.5
        got, got_s = other.recommend(users, k=4, return_scores=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_s, want_s)


def test_load_rejects_inconsistent_history(tmp_path):
    frame = tie_frame(seed=4)
    model = recmf.ItemTransition().fit(frame)
    path = tmp_path / "t.npz"
    model.save(path)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["trans_weights"] = arrays["trans_weights"] + 1
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="transition counts"):
        recmf.load(path)


_TINY = pd.DataFrame({"user_id": [1, 1, 2], "movie_id": [1, 2, 1], "rating": 5, "timestamp": [1, 2, 3]})


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                       (math.inf, ValueError), ("2", TypeError), (True, TypeError)])
def test_bad_half_life(value, exc):
    with pytest.raises(exc, match="half_life"):
        recmf.ItemTransition(half_life=value).fit(_TINY)


@pytest.mark.parametrize("kwargs,exc", [(dict(window=0), ValueError), (dict(window=65), ValueError),
                                        (dict(window=2.0), TypeError), (dict(gap_decay=0), ValueError),
                                        (dict(gap_decay=1.5), ValueError), (dict(gap_decay="x"), TypeError)])
def test_bad_window(kwargs, exc):
    with pytest.raises(exc, match="window|gap_decay"):
        recmf.ItemTransition(**kwargs).fit(_TINY)


def test_needs_the_time_order():
    frame = tie_frame()
    with pytest.raises(ValueError, match="order"):
        recmf.ItemTransition().fit(recmf.Interactions.from_frame(frame, time_col=None))
    # a frame without the time column is taken in row order
    by_rows = recmf.ItemTransition(time_col="when").fit(frame)
    in_order = frame.assign(when=np.arange(len(frame)))
    assert counts_of(by_rows) == counts_of(recmf.ItemTransition(time_col="when").fit(in_order))
    assert counts_of(by_rows) != counts_of(recmf.ItemTransition().fit(frame))


def test_core_rejects_bad_histories():
    ok_ptr = np.array([0, 2, 3], dtype=np.int64)
    with pytest.raises(ValueError, match="outside"):
        _core.transition_counts((ok_ptr, np.array([0, 5, 1], dtype=np.int32), 3), 1, 0.5, 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.transition_counts((np.array([0, 2, 1, 3], dtype=np.int64),
                                 np.array([0, 1, 2], dtype=np.int32), 3), 1, 0.5, 1)
    with pytest.raises(ValueError, match="len"):
        _core.transition_counts((ok_ptr, np.array([0, 1], dtype=np.int32), 3), 1, 0.5, 1)
    with pytest.raises(TypeError, match="indices must have dtype int32"):
        _core.transition_counts((ok_ptr, np.array([0, 1, 2], dtype=np.int64), 3), 1, 0.5, 1)
    for window, decay in ((0, 0.5), (65, 0.5), (2, 0.0), (2, 1.5), (2, math.nan)):
        with pytest.raises(ValueError, match="window|gap_decay"):
            _core.transition_counts((ok_ptr, np.array([0, 1, 2], dtype=np.int32), 3), window, decay, 1)
    hist = (ok_ptr, np.array([0, 1, 2], dtype=np.int32), 3)
    tp, ti, tc = _core.transition_counts(hist, 1, 0.5, 1)
    assert list(tp) == [0, 1, 1, 1] and list(ti) == [1] and list(tc) == [1]
    probs = np.ones(1, dtype=np.float32)
    users = np.array([0, 1], dtype=np.int32)
    for hl in (0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="half_life"):
            _core.transition_scores((tp, ti, 3), probs, hist, users, hl, 1)
    with pytest.raises(ValueError, match="users"):
        _core.transition_scores((tp, ti, 3), probs, hist, np.array([2], dtype=np.int32), 1.0, 1)
    with pytest.raises(ValueError, match="probs"):
        _core.transition_scores((tp, ti, 3), np.ones(2, dtype=np.float32), hist, users, 1.0, 1)
    with pytest.raises(ValueError, match="transition matrix"):
        _core.transition_scores((np.array([0, 1, 1], dtype=np.int64), ti, 2), probs, hist, users, 1.0, 1)
    out = _core.transition_scores((tp, ti, 3), probs, hist, users, math.inf, 1)
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 0]])
    items, vals, lens = _core.transition_recommend((tp, ti, 3), probs, hist, users, 1.0, None, 2, 1)
    np.testing.assert_array_equal(items, [[1, 0], [0, 1]])


def test_empty_history_rows_and_single_positive_users():
    # a user with one positive has no transition of their own; an item that
    # is never followed scores nothing
    frame = pd.DataFrame({"user_id": [1, 1, 1, 2], "movie_id": [10, 20, 30, 30],
                          "rating": [5, 5, 5, 5], "timestamp": [1, 2, 3, 1]})
    model = recmf.ItemTransition(half_life=None).fit(frame)
    scores = model._score_all(np.array([0, 1], dtype=np.int32))
    np.testing.assert_array_equal(scores, [[0, 1, 1], [0, 0, 0]])
    assert model.recommend([2], k=2).tolist() == [[10, 20]]


def test_with_params_shares_the_fit():
    frame = tie_frame(seed=5)
    base = recmf.ItemTransition(half_life=1.0).fit(frame)
    other = base.with_params(half_life=None)
    assert np.shares_memory(other.trans_weights_, base.trans_weights_) and base.half_life == 1.0
    fresh = recmf.ItemTransition(half_life=None).fit(frame)
    users = base.data_.user_ids
    np.testing.assert_array_equal(other.recommend(users, k=5), fresh.recommend(users, k=5))
    with pytest.raises(ValueError, match="refit"):
        base.with_params(threshold=3)
    with pytest.raises(ValueError, match="half_life"):
        base.with_params(half_life=-1).recommend(users[:1], k=2)
