"""Process lifecycle: recmf after fork() and in worker pools (issue 9, case 05).

libgomp's thread pool does not survive fork(): before the fix, a child made
after a fit with n_threads=2 hung forever in its first multi-threaded call.
Each scenario runs tests/fork_worker.py in its own interpreter under a
timeout, so a hang fails the test instead of freezing the suite; inside,
a forked child that does not finish in time is killed.

What is equal: a child's (or worker's) fit with the same seed and
n_threads, its recommendations and a threaded BLAS top-K are bit-identical
to the parent's.  In the one-thread fallback (the pool could not be
released before the fork) the regions run on one thread but OpenBLAS's jobs
keep the parent's split, so the results are still bit-identical.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import recmf

WORKER = Path(__file__).with_name("fork_worker.py")
ROOT = Path(recmf.__file__).resolve().parent.parent
TIMEOUT = 600   # the whole scenario, on a loaded 2-core machine

posix_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run(scenario, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        out = subprocess.run([sys.executable, str(WORKER), scenario], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{scenario}: no answer in {TIMEOUT} s (hang)\n{e.stdout}\n{e.stderr}")
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), \
        f"{scenario}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


@posix_fork
def test_os_fork_child_runs_all_threads_and_matches_the_parent(tmp_path):
    run("os_fork", tmp_path)


@posix_fork
def test_os_fork_child_falls_back_to_one_thread_with_one_warning(tmp_path):
    # As when the OpenMP runtime refuses to release its pool before fork().
    run("os_fork_one_thread", tmp_path)


@posix_fork
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool_workers_match_the_parent(method, tmp_path):
    run(f"pool_{method}", tmp_path)


def test_joblib_default_backend_workers_match_the_parent(tmp_path):
    pytest.importorskip("joblib")
    run("joblib", tmp_path)


@posix_fork
def test_fork_while_other_python_threads_train(tmp_path):
    run("fork_while_threads_train", tmp_path)


def test_field_case_05_passes(tmp_path):
    # ../shared beside the checkout (the tests' folder, not the installed
    # package's, which in CI lives in a virtual environment)
    script = Path(__file__).resolve().parents[2] / "shared" / "field-cases" / "05_fork_after_openmp.py"
    if not script.is_file():
        pytest.skip(f"field case not found at {script}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and out.stdout.startswith("PASS"), out.stdout + out.stderr[-2000:]
