"""Runtime behaviour: threads and BLAS settings, Ctrl-C during training,
and memory that stays flat over repeated fit/recommend."""
import _thread
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import recmf
from recmf import _core


@pytest.fixture(scope="module")
def small():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=150, n_items=200, seed=11)
    train, val, test = recmf.temporal_split(ratings)
    return recmf.Interactions.from_frame(train), test


def test_openblas_is_visible_to_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    libs = [info for info in threadpoolctl.threadpool_info() if info["internal_api"] == "openblas"]
    config = _core.build_info()["blas_config"]
    assert libs, "no OpenBLAS found by threadpoolctl"
    assert any(info["version"] and info["version"].split(".")[0] in config for info in libs)


def test_threaded_blas_runs_on_openmp_threads_and_agrees_with_numpy():
    # recmf hands OpenBLAS's per-thread jobs to OpenMP (csrc/runtime/blas.c) so the
    # two never compete for the cores; a job lost or run twice would show
    # here as wrong scores.  The product is large enough for OpenBLAS to
    # split it over both threads.
    info = _core.build_info()
    version = tuple(int(x) for x in info["blas_config"].split()[1].split(".")[:3])
    if info["openmp"] and version >= (0, 3, 27):
        assert info["blas_on_openmp"]
    rng = np.random.default_rng(0)
    n_users, n_items, dim = 1500, 2500, 64
    theta = (0.1 * rng.standard_normal((n_users + n_items) * dim)).astype(np.float32)
    users = np.arange(n_users, dtype=np.int32)
    before = _core.blas_threads(2)
    try:
        items, scores, lens = _core.recommend("bprmf", dict(n_users=n_users, n_items=n_items, emb_dim=dim), theta, users,
                                              None, 10, 2)
    finally:
        _core.blas_threads(before)
    U = theta[: n_users * dim].reshape(n_users, dim).astype(np.float64)
    V = theta[n_users * dim:].reshape(n_items, dim).astype(np.float64)
    full = U @ V.T
    assert (lens == 10).all()
    np.testing.assert_allclose(scores, np.take_along_axis(full, items.astype(np.int64), 1), atol=1e-5)
    # every returned list holds the best 10 scores (up to float rounding)
    tenth = -np.sort(-full, axis=1)[:, 9]
    assert (scores[:, -1] >= tenth - 1e-5).all()


@pytest.mark.parametrize("kind", [recmf.NeuralMF, recmf.BPRMF])
def test_caller_blas_threads_restored_after_fit_and_recommend(kind, small):
    data, test = small
    before = _core.blas_threads(1)
    try:
        model = kind(emb_dim=8, epochs=1, n_threads=2, batch_size=256).fit(data)
        assert _core.blas_threads() == 1
        model.recommend(test["user_id"].unique(), k=5)
        assert _core.blas_threads() == 1
    finally:
        _core.blas_threads(before)


def test_thread_count_does_not_change_sampling():
    # Sampling is sharded by position with one RNG stream per shard, so the
    # draws are the same whatever the thread count.
    data = recmf.Interactions.from_frame(recmf.datasets.synthetic_ratings(seed=2)[0])
    a = _core.sample_uniform(data.indptr, data.indices, data.n_items, 4, 5, 1, 1)
    b = _core.sample_uniform(data.indptr, data.indices, data.n_items, 4, 5, 1, 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", [recmf.NeuralMF, recmf.BPRMF])
def test_ctrl_c_stops_between_batches_and_keeps_a_usable_model(kind, small):
    data, test = small
    extra = {"triplets_per_epoch": 200_000} if kind is recmf.BPRMF else {}
    model = kind(emb_dim=8, epochs=10_000, batch_size=64, n_threads=2, **extra)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.warns(UserWarning, match="training interrupted"):
            model.fit(data)
    finally:
        timer.cancel()
    assert model.interrupted_
    hist = model.history
    assert 1 <= len(hist) < 10_000 and bool(hist["interrupted"].iloc[-1])
    assert np.isfinite(model.theta_).all()
    recs = model.recommend(test["user_id"].unique(), k=5)
    assert (recs != -1).all()


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif(bool(os.environ.get("RECMF_SANITIZER")),
                    reason="ASan keeps freed memory in quarantine, so RSS is no leak measure")
def test_repeated_fit_and_recommend_do_not_leak(small):
    data, test = small
    users = test["user_id"].unique()

    def cycle():
        for kind in (recmf.NeuralMF, recmf.BPRMF):
            extra = {"triplets_per_epoch": 5_000} if kind is recmf.BPRMF else {}
            m = kind(emb_dim=8, epochs=1, batch_size=256, n_threads=2, **extra).fit(data)
            m.recommend(users, k=10)
            m.score(users[:50], m.data_.item_ids[:50])
        recmf.evaluate(recmf.Popularity().fit(data), test)

    for _ in range(5):      # warm up allocator pools and caches
        cycle()
    start = _rss_mb()
    for _ in range(40):
        cycle()
    grown = _rss_mb() - start
    # One cycle allocates ~1 MB of arrays; a leak of even one weight vector
    # per call would add > 10 MB over 40 cycles.
    assert grown < 8, f"RSS grew by {grown:.1f} MB over 40 fit/recommend cycles"


def test_unknown_training_keyword_is_rejected():
    theta = np.zeros(4, dtype=np.float32)
    with pytest.raises(TypeError, match="unknown training parameter 'learning_rate'"):
        _core.adam_step(theta, theta.copy(), theta.copy(), theta.copy(), 1, learning_rate=0.1)


def test_concurrent_fits_from_python_threads_equal_sequential_ones(small):
    # fit/recommend release the GIL; models trained at the same time from
    # several Python threads (each with its own OpenMP team, OpenBLAS jobs
    # included) must come out bit-identical to the same models trained one
    # after the other, and nothing may deadlock.
    data, test = small
    users = test["user_id"].unique()

    def run(kind, out, key):
        model = kind(emb_dim=16, epochs=2, seed=3, n_threads=2, batch_size=256).fit(data)
        out[key] = (model.theta_.copy(), model.recommend(users, k=5))

    kinds = {"nmf": recmf.NeuralMF, "bpr": recmf.BPRMF}
    alone = {}
    for name, kind in kinds.items():
        run(kind, alone, name)
    together = {}
    threads = [threading.Thread(target=run, args=(kind, together, (name, r)), daemon=True)
               for r in range(2) for name, kind in kinds.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "concurrent fits did not finish"
    assert len(together) == 4
    for (name, _), (theta, recs) in together.items():
        np.testing.assert_array_equal(theta, alone[name][0])
        np.testing.assert_array_equal(recs, alone[name][1])


def test_concurrent_threaded_sgemm_through_openmp():
    # Products large enough for OpenBLAS to split into jobs, from two Python
    # threads at once: two OpenMP teams run OpenBLAS jobs side by side.
    rng = np.random.default_rng(5)
    n_users, n_items, dim = 1200, 2500, 64
    theta = (0.1 * rng.standard_normal((n_users + n_items) * dim)).astype(np.float32)
    users = np.arange(n_users, dtype=np.int32)
    config = dict(n_users=n_users, n_items=n_items, emb_dim=dim)
    want = _core.recommend("bprmf", config, theta, users, None, 10, 2)
    got = [None] * 4

    def run(r):
        got[r] = _core.recommend("bprmf", config, theta, users, None, 10, 2)

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "concurrent sgemm did not finish"
    for out in got:
        for a, b in zip(out, want):
            np.testing.assert_array_equal(a, b)


_OTHER_CALLER = textwrap.dedent("""
    import ctypes, numpy as np, recmf
    # recmf's own OpenBLAS (loaded for recmf alone: opened by its path)
    lib = ctypes.CDLL(recmf.build_info()["blas_library"])
    pre = "scipy_" if hasattr(lib, "scipy_cblas_sgemm") else ""
    sgemm = getattr(lib, pre + "cblas_sgemm")
    sgemm.restype = None
    sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                           ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                           ctypes.c_void_p, ctypes.c_int]
    getattr(lib, pre + "openblas_set_num_threads")(2)
    rng = np.random.default_rng(0)
    m, n, k = 600, 700, 300
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    c = np.zeros((m, n), dtype=np.float32)
    sgemm(101, 111, 111, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, n, 0.0, c.ctypes.data, n)
    print(float(np.abs(c - a.astype(np.float64) @ b).max()))
""")


def test_blas_jobs_survive_a_team_smaller_than_the_job_count(tmp_path):
    # The OpenMP callback serves every caller of recmf's OpenBLAS, not only
    # recmf (any code that opens recmf.libs/'s library).  Here a 2-job sgemm meets OMP_THREAD_LIMIT=1, so OpenMP can
    # give it a team of one: OpenBLAS's jobs wait on each other, and without
    # the fallback (a thread of its own for each job the team cannot take)
    # this deadlocked.
    if not _core.build_info()["blas_on_openmp"]:
        pytest.skip("this OpenBLAS runs its own threads")
    # the child imports the recmf this test imported (built in place or installed)
    root = os.path.dirname(os.path.dirname(os.path.abspath(recmf.__file__)))
    env = dict(os.environ, OMP_THREAD_LIMIT="1", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", _OTHER_CALLER], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) < 1e-3


_SPIN = textwrap.dedent("""
    import os, recmf
    print(recmf._runtime.applied, os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))
""")


@pytest.mark.parametrize("user_env, want", [
    ({}, f"{recmf._runtime.SPIN_COUNT} None None"),        # bounded for libgomp, env given back
    ({"GOMP_SPINCOUNT": "123"}, "None 123 None"),          # the user's setting wins
    ({"OMP_WAIT_POLICY": "passive"}, "None None passive"),
])
def test_openmp_waiting_is_bounded_unless_the_user_chose(user_env, want, tmp_path):
    # libgomp reads GOMP_SPINCOUNT once, as it loads with recmf._core;
    # recmf sets it for that moment only (recmf/_runtime.py), so programs
    # started later see the user's environment.
    root = os.path.dirname(os.path.dirname(os.path.abspath(recmf.__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user_env, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", _SPIN], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == want
