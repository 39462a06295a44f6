"""State that outlives what it describes (issue 20, field case 09).

A model is what its last successful fit (or load) made, or unfitted --
never a mix: a refit that fails half-way leaves the previous state whole;
caches of a model's scores follow its current fitted state; a copy that
shares a model's learned arrays (``with_params``, ``recmf.select``) cannot
be changed through the original; a hyperparameter changed after fit is
refused at use instead of being read against weights of another shape; a
Blend never scores a component that was refitted on other data.

Every registered model runs the failure-injection contract: each call
into the C core during a refit is made to fail in turn, and the model
must come out identical to what it was.
"""
import pickle

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import _core
from recmf.models import blend as blend_module

from test_contract import MODELS, make  # noqa: E402  (the shared contract's model factory)


@pytest.fixture(scope="module")
def small():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=80, n_items=100, seed=5)
    train, val, test = recmf.temporal_split(ratings)
    # another data set for the refit: a third of the users dropped
    users = train["user_id"].unique()
    other = train[~train["user_id"].isin(users[::3])]
    return dict(train=train, other=other, val=val, data=recmf.Interactions.from_frame(train),
                users=test["user_id"].unique())


# -- case 09: a Blend follows its components' current fitted state ----------

def _case09_frame():
    rng = np.random.default_rng(0)
    n = 1500
    return pd.DataFrame({"user_id": rng.integers(0, 50, n), "movie_id": rng.integers(0, 60, n),
                         "rating": rng.integers(1, 6, n), "timestamp": np.arange(n)})


def test_blend_follows_a_component_refitted_in_place():
    """Field case 09: BPRMF refitted on the same Interactions object with the
    same hyperparameters but stopped after one epoch; the blend whose only
    weighted component it is recommends what it now recommends."""
    data = recmf.Interactions.from_frame(_case09_frame())
    users = data.user_ids
    bpr = recmf.BPRMF(emb_dim=8, epochs=6, triplets_per_epoch=3000, top_n=50, seed=0, n_threads=1).fit(data)
    blend = recmf.Blend([bpr, recmf.Popularity().fit(data)], weights=(1.0, 0.0)).fit(data)
    old = blend.recommend(users, k=5)
    np.testing.assert_array_equal(old, bpr.recommend(users, k=5))
    bpr.fit(data, callback=lambda model, row: False)          # stop after epoch 1
    now = bpr.recommend(users, k=5)
    assert not np.array_equal(now, old)                        # the refit changed the lists
    np.testing.assert_array_equal(blend.recommend(users, k=5), now)
    # and its scores are the component's current ones, normalised per user
    rows = np.arange(data.n_users, dtype=np.int32)
    np.testing.assert_array_equal(blend._score_all(rows),
                                  blend_module.normalise_rows(bpr._score_all(rows)))


def test_blend_refuses_a_component_refitted_on_other_data(small):
    bpr = make("bprmf").fit(small["data"])
    blend = recmf.Blend([bpr, recmf.Popularity().fit(small["data"])]).fit(small["data"])
    blend.recommend(small["users"], k=5)
    bpr.fit(small["other"])
    with pytest.raises(ValueError, match=r"models\[0\] \(BPRMF\) was refitted on other data"):
        blend.recommend(small["users"], k=5)
    with pytest.raises(ValueError, match="refitted on other data"):
        blend.score(small["users"][:1], small["data"].item_ids[:1])


def test_row_cache_misses_after_any_refit(small):
    """The cache key is the component's fitted state, not its data object
    or settings: a refit with the same data and settings but another
    callback is a new state."""
    blend_module.clear_cache()
    data, users = small["data"], small["data"].user_ids
    als = make("als", iterations=4).fit(data)
    blend = recmf.Blend([als], weights=[1.0]).fit(data)
    first = blend._score_all(np.arange(data.n_users, dtype=np.int32))
    als.fit(data, callback=lambda model, row: row["epoch"] < 1)
    again = blend._score_all(np.arange(data.n_users, dtype=np.int32))
    want = blend_module.normalise_rows(als._score_all(np.arange(data.n_users, dtype=np.int32)))
    assert not np.array_equal(first, again)
    np.testing.assert_array_equal(again, want)
    np.testing.assert_array_equal(blend.recommend(users, k=3), als.recommend(users, k=3))


# -- a failed refit leaves the previous state ---------------------------------

class Injected(RuntimeError):
    """The failure the tests inject into a core call."""


def _inject(monkeypatch, fail_at):
    """Every public function of recmf._core counts its calls; call number
    ``fail_at`` raises Injected (0: none does).  Returns the counter."""
    calls = {"n": 0}
    for name in dir(_core):
        fn = getattr(_core, name)
        if name.startswith("_") or isinstance(fn, type) or not callable(fn):
            continue

        def counted(*args, _fn=fn, _name=name, **kwargs):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise Injected(f"injected failure in _core.{_name}")
            return _fn(*args, **kwargs)
        monkeypatch.setattr(_core, name, counted)
    return calls


def _state(model):
    """The model's attributes (objects, not copies) and its learned bytes."""
    arrays = {k: np.ascontiguousarray(a).tobytes() for k, a in model._arrays().items()} \
        if model.data_ is not None else {}
    return dict(vars(model)), arrays


@pytest.mark.parametrize("kind", list(MODELS))
def test_refit_failing_at_any_core_call_keeps_the_previous_fit(kind, small, monkeypatch):
    model = make(kind).fit(small["data"])
    want = model.recommend(small["users"], k=5)
    attrs, arrays = _state(model)
    with monkeypatch.context() as m:
        n_calls = _inject(m, 0)
        make(kind).fit(small["other"], val=small["val"])
    assert n_calls["n"] > 0
    for fail_at in range(1, n_calls["n"] + 1):
        with monkeypatch.context() as m:
            _inject(m, fail_at)
            with pytest.raises(Injected):
                model.fit(small["other"], val=small["val"])
        now_attrs, now_arrays = _state(model)
        assert now_attrs.keys() == attrs.keys(), fail_at
        assert all(now_attrs[k] is v for k, v in attrs.items()), fail_at
        assert now_arrays == arrays, fail_at
        np.testing.assert_array_equal(model.recommend(small["users"], k=5), want)
    # and a refit that succeeds is a new state
    model.fit(small["other"], val=small["val"])
    assert model.data_.n_users < attrs["data_"].n_users


@pytest.mark.parametrize("kind", list(MODELS))
def test_first_fit_failing_leaves_the_model_unfitted(kind, small, monkeypatch):
    model = make(kind)
    with monkeypatch.context() as m:
        _inject(m, 1)
        with pytest.raises(Injected):
            model.fit(small["data"])
    assert model.data_ is None
    with pytest.raises(recmf.NotFittedError):
        model.recommend(small["users"], k=3)
    model.fit(small["data"])                       # and it fits afterwards
    assert model.recommend(small["users"], k=3).shape == (len(small["users"]), 3)


def test_failures_found_late_in_python_keep_the_previous_fit(small, monkeypatch):
    """Failures the models raise themselves after the data is set: EASE's
    memory check and its half-life order check, an exception from a
    training callback, a sampling error."""
    data = small["data"]
    ease = recmf.EASE(l2=10.0).fit(data)
    B = ease.B_
    unordered = recmf.Interactions.from_frame(small["other"], time_col=None)
    ease.half_life = 2.0
    with pytest.raises(ValueError, match="order"):
        ease.fit(unordered)
    ease.half_life = None
    assert ease.data_ is data and ease.B_ is B
    with monkeypatch.context() as m:
        m.setattr(recmf._checks, "available_bytes", lambda: 1000)
        with pytest.raises(MemoryError):
            ease.fit(small["other"])
    assert ease.data_ is data and ease.B_ is B

    bpr = make("bprmf").fit(data, val=small["val"])
    history, theta, best = bpr.history, bpr.theta_, bpr.best_epoch_

    def boom(model, row):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        bpr.fit(small["other"], val=small["val"], callback=boom)
    assert bpr.history is history and bpr.theta_ is theta and bpr.best_epoch_ == best
    assert bpr.data_ is data
    full = pd.DataFrame({"user_id": [1, 1, 2], "movie_id": [5, 6, 5], "rating": 5})
    with pytest.raises(recmf.SamplingError):
        bpr.fit(full)
    assert bpr.data_ is data and bpr.theta_ is theta


# -- copies and hyperparameters ----------------------------------------------

@pytest.mark.parametrize("kind", list(MODELS))
def test_learned_arrays_are_read_only(kind, small, tmp_path):
    """Copies share learned arrays (with_params, select's shared fits,
    Blend caches): none can be changed in place, after fit, load or
    unpickling."""
    model = make(kind).fit(small["data"])
    model.save(tmp_path / "m.npz")
    for m in (model, recmf.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model))):
        arrays = [v for k, v in vars(m).items() if k.endswith("_") and isinstance(v, np.ndarray)]
        for c in getattr(m, "models_", []):
            arrays += [v for k, v in vars(c).items() if k.endswith("_") and isinstance(v, np.ndarray)]
        assert arrays
        for a in arrays:
            assert not a.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                a.flat[0] = 1


def test_with_params_copy_survives_a_refit_of_the_original(small):
    ease = recmf.EASE(l2=10.0).fit(small["data"])
    copy = ease.with_params(half_life=2.0)
    want = copy.recommend(small["users"], k=5)
    ease.fit(small["other"])
    np.testing.assert_array_equal(copy.recommend(small["users"], k=5), want)


@pytest.mark.parametrize("kind, name, value", [
    ("bprmf", "emb_dim", 4), ("neuralmf", "hidden_dim", 8), ("als", "factors", 4),
    ("ease", "l2", 99.0), ("transition", "window", 2), ("popularity", "threshold", 3),
])
def test_a_hyperparameter_changed_after_fit_is_refused_at_use(kind, name, value, small, tmp_path):
    model = make(kind).fit(small["data"])
    before = getattr(model, name)
    setattr(model, name, value)
    msg = rf"^{name} of this {type(model).__name__} was changed after fit \({before!r} then, {value!r} now\)"
    with pytest.raises(ValueError, match=msg):
        model.recommend(small["users"], k=3)
    with pytest.raises(ValueError, match=msg):
        model.score(small["users"][:1], model.data_.item_ids[:1])
    with pytest.raises(ValueError, match=msg):
        model.save(tmp_path / "m.npz")
    setattr(model, name, before)
    model.recommend(small["users"], k=3)
    setattr(model, name, value)
    model.fit(small["data"])                   # a refit adopts the new value
    model.recommend(small["users"], k=3)


def test_scoring_and_runtime_parameters_may_change_after_fit(small):
    ease = recmf.EASE(l2=10.0, n_threads=1).fit(small["data"])
    ease.half_life, ease.n_threads = 2.0, 2
    ease.recommend(small["users"], k=3)
    bpr = make("bprmf").fit(small["data"])
    bpr.verbose, bpr.n_threads = True, 1
    bpr.recommend(small["users"], k=3)


def test_select_never_shares_the_fit_of_blends_whose_components_differ_in_weights(small):
    """Two blends of BPRMFs with the same hyperparameters but different
    weights (one stopped after an epoch) are not the same candidate."""
    data = small["data"]
    full = make("bprmf", epochs=4).fit(data)
    short = make("bprmf", epochs=4).fit(data, callback=lambda model, row: False)
    pop = recmf.Popularity().fit(data)
    a = recmf.Blend([full, pop], weights=(1.0, 0.0))
    b = recmf.Blend([short, pop], weights=(1.0, 0.0))
    assert a.get_params() != b.get_params()
    best, table = recmf.select([a, b], data, small["val"], progress=False)
    assert (table["fit_seconds"] > 0).all()        # each fitted on its own
    for blend, comp in ((a, full), (b, short)):
        np.testing.assert_array_equal(blend.recommend(small["users"], k=5), comp.recommend(small["users"], k=5))
