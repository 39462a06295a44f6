"""Subnormal floats flushed inside recmf's compute, and nowhere else.

recmf's fit/recommend/score run with FTZ/DAZ (x86) or FZ (AArch64) on the
calling thread, on every OpenMP team thread and in OpenBLAS's jobs, and
give every thread its own mode back on return (csrc/fpstate.c).  The test
hooks in ``_core`` (csrc/py/runtime.c): ``_fp_probe`` does what a fit
does and reports the mode of each team thread and of the calling thread,
plus a threaded sgemm whose every product is subnormal (a job that
computes flushed writes exact zeros); ``_fp_probe_plain`` runs a plain
OpenMP region, as any other user of the thread pool would, and reports the
mode recmf left behind; ``_fp_mode`` reads or sets the calling thread's.
Modes: bit 0 = results flushed (FTZ), bit 1 = inputs flushed (DAZ).
"""
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import recmf
from recmf import _core

from conftest import ML100K_DIR, needs_ml100k

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64")
    or not _core.build_info()["flush_subnormals"],
    reason=f"flushing subnormals is implemented for x86-64 and AArch64 only (this is {platform.machine()})")

FLUSHED = 3
IEEE = 0
TINY = np.finfo(np.float32).tiny          # smallest normal float32, 1.18e-38
CSRC = Path(recmf.__file__).resolve().parent.parent / "csrc"


@pytest.fixture(autouse=True)
def ieee_and_flushing_by_default():
    # every test starts and ends with an IEEE calling thread and the default setting
    assert _core._fp_mode() == IEEE
    assert recmf.get_config()["exact_subnormals"] is False
    yield
    _core._fp_mode(IEEE)
    recmf.set_config(exact_subnormals=False)


@pytest.fixture(scope="module")
def small():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=150, n_items=200, seed=11)
    train, val, test = recmf.temporal_split(ratings)
    return recmf.Interactions.from_frame(train), test


def subnormal_products(m=512, k=64, n=512):
    """a, b whose every product is 1e-40 (subnormal): an sgemm job that
    computes with FTZ writes 0, one with IEEE arithmetic k * 1e-40 > 0."""
    return np.full((m, k), 1e-20, np.float32), np.full((k, n), 1e-20, np.float32)


def numpy_keeps_subnormals():
    return np.float32(1e-38) / np.float32(10) != 0


def test_every_thread_computes_flushed_inside_recmf_work():
    a, b = subnormal_products()
    modes, caller, c, jobs = _core._fp_probe(2, a, b)
    assert caller == FLUSHED
    assert modes.tolist() == [FLUSHED, FLUSHED]
    if _core.build_info()["blas_on_openmp"]:
        assert jobs >= 2, "the product was not split into OpenBLAS jobs: the test shows nothing"
    assert not c.any(), "an OpenBLAS job computed with IEEE subnormals inside recmf's work"
    # and a plain region afterwards sees every pool thread back in IEEE mode
    assert _core._fp_probe_plain(2).tolist() == [IEEE, IEEE]
    assert _core._fp_mode() == IEEE and numpy_keeps_subnormals()


def test_inputs_are_flushed_too():
    # DAZ: a subnormal input counts as zero even where the product is normal.
    a = np.full((512, 64), 1e-39, np.float32)
    b = np.full((64, 512), 1e10, np.float32)
    assert not _core._fp_probe(2, a, b)[2].any()
    with recmf.config_context(exact_subnormals=True):
        c = _core._fp_probe(2, a, b)[2]
    np.testing.assert_allclose(c, 64 * 1e-39 * 1e10, rtol=1e-3)


def test_exact_subnormals_keeps_ieee_everywhere():
    a, b = subnormal_products()
    with recmf.config_context(exact_subnormals=True):
        assert recmf.get_config()["exact_subnormals"] is True
        modes, caller, c, _ = _core._fp_probe(2, a, b)
    assert recmf.get_config()["exact_subnormals"] is False
    assert caller == IEEE and modes.tolist() == [IEEE, IEEE]
    np.testing.assert_allclose(c, 64 * np.float32(1e-40), rtol=1e-2)   # subnormal, not flushed
    assert (c < TINY).all()


def test_set_config_checks_its_argument():
    with pytest.raises(TypeError, match="exact_subnormals"):
        recmf.set_config(exact_subnormals=1)
    recmf.set_config()                      # None: unchanged
    assert recmf.get_config()["exact_subnormals"] is False


@pytest.mark.parametrize("kind", [recmf.NeuralMF, recmf.BPRMF])
def test_caller_and_pool_threads_keep_ieee_after_fit_recommend_score(kind, small):
    data, test = small
    users = test["user_id"].unique()
    model = kind(emb_dim=8, epochs=1, batch_size=256, n_threads=2).fit(data)
    checks = [lambda: model.recommend(users, k=5),
              lambda: model.score(users[:20], model.data_.item_ids[:20]),
              lambda: recmf.evaluate(model, test, k=5)]
    for call in [lambda: None] + checks:
        call()
        assert _core._fp_mode() == IEEE
        assert _core._fp_probe_plain(2).tolist() == [IEEE, IEEE]
        assert numpy_keeps_subnormals()


def test_a_caller_that_flushes_itself_gets_its_own_mode_back(small):
    # The state is restored, not reset: a user who set FTZ/DAZ (as
    # torch.set_flush_denormal(True) does) keeps it, and so do the pool
    # threads born from that thread.
    data, test = small
    _core._fp_mode(FLUSHED)
    pool = _core._fp_probe_plain(2).tolist()
    with recmf.config_context(exact_subnormals=True):
        model = recmf.NeuralMF(emb_dim=8, epochs=1, batch_size=256, n_threads=2).fit(data)
    model.recommend(test["user_id"].unique(), k=5)
    assert _core._fp_mode() == FLUSHED
    assert _core._fp_probe_plain(2).tolist() == pool
    assert not numpy_keeps_subnormals()


_FRESH = textwrap.dedent("""
    import numpy as np, recmf
    from recmf import _core
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=150, n_items=200, seed=11)
    data = recmf.Interactions.from_frame(ratings)
    model = recmf.NeuralMF(emb_dim=8, epochs=1, batch_size=256, n_threads=2).fit(data)
    # the pool grows inside recommend's flushed work: threads 2 and 3 are
    # started from a flushed calling thread
    model.n_threads = 4
    model.recommend(data.user_ids[:50], k=5)
    print(_core._fp_mode(), _core._fp_probe_plain(4).tolist(), np.float32(1e-38) / np.float32(10) != 0)
""")


def test_pool_threads_started_inside_recmf_work_end_in_the_callers_mode(tmp_path):
    root = Path(recmf.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _FRESH], env=dict(os.environ, PYTHONPATH=str(root)),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == "0 [0, 0, 0, 0] True"


def test_every_parallel_region_takes_the_callers_mode():
    # The rule for csrc/ (recmf.h, "Floating-point state"): every OpenMP
    # region is RMF_PARALLEL(...) with RMF_TEAM_BEGIN first and
    # RMF_TEAM_END last in its block.  A region written as a plain
    # "omp parallel" would compute in whatever mode the pool thread had.
    bad = []
    for path in sorted(CSRC.glob("*.c")):
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            where = f"{path.name}:{n + 1}"
            if re.search(r"omp\s+parallel", line) and "RMF_PARALLEL" not in line:
                if not any("RMF_PLAIN_REGION" in x for x in lines[max(0, n - 3):n]):
                    bad.append(f"{where}: plain 'omp parallel' (use RMF_PARALLEL)")
            if re.match(r"\s*RMF_PARALLEL\(", line):
                body, depth = [], 0
                for x in lines[n + 1:]:
                    depth += x.count("{") - x.count("}")
                    body.append(x.strip())
                    if depth == 0:
                        break
                code = [x for x in body if x and not x.startswith(("#", "/*", "*"))]
                if code[:2] != ["{", "RMF_TEAM_BEGIN;"] or code[-2:] != ["RMF_TEAM_END;", "}"]:
                    bad.append(f"{where}: region without RMF_TEAM_BEGIN/END around its block")
    assert not bad, "\n".join(bad)


@needs_ml100k
@pytest.mark.parametrize("kind", [recmf.NeuralMF, recmf.BPRMF])
def test_flushing_changes_ml100k_results_by_no_more_than_float_rounding(kind):
    # Flushing changes only values below 1.2e-38 (to 0).  Such a value
    # never moves a weight of normal size by a float32 ulp, and in Adam a
    # subnormal moment is swamped by eps = 1e-8, so weights trained with
    # and without flushing agree far inside atol 1e-6 (they are usually
    # bit-identical: on Intel, the 20 ML-1M epochs gave the same
    # losses to 5 digits).  Anything larger would mean flushing reached
    # normal-range arithmetic.
    ratings, _, _ = recmf.load_movielens(ML100K_DIR)
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4)
    runs = {}
    for exact in (False, True):
        with recmf.config_context(exact_subnormals=exact):
            model = kind(emb_dim=32, epochs=2, seed=0, n_threads=2).fit(data)
            runs[exact] = (model.theta_.copy(), model.history["loss"].to_numpy(),
                           recmf.evaluate(model, test, k=10))
    np.testing.assert_allclose(runs[False][0], runs[True][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(runs[False][1], runs[True][1], rtol=1e-5)
    for name in ("recall@10", "ndcg@10", "mrr@10", "hitrate@10"):
        assert runs[False][2][name] == pytest.approx(runs[True][2][name], abs=1e-3)
    assert _core._fp_mode() == IEEE and numpy_keeps_subnormals()
