"""Driver for tests/test_fork.py: each scenario runs in its own interpreter
(started by the test with a timeout), so a hang cannot freeze the suite.

    python fork_worker.py SCENARIO

Every scenario first trains and scores in this process with n_threads=2
(which starts recmf's OpenMP thread pool), then does the same work in a
child or worker process and compares.  Exit status 0 and a last line "OK"
when the child's results equal this process's; anything else is a failure.
A child that does not finish within CHILD_TIMEOUT seconds is killed and
reported as a hang.
"""
import os
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd

import recmf
from recmf import _core

CHILD_TIMEOUT = 120.0
KINDS = ("NeuralMF", "BPRMF")


def train_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user_id": rng.integers(0, 60, 600), "movie_id": rng.integers(0, 80, 600),
                         "rating": 5})


def work(kind):
    """Fit with n_threads=2 and recommend: (theta, recommendations)."""
    train = train_frame()
    params = dict(emb_dim=8, epochs=2, batch_size=64, seed=0, n_threads=2)
    if kind == "NeuralMF":
        params["hidden_dim"] = 16
    model = getattr(recmf, kind)(**params).fit(train)
    return model.theta_, model.recommend(np.unique(train["user_id"]), k=5)


def big_product():
    """A top-10 whose sgemm OpenBLAS splits into jobs on recmf's threads."""
    rng = np.random.default_rng(5)
    n_users, n_items, dim = 1500, 2500, 64
    theta = (0.1 * rng.standard_normal((n_users + n_items) * dim)).astype(np.float32)
    return _core.recommend("bprmf", dict(n_users=n_users, n_items=n_items, emb_dim=dim), theta,
                           np.arange(n_users, dtype=np.int32), None, 10, 2)


def everything():
    out = {kind: work(kind) for kind in KINDS}
    out["big"] = big_product()
    return out


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def wait_child(pid):
    t0 = time.monotonic()
    while time.monotonic() - t0 < CHILD_TIMEOUT:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    fail(f"child hung (killed after {CHILD_TIMEOUT:.0f} s)")


def child_checks(want, one_thread):
    """Runs in the forked child; returns an exit code."""
    info = _core.build_info()
    if not info["forked_child"] or info["forked_one_thread"] != one_thread:
        return 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = everything()
        again = work("NeuralMF")
    if not same(got, want) or not same(again, want["NeuralMF"]):
        return 11
    notes = [w for w in caught if "fork() child" in str(w.message)]
    if len(notes) != (1 if one_thread else 0):
        return 12
    if info["flush_subnormals"] and info["blas_on_openmp"]:
        # OpenBLAS's jobs in the child still split as in the parent and
        # run flushed: on the team, or on threads of their own when the
        # regions are down to one thread.
        a = np.full((512, 64), 1e-20, np.float32)
        modes, caller, c, jobs = _core._fp_probe(2, a, a.T.copy())
        team = [3, -1] if one_thread else [3, 3]
        if modes.tolist() != team or caller != 3 or jobs < 2 or c.any():
            return 13
    return 0


def scenario_os_fork(one_thread=False):
    want = everything()
    if one_thread:
        _core._fork_release(False)
    pid = os.fork()
    if pid == 0:
        code = 20
        try:
            code = child_checks(want, one_thread)
        finally:
            os._exit(code)
    code = wait_child(pid)
    if code != 0:
        fail(f"child exit status {code}")
    # the parent keeps its threads and results after the fork
    if not same(everything(), want):
        fail("parent results changed after fork")


def scenario_pool(method):
    import multiprocessing as mp
    want = everything()
    with mp.get_context(method).Pool(2) as pool:
        got = pool.map_async(work, KINDS).get(CHILD_TIMEOUT)
    for kind, result in zip(KINDS, got):
        if not same(result, want[kind]):
            fail(f"{method} worker's {kind} differs from the parent's")


def scenario_joblib():
    import joblib
    want = everything()
    got = joblib.Parallel(n_jobs=2, timeout=CHILD_TIMEOUT)(joblib.delayed(work)(k) for k in KINDS)
    for kind, result in zip(KINDS, got):
        if not same(result, want[kind]):
            fail(f"joblib worker's {kind} differs from the parent's")


def scenario_fork_while_threads_train(n_forks=6):
    # Python threads train (each with its own OpenMP team) while the main
    # thread forks, several times at different moments.  Without the fork
    # waiting for the calls in flight (csrc/runtime/threads.c), a child inherited
    # OpenBLAS's server_lock held by a thread it does not have and hung
    # in about one fork in five.
    want = everything()
    stop = threading.Event()
    errors = []

    def busy():
        try:
            while not stop.is_set():
                if not same(work("NeuralMF"), want["NeuralMF"]):
                    errors.append("a thread's fit differs")
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    codes = []
    for k in range(n_forks):
        time.sleep(0.05 + 0.07 * k)
        pid = os.fork()
        if pid == 0:
            code = 20
            try:
                code = 0 if same(everything(), want) else 11
            finally:
                os._exit(code)
        codes.append(wait_child(pid))
    stop.set()
    for t in threads:
        t.join(CHILD_TIMEOUT)
    if any(codes):
        fail(f"child exit statuses {codes}")
    if errors or any(t.is_alive() for t in threads):
        fail(f"threads: {errors or 'did not finish'}")


SCENARIOS = {
    "os_fork": scenario_os_fork,
    "os_fork_one_thread": lambda: scenario_os_fork(one_thread=True),
    "pool_fork": lambda: scenario_pool("fork"),
    "pool_forkserver": lambda: scenario_pool("forkserver"),
    "pool_spawn": lambda: scenario_pool("spawn"),
    "joblib": scenario_joblib,
    "fork_while_threads_train": scenario_fork_while_threads_train,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
    print("OK", flush=True)
