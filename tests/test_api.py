"""The practitioners' API (issue 19): any table in, column names set once,
candidate lists, scikit-learn conventions.

References are plain NumPy/pandas; every model runs the parts that concern
it through the registry, so a new model is covered by registering.
"""
import logging

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf._tables import type_name

from test_contract import KINDS, MODELS, make  # noqa: E402  (the shared contract's model factory)


@pytest.fixture(scope="module")
def small():
    ratings = recmf.datasets.synthetic_ratings(n_users=120, n_items=150, seed=3)[0]
    train, val, test = recmf.temporal_split(ratings)
    return dict(ratings=ratings, train=train, val=val, test=test, data=recmf.Interactions.from_frame(train),
                users=test["user_id"].unique())


_FITTED = {}


def fitted_model(kind, small):
    if kind not in _FITTED:
        _FITTED[kind] = make(kind).fit(small["train"])
    return _FITTED[kind]


# ---------------------------------------------------------------------------
# any table in
# ---------------------------------------------------------------------------

def _tables(frame):
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    return {"pyarrow": pa.Table.from_pandas(frame, preserve_index=False), "polars": pl.from_pandas(frame)}


@pytest.mark.parametrize("kind", KINDS)
def test_arrow_tables_fit_and_recommend_as_pandas(kind, small):
    """The same fit on a pandas frame, a pyarrow Table and a Polars frame
    gives identical recommendations (and scores)."""
    want_ids, want_scores = fitted_model(kind, small).recommend(small["users"], k=10, return_scores=True)
    for lib, table in _tables(small["train"]).items():
        got_ids, got_scores = make(kind).fit(table).recommend(small["users"], k=10, return_scores=True)
        np.testing.assert_array_equal(got_ids, want_ids, err_msg=lib)
        np.testing.assert_array_equal(got_scores, want_scores, err_msg=lib)


def test_arrow_tables_through_the_workflow(small):
    """split, Interactions, evaluate, select, history= and val= take the
    tables and agree with pandas; the split gives back the caller's kind."""
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    ratings = small["ratings"]
    want = recmf.temporal_split(ratings)
    model = recmf.EASE(l2=10.0, half_life=2.0).fit(small["train"])
    want_report = recmf.evaluate(model, small["test"], k=5)
    for lib, table in _tables(ratings).items():
        parts = recmf.temporal_split(table)
        for got, ref in zip(parts, want):
            assert type(got) is type(table)
            frame = got.to_pandas()
            pd.testing.assert_frame_equal(frame, ref.reset_index(drop=True), check_dtype=False)
        train_t, val_t, test_t = parts
        assert recmf.Interactions.from_frame(train_t) == small["data"]
        assert recmf.evaluate(model, test_t, k=5) == want_report
        hist = small["train"][small["train"]["user_id"].isin(small["users"][:5])]
        np.testing.assert_array_equal(
            model.recommend(small["users"][:5], k=4, history=_tables(hist)[lib]),
            model.recommend(small["users"][:5], k=4, history=hist))
        best, table = recmf.select((recmf.EASE, {"l2": [5.0, 50.0]}), train_t, val_t, progress=False)
        ref_best, ref_table = recmf.select((recmf.EASE, {"l2": [5.0, 50.0]}), small["train"], small["val"],
                                           progress=False)
        pd.testing.assert_frame_equal(table.drop(columns="fit_seconds"), ref_table.drop(columns="fit_seconds"))
        bpr = recmf.BPRMF(**recmf.BPRMF._test_params()).fit(train_t, val=val_t)
        ref = recmf.BPRMF(**recmf.BPRMF._test_params()).fit(small["train"], val=small["val"])
        pd.testing.assert_frame_equal(bpr.history.drop(columns=["seconds", "eval_seconds", "threads"]),
                                      ref.history.drop(columns=["seconds", "eval_seconds", "threads"]))
    # polars ids and a pyarrow column as user ids
    users = pl.Series(small["users"][:7])
    np.testing.assert_array_equal(model.recommend(users, k=3), model.recommend(small["users"][:7], k=3))
    np.testing.assert_array_equal(model.recommend(pa.chunked_array([small["users"][:7]]), k=3),
                                  model.recommend(small["users"][:7], k=3))


def test_arrow_reads_only_the_needed_columns(small):
    """A wide table: the columns recmf does not use are never converted
    (an unconvertible extra column does no harm)."""
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(small["train"], preserve_index=False)
    # A column pandas cannot take as ids or numbers, in the way of nothing.
    table = table.append_column("blob", pa.array([{"a": i} for i in range(len(table))]))
    from recmf._tables import as_frame
    frame = as_frame(table, "frame", ["user_id", "movie_id"], optional=["timestamp", "absent"])
    assert list(frame.columns) == ["user_id", "movie_id", "timestamp"]
    assert recmf.Interactions.from_frame(table) == small["data"]


def test_arrow_stream_read_once_and_missing_column_message(small):
    """A single-use stream (a RecordBatchReader) is read once; a missing
    column names the arguments to pass, as for pandas."""
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(small["ratings"], preserve_index=False)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=500))
    parts = recmf.temporal_split(reader)
    assert sum(p.num_rows for p in parts) == len(small["ratings"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['item'\].*Pass user_col=/item_col="):
        recmf.Interactions.from_frame(table, item_col="item")


def test_dask_and_other_objects_get_a_message_naming_their_type(small):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(small["train"], npartitions=2)
    for call in (lambda f: recmf.Interactions.from_frame(f), lambda f: recmf.temporal_split(f),
                 lambda f: recmf.EASE().fit(f), lambda f: recmf.evaluate(fitted_model("ease", small), f),
                 lambda f: fitted_model("ease", small).recommend([1], history=f)):
        with pytest.raises(TypeError, match=r"dask\.dataframe\.DataFrame.*recmf\.dask") as e:
            call(ddf)
        assert "got DataFrame" not in str(e.value)
    with pytest.raises(TypeError, match=r"Arrow stream interface .*got list"):
        recmf.Interactions.from_frame([[1, 2, 5]])
    assert type_name(small["train"]) == "pandas.DataFrame"


@pytest.mark.parametrize("given", ["generator", "set", "dict_keys", "tuple", "map", "range"])
def test_ids_as_any_iterable_give_one_row_per_id(given, small):
    """Issue 20's kind: ids in any iterable give the rows asked for (never
    one "id" holding the whole container)."""
    model = fitted_model("ease", small)
    users = [int(u) for u in small["users"][:6]]
    make_it = {"generator": lambda: (u for u in users), "set": lambda: set(users),
               "dict_keys": lambda: dict.fromkeys(users).keys(), "tuple": lambda: tuple(users),
               "map": lambda: map(int, users), "range": lambda: range(users[0], users[0] + 3)}[given]
    order = list(make_it())
    np.testing.assert_array_equal(model.recommend(make_it(), k=3), model.recommend(np.array(order), k=3))
    frame = model.recommend_frame(make_it(), k=3)
    assert frame["user_id"].drop_duplicates().tolist() == [u for u in order if u in set(model.data_.user_ids)]
    assert len(model.score(make_it(), [model.data_.item_ids[0]] * len(order))) == len(order) \
        or given == "range"
    assert len(model.data_.user_index(make_it())) == len(order)


def test_ids_that_are_not_ids_are_refused(small):
    model = fitted_model("ease", small)
    with pytest.raises(TypeError, match="user_ids must be one column of ids, got a pandas.DataFrame"):
        model.recommend(small["test"][["user_id"]], k=3)
    with pytest.raises(TypeError, match="items must be a list of item ids, got the single string"):
        model.recommend([1], k=3, items="abc")


def test_recommend_frame_none_means_every_known_user(small):
    model = fitted_model("ease", small)
    frame = model.recommend_frame(None, k=3)
    assert frame["user_id"].drop_duplicates().tolist() == model.data_.user_ids.tolist()
    np.testing.assert_array_equal(model.recommend(None, k=3), model.recommend(model.data_.user_ids, k=3))
    pd.testing.assert_frame_equal(model.recommend_frame(k=3), frame)


# ---------------------------------------------------------------------------
# sparse input
# ---------------------------------------------------------------------------

def test_from_scipy_matches_from_frame(small):
    sp = pytest.importorskip("scipy.sparse")
    data = small["data"]
    m = data.to_scipy()
    back = recmf.Interactions.from_scipy(m, user_ids=data.user_ids, item_ids=data.item_ids)
    assert back == recmf.Interactions.from_frame(small["train"], time_col=None)
    # default ids are row / column numbers; empty rows and columns are not indexed
    coo = sp.coo_matrix(([1.0, 3.0, 0.0, -1.0, 2.0, 2.0], ([0, 0, 2, 2, 3, 3], [1, 4, 0, 2, 4, 4])),
                        shape=(5, 6))
    d = recmf.Interactions.from_scipy(coo)
    assert d.user_ids.tolist() == [0, 3] and d.item_ids.tolist() == [1, 4]
    assert d.to_frame().values.tolist() == [[0, 1], [0, 4], [3, 4]]
    assert recmf.Interactions.from_scipy(coo, threshold=2).to_frame().values.tolist() == [[0, 4], [3, 4]]
    strings = recmf.Interactions.from_scipy(sp.csr_array(coo), user_ids=list("abcde"),
                                            item_ids=[f"i{j}" for j in range(6)])
    assert strings.user_ids.tolist() == ["a", "d"]


def test_from_scipy_bad_input():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.csr_matrix(np.eye(3))
    with pytest.raises(TypeError, match="scipy.sparse matrix or array, got numpy.ndarray"):
        recmf.Interactions.from_scipy(np.eye(3))
    with pytest.raises(ValueError, match=r"user_ids must have one id per row of matrix \(3\), got 2"):
        recmf.Interactions.from_scipy(m, user_ids=[1, 2])
    with pytest.raises(ValueError, match="item_ids repeats id 1"):
        recmf.Interactions.from_scipy(m, item_ids=[1, 1, 2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        recmf.Interactions.from_scipy(sp.csr_matrix(np.array([[np.nan, 1.0]])))
    with pytest.raises(ValueError, match="no positive entry"):
        recmf.Interactions.from_scipy(sp.csr_matrix(-np.eye(3)))


@pytest.mark.parametrize("kind", ["ease", "bprmf", "popularity"])
def test_fit_on_a_sparse_matrix(kind, small):
    pytest.importorskip("scipy.sparse")
    data = small["data"]
    model = make(kind).fit(data.to_scipy())
    ref = make(kind).fit(data)
    rows = data.user_index(small["users"][:10])
    np.testing.assert_array_equal(data.item_ids[model.recommend(rows, k=5)],
                                  ref.recommend(small["users"][:10], k=5))


# ---------------------------------------------------------------------------
# column names set once
# ---------------------------------------------------------------------------

def _click_log(small):
    """The same positives as a click log: user_id, item_id, ts, no rating."""
    pos = small["ratings"][small["ratings"]["rating"] >= 4]
    return pos.rename(columns={"movie_id": "item_id", "timestamp": "ts"}).drop(columns="rating")


def test_click_log_with_columns_set_once(small):
    log_ = _click_log(small)
    with recmf.config_context(item_col="item_id", rating_col=None, time_col="ts"):
        train, val, test = recmf.temporal_split(log_)
        model = recmf.EASE(l2=10.0, half_life=2.0).fit(train)
        report = recmf.evaluate(model, test, k=5)
        frame = model.recommend_frame(test["user_id"].unique()[:3], k=2)
        assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
        best, _ = recmf.select((recmf.ALS, {"factors": [4]}), train, val, progress=False)
    # the fitted model keeps what it used after the block
    assert model.columns_ == {"threshold": 4, "user_col": "user_id", "item_col": "item_id",
                              "rating_col": None, "time_col": "ts"}
    assert list(model.recommend_frame(test["user_id"].unique()[:3], k=2).columns)[2] == "item_id"
    # the same figures as explicit arguments on the positives of the rated log
    mtrain, mval, mtest = recmf.temporal_split(small["ratings"][small["ratings"]["rating"] >= 4])
    ref = recmf.EASE(l2=10.0, half_life=2.0).fit(mtrain)
    assert recmf.evaluate(ref, mtest, k=5) == report
    # MovieLens defaults are back
    assert recmf.get_config()["item_col"] == "movie_id" and recmf.get_config()["rating_col"] == "rating"


def test_config_settings_and_their_checks():
    before = recmf.get_config()
    try:
        recmf.set_config(threshold=3.5)
        assert recmf.get_config()["threshold"] == 3.5 and recmf.get_config()["user_col"] == "user_id"
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            recmf.set_config(threshold=float("nan"))
        with pytest.raises(ValueError, match="user_col must name a column, got None"):
            recmf.set_config(user_col=None)
        with pytest.raises(TypeError, match="item_col must be a column name"):
            recmf.set_config(item_col=["a"])
        assert recmf.get_config()["threshold"] == 3.5       # a refused call changed nothing
    finally:
        recmf.set_config(**before)
    assert recmf.get_config() == before
    assert repr(recmf.FROM_CONFIG) == "FROM_CONFIG"
    import copy
    import pickle
    assert copy.deepcopy(recmf.FROM_CONFIG) is recmf.FROM_CONFIG
    assert pickle.loads(pickle.dumps(recmf.FROM_CONFIG)) is recmf.FROM_CONFIG


def test_every_default_reads_the_config():
    """No public signature writes a column name or the threshold itself:
    every such default is FROM_CONFIG (written once, in recmf._config)."""
    import inspect

    import recmf.dask as rd
    functions = [recmf.temporal_split, recmf.evaluate, recmf.select, recmf.Interactions.from_frame,
                 recmf.Interactions.from_dask, rd.temporal_split, rd.popularity, rd.evaluate,
                 rd.interactions_from_dask] + [cls.__init__ for cls in MODELS.values()]
    names = {"user_col", "item_col", "rating_col", "time_col", "threshold"}
    seen = 0
    for f in functions:
        for p in inspect.signature(f).parameters.values():
            if p.name in names:
                assert p.default is recmf.FROM_CONFIG, f"{f.__qualname__}({p.name}={p.default!r})"
                seen += 1
    assert seen > 30


def test_saved_model_keeps_its_columns(tmp_path, small):
    log_ = _click_log(small)
    with recmf.config_context(item_col="item_id", rating_col=None, time_col="ts"):
        model = recmf.EASE(l2=10.0).fit(log_)
    model.save(tmp_path / "m.npz")
    loaded = recmf.load(tmp_path / "m.npz")
    assert loaded.columns_ == model.columns_ and loaded.get_params() == model.get_params()
    assert loaded.item_col is recmf.FROM_CONFIG
    users = log_["user_id"].unique()[:3]
    pd.testing.assert_frame_equal(loaded.recommend_frame(users, k=2), model.recommend_frame(users, k=2))


# ---------------------------------------------------------------------------
# candidate lists
# ---------------------------------------------------------------------------

def _reference_lists(model, users, k, allowed, exclude_seen=True):
    """Top-k by NumPy from score(): allowed, unseen items, higher score
    first, ties to the lower item index.  Returns item ids and scores."""
    data = model.data_
    items = data.item_ids
    ids, scores = [], []
    for u in users:
        uidx = data.user_index([u])[0]
        s = model.score(np.repeat(u, len(items)), items).astype(np.float64)
        ok = allowed.copy()
        if exclude_seen:
            ok[data.seen_indices[data.seen_indptr[uidx]:data.seen_indptr[uidx + 1]]] = False
        cand = np.flatnonzero(ok)
        order = cand[np.lexsort((cand, -s[cand]))][:k]
        ids.append(items[order])
        scores.append(s[order])
    return ids, scores


@pytest.mark.parametrize("kind", KINDS)
def test_candidate_lists_stay_k_long_and_obey_the_lists(kind, small):
    model = fitted_model(kind, small)
    data, k = model.data_, 10
    rng = np.random.default_rng(5)
    items = data.item_ids
    allow = rng.choice(items, size=len(items) // 3, replace=False)
    block = rng.choice(items, size=20, replace=False)
    users = small["users"][:12]
    got, got_scores = model.recommend(users, k=k, items=list(allow) + [10 ** 9], exclude_items=block,
                                      return_scores=True)
    allowed = np.isin(items, allow) & ~np.isin(items, block)
    ref_ids, ref_scores = _reference_lists(model, users, k, allowed)
    for row, sc, want, want_sc, u in zip(got, got_scores, ref_ids, ref_scores, users):
        n = min(k, len(want))
        assert (row[:n] != -1).all() and (row[n:] == -1).all(), f"user {u}: list not {n} long"
        assert set(row[:n]) <= set(allow) and not set(row[:n]) & set(block)
        np.testing.assert_allclose(sc[:n], want_sc, rtol=1e-5, atol=1e-6)
        gaps = -np.diff(want_sc)
        if np.all((gaps == 0) | (gaps > 1e-4)):
            np.testing.assert_array_equal(row[:n], want)
    # exclude_items alone, and without seen-item exclusion
    got = model.recommend(users, k=k, exclude_items=block, exclude_seen=False)
    want, _ = _reference_lists(model, users, k, ~np.isin(items, block), exclude_seen=False)
    for row, w in zip(got, want):
        assert not set(row) & set(block) and len(set(row)) == k
        assert set(row) == set(w) or kind in ("neuralmf",)   # near ties may swap at the edge
    frame = model.recommend_frame(users, k=k, items=allow)
    assert set(frame["movie_id"]) <= set(allow) and (frame.groupby("user_id").size() <= k).all()


def test_candidate_lists_with_ties_against_numpy():
    """Popularity's scores tie heavily: the lists must be exactly the
    NumPy reference's (ties to the lower item id), k long."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 40, 600), "movie_id": rng.integers(0, 30, 600),
                          "rating": 5})
    model = recmf.Popularity().fit(frame)
    items = model.data_.item_ids
    allow = items[::2]
    users = model.data_.user_ids
    got = model.recommend(users, k=5, items=allow)
    ref, _ = _reference_lists(model, users, 5, np.isin(items, allow))
    for row, want in zip(got, ref):
        np.testing.assert_array_equal(row[:len(want)], want)
        assert (row[len(want):] == -1).all()


def test_candidate_lists_for_unknown_users_history_and_similar_items(small):
    model = fitted_model("ease", small)
    items = model.data_.item_ids
    allow, block = items[::3], items[:30]
    pop = model.recommend([10 ** 12], k=5, unknown="popular", items=allow, exclude_items=block)[0]
    counts = pd.Series(model.data_.popularity(), index=items)
    ok = counts[np.isin(items, allow) & ~np.isin(items, block)]
    want = ok.sort_index().sort_values(ascending=False, kind="stable").index[:5]
    np.testing.assert_array_equal(pop, want)
    hist = small["train"][small["train"]["user_id"].isin(small["users"][:4])]
    got = model.recommend(small["users"][:4], k=5, history=hist, items=allow)
    assert np.isin(got[got != -1], allow).all() and (got != -1).all()
    sim, sc = model.similar_items(items[:5], k=6, items=allow, exclude_items=block, return_scores=True)
    for q, row, s in zip(items[:5], sim, sc):
        assert q not in row and np.isin(row, allow).all() and not np.isin(row, block).any()
        b_row = model.B_[model.data_.item_index([q])[0]].astype(np.float64)
        ok = np.isin(items, allow) & ~np.isin(items, block) & (items != q)
        cand = np.flatnonzero(ok)
        np.testing.assert_allclose(s, b_row[cand[np.lexsort((cand, -b_row[cand]))][:6]], rtol=1e-6)
    short = model.similar_items(items[:2], k=6, items=items[:4])
    assert (short[:, 3:] == -1).all() and (short[:, :3] != -1).all()
    with pytest.raises(ValueError, match="items= names no item this model knows"):
        model.recommend(small["users"][:2], k=3, items=[10 ** 9])
    with pytest.raises(TypeError, match="non-integer .* ids"):
        model.recommend(small["users"][:2], k=3, exclude_items=["a"])


def test_dask_recommend_takes_candidate_lists(small):
    pytest.importorskip("dask.dataframe")
    import recmf.dask as rd
    model = fitted_model("ease", small)
    allow = model.data_.item_ids[::2]
    got = rd.recommend(model, small["users"][:20], k=4, items=allow, npartitions=3).compute()
    want = model.recommend_frame(small["users"][:20], k=4, items=allow)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


# ---------------------------------------------------------------------------
# scikit-learn conventions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_sklearn_clone_and_params(kind, small):
    base = pytest.importorskip("sklearn.base")
    model = make(kind)
    params = model.get_params(deep=False)
    clone = base.clone(model)
    assert type(clone) is type(model) and clone is not model
    assert set(clone.get_params(deep=False)) == set(params)
    fitted = fitted_model(kind, small)
    again = base.clone(fitted)
    assert again.data_ is None
    np.testing.assert_array_equal(again.fit(small["train"]).recommend(small["users"], k=5),
                                  fitted.recommend(small["users"], k=5))
    # fit leaves the parameters as given (n_threads=None stands for all cores)
    fresh = make(kind)
    before = fresh.get_params(deep=False)
    fresh.fit(small["train"])
    after = fresh.get_params(deep=False)
    for name, value in before.items():
        if name == "n_threads" and value is None:
            assert after[name] == 0
        else:
            assert after[name] is value or after[name] == value, name


@pytest.mark.parametrize("kind", KINDS)
def test_init_stores_what_it_is_given_and_fit_validates(kind):
    """Every constructor argument is kept as given, with no other instance
    attribute (scikit-learn's check_no_attributes_set_in_init)."""
    import inspect
    cls = MODELS[kind]
    marker = object()
    params = cls._test_params()
    model = cls(**params)
    assert set(vars(model)) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    name = next(n for n in vars(model) if n not in ("models",))
    setattr(model, name, marker)
    assert model.get_params(deep=False)[name] is marker
    bad = cls(**{**params, "n_threads": -3}) if "n_threads" in vars(model) else None
    if bad is not None:
        with pytest.raises(ValueError, match="n_threads must be >= 0"):
            bad.fit(pd.DataFrame({"user_id": [1, 2], "movie_id": [1, 2], "rating": [5, 5]}))


def test_bad_hyperparameters_wait_for_fit(small):
    model = recmf.EASE(l2=-1)            # stored, not checked
    assert model.l2 == -1
    with pytest.raises(ValueError, match="l2 must be a finite number > 0"):
        model.fit(small["train"])
    blend = recmf.Blend("not models")
    with pytest.raises(TypeError, match="models must be a list or tuple of recmf models"):
        blend.fit(small["train"])
    with pytest.raises(ValueError, match="window must be in"):
        recmf.ItemTransition(window=0).fit(small["train"])


def test_set_params(small):
    model = recmf.EASE(l2=10.0).fit(small["train"])
    users = small["users"][:3]
    assert model.set_params(half_life=2.0, n_threads=1) is model      # scoring-only and runtime
    assert model.half_life == 2.0 and model.recommend(users, k=2).shape == (3, 2)
    model.set_params(l2=50.0)                 # shapes what fit learned: refused until refit
    with pytest.raises(ValueError, match=r"l2 of this EASE was changed after fit"):
        model.recommend(users, k=2)
    model.set_params(l2=10.0)
    assert model.recommend(users, k=2).shape == (3, 2)
    with pytest.raises(ValueError, match="invalid parameter 'foo' for EASE"):
        model.set_params(foo=1)
    assert model.l2 == 10.0
    comps = [recmf.EASE(l2=10.0), recmf.Popularity()]
    blend = recmf.Blend(comps, weights=[0.5, 0.5])
    deep = blend.get_params(deep=True)
    assert deep["models"] is comps and "models__l2" not in deep     # a list is not descended
    blend.set_params(weights=[0.2, 0.8])
    assert blend.get_params(deep=False)["weights"] == [0.2, 0.8]
    # a parameter that is a model is reached with name__param
    holder = recmf.Blend(comps)
    holder.models = comps[0]                   # (what a meta-model holding one model looks like)
    assert holder.get_params(deep=True)["models__l2"] == 10.0
    holder.set_params(models__l2=20.0)
    assert comps[0].l2 == 20.0


def test_grid_search_style_use(small):
    """What scikit-learn's tools do: clone, set_params, fit."""
    base = pytest.importorskip("sklearn.base")
    proto = recmf.ALS(factors=4, iterations=2, seed=1)
    results = []
    for reg in (1.0, 10.0):
        m = base.clone(proto).set_params(regularization=reg).fit(small["train"])
        results.append(recmf.evaluate(m, small["val"], k=5)["recall@5"])
        assert proto.data_ is None and m.regularization == reg
    assert all(np.isfinite(results))


# ---------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------

def test_the_recmf_logger_reports_a_run(small, caplog):
    with caplog.at_level(logging.INFO, logger="recmf"):
        data = recmf.Interactions.from_frame(small["train"])
        recmf.BPRMF(**{**recmf.BPRMF._test_params(), "epochs": 30, "patience": 1, "eval_every": 1}).fit(
            data, val=small["val"])
    text = caplog.text
    assert f"{data.n_users} users x {data.n_items} items, {data.nnz} positives" in text
    assert "BPRMF fitted on" in text and "n_threads=2" in text
    assert "early stopping after epoch" in text
    assert all(r.name == "recmf" for r in caplog.records)


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

def test_every_cli_flag_has_help_with_its_default():
    """`recmf <command> --help` explains every flag and gives its default
    (required arguments excepted)."""
    import argparse

    from recmf import cli
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"recmf {name} {action.option_strings}: no help"
            if not action.required:
                assert "default" in action.help.lower(), f"recmf {name} {action.option_strings}: no default"
                checked += 1
    assert checked > 30
    run = " ".join(subparsers.choices["run"].format_help().split())
    assert "(default: the model's: neuralmf 64, bprmf 64)" in run     # --emb-dim, from the signatures
    assert "als 64" in run and "ease 250.0" in run


def test_cli_recommend_with_item_lists(tmp_path, small, capsys):
    import json

    from recmf import cli
    model = fitted_model("ease", small)
    path = tmp_path / "m.npz"
    model.save(path)
    allow = model.data_.item_ids[::4]
    (tmp_path / "allow.txt").write_text("\n".join(map(str, allow)) + "\n\n")
    (tmp_path / "block.txt").write_text(str(allow[0]) + "\n")
    users = [str(u) for u in small["users"][:3]]
    assert cli.main(["recommend", "--model", str(path), "--users", *users, "--k", "4", "--json",
                     "--items", str(tmp_path / "allow.txt"), "--exclude-items", str(tmp_path / "block.txt")]) == 0
    rows = json.loads(capsys.readouterr().out)
    want = model.recommend_frame(small["users"][:3], k=4, items=allow, exclude_items=allow[:1])
    assert [r["movie_id"] for r in rows] == want["movie_id"].tolist() and len(rows) == 12
    (tmp_path / "bad.txt").write_text("x1\n")
    assert cli.main(["recommend", "--model", str(path), "--users", *users,
                     "--items", str(tmp_path / "bad.txt")]) == 2
    assert "item id 'x1' is not an integer" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", str(path), "--users", *users,
                     "--items", str(tmp_path / "missing.txt")]) == 2
    assert "--items" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# types
# ---------------------------------------------------------------------------

def test_core_stub_lists_what_the_module_has():
    """recmf/_core.pyi (shipped with py.typed) names every entry point of
    the compiled core and no other: a new or renamed one needs its stub."""
    import ast
    from pathlib import Path

    from recmf import _core
    stub = Path(recmf.__file__).with_name("_core.pyi")
    assert stub.is_file() and stub.with_name("py.typed").is_file()
    tree = ast.parse(stub.read_text())
    in_stub = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))} | \
        {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    in_module = {n for n in dir(_core) if not n.startswith("__")}
    assert in_module == in_stub, (sorted(in_module - in_stub), sorted(in_stub - in_module))


def test_public_api_has_type_hints():
    import inspect
    for f in (recmf.temporal_split, recmf.evaluate, recmf.select, recmf.Interactions.from_frame,
              recmf.Interactions.from_scipy, recmf.Recommender.recommend, recmf.Recommender.fit,
              recmf.Recommender.recommend_frame, recmf.Recommender.similar_items, recmf.load,
              recmf.set_config):
        assert inspect.signature(f).return_annotation is not inspect.Signature.empty, f.__qualname__
