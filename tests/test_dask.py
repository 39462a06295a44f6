"""recmf.dask on a real cluster: a scheduler and two worker processes on
127.0.0.1 (LocalCluster), and once as a user with a cluster runs it
(``dask scheduler`` + two ``dask worker`` processes, connected by address).

Every distributed result is compared with the single-machine function on
the same data, computed in the same run: split row sets, popularity,
Interactions, recommendations, and the evaluation report.  Models score
with one thread on both sides, so BLAS rounding cannot differ.
"""
from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe", reason='recmf.dask needs the dask extra: pip install "recmf[dask]"')
distributed = pytest.importorskip("distributed", reason='recmf.dask needs distributed: pip install "recmf[dask]"')
pytest.importorskip("pyarrow", reason='recmf.dask needs pyarrow: pip install "recmf[dask]"')

import dask  # noqa: E402

import recmf  # noqa: E402
import recmf.dask as rd  # noqa: E402
from conftest import HAVE_ML1M, HAVE_ML100K, ML1M_DIR, ML100K_DIR  # noqa: E402

pytestmark = [pytest.mark.timeout(240),
              # from_pandas ships the frames in the graph; fine on loopback.
              pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")]


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    """A scheduler and two single-threaded worker processes on loopback."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    with distributed.Client(cluster, timeout=60) as c:
        yield c
    cluster.close(timeout=30)


@pytest.fixture(scope="module")
def ml100k():
    """ML-100K (synthetic data of the same kind when absent): ratings,
    movies and recmf's single-machine split."""
    if HAVE_ML100K:
        ratings, _, movies = recmf.load_movielens(ML100K_DIR)
    else:
        ratings, _, movies = recmf.datasets.synthetic_ratings(n_users=400, n_items=600, seed=4)
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    return dict(ratings=ratings, movies=movies, train=train, val=val, test=test)


@pytest.fixture(scope="module")
def bpr(ml100k):
    model = recmf.BPRMF(emb_dim=16, epochs=2, triplets_per_epoch=50_000, seed=0, n_threads=1)
    return model.fit(ml100k["train"])


def _local(model):
    """The model as the workers run it: one thread."""
    model = copy.copy(model)
    model.n_threads = 1
    return model


def _same_rows(got, want):
    """Same rows (index and values) in the same order; Dask may hand
    strings back in its own string dtype."""
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def _same_report(got, want):
    assert list(got) == list(want)
    for key, value in want.items():
        if key.startswith(("n_users", "coverage", "avg_popularity")):
            assert got[key] == value or (np.isnan(got[key]) and np.isnan(value)), key
        else:  # the mean of a float sum taken in another order
            np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=0, err_msg=key)


# ---------------------------------------------------------------------------
# split, popularity, Interactions
# ---------------------------------------------------------------------------

def test_split_equals_single_machine(client, ml100k):
    ddf = dd.from_pandas(ml100k["ratings"].sample(frac=1, random_state=0), npartitions=5, sort=False)
    want = recmf.temporal_split(ddf.compute(), n_val=1, n_test=5, min_train=5)
    got = dask.compute(*rd.temporal_split(ddf, n_val=1, n_test=5, min_train=5, npartitions=3))
    for g, w in zip(got, want):
        _same_rows(g, w)


@pytest.mark.skipif(not HAVE_ML1M, reason=f"MovieLens-1M not found in {ML1M_DIR}")
def test_split_and_popularity_ml1m(client):
    ratings, _, _ = recmf.load_movielens(ML1M_DIR)
    want = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    ddf = dd.from_pandas(ratings, npartitions=4)
    parts = dask.persist(*rd.temporal_split(ddf, n_val=1, n_test=5, min_train=5))
    got = dask.compute(*parts)
    assert [len(g) for g in got] == [963_969, 6_040, 30_200]
    for g, w in zip(got, want):
        _same_rows(g, w)
    pop = rd.popularity(parts[0], threshold=4)
    ref = want[0][want[0]["rating"] >= 4].groupby("movie_id")["user_id"].nunique()
    assert pop.head(5).to_dict() == {2858: 2766, 260: 2557, 1196: 2461, 1198: 2213, 2028: 2194}
    pd.testing.assert_series_equal(pop.sort_index(), ref.rename("popularity"), check_dtype=False)


def test_split_ties_keep_input_order_across_partitions(client):
    """Equal timestamps everywhere, users spread over every partition,
    string ids and datetimes: the shuffle must not reorder ties."""
    rng = np.random.default_rng(3)
    n = 3_000
    frame = pd.DataFrame({
        "who": np.array([f"u{k:03d}" for k in range(120)])[rng.integers(0, 120, n)],
        "what": rng.integers(0, 50, n),
        "when": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 3, n), unit="D"),
        "row": np.arange(n),
    }, index=rng.permutation(n) * 7)
    want = recmf.temporal_split(frame, 2, 3, 4, user_col="who", time_col="when")
    ddf = dd.from_pandas(frame, npartitions=7, sort=False)
    got = dask.compute(*rd.temporal_split(ddf, 2, 3, 4, user_col="who", time_col="when"))
    for g, w in zip(got, want):
        _same_rows(g, w)


def test_popularity_equals_recmf_popularity(client, ml100k):
    train = ml100k["train"]
    doubled = pd.concat([train, train.iloc[:500]])       # repeated pairs count once
    got = rd.popularity(dd.from_pandas(doubled, npartitions=4), threshold=4)
    want = recmf.Popularity().fit(train).popular_items(10 ** 6)
    assert got.index.tolist() == want.index.tolist()        # order, ties to the lower id
    assert got.tolist() == want.tolist()
    ref = train[train["rating"] >= 4].groupby("movie_id")["user_id"].nunique()
    assert got.sort_index().tolist() == ref.tolist()


@pytest.mark.parametrize("seen", ["positives", "rated"])
def test_interactions_from_dask_equals_from_frame(client, ml100k, seen):
    train = ml100k["train"]
    got = recmf.Interactions.from_dask(dd.from_pandas(train, npartitions=4), threshold=4, seen=seen)
    want = recmf.Interactions.from_frame(train, threshold=4, seen=seen)
    assert got == want
    assert got.n_duplicates == want.n_duplicates


def test_from_dask_keeps_each_users_time_order():
    """Field case 11 (the distributed path keeps what the local path keeps):
    from_dask carries the time order of from_frame of the same rows -- ties
    in input order across partitions, repeated pairs at their latest time --
    so the models that use it agree, on both seen rules; without a time
    column neither has one, and `==` tells an order from none."""
    rng = np.random.default_rng(0)
    n = 1500
    df = pd.DataFrame({"user_id": rng.integers(0, 50, n), "movie_id": rng.integers(0, 60, n),
                       "rating": rng.integers(3, 6, n), "timestamp": rng.integers(0, 40, n)})
    with dask.config.set(scheduler="synchronous"):
        ddf = dd.from_pandas(df, npartitions=3, sort=False)
        for seen in ("positives", "rated"):
            local = recmf.Interactions.from_frame(ddf.compute(), seen=seen)
            dist = recmf.Interactions.from_dask(ddf, seen=seen)
            assert dist.positions is not None and dist == local
            np.testing.assert_array_equal(dist.positions, local.positions)
        for make in (recmf.ItemTransition, lambda: recmf.EASE(l2=10.0, half_life=2.0, n_threads=1)):
            np.testing.assert_array_equal(make().fit(dist).recommend(local.user_ids, k=3),
                                          make().fit(local).recommend(local.user_ids, k=3))
        bare = recmf.Interactions.from_dask(ddf.drop(columns="timestamp"))
        assert bare.positions is None and bare == recmf.Interactions.from_frame(df, time_col=None)
        assert bare != local and local != bare
        renamed = recmf.Interactions.from_dask(ddf.rename(columns={"timestamp": "t"}), time_col="t")
        assert renamed == recmf.Interactions.from_frame(df)
        with pytest.raises(TypeError, match=r"^threshold must be a number, got bool"):
            recmf.Interactions.from_dask(ddf, threshold=True)
        with pytest.raises(TypeError, match=r"^threshold must be a number, got bool"):
            recmf.Interactions.from_frame(df, threshold=True)


def test_from_dask_too_big_says_how_big(client, ml100k):
    train = ml100k["train"]
    n_pos = int((train["rating"] >= 4).sum())
    with pytest.raises(MemoryError, match=f"{n_pos:,} positive rows .* MiB"):
        recmf.Interactions.from_dask(dd.from_pandas(train, npartitions=2), max_bytes=1000)


def test_bad_input_names_the_argument(client, ml100k):
    with pytest.raises(TypeError, match="ddf must be a dask.dataframe.DataFrame"):
        rd.temporal_split(ml100k["ratings"])
    ddf = dd.from_pandas(ml100k["ratings"], npartitions=2)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['uid'\]"):
        rd.temporal_split(ddf, user_col="uid")
    with pytest.raises(ValueError, match="n_test must be >= 0"):
        rd.temporal_split(ddf, n_test=-1)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        rd.popularity(ddf, threshold=float("nan"))
    with pytest.raises(ValueError, match="no positive rows"):
        recmf.Interactions.from_dask(ddf, threshold=99)
    with pytest.raises(recmf.NotFittedError):
        rd.recommend(recmf.BPRMF(), [1, 2])
    with pytest.raises(ValueError, match="k=5000 is larger"):
        rd.recommend(recmf.Popularity().fit(ml100k["train"]), [1, 2], k=5000)


# ---------------------------------------------------------------------------
# recommend
# ---------------------------------------------------------------------------

def test_recommend_equals_recommend_frame(client, ml100k, bpr):
    users = np.concatenate([ml100k["test"]["user_id"].unique(), [10 ** 9]])   # one unknown user
    got = rd.recommend(bpr, users, k=10, npartitions=6).compute()
    want = _local(bpr).recommend_frame(users, k=10)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    assert got["user_id"].nunique() == int((bpr.data_.user_index(users) >= 0).sum())
    assert bpr.n_threads == 1 and rd.recommend(bpr, users[:3]).npartitions >= 1


def test_recommend_from_a_dask_series_with_popular_fallback(client, ml100k, bpr):
    test = dd.from_pandas(ml100k["test"], npartitions=3)
    users = test["user_id"].unique()
    got = rd.recommend(bpr, users, k=5, unknown="popular", item_col="item").compute()
    want = _local(bpr).recommend_frame(users.compute().to_numpy(), k=5, unknown="popular",
                                       item_col="item")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


def test_recommend_with_history_equals_recommend_frame(client, ml100k, bpr):
    """The distributed recommend folds in a history= as the local one does
    (the frame goes to each worker once)."""
    val = ml100k["val"]
    users = np.concatenate([val["user_id"].unique()[:40], [10 ** 9]])
    history = pd.concat([val, val.assign(user_id=10 ** 9)])
    got = rd.recommend(bpr, users, k=10, history=history, npartitions=3).compute()
    want = _local(bpr).recommend_frame(users, k=10, history=history)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    assert not want.equals(_local(bpr).recommend_frame(users, k=10))   # the history mattered
    with pytest.raises(ValueError, match=r"^history is missing column"):
        rd.recommend(bpr, users, k=10, history=history.drop(columns="rating"))
    with pytest.raises(NotImplementedError, match="history="):
        rd.recommend(recmf.Popularity().fit(ml100k["train"]), users, history=history)


def test_popularity_names_the_item_column_as_locally(client, ml100k):
    train = ml100k["train"].rename(columns={"movie_id": "item"})
    got = rd.popularity(dd.from_pandas(train, npartitions=2), item_col="item")
    want = recmf.Popularity(item_col="item").fit(train).popular_items(10 ** 6)
    pd.testing.assert_series_equal(got, want)


def test_model_goes_to_each_worker_once(client, ml100k):
    pop = recmf.Popularity().fit(ml100k["train"])
    threads_before = pop.n_threads
    frame = rd.recommend(pop, ml100k["train"]["user_id"].unique(), k=3, npartitions=8)
    out = frame.persist()
    distributed.wait(out, timeout=60)
    held = [key for keys in client.has_what().values() for key in keys if "Popularity" in str(key)]
    # One scattered key, held by both workers; not one copy per task.
    assert len(set(held)) == 1 and len(held) == 2

    def threads_of_held_models(dask_worker):
        return [v.n_threads for key, v in dask_worker.data.items() if "Popularity" in str(key)]
    # One recmf thread per task on the workers (the copy sent), not all cores.
    assert client.run(threads_of_held_models) == {w: [1] for w in client.scheduler_info()["workers"]}
    assert len(out.compute()) == len(pop.recommend_frame(ml100k["train"]["user_id"].unique(), k=3))
    assert pop.n_threads == threads_before        # the caller's model is not changed


def _fast_params(cls):
    """Small settings for any registered model kind: the contract's
    ``_test_params()`` (which supplies required arguments, e.g. a Blend's
    components), made smaller where the signature allows."""
    import inspect
    small = {"epochs": 1, "iterations": 2, "emb_dim": 8, "factors": 8, "hidden_dim": 8,
             "triplets_per_epoch": 20_000, "seed": 0, "n_threads": 1, "verbose": False}
    names = inspect.signature(cls.__init__).parameters
    base = cls._test_params() if hasattr(cls, "_test_params") else {}
    return {**base, **{k: v for k, v in small.items() if k in names}}


def _model_kinds():
    if hasattr(recmf, "available_models"):
        return sorted(recmf.available_models().items())
    return [(c.kind, c) for c in (recmf.Popularity, recmf.NeuralMF, recmf.BPRMF)]


@pytest.mark.parametrize("kind,cls", _model_kinds(), ids=[k for k, _ in _model_kinds()])
def test_every_model_kind_scores_the_same_on_workers(client, ml100k, kind, cls):
    model = cls(**_fast_params(cls)).fit(ml100k["train"])
    users = ml100k["test"]["user_id"].unique()
    got = rd.recommend(model, users, k=10, npartitions=4).compute()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), _local(model).recommend_frame(users, k=10))
    test_ddf = dd.from_pandas(ml100k["test"], npartitions=3)
    _same_report(rd.evaluate(model, test_ddf, k=10, catalog=ml100k["movies"]["movie_id"]),
                 recmf.evaluate(_local(model), ml100k["test"], k=10, catalog=ml100k["movies"]["movie_id"]))


class SlowPopularity(recmf.Popularity):
    """Popularity that takes a while per partition, so a worker can be
    killed while the others are still running."""

    def _recommend_index(self, uidx, k, exclude_seen):
        time.sleep(0.4)
        return super()._recommend_index(uidx, k, exclude_seen)


def test_worker_killed_during_recommend(client, ml100k):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this file
    try:
        model = SlowPopularity().fit(ml100k["train"])
        users = ml100k["train"]["user_id"].unique()
        out = rd.recommend(model, users, k=10, npartitions=16).persist()
        futures = distributed.futures_of(out)
        deadline = time.monotonic() + 60
        while not any(f.done() for f in futures):
            assert time.monotonic() < deadline, "no partition finished within 60 s"
            time.sleep(0.05)
        busy = [addr for addr, keys in client.processing().items() if keys]
        pids = client.run(os.getpid)
        victim = busy[0] if busy else next(iter(pids))
        assert sum(f.done() for f in futures) < len(futures), "finished before the kill"
        os.kill(pids[victim], signal.SIGKILL)
        got = client.compute(out).result(timeout=120)
        assert victim not in client.scheduler_info()["workers"] or \
            client.run(os.getpid, workers=[victim]).get(victim) != pids[victim]
        want = recmf.Popularity().fit(ml100k["train"]).recommend_frame(users, k=10)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        client.wait_for_workers(2, timeout=60)


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------

def test_evaluate_default_coverage_users(client, ml100k, bpr):
    test = ml100k["test"]
    got = rd.evaluate(bpr, dd.from_pandas(test, npartitions=4), k=10,
                      catalog=ml100k["movies"]["movie_id"].unique())
    want = recmf.evaluate(_local(bpr), test, k=10, catalog=ml100k["movies"]["movie_id"].unique())
    _same_report(got, want)
    assert got["n_users_eval"] > 0 and 0 < got["coverage@10"] <= 1


def test_evaluate_options(client, ml100k, bpr):
    test = ml100k["test"]
    rng = np.random.default_rng(0)
    cov = rng.permutation(ml100k["ratings"]["user_id"].unique())[:300]
    pop = ml100k["train"]["movie_id"].value_counts()
    test_ddf = dd.from_pandas(test, npartitions=5)
    for kwargs in (dict(coverage_users=cov, item_popularity=pop),
                   dict(coverage_users=np.concatenate([cov, cov]), threshold=None, k=20),
                   dict(threshold=3, catalog=ml100k["train"]["movie_id"].unique())):
        k = kwargs.pop("k", 10)
        _same_report(rd.evaluate(bpr, test_ddf, k=k, **kwargs),
                     recmf.evaluate(_local(bpr), test, k=k, **kwargs))


def test_evaluate_per_user_equals_single_machine(client, ml100k, bpr):
    """per_user=True gives recmf.evaluate's per-user frame exactly, in its
    order (users by their first relevant row), after the shuffle."""
    test = ml100k["test"].sample(frac=1, random_state=1)
    report, per = rd.evaluate(bpr, dd.from_pandas(test, npartitions=4, sort=False), k=10, per_user=True)
    want_report, want = recmf.evaluate(_local(bpr), test, k=10, per_user=True)
    _same_report(report, want_report)
    pd.testing.assert_frame_equal(per, want)
    ddf = dd.from_pandas(ml100k["test"], npartitions=3)
    report, per = rd.evaluate(bpr, ddf, k=5, per_user=True, threshold=None)
    pd.testing.assert_frame_equal(per, recmf.evaluate(_local(bpr), ddf.compute(), k=5, per_user=True,
                                                      threshold=None)[1])


def test_evaluate_errors_name_test_ddf(client, ml100k, bpr):
    """Errors raised from the partitions name the argument, test_ddf (the
    partitions go through recmf.evaluate, whose own argument is test)."""
    test = ml100k["test"].assign(rating=np.where(np.arange(len(ml100k["test"])) == 0, np.nan, 5.0))
    with pytest.raises(ValueError, match=r"^test_ddf\['rating'\] has a missing or infinite value"):
        rd.evaluate(bpr, dd.from_pandas(test, npartitions=2), k=10)


def test_evaluate_mapping_model(client, ml100k):
    test = ml100k["test"]
    lists = {u: [50, 100, 181, 258, 1] for u in test["user_id"].unique()[::2]}
    catalog = ml100k["movies"]["movie_id"]
    _same_report(rd.evaluate(lists, dd.from_pandas(test, npartitions=3), k=5, catalog=catalog),
                 recmf.evaluate(lists, test, k=5, catalog=catalog))


def test_whole_workflow_on_the_cluster(client, ml100k):
    """split -> Interactions -> fit on the client -> recommend -> evaluate,
    the test frame straight from the split (no second shuffle)."""
    ddf = dd.from_pandas(ml100k["ratings"], npartitions=4)
    train, val, test = dask.persist(*rd.temporal_split(ddf, 1, 5, 5))
    data = recmf.Interactions.from_dask(train)
    assert data == recmf.Interactions.from_frame(ml100k["train"])
    model = recmf.Popularity().fit(data)
    got = rd.evaluate(model, test, k=10, shuffle=False, catalog=ml100k["movies"]["movie_id"],
                      coverage_users=ml100k["test"]["user_id"].unique())
    want = recmf.evaluate(model, ml100k["test"], k=10, catalog=ml100k["movies"]["movie_id"],
                          coverage_users=ml100k["test"]["user_id"].unique())
    _same_report(got, want)


# ---------------------------------------------------------------------------
# a cluster started as a user would: dask scheduler + dask worker processes
# ---------------------------------------------------------------------------

def _dask_cli():
    exe = Path(sys.executable).parent / "dask"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_scheduler_and_two_workers(ml100k, bpr, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "cluster.log", "w")
    procs = [subprocess.Popen(_dask_cli() + ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                                             "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT)]
    try:
        deadline = time.monotonic() + 60
        while True:      # the scheduler is up when its port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert procs[0].poll() is None, (tmp_path / "cluster.log").read_text()
                assert time.monotonic() < deadline, "scheduler did not start in 60 s"
                time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                _dask_cli() + ["worker", address, "--nthreads", "1", "--nworkers", "1",
                               "--host", "127.0.0.1", "--no-dashboard"],
                stdout=log, stderr=subprocess.STDOUT))
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
            assert len(c.scheduler_info()["workers"]) == 2
            users = ml100k["test"]["user_id"].unique()
            pd.testing.assert_frame_equal(rd.recommend(bpr, users, k=10).compute().reset_index(drop=True),
                                          _local(bpr).recommend_frame(users, k=10))
            _same_report(rd.evaluate(bpr, dd.from_pandas(ml100k["test"], npartitions=3), k=10),
                         recmf.evaluate(_local(bpr), ml100k["test"], k=10))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        log.close()


# ---------------------------------------------------------------------------
# scale data and the README
# ---------------------------------------------------------------------------

def test_fast_synthetic_is_seeded_and_shaped(tmp_path):
    from recmf.datasets import synthetic_ratings, write_parquet
    shape = dict(n_users=2_000, n_items=5_000, n_ratings=150_000, ratings_per_user=(20, 600))
    a, users, movies = synthetic_ratings(**shape, seed=7, fast=True)
    b = synthetic_ratings(**shape, seed=7, fast=True)[0]
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 150_000 and not a.duplicated(["user_id", "movie_id"]).any()
    per_user = a.groupby("user_id").size()
    assert per_user.min() >= 20 and per_user.max() <= 600 and len(per_user) == 2_000
    assert per_user.max() > 5 * per_user.median()                  # long-tailed activity
    per_item = a["movie_id"].value_counts()
    assert per_item.iloc[0] > 10 * per_item.median()                # long-tailed popularity
    assert set(a["rating"].unique()) == {1, 2, 3, 4, 5}
    s = a.sort_values(["user_id", "timestamp"], kind="stable")
    ties = (s["user_id"].diff().eq(0) & s["timestamp"].diff().eq(0)).sum()
    assert ties > len(a) // 10                                       # ties in time, as MovieLens
    assert set(a["movie_id"]) <= set(movies["movie_id"]) and len(users) == 2_000
    files = write_parquet(a, tmp_path / "log", n_files=5, sort_by="timestamp")
    assert len(files) == 5
    back = pd.read_parquet(tmp_path / "log")
    assert back.sort_values(["user_id", "movie_id"]).reset_index(drop=True).equals(
        a.sort_values(["user_id", "movie_id"]).reset_index(drop=True))
    with pytest.raises(ValueError, match="not empty"):
        write_parquet(a, tmp_path / "log")
    with pytest.raises(ValueError, match="n_ratings=10 is outside"):
        synthetic_ratings(n_users=10, n_items=50, n_ratings=10, fast=True)


def _readme_block(title):
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_more_than_one_machine_runs(tmp_path):
    """The README's example, as written, run as a script on small data."""
    code = _readme_block("More than one machine")
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, timeout=200,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "recall@10" in done.stdout
    assert len(pd.read_parquet(tmp_path / "recs")) > 0    # the recommendations were written


def test_string_ids_and_popular_fallback(client, ml100k):
    """String ids through the split, recommend and evaluate (the replay of
    the coverage lists uses the model's id kind), unknown="popular"."""
    def named(frame):
        return frame.assign(user_id="u" + frame["user_id"].astype(str),
                            movie_id="m" + frame["movie_id"].astype(str))
    ratings = named(ml100k["ratings"])
    train, val, test = recmf.temporal_split(ratings, 1, 5, 5)
    got = dask.compute(*rd.temporal_split(dd.from_pandas(ratings, npartitions=3), 1, 5, 5))
    for g, w in zip(got, (train, val, test)):
        _same_rows(g, w)
    model = recmf.Popularity().fit(train)
    users = test["user_id"].unique()
    pd.testing.assert_frame_equal(
        rd.recommend(model, users, k=5, npartitions=3).compute().reset_index(drop=True),
        model.recommend_frame(users, k=5), check_dtype=False)
    catalog = "m" + ml100k["movies"]["movie_id"].astype(str)
    for unknown in ("empty", "popular"):
        _same_report(rd.evaluate(model, dd.from_pandas(test, npartitions=3), k=10, catalog=catalog,
                                 unknown=unknown),
                     recmf.evaluate(model, test, k=10, catalog=catalog, unknown=unknown))
