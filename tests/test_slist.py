"""SLIST (csrc/models/slist.c, recmf/models/slist.py) and the "rated"
inputs of the sequence and item-item models, against plain NumPy/scipy
references that build S, T and X row by row.

Tolerances: B is float32 (sums in double, Cholesky and triangular solves
in float32); against np.linalg.solve in float64 it must agree to 1e-4 *
max|B| (measured ~1e-6 on these data; the conditioning is (largest
eigenvalue + l2) / l2).  Scores are float32 sums of float32 B rows:
compared to float64 with 1e-4 * (the row's largest |score| + 1); top-k
lists are checked as valid top-k within that tolerance, never by exact
order, so near-ties rounded differently by another CPU cannot fail."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

import recmf
import reference as ref
from conftest import needs_ml100k
from recmf import _core

B_RTOL = 1e-4


@pytest.fixture(scope="module")
def frames():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=200, n_items=150, seed=3)
    return recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)


@pytest.fixture(scope="module")
def data(frames):
    return recmf.Interactions.from_frame(frames[0], seen="rated")


def random_sequences(seed, n_users=40, n_items=30, longest=25):
    rng = np.random.default_rng(seed)
    lens = np.minimum(rng.integers(0, longest, size=n_users), n_items)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    items = np.concatenate([rng.permutation(n_items)[:n] for n in lens]).astype(np.int32)
    return indptr, items, n_items


def core_fit(indptr, items, n_items, alpha, l2, decay, window, n_threads=2):
    """B from the core's model table (row "slist"), as SLIST.fit calls it."""
    B = np.empty((n_items, n_items), np.float32)
    _core.fit("slist", config(indptr, n_items, alpha, l2, decay, window), (indptr, items), B, n_threads)
    return B


def config(indptr, n_items, alpha=0.5, l2=1.0, decay=2.0, window=3):
    return dict(n_users=len(indptr) - 1, n_items=n_items, alpha=alpha, l2=l2,
                position_decay=math.inf if decay is None else decay,
                window=2 ** 31 - 1 if window is None else window)


# ---------------------------------------------------------------------------
# The solve
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alpha, l2, decay, window", [
    (0.5, 1.0, 2.0, 3), (0.2, 0.5, None, None), (1.0, 3.0, 1.0, 1), (0.0, 2.0, 5.0, 7),
    (0.8, 0.1, 0.3, 40)])
def test_B_matches_materialised_reference(alpha, l2, decay, window):
    indptr, items, n = random_sequences(int(alpha * 10) + window if window else 3)
    B = core_fit(indptr, items, n, alpha, l2, decay, window)
    want = ref.slist_ref(indptr, items, n, alpha, l2, decay, window)
    np.testing.assert_allclose(B, want, rtol=0, atol=B_RTOL * np.abs(want).max())


def test_alpha_one_is_ridge_on_X():
    # alpha = 1: B = (X^T X + l2 I)^-1 X^T X whatever S and T are
    indptr, items, n = random_sequences(7)
    X = ref.csr_dense(indptr, items, n)
    G = X.T @ X
    want = np.linalg.solve(G + 2.0 * np.eye(n), G)
    B = core_fit(indptr, items, n, 1.0, 2.0, 3.0, 4)
    np.testing.assert_allclose(B, want, rtol=0, atol=B_RTOL * np.abs(want).max())


def test_window_past_the_longest_sequence_is_the_whole_sequence():
    indptr, items, n = random_sequences(11, longest=12)
    a = core_fit(indptr, items, n, 0.3, 1.0, 2.0, 12)
    b = core_fit(indptr, items, n, 0.3, 1.0, 2.0, None)
    np.testing.assert_array_equal(a, b)


def test_threads_agree():
    indptr, items, n = random_sequences(5, n_users=300, n_items=90, longest=60)
    ref_B = core_fit(indptr, items, n, 0.4, 1.0, 3.0, 8, n_threads=1)
    for nt in (2, 3):
        B = core_fit(indptr, items, n, 0.4, 1.0, 3.0, 8, n_threads=nt)
        np.testing.assert_allclose(B, ref_B, rtol=0, atol=1e-5 * np.abs(ref_B).max())


@needs_ml100k
@pytest.mark.parametrize("inputs", ["positives", "rated"])
def test_B_agrees_with_float64_numpy_on_ml100k(inputs):
    # The check: ML-100K, relative 1e-4 of max |B|.
    from conftest import ML100K_DIR
    ratings, _, _ = recmf.load_movielens(ML100K_DIR)
    train = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)[0]
    data = recmf.Interactions.from_frame(train, seen="rated")
    model = recmf.SLIST(alpha=0.5, l2=20.0, position_decay=4.0, window=10, inputs=inputs).fit(data)
    indptr, items = data.sequences(inputs)
    want = ref.slist_ref(indptr, items, data.n_items, 0.5, 20.0, 4.0, 10)
    assert model.B_.dtype == np.float32 and model.B_.shape == want.shape
    np.testing.assert_allclose(model.B_, want, rtol=0, atol=B_RTOL * np.abs(want).max())


# ---------------------------------------------------------------------------
# Scoring, fold-in, neighbours
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("inputs", ["positives", "rated"])
@pytest.mark.parametrize("half_life", [None, 1.0, 5.0])
def test_recommend_and_score_match_numpy(data, inputs, half_life):
    model = recmf.SLIST(l2=5.0, half_life=half_life, inputs=inputs).fit(data)
    indptr, items = data.sequences(inputs)
    rows = np.arange(0, data.n_users, 3)
    S = ref.slist_scores_ref(model.B_.astype(np.float64), indptr, items, rows, half_life)
    ids, scores = model.recommend(data.user_ids[rows], k=10, return_scores=True)
    got = np.searchsorted(data.item_ids, ids).astype(np.int32)
    # seen: every rated item (the data was built with seen="rated")
    seen = [data.seen_indices[data.seen_indptr[u]:data.seen_indptr[u + 1]] for u in rows]
    ref.assert_valid_topk(got, scores, (ids >= 0).sum(1), S, seen, 10)
    i = np.arange(len(rows)) % data.n_items
    np.testing.assert_allclose(model.score(data.user_ids[rows], data.item_ids[i]), S[np.arange(len(rows)), i],
                               rtol=0, atol=1e-5 * (np.abs(S).max() + 1))


def test_rated_inputs_read_low_ratings_too(frames, data):
    # a user's rated-but-disliked items change their "rated" scores only
    pos = recmf.SLIST(l2=5.0).fit(data)
    rated = recmf.SLIST(l2=5.0, inputs="rated").fit(data)
    assert not np.allclose(pos.B_, rated.B_)
    low = frames[0][frames[0]["rating"] < 4]
    assert len(low) > 0 and data.sequences("rated").items.size > data.sequences().items.size


@pytest.mark.parametrize("inputs", ["positives", "rated"])
def test_fold_in_of_training_users_equals_trained(frames, data, inputs):
    model = recmf.SLIST(l2=5.0, half_life=3.0, inputs=inputs).fit(data)
    ref.assert_fold_in_equals_trained(model, frames[0], data.user_ids[::5])


def test_fold_in_new_user_reads_their_sequence(data):
    model = recmf.SLIST(l2=5.0, half_life=1.0, inputs="rated").fit(data)
    items = data.item_ids[[4, 9, 2]]
    hist = pd.DataFrame({"user_id": -1, "movie_id": items, "rating": [5, 1, 4], "timestamp": [1, 2, 3]})
    ids, scores = model.recommend([-1], k=10, history=hist, return_scores=True)
    w = np.zeros(data.n_items)
    w[[4, 9, 2]] = [0.25, 0.5, 1.0]       # ages 2, 1, 0 at half-life 1; the 1-star item counts
    S = (w @ model.B_.astype(np.float64))[None]
    got = np.searchsorted(data.item_ids, ids).astype(np.int32)
    ref.assert_valid_topk(got, scores, (ids >= 0).sum(1), S, [[4, 9, 2]], 10)


def test_similar_items_from_B(data):
    model = recmf.SLIST(l2=5.0).fit(data)
    q = data.item_ids[[0, 7, 42]]
    ids, scores = model.similar_items(q, k=6, return_scores=True)
    rows = data.item_index(q)
    got = np.searchsorted(data.item_ids, ids).astype(np.int32)
    ref.assert_valid_topk(got, scores, np.full(3, 6), model.B_[rows].astype(np.float64),
                          [[r] for r in rows], 6)


def test_save_load_pickle_and_select(tmp_path, frames, data):
    model = recmf.SLIST(l2=5.0, half_life=2.0, inputs="rated", window=None, position_decay=None).fit(data)
    users = data.user_ids[:30]
    want = model.recommend(users, k=10)
    model.save(tmp_path / "s.npz")
    for clone in (recmf.load(tmp_path / "s.npz"), pickle.loads(pickle.dumps(model))):
        assert clone.get_params() == model.get_params()
        np.testing.assert_array_equal(clone.B_, model.B_)
        np.testing.assert_array_equal(clone.recommend(users, k=10), want)
    # select shares one fit over half_life (scoring only)
    best, table = recmf.select(recmf.SLIST, data, frames[1], progress=False,
                               grid={"l2": [5.0], "half_life": [1.0, 4.0]})
    assert list(table["fit_seconds"] > 0) == [True, False]


def test_frame_without_time_column_is_taken_in_row_order(frames):
    train = frames[0]
    timed = recmf.SLIST(l2=5.0).fit(train)
    ordered = train.sort_values(["user_id", "timestamp"], kind="stable").drop(columns="timestamp")
    untimed = recmf.SLIST(l2=5.0).fit(ordered)
    np.testing.assert_array_equal(untimed.B_, timed.B_)


# ---------------------------------------------------------------------------
# Inputs "rated" on EASE and ItemTransition
# ---------------------------------------------------------------------------

def test_ease_rated_inputs_match_numpy(data):
    model = recmf.EASE(l2=30.0, half_life=2.0, inputs="rated").fit(data)
    indptr, indices = data.input_csr("rated")
    want = ref.ease_ref(indptr, indices, data.n_items, 30.0)
    np.testing.assert_allclose(model.B_, want, rtol=0, atol=B_RTOL * np.abs(want).max())
    seqp, seqi = data.sequences("rated")
    rows = np.arange(0, data.n_users, 4)
    S = ref.slist_scores_ref(model.B_.astype(np.float64), seqp, seqi, rows, 2.0)
    ids, scores = model.recommend(data.user_ids[rows], k=10, return_scores=True)
    seen = [data.seen_indices[data.seen_indptr[u]:data.seen_indptr[u + 1]] for u in rows]
    ref.assert_valid_topk(np.searchsorted(data.item_ids, ids).astype(np.int32), scores, (ids >= 0).sum(1),
                          S, seen, 10)


def test_transition_rated_inputs_match_pandas(frames, data):
    train = frames[0]
    model = recmf.ItemTransition(window=2, half_life=2.0, inputs="rated").fit(train)
    assert model.data_.seen_rule == "rated"
    # the rated sequences of indexed users over indexed items, by pandas
    pos = train[train["rating"] >= 4]
    rows = train[train["movie_id"].isin(pos["movie_id"]) & train["user_id"].isin(pos["user_id"])]
    ordered = ref.ordered_positives_ref(rows, threshold=-np.inf)
    counts = ref.transition_counts_ref(ordered, window=2)
    C = model.transition_matrix(normalise=False).tocoo()
    got = {(model.data_.item_ids[i], model.data_.item_ids[j]): w for i, j, w in zip(C.row, C.col, C.data)}
    assert got.keys() == counts.keys()
    for key, w in counts.items():
        assert got[key] == pytest.approx(w)
    users = model.data_.user_ids[:20]
    S = ref.transition_scores_ref(ordered, model.data_.item_ids, users, 2.0, window=2)
    ids, scores = model.recommend(users, k=8, return_scores=True)
    rows_idx = model.data_.user_index(users)
    d = model.data_
    seen = [d.seen_indices[d.seen_indptr[u]:d.seen_indptr[u + 1]] for u in rows_idx]
    ref.assert_valid_topk(np.searchsorted(d.item_ids, ids).astype(np.int32), scores, (ids >= 0).sum(1),
                          S, seen, 8)


@pytest.mark.parametrize("cls", [recmf.SLIST, recmf.EASE, recmf.ItemTransition])
def test_rated_inputs_need_rated_data(frames, cls):
    positives_only = recmf.Interactions.from_frame(frames[0])
    with pytest.raises(ValueError, match="seen='rated'"):
        cls(inputs="rated").fit(positives_only)
    with pytest.raises(ValueError, match="inputs must be"):
        cls(inputs="watched").fit(frames[0])        # stored as given, refused by fit
    # a frame is indexed with seen="rated"
    model = cls(inputs="rated").fit(frames[0])
    assert model.data_.seen_rule == "rated"


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, name", [
    ({"alpha": -0.1}, ValueError, "alpha"), ({"alpha": 1.5}, ValueError, "alpha"),
    ({"alpha": "0.5"}, TypeError, "alpha"), ({"l2": 0}, ValueError, "l2"),
    ({"l2": float("nan")}, ValueError, "l2"), ({"l2": True}, TypeError, "l2"),
    ({"position_decay": 0}, ValueError, "position_decay"),
    ({"position_decay": float("inf")}, ValueError, "position_decay"),
    ({"window": 0}, ValueError, "window"), ({"window": 2.5}, TypeError, "window"),
    ({"half_life": -1.0}, ValueError, "half_life")])
def test_bad_parameters_are_named(frames, kwargs, exc, name):
    model = recmf.SLIST(**kwargs)           # scikit-learn's rule: the constructor stores, fit checks
    assert all(getattr(model, k) is v for k, v in kwargs.items())
    with pytest.raises(exc, match=name):
        model.fit(frames[0])
    assert model.data_ is None


def test_needs_an_order(frames):
    d = recmf.Interactions.from_frame(frames[0], time_col=None)
    with pytest.raises(ValueError, match="time column"):
        recmf.SLIST().fit(d)


def test_memory_check_names_the_figure(monkeypatch, data):
    monkeypatch.setattr(recmf._checks, "available_bytes", lambda: 1000)
    n = data.n_items
    with pytest.raises(MemoryError, match=rf"SLIST on {n} items needs 0\.00 GiB \(two {n} x {n} float32 "
                                          r"matrices: 0\.00 GiB\), but only .* available"):
        recmf.SLIST().fit(data)


def test_core_rejects_bad_arguments():
    indptr, items, n = random_sequences(2)
    B = np.empty((n, n), np.float32)
    seq = (indptr, items)
    for bad, msg in [({"window": 0}, "window"), ({"alpha": 1.5}, "alpha"), ({"l2": -1.0}, "l2"),
                     ({"position_decay": 0.0}, "position_decay"), ({"l2": math.nan}, "l2")]:
        with pytest.raises(ValueError, match=msg):
            _core.fit("slist", {**config(indptr, n), **bad}, seq, B, 1)
    with pytest.raises(ValueError, match="theta"):
        _core.fit("slist", config(indptr, n), seq, np.empty((n, n + 1), np.float32), 1)
    bad = items.copy()
    bad[0] = n
    with pytest.raises(ValueError, match="outside"):
        _core.fit("slist", config(indptr, n), (indptr, bad), B, 1)
    with pytest.raises(ValueError, match="empty"):
        _core.fit("slist", config(indptr, n), (np.zeros(len(indptr), np.int64), np.zeros(0, np.int32)), B, 1)
    # item 3 never occurs and l2 is a subnormal float, flushed to 0 in recmf's compute: a zero pivot
    B4 = np.empty((4, 4), np.float32)
    with pytest.raises(ValueError, match="not positive definite.*l2"):
        _core.fit("slist", config(np.array([0, 3], np.int64), 4, l2=1e-40),
                  (np.array([0, 3], np.int64), np.array([0, 1, 2], np.int32)), B4, 1)
