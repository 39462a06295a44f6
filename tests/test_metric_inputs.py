"""Metric inputs outside their domain (issue 9, field case 01).

recmf.evaluate and the C metrics must never report a figure outside what it
measures: coverage counts only catalogue items (<= 1), a list that repeats an
item is an error, ids of the wrong kind are an error rather than "no hit", a
popularity that cannot be known is NaN rather than 0, popularity values are
used as given (not rounded).  Every right value is compared with
tests/reference.py's metrics_ref.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import recmf
import reference as ref
from recmf import _core

KEYS = ("recall@{k}", "ndcg@{k}", "mrr@{k}", "hitrate@{k}", "coverage@{k}", "avg_popularity@{k}")


def assert_same(got, want, k):
    assert got["n_users_eval"] == want["n_users_eval"]
    for key in KEYS:
        key = key.format(k=k)
        a, b = got[key], want[key]
        if math.isnan(b):
            assert math.isnan(a), (key, a)
        else:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (key, a, b)


@pytest.fixture
def case01():
    """Field case 01's data: Popularity recommends item 13, which the
    catalogue (titles still offered) does not hold."""
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
                          "movie_id": [10, 11, 10, 12, 10, 13, 14], "rating": 5})
    test = pd.DataFrame({"user_id": [1, 2, 3, 4], "movie_id": [12, 11, 11, 10], "rating": 5})
    return recmf.Popularity().fit(train), test


def test_case01_coverage_counts_only_catalogue_items(case01):
    model, test = case01
    catalog = np.array([10, 11, 12])
    users = pd.unique(test["user_id"])
    recs = model.recommend(users, k=2)
    assert 13 in recs                          # an item outside the catalogue is recommended
    rep = recmf.evaluate(model, test, k=2, catalog=catalog)
    assert rep["coverage@2"] == 1.0            # was 4/3
    lists = {u: [int(x) for x in row if x != -1] for u, row in zip(users.tolist(), recs)}
    want = ref.metrics_ref(lists, test, k=2, coverage_users=users, catalog=catalog,
                           item_popularity=model.popular_items(model.data_.n_items))
    assert_same(rep, want, 2)
    # a catalogue holding none of the recommended items: coverage 0, not an error
    assert recmf.evaluate(model, test, k=2, catalog=[99, 98])["coverage@2"] == 0.0
    # repeats in the catalogue count once
    assert recmf.evaluate(model, test, k=2, catalog=[10, 10, 11, 12, 12])["coverage@2"] == 1.0


def test_coverage_core_matches_reference_with_outside_items():
    rng = np.random.default_rng(7)
    n, k = 50, 6
    recs = rng.integers(-20, 60, size=(n, k)).astype(np.int64)
    lens = rng.integers(0, k + 1, size=n).astype(np.int32)
    catalog = np.unique(rng.integers(-5, 40, size=30)).astype(np.int64)
    pop_ids = np.unique(rng.integers(-20, 60, size=25)).astype(np.int64)
    pop_values = rng.random(len(pop_ids)) * 10
    cov, avg, n_pairs = _core.coverage_popularity(recs, lens, catalog, pop_ids, pop_values)
    lists = {u: recs[u, :lens[u]].tolist() for u in range(n)}
    test = pd.DataFrame({"user_id": [0], "movie_id": [0], "rating": [5]})
    want = ref.metrics_ref(lists, test, k=k, coverage_users=range(n), catalog=catalog.tolist(),
                           item_popularity=dict(zip(pop_ids.tolist(), pop_values.tolist())))
    assert 0 <= cov <= 1
    assert cov == pytest.approx(want[f"coverage@{k}"], abs=1e-15)
    assert avg == pytest.approx(want[f"avg_popularity@{k}"], rel=1e-12)
    assert n_pairs == lens.sum()


def test_metrics_ref_coverage_ignores_outside_items():
    test = pd.DataFrame({"user_id": [1], "movie_id": [10], "rating": [5]})
    m = ref.metrics_ref({1: [10, 99, 98]}, test, k=3, coverage_users=[1], catalog=[10, 11])
    assert m["coverage@3"] == 0.5


def test_duplicate_items_in_a_list_raise():
    test = pd.DataFrame({"user_id": [1, 2], "movie_id": [10, 20], "rating": 5})
    with pytest.raises(ValueError, match=r"recommendations for user 2 repeat item 20"):
        recmf.evaluate({1: [10, 11], 2: [20, 21, 20]}, test, k=3, catalog=[10, 11, 20, 21])
    with pytest.raises(ValueError, match=r"repeat item 'b'"):
        recmf.evaluate(lambda u, k: ["a", "b", "b"], test.astype({"movie_id": str}), k=3,
                       catalog=["a", "b"])
    # a repeat beyond k is cut away with the rest of the list: no error
    rep = recmf.evaluate({1: [10, 11, 10], 2: [20]}, test, k=2, catalog=[10, 11, 20])
    assert rep["recall@2"] == 1.0


def test_core_ranking_metrics_count_a_repeated_hit_once():
    """The core (the last line of defence) and the reference agree on a list
    with a repeated item: one hit, at its first position; ndcg <= 1."""
    recs = np.array([[5, 5, 7, 9], [1, 2, 1, 3]], dtype=np.int64)
    lens = np.array([4, 4], dtype=np.int32)
    rel_indptr = np.array([0, 2, 3], dtype=np.int64)
    rel_items = np.array([5, 7, 3], dtype=np.int64)
    per, means, n_eval = _core.ranking_metrics(recs, lens, rel_indptr, rel_items)
    for row, recs_u, rel in ((per[0], [5, 5, 7, 9], {5, 7}), (per[1], [1, 2, 1, 3], {3})):
        assert row[0] == len(set(recs_u) & rel) / len(rel)
        assert row[1] == pytest.approx(ref.ndcg_at_k_ref(recs_u, rel, 4), rel=1e-15)
        assert row[1] <= 1.0
    assert ref.ndcg_at_k_ref([5, 5], {5}, 2) == 1.0      # the seed gave 1.63


def test_ids_of_the_wrong_kind_raise(case01):
    model, test = case01
    as_str = test.astype({"user_id": str, "movie_id": str})
    with pytest.raises(TypeError, match=r"test\['user_id'\] are non-integer .* the model's user ids are integer"):
        recmf.evaluate(model, as_str, k=2)
    with pytest.raises(TypeError, match=r"test\['movie_id'\] are non-integer"):
        recmf.evaluate(model, test.astype({"movie_id": str}), k=2)
    with pytest.raises(TypeError, match="catalog are non-integer"):
        recmf.evaluate(model, test, k=2, catalog=["10", "11"])
    with pytest.raises(TypeError, match="coverage_users are non-integer"):
        recmf.evaluate(model, test, k=2, coverage_users=["1", "2"])
    with pytest.raises(TypeError, match="item_popularity are non-integer"):
        recmf.evaluate(model, test, k=2, item_popularity={"10": 3})
    # a dict keyed by strings, scored on integer test users
    with pytest.raises(TypeError, match="model's user ids are non-integer"):
        recmf.evaluate({"1": [10]}, test, k=2, catalog=[10])
    # lists of strings against integer test items
    with pytest.raises(TypeError, match="recommended items are non-integer"):
        recmf.evaluate({1: ["10"]}, test, k=2, catalog=[10])


def test_string_ids_numeric_looking_and_empty():
    train = pd.DataFrame({"user_id": ["007", "007", "42", "", ""],
                          "movie_id": ["a", "", "", "c", "a"], "rating": 5})
    test = pd.DataFrame({"user_id": ["007", "42", ""], "movie_id": ["c", "a", ""], "rating": 5})
    model = recmf.Popularity().fit(train)
    rep, frame = recmf.evaluate(model, test, k=1, per_user=True)
    lists = {u: [x for x in row if x is not None]
             for u, row in zip(["007", "42", ""], model.recommend(["007", "42", ""], k=1))}
    want = ref.metrics_ref(lists, test, k=1, coverage_users=["007", "42", ""],
                           catalog=model.data_.item_ids.tolist(),
                           item_popularity=model.popular_items(3))
    assert_same(rep, want, 1)
    assert frame["user_id"].tolist() == ["007", "42", ""]       # ids keep their type


def test_coverage_users_domain(case01):
    model, test = case01
    with pytest.raises(ValueError, match="coverage_users is empty"):
        recmf.evaluate(model, test, k=2, coverage_users=[])
    # users not in test and unknown to the model count with an empty list
    rep = recmf.evaluate(model, test, k=2, coverage_users=[1, 1, 999], catalog=[10, 11, 12, 13, 14])
    recs = model.recommend([1], k=2)[0].tolist()
    want = ref.metrics_ref({1: recs}, test, k=2, coverage_users=[1, 999],
                           catalog=[10, 11, 12, 13, 14],
                           item_popularity=model.popular_items(model.data_.n_items))
    assert rep["coverage@2"] == want["coverage@2"] == 2 / 5
    assert rep["avg_popularity@2"] == pytest.approx(want["avg_popularity@2"])


def test_item_popularity_domain(case01):
    model, test = case01
    # fractions are used as given (they were rounded to integers: 0.4 -> 0)
    pop = {10: 0.4, 11: 0.25, 12: 0.1, 13: 0.05}
    rep = recmf.evaluate(model, test, k=2, item_popularity=pop)
    users = pd.unique(test["user_id"])
    lists = dict(zip(users.tolist(), model.recommend(users, k=2).tolist()))
    want = ref.metrics_ref(lists, test, k=2, coverage_users=users, catalog=model.data_.item_ids,
                           item_popularity=pop)
    assert rep["avg_popularity@2"] == pytest.approx(want["avg_popularity@2"], rel=1e-12)
    assert rep["avg_popularity@2"] > 0
    with pytest.raises(ValueError, match="finite and >= 0; item 11 has nan"):
        recmf.evaluate(model, test, k=2, item_popularity={10: 1.0, 11: float("nan")})
    with pytest.raises(ValueError, match="item 10 has -1"):
        recmf.evaluate(model, test, k=2, item_popularity={10: -1})
    with pytest.raises(ValueError, match="item 10 more than once"):
        recmf.evaluate(model, test, k=2, item_popularity=pd.Series([1, 2], index=[10, 10]))
    with pytest.raises(TypeError, match="values must be numbers"):
        recmf.evaluate(model, test, k=2, item_popularity={10: "many"})


def test_unknown_popularity_is_nan_not_zero():
    test = pd.DataFrame({"user_id": [1], "movie_id": [10], "rating": [5]})
    rep = recmf.evaluate({1: [10, 11]}, test, k=2, catalog=[10, 11])
    assert math.isnan(rep["avg_popularity@2"])              # was 0.0
    assert rep["coverage@2"] == 1.0 and rep["recall@2"] == 1.0


def test_threshold_and_ratings_domain(case01):
    model, test = case01
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold must be a finite number or None"):
            recmf.evaluate(model, test, k=2, threshold=bad)
    for bad in ("4", True):      # not a number at all: as Interactions.from_frame says it
        with pytest.raises(TypeError, match="^threshold must be a number or None, got"):
            recmf.evaluate(model, test, k=2, threshold=bad)
    nan_rating = test.assign(rating=[5, np.nan, 5, 5])
    with pytest.raises(ValueError, match=r"test\['rating'\] has a missing or infinite value at position 1"):
        recmf.evaluate(model, nan_rating, k=2)
    with pytest.raises(ValueError, match="test is empty"):
        recmf.evaluate(model, test.iloc[:0], k=2)
    # threshold=None: every row relevant; a threshold above every rating: nobody evaluated (NaN)
    low = test.assign(rating=1)
    assert recmf.evaluate(model, low, k=2, threshold=None)["n_users_eval"] == 4
    rep = recmf.evaluate(model, low, k=2)
    assert rep["n_users_eval"] == 0 and math.isnan(rep["recall@2"])


def test_k_beyond_the_catalogue_and_list_lengths(case01):
    """k larger than a model's catalogue gives shorter lists (not padding ids
    as items); dict lists longer than k are cut."""
    model, test = case01
    rep = recmf.evaluate(model, test, k=50, catalog=[10, 11, 12, 13, 14])
    users = pd.unique(test["user_id"])
    lists = {u: [x for x in row if x != -1]
             for u, row in zip(users.tolist(), model.recommend(users, k=5).tolist())}
    want = ref.metrics_ref(lists, test, k=50, coverage_users=users, catalog=[10, 11, 12, 13, 14],
                           item_popularity=model.popular_items(5))
    assert_same(rep, want, 50)
    long = {1: [11, 12, 13, 14, 10]}
    assert recmf.evaluate(long, test, k=1, catalog=[10])["recall@1"] == 0.0
    assert recmf.evaluate(long, test, k=2, catalog=[10])["recall@2"] == 1.0


def test_per_user_frame_marks_skipped_users_nan(case01):
    model, test = case01
    rep, frame = recmf.evaluate({1: [12], 2: []}, test, k=1, catalog=[10, 11, 12], per_user=True)
    assert frame["user_id"].tolist() == [1, 2, 3, 4]
    assert frame["recall@1"].iloc[0] == 1.0
    assert frame["recall@1"].iloc[1:].isna().all()           # empty or missing lists
    assert rep["n_users_eval"] == 1
    assert frame["n_relevant"].tolist() == [1, 1, 1, 1]
