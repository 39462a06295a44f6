"""The contract every registered model keeps (as benfred/implicit's shared
recommender test mixin): fit, recommend's shape and order, seen items
removed, unknown users, ``score`` agreeing with ``recommend``, save/load and
pickle round trips, determinism, inputs left alone, bad arguments, and
degenerate data.

Every test is parametrized over ``recmf.available_models()`` and builds the
model from its class's ``_test_params()``: a new model runs all of it by
registering, with no edit here.  The references are plain NumPy/pandas.
"""
import pickle

import numpy as np
import pandas as pd
import pytest

import recmf

MODELS = recmf.available_models()
KINDS = list(MODELS)


def make(kind, **overrides):
    cls = MODELS[kind]
    return cls(**{**cls._test_params(), **overrides})


@pytest.fixture(scope="module")
def small():
    ratings, _, movies = recmf.datasets.synthetic_ratings(n_users=120, n_items=150, seed=3)
    train, val, test = recmf.temporal_split(ratings)
    pos = train[train["rating"] >= 4]          # plain pandas: each user's train positives
    seen = {u: set(g) for u, g in pos.groupby("user_id")["movie_id"]}
    return dict(train=train, val=val, test=test, data=recmf.Interactions.from_frame(train), seen=seen,
                users=test["user_id"].unique())


_FITTED = {}


@pytest.fixture
def fitted(request, small):
    """The model of this test's ``kind``, fitted once per module on ``small``."""
    kind = request.node.callspec.params["kind"]
    if kind not in _FITTED:
        _FITTED[kind] = make(kind).fit(small["data"])
    return _FITTED[kind]


def learned_bytes(model):
    """Every learned array, as bytes, keyed by name."""
    return {name: np.ascontiguousarray(a).tobytes() for name, a in model._arrays().items()}


def test_registry_lists_every_model():
    assert {"popularity", "neuralmf", "bprmf"} <= set(MODELS)
    for kind, cls in MODELS.items():
        assert cls.kind == kind and issubclass(cls, recmf.Recommender)
        assert getattr(recmf, cls.__name__) is cls
    assert recmf.available_models() is not recmf.available_models()    # a copy


def test_cli_offers_the_models_buildable_from_defaults():
    """`recmf run --model` offers every registered model whose constructor
    has no required parameter, and only those (a Blend needs its models)."""
    import inspect

    from recmf import cli
    run = cli._parser()._subparsers._group_actions[0].choices["run"]
    buildable = [kind for kind, cls in MODELS.items()
                 if all(p.default is not p.empty
                        for p in list(inspect.signature(cls.__init__).parameters.values())[1:])]
    assert [a for a in run._actions if a.dest == "model"][0].choices == buildable
    assert "blend" in MODELS and "blend" not in buildable
    assert {"popularity", "neuralmf", "bprmf", "ease"} <= set(buildable)
    for kind in buildable:
        MODELS[kind]()          # every offered model builds from its defaults


def test_registry_rejects_a_taken_kind():
    with pytest.raises(TypeError, match="'bprmf'.*already registered"):
        type("Impostor", (recmf.Recommender,), {"kind": "bprmf"})
    assert MODELS["bprmf"] is recmf.BPRMF


@pytest.mark.parametrize("kind", KINDS)
def test_recommend_shape_order_and_seen_items(kind, fitted, small):
    users = small["users"]
    ids, scores = fitted.recommend(users, k=10, return_scores=True)
    assert ids.shape == scores.shape == (len(users), 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    catalogue = set(fitted.data_.item_ids.tolist())
    for u, row, sc in zip(users, ids, scores):
        assert len(set(row)) == 10 and set(row) <= catalogue
        assert not set(row) & small["seen"].get(u, set()), f"user {u}: a seen item was recommended"
        assert np.all(np.diff(sc) <= 0), f"user {u}: scores not best first"
    # without exclusion, the best items may be seen ones: the list is then
    # the top of all items, so its first score is at least the excluded one's
    ids_all, scores_all = fitted.recommend(users, k=10, exclude_seen=False, return_scores=True)
    assert np.all(scores_all[:, 0] >= scores[:, 0])
    frame = fitted.recommend_frame(users[:3], k=4)
    assert list(frame.columns) == ["user_id", "rank", "movie_id", "score"]
    np.testing.assert_array_equal(frame["movie_id"].to_numpy().reshape(3, 4), ids[:3, :4])


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_users(kind, fitted, small):
    known = small["users"][0]
    out = fitted.recommend([10 ** 12, known], k=5)
    assert list(out[0]) == [-1] * 5 and -1 not in out[1]
    assert list(fitted.recommend([10 ** 12], k=5, pad=-7)[0]) == [-7] * 5
    pop = fitted.recommend([10 ** 12], k=5, unknown="popular")[0]
    assert list(pop) == list(recmf.Popularity().fit(small["data"]).popular_items(5).index)
    with pytest.raises(KeyError, match="unknown user id"):
        fitted.score([10 ** 12], [fitted.data_.item_ids[0]])


@pytest.mark.parametrize("kind", KINDS)
def test_score_agrees_with_recommend(kind, fitted, small):
    # score() of every unseen item, ranked in NumPy (higher first, ties to
    # the lower item index): recommend returns that ranking's top k.  The
    # two code paths may round differently, so near ties (closer than 1e-4,
    # not exactly equal) may swap: there only the scores are compared.
    data, k = fitted.data_, 10
    items = data.item_ids
    for u in small["users"][:15]:
        ids, sc = fitted.recommend([u], k=k, return_scores=True)
        all_scores = fitted.score(np.repeat(u, len(items)), items).astype(np.float64)
        np.testing.assert_allclose(fitted.score(np.repeat(u, k), ids[0]), sc[0], rtol=1e-5, atol=1e-6)
        cand = np.flatnonzero(~np.isin(items, list(small["seen"].get(u, ()))))
        order = cand[np.lexsort((cand, -all_scores[cand]))][:k + 1]
        top = all_scores[order]
        np.testing.assert_allclose(np.sort(all_scores[data.item_index(ids[0])])[::-1], top[:k],
                                   rtol=1e-5, atol=1e-6)
        gaps = -np.diff(top)
        if np.all((gaps == 0) | (gaps > 1e-4)):
            np.testing.assert_array_equal(ids[0], items[order[:k]])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_and_pickle_round_trips(kind, fitted, small, tmp_path):
    users = small["users"]
    want = fitted.recommend(users, k=10, return_scores=True)
    path = tmp_path / f"{kind}.npz"
    fitted.save(path)
    for clone in (recmf.load(path), pickle.loads(pickle.dumps(fitted))):
        assert type(clone) is type(fitted)
        assert clone.get_params() == fitted.get_params()
        assert learned_bytes(clone) == learned_bytes(fitted)
        got = clone.recommend(users, k=10, return_scores=True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(clone.score(users[:3], got[0][:3, 0]), fitted.score(users[:3], want[0][:3, 0]))
        history = getattr(fitted, "history", None)
        if history is not None:
            assert len(clone.history) == len(history)


def _unpickle_unaligned(obj):
    """Pickle with protocol 5 and load from out-of-band buffers one byte off
    alignment and read-only -- what a Dask worker or a joblib job gets."""
    buffers = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    odd = [memoryview(b"\0" + bytes(b.raw()))[1:] for b in buffers]
    return pickle.loads(payload, buffers=odd), len(buffers)


@pytest.mark.parametrize("kind", KINDS)
def test_unpickled_into_unaligned_buffers(kind, fitted, small):
    """A fitted model and its Interactions unpickled into unaligned,
    read-only buffers recommend and score as the original (the core used to
    refuse the weights and the CSR as 'not C-contiguous and aligned')."""
    model, users = fitted, small["users"]
    clone, n_buffers = _unpickle_unaligned(model)
    assert n_buffers > 0
    np.testing.assert_array_equal(clone.recommend(users, k=10), model.recommend(users, k=10))
    np.testing.assert_array_equal(clone.score(users[:3], clone.recommend(users[:3], k=1)[:, 0]),
                                  model.score(users[:3], model.recommend(users[:3], k=1)[:, 0]))
    data, _ = _unpickle_unaligned(small["data"])
    assert data == small["data"]
    np.testing.assert_array_equal(data.popularity(), small["data"].popularity())
    refit = make(kind).fit(data)
    np.testing.assert_array_equal(refit.recommend(users, k=10), model.recommend(users, k=10))


@pytest.mark.parametrize("kind", KINDS)
def test_load_big_endian_file(kind, fitted, small, tmp_path):
    """A saved model whose arrays were rewritten big-endian (a file written on
    or converted by another machine) loads and recommends as the original."""
    model = fitted
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: (z[k].astype(z[k].dtype.newbyteorder(">")) if z[k].dtype.kind in "iuf"
                      else z[k]) for k in z.files}
    assert any(a.dtype.byteorder == ">" for a in arrays.values())
    np.savez(path, **arrays)
    users = small["users"]
    np.testing.assert_array_equal(recmf.load(path).recommend(users, k=10), model.recommend(users, k=10))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_result(kind, fitted, small):
    again = make(kind).fit(small["data"])
    assert learned_bytes(again) == learned_bytes(fitted)
    np.testing.assert_array_equal(again.recommend(small["users"], k=10), fitted.recommend(small["users"], k=10))
    if "seed" in fitted.get_params():
        other = make(kind, seed=fitted.seed + 1).fit(small["data"])
        assert learned_bytes(other) != learned_bytes(fitted)


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_not_modified(kind, small):
    train = small["train"].copy()
    before = train.copy()
    data = recmf.Interactions.from_frame(train)
    arrays = {name: np.array(getattr(data, name), copy=True) for name in ("indptr", "indices", "user_ids",
                                                                           "item_ids")}
    model = make(kind).fit(data, val=small["val"])
    users = np.array(small["users"][:20], copy=True)
    users_before = users.copy()
    model.recommend(users, k=5)
    model.score(users, np.repeat(data.item_ids[0], len(users)))
    make(kind).fit(train)
    pd.testing.assert_frame_equal(train, before)
    np.testing.assert_array_equal(users, users_before)
    for name, a in arrays.items():
        np.testing.assert_array_equal(getattr(data, name), a, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_arguments_are_rejected(kind, fitted, small):
    users = small["users"]
    n_items = fitted.data_.n_items
    with pytest.raises(recmf.NotFittedError, match="not fitted"):
        make(kind).recommend(users, k=3)
    with pytest.raises(TypeError, match="Interactions, a pandas DataFrame, a table with the Arrow stream interface or a scipy.sparse matrix, got numpy.ndarray"):
        make(kind).fit(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        fitted.recommend(users, k=0)
    with pytest.raises(ValueError, match=rf"k={n_items + 1} is larger than the catalogue"):
        fitted.recommend(users, k=n_items + 1)
    with pytest.raises(ValueError, match="unknown must be 'empty' or 'popular'"):
        fitted.recommend(users, k=3, unknown="maybe")
    with pytest.raises(ValueError, match="same length"):
        fitted.score(users[:2], fitted.data_.item_ids[:3])
    with pytest.raises(KeyError, match="unknown item id"):
        fitted.score(users[:1], [-12345])
    # the argument is data=: errors about it name it (not "frame")
    with pytest.raises(ValueError, match=r"^data has no positive rows \(rating >= 4\)"):
        make(kind).fit(small["train"].assign(rating=1))


def _frame(users, items):
    return pd.DataFrame({"user_id": users, "movie_id": items, "rating": 5})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["one_user", "one_item", "one_pair"])
def test_degenerate_data(kind, case):
    # One user who has every item, or one item everybody has: nothing is
    # left to recommend, and a model that samples negatives has none to draw.
    frame = {"one_user": _frame([7, 7, 7], [1, 2, 3]), "one_item": _frame([1, 2, 3], [9, 9, 9]),
             "one_pair": _frame([7], [9])}[case]
    try:
        model = make(kind).fit(frame)
    except recmf.SamplingError as e:
        assert "no negative can be drawn" in str(e)
        return
    user = frame["user_id"].iloc[0]
    ids, scores = model.recommend([user], k=1, return_scores=True)
    assert ids.tolist() == [[-1]] and np.isneginf(scores).all()
    ids = model.recommend([user], k=1, exclude_seen=False)
    assert ids[0, 0] in set(frame["movie_id"])


@pytest.mark.parametrize("kind", KINDS)
def test_empty_data_is_rejected(kind):
    with pytest.raises(ValueError, match="^data is empty"):
        make(kind).fit(_frame([], []).astype({"user_id": np.int64, "movie_id": np.int64}))


def test_core_model_table_follows_the_registry():
    # Every model scored by the core has a row in the core's model table
    # (csrc/models/registry.c) under its exact kind; other names are refused by name.
    from recmf import _core
    sizes = dict(n_users=3, n_items=4)
    for kind, cls in MODELS.items():
        if issubclass(cls, recmf.models.EmbeddingModel):
            assert kind in _core.models()
            model = make(kind)
            model.data_ = recmf.Interactions(np.array([0, 1, 2, 3], np.int64), np.array([0, 1, 3], np.int32),
                                             np.arange(3), np.arange(4))
            n_params, blocks = _core.layout(kind, model._config())
            # the blocks tile theta exactly, in order, and the views are theirs
            ends = [off + int(np.prod(shape)) for _, off, shape, *_ in blocks]
            assert [off for _, off, *_ in blocks] == [0] + ends[:-1] and ends[-1] == n_params
            assert _core.n_params(kind, model._config()) == n_params == model._n_params()
            model.theta_ = np.arange(n_params, dtype=np.float32)
            model._views()
            for name, off, shape, *_ in blocks:
                view = getattr(model, name + "_")
                assert view.shape == tuple(shape) and view.ravel()[0] == off and np.shares_memory(view, model.theta_)
    for bad in ("nope", "neural", "bpr", "NeuralMF"):
        with pytest.raises(ValueError, match=f"no model kind '{bad}'"):
            _core.n_params(bad, sizes)
    with pytest.raises(TypeError, match="model kind"):
        _core.n_params(3, sizes)


@pytest.mark.parametrize("kind", KINDS)
def test_to_onnx_without_an_exporter_is_not_implemented_naming_the_model(kind, tmp_path):
    cls = MODELS[kind]
    if cls.to_onnx is not recmf.Recommender.to_onnx:
        pytest.skip(f"{cls.__name__} exports to ONNX")
    model = cls.__new__(cls)     # the check needs no fitted model (a Blend needs its models)
    with pytest.raises(NotImplementedError, match=f"^{cls.__name__} has no ONNX export"):
        model.to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_models_without_onnx_export():
    have = {kind for kind, cls in MODELS.items() if cls.to_onnx is not recmf.Recommender.to_onnx}
    assert {"neuralmf", "bprmf", "als"} <= have
    assert not have & {"ease", "popularity", "transition", "blend"}


@pytest.mark.parametrize("kind", KINDS)
def test_with_params_of_an_unknown_name_names_it_and_the_model(kind):
    model = make(kind)
    with pytest.raises(TypeError, match=rf"^foo is not a parameter of {MODELS[kind].__name__} "):
        model.with_params(foo=1)
