"""Persistence that rounds or forgets (issue 20, field case 13).

A loaded model (``recmf.load`` of ``model.save``) and an unpickled one
equal the saved model in everything it exposes: every public attribute,
value for value -- the history's floats to the last bit, ``best_epoch_``,
``interrupted_``, ``adam_step_``, a Blend's choice of weights and whether
its components were given fitted.  A file whose arrays are well-formed but
inconsistent with each other is refused at load with a message naming the
file and the part, never loaded into a model that answers wrongly; a
bounded fuzz of mutated model files meets only ValueError or a model that
works.
"""
import json
import pickle
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recmf
from recmf import _core

from test_contract import MODELS, make  # noqa: E402  (the shared contract's model factory)


@pytest.fixture(scope="module")
def small():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=80, n_items=100, seed=6)
    train, val, test = recmf.temporal_split(ratings)
    return dict(train=train, val=val, data=recmf.Interactions.from_frame(train),
                users=test["user_id"].unique())


def assert_same_model(got, want, where=""):
    """Every public attribute of ``want`` is in ``got`` with the same value."""
    public = lambda m: {k: v for k, v in vars(m).items() if not k.startswith("_")}  # noqa: E731
    a, b = public(got), public(want)
    assert a.keys() == b.keys(), where
    for name, value in b.items():
        other = a[name]
        at = f"{where}{type(want).__name__}.{name}"
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, at
            np.testing.assert_array_equal(other, value, err_msg=at)
        elif isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(other, value, check_exact=True, obj=at)
        elif isinstance(value, recmf.Interactions):
            assert other == value and other.n_duplicates == value.n_duplicates, at
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], recmf.Recommender):
            assert len(other) == len(value), at
            for pos, (o, v) in enumerate(zip(other, value)):
                assert (o.data_ is None) == (v.data_ is None), f"{at}[{pos}] fitted or not"
                if v.data_ is not None:
                    assert_same_model(o, v, f"{at}[{pos}].")
                else:
                    assert type(o) is type(v) and o.get_params() == v.get_params(), at
        else:
            assert type(other) is type(value) and other == value, f"{at}: {other!r} != {value!r}"


def _interrupt_at_epoch(kind, epoch):
    """A patch of the model's training call that raises KeyboardInterrupt at
    ``epoch`` (Ctrl-C outside the core's batch loop, as the epoch loop
    handles it)."""
    name = "als_solve" if kind == "als" else "train_epoch"   # the core's one loop for the others
    real = getattr(_core, name)
    calls = {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch * (2 if kind == "als" else 1):
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    return mock.patch.object(_core, name, patched)


def _fitted_variants(small):
    """Every registered model fitted with val; the epoch models also cut
    short by Ctrl-C (history with NaN loss and an 'interrupted' column), and
    Blends whose weights were chosen on val, from components given fitted
    and unfitted."""
    out = {}
    for kind in MODELS:
        out[kind] = make(kind).fit(small["data"], val=small["val"])
    for kind in ("neuralmf", "bprmf", "als"):
        with _interrupt_at_epoch(kind, 2), pytest.warns(UserWarning, match="interrupted"):
            out[f"{kind}-interrupted"] = make(kind, eval_every=1).fit(small["data"], val=small["val"])
        assert out[f"{kind}-interrupted"].interrupted_
    bpr = make("bprmf", eval_every=1).fit(small["data"], val=small["val"])
    out["blend-chosen"] = recmf.Blend([bpr, recmf.Popularity()]).fit(small["data"], val=small["val"])
    assert out["blend-chosen"].selection_ is not None
    return out


@pytest.fixture(scope="module")
def variants(small):
    return _fitted_variants(small)


def test_case13_history_and_fit_attributes_survive_save_load(tmp_path):
    """Field case 13: BPRMF trained with val; the loaded history equals the
    saved one value for value, best_epoch_ and interrupted_ survive."""
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user_id": rng.integers(0, 200, n), "movie_id": rng.integers(0, 300, n),
                       "rating": 5, "timestamp": np.arange(n)})
    train, val, test = recmf.temporal_split(df, n_val=1, n_test=1, min_train=2)
    model = recmf.BPRMF(emb_dim=8, epochs=4, triplets_per_epoch=3000, top_n=100, seed=0, n_threads=1,
                        eval_every=1).fit(train, val=val)
    model.save(tmp_path / "bpr.npz")
    loaded = recmf.load(tmp_path / "bpr.npz")
    pd.testing.assert_frame_equal(loaded.history, model.history, check_exact=True)
    assert (loaded.best_epoch_, loaded.interrupted_, loaded.adam_step_) == \
        (model.best_epoch_, model.interrupted_, model.adam_step_)
    assert_same_model(loaded, model)


@pytest.mark.parametrize("name", ["popularity", "neuralmf", "bprmf", "ease", "als", "transition", "blend",
                                  "neuralmf-interrupted", "bprmf-interrupted", "als-interrupted",
                                  "blend-chosen"])
def test_loaded_and_unpickled_models_equal_the_saved_one(name, variants, small, tmp_path):
    if name.split("-")[0] not in MODELS:
        pytest.skip(f"{name} is not registered")
    model = variants[name]
    path = tmp_path / "m.npz"
    model.save(path)
    for how, clone in (("load", recmf.load(path)), ("pickle", pickle.loads(pickle.dumps(model)))):
        assert_same_model(clone, model, f"{how}: ")
        np.testing.assert_array_equal(clone.recommend(small["users"], k=5), model.recommend(small["users"], k=5))


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_registered_model_round_trips_everything(kind, small, tmp_path):
    """The contract for any model registered later: fitted with val, saved,
    loaded, everything equal (a fitted attribute of a type the file cannot
    keep fails the save, naming it)."""
    model = make(kind).fit(small["data"], val=small["val"])
    model.save(tmp_path / "m.npz")
    assert_same_model(recmf.load(tmp_path / "m.npz"), model)


def test_blend_keeps_which_components_were_given_fitted(small, tmp_path):
    pop = recmf.Popularity().fit(small["data"])
    blend = recmf.Blend([pop, recmf.ItemTransition(half_life=2.0)], weights=[1, 1]).fit(small["train"])
    blend.save(tmp_path / "b.npz")
    loaded = recmf.load(tmp_path / "b.npz")
    assert loaded.models[0] is loaded.models_[0] and loaded.models[0].data_ is not None
    assert loaded.models[1] is not loaded.models_[1] and loaded.models[1].data_ is None
    # so a refit does what the original's would: fit the unfitted one anew,
    # refuse other data for the one given fitted
    other = small["train"][small["train"]["user_id"] != small["train"]["user_id"].iloc[0]]
    with pytest.raises(ValueError, match="fitted on other data"):
        loaded.fit(other)
    with pytest.raises(ValueError, match="fitted on other data"):
        blend.fit(other)


def test_a_fitted_attribute_the_file_cannot_keep_fails_the_save(small, tmp_path):
    model = recmf.Popularity().fit(small["data"])
    model.extra_ = {"a": 1}
    with pytest.raises(TypeError, match=r"cannot save Popularity\.extra_ \(a dict\)"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# -- inconsistent files ------------------------------------------------------

def _rewrite(path, arrays=None, meta=None):
    with np.load(path, allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    m = json.loads(str(stored["meta"]))
    if meta is not None:
        meta(m)
    stored["meta"] = np.array(json.dumps(m))
    if arrays is not None:
        arrays(stored)
    np.savez(path, **stored)


def _set(name, fn):
    def change(a):
        a[name] = fn(a[name])
    return change


def _swap_first_row(a):
    p, idx = a["indptr"], a["indices"].copy()
    row = int(np.flatnonzero(np.diff(p) >= 2)[0])
    idx[p[row]], idx[p[row] + 1] = idx[p[row] + 1], idx[p[row]]
    a["indices"] = idx


def _dup_position(a):
    pos = a["positions"].copy()
    p = a["indptr"]
    row = int(np.flatnonzero(np.diff(p) >= 2)[0])
    pos[p[row] + 1] = pos[p[row]]
    a["positions"] = pos


INCONSISTENT = {
    "indices out of range": (dict(arrays=_set("indices", lambda x: np.where(x == x.max(), 10 ** 6, x))),
                             r"indices must lie in \[0, "),
    "indices unsorted in a row": (dict(arrays=_swap_first_row), "sorted and distinct within each row"),
    "indptr decreasing": (dict(arrays=_set("indptr", lambda x: np.concatenate([[0, x[2], x[1]], x[3:]]))),
                          "indptr must start at 0, never decrease"),
    "seen indices out of range": (dict(arrays=_set("seen_indices", lambda x: x - 1)),
                                  r"seen_indices must lie in \[0, "),
    "user ids not ascending": (dict(arrays=_set("user_ids", lambda x: x[::-1].copy())),
                               "user_ids must be distinct and ascending"),
    "item ids repeated": (dict(arrays=_set("item_ids", lambda x: np.concatenate([x[:1], x[:-1]]))),
                          "item_ids must be distinct and ascending"),
    "positions not a ranking": (dict(arrays=_dup_position), "positions must rank"),
    "id type mismatch": (dict(meta=lambda m: m.update(user_id_type="str")),
                         "user_ids hold int64 values but the metadata says 'str' ids"),
    "n_duplicates negative": (dict(meta=lambda m: m.update(n_duplicates=-3)), "n_duplicates must be a count"),
    "parameter refused": (dict(meta=lambda m: m["params"].update(emb_dim=-1)),
                          "parameters are refused by BPRMF: emb_dim must be >= 1"),
    "parameters not a mapping": (dict(meta=lambda m: m.update(params=[1, 2])), "parameters are not a mapping"),
    "weights of another shape": (dict(meta=lambda m: m["params"].update(emb_dim=9)),
                                 "saved weights do not match"),
    "theta missing": (dict(arrays=lambda a: a.pop("theta")), "it lacks 'theta'"),
    "fitted attribute malformed": (dict(meta=lambda m: m["fitted"].update(best_epoch_=[1])),
                                   "fitted attribute 'best_epoch_' is malformed"),
    "history malformed": (dict(meta=lambda m: m.update(history={"epoch": 1})), "history, selection"),
}


@pytest.mark.parametrize("case", list(INCONSISTENT))
def test_inconsistent_files_are_refused_naming_the_part(case, small, tmp_path):
    model = make("bprmf", eval_every=1).fit(small["data"], val=small["val"])
    path = tmp_path / "m.npz"
    model.save(path)
    change, match = INCONSISTENT[case]
    _rewrite(path, **change)
    with pytest.raises(ValueError, match=match) as err:
        recmf.load(path)
    assert str(path) in str(err.value)


def test_inconsistent_files_of_other_models(small, tmp_path):
    path = tmp_path / "m.npz"
    recmf.EASE(l2=10.0).fit(small["data"]).save(path)
    _rewrite(path, arrays=_set("B", lambda b: b[:-1]))
    with pytest.raises(ValueError, match=r"is inconsistent: saved B is \(99, 100\)"):
        recmf.load(path)
    recmf.EASE(l2=10.0).fit(small["data"]).save(path)
    _rewrite(path, meta=lambda m: m["params"].update(l2=-1))
    with pytest.raises(ValueError, match="refused by EASE: l2 must be a finite number > 0"):
        recmf.load(path)
    blend = recmf.Blend([recmf.Popularity(), recmf.ItemTransition()]).fit(small["train"], val=small["val"])
    blend.save(path)
    _rewrite(path, arrays=_set("chosen_weights", lambda w: w[:1]))
    with pytest.raises(ValueError, match="chosen_weights has 1 entries for 2 models"):
        recmf.load(path)
    blend.save(path)
    _rewrite(path, meta=lambda m: m["params"].update(given_fitted=[True]))
    with pytest.raises(ValueError, match="one flag per model"):
        recmf.load(path)
    _rewrite(path, meta=lambda m: m.__setitem__("fitted", "x"))
    with pytest.raises(ValueError, match="not a recmf model|malformed|mapping|given_fitted"):
        recmf.load(path)


def test_meta_that_is_not_an_object(small, tmp_path):
    path = tmp_path / "m.npz"
    recmf.Popularity().fit(small["data"]).save(path)
    with np.load(path, allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    stored["meta"] = np.array("[1, 2, 3]")
    np.savez(path, **stored)
    with pytest.raises(ValueError, match="is not a recmf model file"):
        recmf.load(path)


# -- bounded fuzz of model files -------------------------------------------

@pytest.fixture(scope="module")
def saved_files(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("bprmf", "ease", "transition", "blend"):
        model = make(kind).fit(small["train"] if kind in ("transition", "blend") else small["data"])
        model.save(folder / f"{kind}.npz")
        with np.load(folder / f"{kind}.npz", allow_pickle=False) as z:
            out[kind] = {k: z[k] for k in z.files}
    return out


_MUTATIONS = st.sampled_from(["negate", "shift", "swap", "truncate", "zero", "big", "flip_dtype"])


def _mutate(a, how, at):
    a = np.array(a)
    if a.ndim == 0 or a.size == 0 or a.dtype.kind not in "iuf":
        return a
    flat = a.reshape(-1).copy()
    i = at % flat.size
    if how == "negate":
        flat[i] = -flat[i] - 1
    elif how == "shift":
        flat[i] = flat[i] + 1
    elif how == "swap":
        j = (i + 1) % flat.size
        flat[i], flat[j] = flat[j], flat[i]
    elif how == "truncate":
        return flat[:i]
    elif how == "zero":
        flat[:] = 0
    elif how == "big":
        flat[i] = 2 ** 30 if a.dtype.kind in "iu" else 1e30
    elif how == "flip_dtype":
        return flat.astype(np.float64 if a.dtype.kind in "iu" else np.int64).reshape(a.shape)
    return flat.reshape(a.shape)


@settings(max_examples=150, deadline=None, database=None, derandomize=True,   # the same files every run
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["bprmf", "ease", "transition", "blend"]), data=st.data())
def test_fuzzed_model_files_load_cleanly_or_work(kind, data, saved_files, tmp_path):
    """Arrays of a saved model mutated one or two at a time: load raises a
    ValueError naming the file, or the model it returns recommends and
    scores without error (never a crash, never another exception)."""
    arrays = dict(saved_files[kind])
    names = sorted(k for k in arrays if k != "meta")
    for _ in range(data.draw(st.integers(1, 2))):
        name = data.draw(st.sampled_from(names))
        arrays[name] = _mutate(arrays[name], data.draw(_MUTATIONS), data.draw(st.integers(0, 10 ** 6)))
    path = tmp_path / f"fuzz-{kind}.npz"
    np.savez(path, **arrays)
    try:
        model = recmf.load(path)
    except ValueError as e:
        assert str(path) in str(e)
        return
    users = model.data_.user_ids[:5]
    recs = model.recommend(users, k=min(3, model.data_.n_items))
    assert recs.shape == (len(users), min(3, model.data_.n_items))
    model.score(users[:1], model.data_.item_ids[:1])
