"""Blend: per-user normalisation and the weighted sum against NumPy
references, every model's whole-row scores, fitting rules, persistence and
bad input."""
import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf.models.blend import normalise_rows

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402


@pytest.fixture(scope="module")
def small():
    ratings, _, movies = recmf.datasets.synthetic_ratings(n_users=120, n_items=150, seed=3)
    train, val, test = recmf.temporal_split(ratings)
    data = recmf.Interactions.from_frame(train)
    fitted = {
        "popularity": recmf.Popularity().fit(data),
        "bprmf": recmf.BPRMF(emb_dim=8, epochs=2, triplets_per_epoch=5000, top_n=100, seed=0,
                             n_threads=1).fit(data),
        "neuralmf": recmf.NeuralMF(emb_dim=8, hidden_dim=16, epochs=1, seed=0, n_threads=1).fit(data),
        "transition": recmf.ItemTransition(half_life=2.0).fit(train),
    }
    return dict(train=train, val=val, test=test, data=data, fitted=fitted)


@pytest.mark.parametrize("how", ["minmax", "zscore"])
def test_normalise_rows_matches_reference(how):
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((6, 9)) * 5).astype(np.float32)
    scores[1] = 3.0                       # constant row -> 0
    scores[2, :4] = -1e30                 # a huge range
    got = normalise_rows(scores, how)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref.normalise_rows_ref(scores, how), rtol=1e-6, atol=1e-6)
    assert (got[1] == 0).all()


@pytest.mark.parametrize("how", ["minmax", "zscore"])
def test_blend_equals_numpy_weighted_sum(how, small):
    comps = [small["fitted"][k] for k in ("transition", "bprmf", "popularity")]
    weights = (0.5, 0.3, 0.2)
    blend = recmf.Blend(comps, weights=weights, normalise=how).fit(small["data"])
    d = blend.data_
    users = np.arange(d.n_users, dtype=np.int32)
    want = sum(w * ref.normalise_rows_ref(m._score_all(users), how)
               for m, w in zip(comps, weights))
    got = blend._score_all(users)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # recommendations: the top 10 of the blended row without seen items
    want_items, want_scores, _ = ref.recommend_ref(d, got, users, 10)
    got_items, got_scores, _ = blend._recommend_index(users, 10, True)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_array_equal(got_scores, want_scores)
    # score() gives the same blended values
    np.testing.assert_allclose(blend.score(d.user_ids[[3, 3]], d.item_ids[[0, 9]]), got[3, [0, 9]], rtol=1e-6)


def test_one_weight_ranks_like_the_component(small):
    pop = small["fitted"]["popularity"]
    trans = small["fitted"]["transition"]
    blend = recmf.Blend([pop, trans], weights=[1, 0]).fit(small["data"])
    users = small["data"].user_ids
    np.testing.assert_array_equal(blend.recommend(users, k=10), pop.recommend(users, k=10))
    equal = recmf.Blend([pop, trans]).fit(small["data"])
    assert equal.weights_ == (1.0, 1.0)


def test_unfitted_components_are_fitted_as_copies(small):
    pop, trans = recmf.Popularity(), recmf.ItemTransition(half_life=2.0)
    blend = recmf.Blend([pop, trans], weights=[0.3, 0.7]).fit(small["train"])
    assert pop.data_ is None and trans.data_ is None
    assert all(m.data_ is not None for m in blend.models_)
    fitted = recmf.Blend([small["fitted"]["popularity"], small["fitted"]["transition"]],
                         weights=[0.3, 0.7]).fit(small["data"])
    users = small["data"].user_ids
    np.testing.assert_array_equal(blend.recommend(users, k=10), fitted.recommend(users, k=10))


def test_components_must_share_the_data(small):
    other_train = small["train"][small["train"]["user_id"] != small["train"]["user_id"].iloc[0]]
    other = recmf.Popularity().fit(other_train)
    with pytest.raises(ValueError, match="other data"):
        recmf.Blend([small["fitted"]["transition"], other]).fit(small["data"])
    with pytest.raises(ValueError, match="other data"):
        recmf.Blend([other]).fit(small["data"])


def test_beats_its_components_on_movielens_shape(small):
    # on the synthetic data the blend of transitions and BPRMF should not be
    # worse than the weaker of the two
    comps = [small["fitted"]["transition"], small["fitted"]["popularity"]]
    blend = recmf.Blend(comps, weights=[0.5, 0.5]).fit(small["data"])
    scores = [recmf.evaluate(m, small["test"])["recall@10"] for m in comps + [blend]]
    assert scores[2] >= min(scores[:2])


def test_save_load_and_pickle(small, tmp_path):
    comps = [small["fitted"][k] for k in ("transition", "bprmf", "neuralmf", "popularity")]
    blend = recmf.Blend(comps, weights=[0.4, 0.3, 0.2, 0.1], normalise="zscore").fit(small["data"])
    users = small["data"].user_ids
    want, want_s = blend.recommend(users, k=10, return_scores=True)
    path = tmp_path / "blend.npz"
    blend.save(path)
    for other in (recmf.load(path), pickle.loads(pickle.dumps(blend))):
        assert isinstance(other, recmf.Blend)
        assert [type(m) for m in other.models_] == [type(m) for m in comps]
        assert other.weights_ == (0.4, 0.3, 0.2, 0.1) and other.normalise == "zscore"
        assert other.models_[0].half_life == 2.0
        got, got_s = other.recommend(users, k=10, return_scores=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_s, want_s)
    assert recmf.load(path).models_[1].history is not None


def test_weight_grid():
    two = recmf.Blend.weight_grid(2)
    assert len(two) == 11 and two[0] == (0.0, 1.0) and two[-1] == (1.0, 0.0)
    three = recmf.Blend.weight_grid(3)
    assert len(three) == 15
    for w in two + three:
        assert sum(w) == pytest.approx(1.0) and min(w) >= 0
    blend = recmf.Blend([recmf.Popularity(), recmf.Popularity()])
    assert blend.default_grid == {"weights": two}


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(models=[]), ValueError, "at least one"),
    (dict(models=recmf.Popularity()), TypeError, "list or tuple of recmf models"),
    (dict(models=[recmf.Popularity(), "x"]), TypeError, r"models\[1\]"),
    (dict(models=[recmf.Popularity()], weights=[1, 2]), ValueError, "one entry per model"),
    (dict(models=[recmf.Popularity()] * 2, weights=[0, 0]), ValueError, "not all 0"),
    (dict(models=[recmf.Popularity()] * 2, weights=[1, -1]), ValueError, ">= 0"),
    (dict(models=[recmf.Popularity()] * 2, weights=[1, float("nan")]), ValueError, "finite"),
    (dict(models=[recmf.Popularity()] * 2, weights=["a", 1]), TypeError, "weights"),
    (dict(models=[recmf.Popularity()], normalise="rank"), ValueError, "normalise"),
])
def test_bad_arguments(kwargs, exc, match):
    blend = recmf.Blend(**kwargs)           # stored as given (scikit-learn's convention)
    assert blend.get_params(deep=False)["models"] is kwargs["models"]
    with pytest.raises(exc, match=match):   # refused by fit, before any work
        blend.fit(pd.DataFrame({"user_id": [1], "movie_id": [2], "rating": [5]}))


def test_not_fitted():
    with pytest.raises(recmf.NotFittedError):
        recmf.Blend([recmf.Popularity()]).recommend([1])


def test_row_cache_never_serves_another_model(small):
    from recmf.models.blend import _ROWS
    trans = small["fitted"]["transition"]
    pop = small["fitted"]["popularity"]
    users = small["data"].user_ids
    a = recmf.Blend([trans, pop], weights=[0.5, 0.5]).fit(small["data"])
    first = a.recommend(users, k=10)
    # a variant of the same component (a copy with another half-life) must be rescored
    b = recmf.Blend([trans.with_params(half_life=None), pop], weights=[0.5, 0.5]).fit(small["data"])
    _ROWS.clear()
    want = b.recommend(users, k=10)
    assert not np.array_equal(want, first)
    _ROWS.clear()
    a.recommend(users, k=10)
    np.testing.assert_array_equal(b.recommend(users, k=10), want)
    np.testing.assert_array_equal(a.recommend(users, k=10), first)
    # an in-place change of a scoring parameter is a miss too
    variant = trans.with_params(half_life=2.0)
    c = recmf.Blend([variant, pop], weights=[0.5, 0.5]).fit(small["data"])
    np.testing.assert_array_equal(c.recommend(users, k=10), first)
    variant.half_life = None
    np.testing.assert_array_equal(c.recommend(users, k=10), want)


def test_params_compare_by_value(small):
    a = recmf.Blend([recmf.ItemTransition(half_life=2.0), recmf.Popularity()], weights=[1, 1])
    b = recmf.Blend([recmf.ItemTransition(half_life=2.0), recmf.Popularity()], weights=[1, 1])
    c = recmf.Blend([recmf.ItemTransition(half_life=1.0), recmf.Popularity()], weights=[1, 1])
    from recmf.models.blend import _Components
    # get_params gives the lists as passed; the components compare by type
    # and parameters (what select and reloaded or unpickled blends use)
    assert _Components(a.models) == b.models and _Components(a.models) != c.models
    assert pickle.loads(pickle.dumps(a)).get_params() == a.get_params()
