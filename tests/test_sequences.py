"""Interactions.sequences(): each user's positives (or every rated item)
in time order, against pandas' stable sort, and what carries that order
(pickle, save/load, ==, Dask)."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recmf
import reference as ref


@pytest.fixture(scope="module")
def train():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=150, n_items=120, seed=5)
    return recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)[0]


def expected_sequences(frame, inputs, threshold=4):
    """{user: [items oldest first]} by pandas: a stable sort by (user, time),
    a repeated (user, item) at its last row; for "rated", every row of an
    item that has a positive somewhere, for users with a positive."""
    pos = frame[frame["rating"] >= threshold]
    rows = pos if inputs == "positives" else frame[frame["movie_id"].isin(pos["movie_id"])
                                                   & frame["user_id"].isin(pos["user_id"])]
    ordered = ref.ordered_positives_ref(rows, threshold=-np.inf)
    return {u: list(g) for u, g in ordered.groupby("user", sort=False)["item"]}


def as_dict(data, seqs):
    indptr, items = seqs
    return {data.user_ids[u]: list(data.item_ids[items[indptr[u]:indptr[u + 1]]])
            for u in range(data.n_users) if indptr[u + 1] > indptr[u]}


@pytest.mark.parametrize("inputs", ["positives", "rated"])
def test_sequences_match_pandas(train, inputs):
    data = recmf.Interactions.from_frame(train, seen="rated")
    seqs = data.sequences(inputs)
    assert seqs.indptr.dtype == np.int64 and seqs.items.dtype == np.int32
    assert len(seqs.indptr) == data.n_users + 1 and seqs.indptr[0] == 0
    assert not seqs.items.flags.writeable
    assert as_dict(data, seqs) == expected_sequences(train, inputs)
    # each row holds the user's CSR row (positives or seen items), reordered
    ptr, idx = (data.indptr, data.indices) if inputs == "positives" else \
        (data.seen_indptr[:data.n_users + 1], data.seen_indices)
    np.testing.assert_array_equal(seqs.indptr, ptr)
    for u in range(0, data.n_users, 7):
        np.testing.assert_array_equal(np.sort(seqs.items[ptr[u]:ptr[u + 1]]), idx[ptr[u]:ptr[u + 1]])


def test_positives_sequences_do_not_depend_on_seen(train):
    a = recmf.Interactions.from_frame(train).sequences()
    b = recmf.Interactions.from_frame(train, seen="rated").sequences()
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.indptr, b.indptr)


def test_ties_repeats_and_low_ratings():
    # user 1: 20 and 10 tie at t=5 (input order: 20 first), 40 (rating 2)
    # at t=7, 10 again at t=9, 50 rated 1 (no positive anywhere: not
    # indexed); user 3 has no positive (not indexed).
    f = pd.DataFrame({"user_id": [1, 1, 1, 1, 1, 2, 2, 3, 1],
                      "movie_id": [20, 10, 30, 40, 10, 10, 40, 30, 50],
                      "rating": [5, 5, 5, 2, 4, 5, 4, 1, 1],
                      "timestamp": [5, 5, 6, 7, 9, 1, 0, 0, 8]})
    d = recmf.Interactions.from_frame(f, seen="rated")
    assert as_dict(d, d.sequences()) == {1: [20, 30, 10], 2: [40, 10]}
    assert as_dict(d, d.sequences("rated")) == {1: [20, 30, 40, 10], 2: [40, 10]}


def test_errors_name_what_is_missing(train):
    with pytest.raises(ValueError, match="seen='rated'"):
        recmf.Interactions.from_frame(train).sequences("rated")
    with pytest.raises(ValueError, match="time column"):
        recmf.Interactions.from_frame(train, time_col=None).sequences()
    with pytest.raises(ValueError, match="time column"):
        recmf.Interactions.from_frame(train.drop(columns="timestamp"), seen="rated").sequences("rated")
    with pytest.raises(ValueError, match="inputs must be"):
        recmf.Interactions.from_frame(train).sequences("watched")


def test_order_survives_pickle_save_load_and_eq(train, tmp_path):
    data = recmf.Interactions.from_frame(train, seen="rated")
    clone = pickle.loads(pickle.dumps(data))
    assert clone == data and clone.seen_rule == "rated"
    np.testing.assert_array_equal(clone.sequences("rated").items, data.sequences("rated").items)
    model = recmf.Popularity().fit(data)
    model.save(tmp_path / "p.npz")
    loaded = recmf.load(tmp_path / "p.npz").data_
    assert loaded == data and loaded.seen_rule == "rated"
    np.testing.assert_array_equal(loaded.sequences("rated").items, data.sequences("rated").items)
    # rated vs positives: different rules are different data, even when
    # every rated item is a positive
    pos_only = train[train["rating"] >= 4]
    assert recmf.Interactions.from_frame(pos_only, seen="rated") != recmf.Interactions.from_frame(pos_only)
    # a different order of the rated items is different data
    shuffled = train.assign(timestamp=train["timestamp"].sample(frac=1, random_state=0).to_numpy())
    other = recmf.Interactions.from_frame(shuffled, seen="rated")
    assert other != data


def test_from_dask_keeps_the_rated_order(train):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(train, npartitions=3, sort=False)
    got = recmf.Interactions.from_dask(ddf, seen="rated")
    want = recmf.Interactions.from_frame(train, seen="rated")
    assert got == want
    np.testing.assert_array_equal(got.sequences("rated").items, want.sequences("rated").items)
    np.testing.assert_array_equal(got.sequences().items, want.sequences().items)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(1, 5), st.integers(0, 3)),
                min_size=1, max_size=40), st.booleans())
def test_sequences_property(rows, string_ids):
    f = ref.ratings_frame(rows, string_ids)
    if not (f["rating"] >= 4).any():
        return
    d = recmf.Interactions.from_frame(f, seen="rated")
    for inputs in ("positives", "rated"):
        assert as_dict(d, d.sequences(inputs)) == expected_sequences(f, inputs)
