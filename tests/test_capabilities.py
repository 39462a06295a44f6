"""Capability contracts every registered model runs (tests/test_contract.py
holds the API contract): it learns on planted structure, iterative fits
keep a history and obey callbacks and early stopping, whole score rows
agree with pairs and rankings, ``seen="rated"`` data is respected, fold-in
(where a model has it) behaves, and repeated use of its C entry points does
not leak.  Parametrized over ``recmf.available_models()``: a new model runs
all of it by registering.  Behaviour a model lacks is detected by what it
does (a ``history`` after fit, ``NotImplementedError`` for fold-in), never
by a list of kinds."""
import gc
import os

import numpy as np
import pandas as pd
import pytest

import recmf

from test_contract import KINDS, MODELS, make  # noqa: E402  (the shared contract's model factory)
N_GROUPS, PER_GROUP = 4, 24


def planted(shares=(0.5, 0.2, 0.2, 0.1), n_users=240, n_train=10, n_test=3, seed=0):
    """Users in groups; each group's items in a cycle; a user watched
    n_train consecutive items of its group's cycle, in time order, and
    watches the next n_test afterwards.  The biggest group's items have the
    highest ids, so a ranker that ignores the data (constant scores, ties
    to the lower item) recommends the smallest group's."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(len(shares), size=n_users, p=shares)
    train, test = [], []
    for u, g in enumerate(groups):
        base = (N_GROUPS - 1 - g) * PER_GROUP
        start = rng.integers(PER_GROUP)
        for t in range(n_train + n_test):
            row = (u, base + (start + t) % PER_GROUP, 5.0, 1000 * u + t)
            (train if t < n_train else test).append(row)
    cols = ["user_id", "movie_id", "rating", "timestamp"]
    return pd.DataFrame(train, columns=cols), pd.DataFrame(test, columns=cols), groups


@pytest.fixture(scope="module")
def world():
    train, test, groups = planted()
    return dict(train=train, test=test, groups=groups, data=recmf.Interactions.from_frame(train))


def fit(kind, world, **overrides):
    """A fitted model: on the Interactions (they carry the time order, for
    models that need it)."""
    return make(kind, **overrides).fit(world["data"])


def own_group_auc(rows, data, test, groups):
    """Mean over users of P(a user's next item outscores an item of another
    group) -- ties count half: 0.5 for scores that ignore the data."""
    out = []
    for r, uid in enumerate(test["user_id"].unique()):
        pos = data.item_index(test.loc[test["user_id"] == uid, "movie_id"].to_numpy())
        g = groups[uid]
        own = data.item_index(np.arange((N_GROUPS - 1 - g) * PER_GROUP, (N_GROUPS - g) * PER_GROUP))
        neg = np.setdiff1d(np.arange(data.n_items), own)
        p, n = rows[r, pos][:, None], rows[r, neg][None, :]
        out.append((p > n).mean() + 0.5 * (p == n).mean())
    return float(np.mean(out))


# -- it learns -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_learns_planted_structure(kind, world):
    # The items a user goes on to watch (the next ones of its group) score
    # above the other groups' items.  Scores that ignore the data get 0.5
    # (checked as the control); popularity alone reaches ~0.65 here.
    model = fit(kind, world)
    data, test = model.data_, world["test"]
    users = data.user_index(test["user_id"].unique()).astype(np.int32)
    rows = model._score_all(users).astype(np.float64)
    auc = own_group_auc(rows, data, test, world["groups"])
    assert own_group_auc(np.zeros_like(rows), data, test, world["groups"]) == 0.5
    assert auc >= 0.6, f"{kind}: next items outscore other groups' with probability {auc:.3f}"
    # and the lists show it: more next items found than by a constant ranker
    report = recmf.evaluate(model, test, k=5)
    const = {u: list(range(5)) for u in test["user_id"].unique()}
    chance = recmf.evaluate(const, test, k=5, catalog=data.item_ids)
    assert report["hitrate@5"] >= 2 * chance["hitrate@5"] + 0.05, (report, chance)


# -- iterative fit ---------------------------------------------------------------

def _epochs_param(model):
    params = model.get_params()
    return next((p for p in ("epochs", "iterations") if p in params), None)


@pytest.mark.parametrize("kind", KINDS)
def test_iterative_fit_history_callback_and_early_stopping(kind, world):
    probe = fit(kind, world)
    history = getattr(probe, "history", None)
    if history is None:
        pytest.skip(f"{MODELS[kind].__name__} has no epochs")
    epochs = _epochs_param(probe)
    n = getattr(probe, epochs)
    assert list(history["epoch"]) == list(range(1, n + 1))
    assert {"loss", "n_pairs", "seconds"} <= set(history.columns)
    assert np.isfinite(history["loss"]).all() and (history["n_pairs"] > 0).all()

    # the callback sees every epoch's row; False stops after that epoch
    seen = []
    model = make(kind).fit(world["data"], callback=lambda m, row: seen.append(dict(row)))
    assert [r["epoch"] for r in seen] == list(range(1, n + 1))
    assert [r["loss"] for r in seen] == list(model.history["loss"])
    stopped = make(kind).fit(world["data"], callback=lambda m, row: row["epoch"] < 2)
    assert list(stopped.history["epoch"]) == [1, 2]

    # early stopping: evaluated every epoch, stops after `patience` epochs
    # without improvement and keeps the best epoch's weights
    if "patience" not in probe.get_params():
        return
    weights = {}

    def keep(m, row):
        weights[row["epoch"]] = {k: np.array(v, copy=True) for k, v in m._arrays().items()}

    long = make(kind, **{epochs: 12, "eval_every": 1, "patience": 1}).fit(
        world["data"], val=world["test"], callback=keep)
    h = long.history
    assert "val_recall" in h.columns and h["val_recall"].notna().all()
    best = int(h.loc[h["val_recall"].idxmax(), "epoch"])
    assert long.best_epoch_ == best
    if len(h) < 12:           # stopped early: the last epoch did not improve on the best
        assert h["val_recall"].iloc[-1] <= h["val_recall"].max() and best < len(h)
    for name, value in long._arrays().items():
        np.testing.assert_array_equal(value, weights[best][name], err_msg=name)


# -- whole rows ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_whole_rows_agree_with_pairs_and_rankings(kind, world):
    # _score_all (what Blend combines) against two other paths: score() of
    # every pair, and the model's own recommend over the whole catalogue
    # (scores put back in their items' columns).  For every model at least
    # one of the two is computed apart from _score_all.
    model = fit(kind, world)
    d = model.data_
    users = np.array([0, 5, 7, 5, d.n_users - 1], dtype=np.int32)
    rows = model._score_all(users)
    assert rows.dtype == np.float32 and rows.shape == (len(users), d.n_items)
    pairs = model._score_index(np.repeat(users, d.n_items),
                               np.tile(np.arange(d.n_items, dtype=np.int32), len(users)))
    np.testing.assert_allclose(rows, pairs.reshape(rows.shape), rtol=1e-5, atol=1e-6)
    items, scores, lens = model._recommend_index(users, d.n_items, False)
    assert (lens == d.n_items).all()
    ranked = np.empty_like(rows)
    ranked[np.arange(len(users))[:, None], items] = scores
    np.testing.assert_allclose(rows, ranked, rtol=1e-5, atol=1e-6)


# -- seen="rated" ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_rated_items_are_never_recommended(kind, world):
    # Ratings below the threshold are not positives, but with seen="rated"
    # no rated item is recommended again -- also to a user whose ratings
    # are all below it (unknown to the model: the popular items, minus his).
    low = world["train"].groupby("user_id").head(3).assign(rating=1.0)
    low = low.assign(movie_id=(low["movie_id"] + PER_GROUP // 2) % (N_GROUPS * PER_GROUP))
    shy = pd.DataFrame({"user_id": 10 ** 6, "movie_id": [90, 91, 92], "rating": 1.0, "timestamp": 0})
    frame = pd.concat([world["train"], low, shy], ignore_index=True)
    data = recmf.Interactions.from_frame(frame, seen="rated")
    model = make(kind).fit(data)
    rated = frame.groupby("user_id")["movie_id"].agg(set)
    users = np.append(world["train"]["user_id"].unique()[:60], 10 ** 6)
    recs = model.recommend(users, k=10, unknown="popular")
    for u, row in zip(users, recs):
        assert not set(row.tolist()) & rated[u], f"user {u}: a rated item was recommended"
    assert (recs[:-1] >= 0).all() and (recs[-1] >= 0).all()


# -- fold-in ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_fold_in(kind, world):
    model = fit(kind, world)
    train = world["train"]
    some = train["user_id"].unique()[:5]
    hist = train[train["user_id"].isin(some)]
    new = hist.assign(user_id=hist["user_id"] + 10 ** 6)     # the same histories, new users
    try:
        recs = model.recommend(new["user_id"].unique(), k=5, history=new)
    except NotImplementedError as e:
        assert type(model).__name__ in str(e) and "history" in str(e)
        return
    # the history's items are not recommended back; the same history gives
    # the same list whoever it belongs to; a user absent from the history
    # keeps the model's own list
    for u, row in zip(new["user_id"].unique(), recs):
        assert (row >= 0).all() and not set(row.tolist()) & set(new.loc[new["user_id"] == u, "movie_id"])
    renamed = hist.assign(user_id=hist["user_id"] + 2 * 10 ** 6)
    np.testing.assert_array_equal(recs, model.recommend(renamed["user_id"].unique(), k=5, history=renamed))
    other = train["user_id"].unique()[10]
    np.testing.assert_array_equal(model.recommend([other], k=5, history=new), model.recommend([other], k=5))


# -- the leak loop ---------------------------------------------------------------

def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif(bool(os.environ.get("RECMF_SANITIZER")),
                    reason="ASan keeps freed memory in quarantine, so RSS is no leak measure")
@pytest.mark.parametrize("kind", KINDS)
def test_repeated_use_does_not_leak(kind, world):
    # fit, recommend (with and without seen items, from a history), score,
    # whole rows and neighbours -- every C entry point the model has -- 30
    # times: the process RSS stays flat.  A leaked weight vector or score
    # block per call would add tens of MB.
    data, train = world["data"], world["train"]
    users = train["user_id"].unique()[:50]
    hist = train[train["user_id"].isin(users[:5])]

    def cycle():
        model = make(kind).fit(data)
        model.recommend(users, k=10)
        model.recommend(users, k=10, exclude_seen=False)
        model.score(users, np.repeat(data.item_ids[0], len(users)))
        model._score_all(np.arange(20, dtype=np.int32))
        for call in (lambda: model.recommend(users[:5], k=5, history=hist),
                     lambda: model.similar_items(data.item_ids[:10], k=5)):
            try:
                call()
            except NotImplementedError:
                pass

    for _ in range(5):
        cycle()
    gc.collect()
    start = _rss_mb()
    for _ in range(30):
        cycle()
    gc.collect()
    grown = _rss_mb() - start
    assert grown < 6, f"{kind}: RSS grew by {grown:.1f} MB over 30 cycles"
