"""recmf runs on its own OpenBLAS and OpenMP runtime and leaves other
libraries' alone.

A built recmf carries its OpenBLAS in ``recmf.libs/`` under a name of its
own (setup.py), loaded for ``recmf._core`` only; a wheel also carries its
libgomp there (``auditwheel repair``).  So after ``import recmf`` SciPy's
and NumPy's BLAS calls still bind to their own libraries, recmf's calls to
its own, each library keeps its own thread settings, and results are the
same whatever the order the libraries were imported in.  Each check runs in
a fresh interpreter: what is loaded first is the point.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import recmf

SITE = os.path.dirname(os.path.dirname(os.path.abspath(recmf.__file__)))
INFO = recmf.build_info()
#: The default build bundles OpenBLAS (a RECMF_BLAS=system build links the
#: system's, which these tests cannot tell from another package's).
BUNDLED = os.path.basename(INFO["blas_library"] or "").startswith("libscipy_openblas-recmf")
needs_bundle = pytest.mark.skipif(not BUNDLED, reason=f"recmf is built against {INFO['blas_library']} "
                                                      "(RECMF_BLAS=system), not its bundled OpenBLAS")


def run_python(code, tmp_path, **env):
    """Run code in a fresh interpreter outside the checkout (the recmf under
    test first on its path); return its stdout."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    full_env.update(env, PYTHONPATH=SITE)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_build_info_names_the_libraries_recmf_runs_on():
    blas, omp = INFO["blas_library"], INFO["openmp_library"]
    assert blas and os.path.isfile(blas)
    assert os.path.basename(blas).startswith(("libscipy_openblas", "libopenblas", "libblas"))
    if BUNDLED:
        assert os.path.dirname(blas) == os.path.join(SITE, "recmf.libs")
    if INFO["openmp"]:
        assert omp and os.path.isfile(omp) and "gomp" in os.path.basename(omp)
        # a wheel's own libgomp (auditwheel repair) is the one in use
        bundled_gomp = [f for f in os.listdir(os.path.dirname(blas)) if f.startswith("libgomp")] if BUNDLED else []
        if bundled_gomp:
            assert os.path.dirname(omp) == os.path.dirname(blas)
    else:
        assert omp is None


_BINDINGS = """
    {first}
    import recmf, numpy as np
    import scipy.linalg.blas as b
    np.asarray(b.sgemm(1.0, np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)))
    # a product of recmf's own (BPRMF's scores: rmf_sgemm)
    data = recmf.Interactions.from_frame(recmf.datasets.synthetic_ratings(n_users=40, n_items=50, seed=1)[0])
    recmf.BPRMF(emb_dim=4, epochs=1, seed=0).fit(data).recommend(data.user_ids[:5], k=3)
    import scipy
    print(scipy.__file__)
"""


@needs_bundle
@pytest.mark.parametrize("scipy_first", [False, True], ids=["recmf-first", "scipy-first"])
def test_blas_symbols_bind_each_to_its_own_library(scipy_first, tmp_path):
    # LD_DEBUG=bindings logs every symbol the dynamic loader binds, with the
    # file that asked and the file that gave.  0.1.0 loaded the
    # scipy-openblas32 package's library with RTLD_GLOBAL, and SciPy's
    # scipy_sgemm_ then bound to it instead of SciPy's own copy.
    pytest.importorskip("scipy")
    code = _BINDINGS.format(first="import scipy.linalg.blas" if scipy_first else "")
    log = tmp_path / "ld"
    out = run_python(code, tmp_path, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(log))
    scipy_pkg = os.path.dirname(os.path.realpath(out.strip().splitlines()[-1]))
    pattern = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^'`]+)'")
    bindings = []
    for path in tmp_path.glob("ld.*"):
        bindings += pattern.findall(path.read_text(errors="replace"))
    assert bindings, "LD_DEBUG logged no bindings"

    def real(p):
        return os.path.realpath(p)

    recmf_blas = real(INFO["blas_library"])
    libs = real(os.path.join(SITE, "recmf.libs"))
    scipy_libs = scipy_pkg + ".libs"
    sgemm = [(real(src), real(dst)) for src, dst, sym in bindings if sym == "scipy_sgemm_" and "_fblas" in src]
    assert sgemm, "SciPy's _fblas never bound scipy_sgemm_"
    for src, dst in sgemm:
        assert not dst.startswith(libs), f"{src} binds scipy_sgemm_ to recmf's {dst}"
        if os.path.isdir(scipy_libs):       # SciPy's wheel: its own OpenBLAS
            assert dst.startswith(scipy_libs + os.sep), f"{src} binds scipy_sgemm_ to {dst}"
    ours = [real(dst) for src, dst, sym in bindings if sym == "scipy_cblas_sgemm" and is_recmf(src, libs)]
    assert ours and set(ours) == {recmf_blas}
    # and nothing but recmf binds a symbol to recmf's libraries
    strangers = {(src, sym) for src, dst, sym in bindings if real(dst).startswith(libs) and not is_recmf(src, libs)}
    assert not strangers, sorted(strangers)[:10]


def is_recmf(path, libs):
    """True for recmf's extension and the libraries bundled with it."""
    path = os.path.realpath(path)
    return path.startswith(libs + os.sep) or (os.path.basename(path).startswith("_core.")
                                             and os.path.dirname(path) == os.path.join(SITE, "recmf"))


_ORDER = """
    import hashlib, json, os, sys
    for name in {order!r}:
        __import__(name)
    import numpy as np
    out = {{}}
    if "recmf" in sys.modules:
        import recmf
        from recmf import _core
        ratings = recmf.datasets.synthetic_ratings(n_users=120, n_items=150, seed=3)[0]
        data = recmf.Interactions.from_frame(ratings)
        users = data.user_ids[:30]
        for kind in (recmf.BPRMF, recmf.NeuralMF):
            model = kind(emb_dim=8, epochs=2, seed=0, n_threads=2).fit(data)
            out[kind.__name__] = hashlib.sha256(np.ascontiguousarray(model.recommend(users, k=5)).tobytes()).hexdigest()
        info = recmf.build_info()
        out["recmf"] = {{k: info[k] for k in ("blas_library", "openmp_library", "blas_threads", "blas_on_openmp")}}
        out["spin"] = recmf._runtime.applied
    if "scipy" in sys.modules:
        import scipy.linalg.blas as b
        rng = np.random.default_rng(0)
        a = rng.standard_normal((64, 64)).astype(np.float32)
        out["scipy_sgemm"] = hashlib.sha256(np.asarray(b.sgemm(1.0, a, a)).tobytes()).hexdigest()
    import threadpoolctl
    out["pools"] = sorted((os.path.realpath(i["filepath"]), i["internal_api"], i["num_threads"])
                          for i in threadpoolctl.threadpool_info())
    print(json.dumps(out))
"""

_LIBRARIES = ("recmf", "numpy", "scipy.linalg", "sklearn.cluster")


@needs_bundle
def test_import_order_changes_no_result_and_no_thread_setting(tmp_path):
    # Each library alone, then all four with recmf first, last and in
    # between: recmf's model outputs, its BLAS/OpenMP libraries and thread
    # counts, SciPy's sgemm, and every thread pool threadpoolctl finds
    # (file, kind, thread count) are the same as when that library was
    # loaded alone.
    pytest.importorskip("scipy")
    pytest.importorskip("sklearn")
    pytest.importorskip("threadpoolctl")

    def run(order):
        return json.loads(run_python(_ORDER.format(order=list(order)), tmp_path).strip().splitlines()[-1])

    alone = {name: run([name]) for name in _LIBRARIES}
    orders = [_LIBRARIES, _LIBRARIES[::-1], ("sklearn.cluster", "recmf", "scipy.linalg", "numpy")]
    pools_alone = {pool[0]: pool for name in _LIBRARIES for pool in alone[name]["pools"]}
    for order in orders:
        got = run(order)
        for key in ("BPRMF", "NeuralMF", "recmf", "spin"):
            assert got[key] == alone["recmf"][key], (order, key)
        assert got["scipy_sgemm"] == alone["scipy.linalg"]["scipy_sgemm"], order
        assert {p[0] for p in got["pools"]} == {p[0] for name in order for p in alone[name]["pools"]}, order
        for pool in got["pools"]:
            assert pool == pools_alone[pool[0]], (order, pool)
    # recmf's OpenBLAS is its own, not another library's
    ours = os.path.realpath(INFO["blas_library"])
    assert ours in {p[0] for p in alone["recmf"]["pools"] if p[1] == "openblas"}
    others = {p[0] for name in _LIBRARIES[1:] for p in alone[name]["pools"] if p[1] == "openblas"}
    assert others and ours not in others


@needs_bundle
def test_recmf_thread_settings_do_not_reach_scipys_openblas(tmp_path):
    pytest.importorskip("scipy")
    pytest.importorskip("threadpoolctl")
    code = """
        import json, os, threadpoolctl, scipy.linalg, recmf
        from recmf import _core
        def counts():
            return {os.path.realpath(i["filepath"]): i["num_threads"]
                    for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"}
        before = counts()
        _core.blas_threads(1)
        print(json.dumps([before, counts()]))
    """
    before, after = json.loads(run_python(code, tmp_path).strip().splitlines()[-1])
    ours = os.path.realpath(INFO["blas_library"])
    assert len(before) >= 2 and ours in before
    assert after[ours] == 1
    assert {k: v for k, v in after.items() if k != ours} == {k: v for k, v in before.items() if k != ours}


_SPIN_DISPLAY = """
    import ctypes, os, sys
    {preload}
    import recmf
    lib = ctypes.CDLL(recmf.build_info()["openmp_library"])
    print(recmf._runtime.applied, flush=True)
    if hasattr(lib, "omp_display_env"):          # libgomp of GCC >= 11
        os.dup2(1, 2)
        lib.omp_display_env(1)
"""


def _spin_of(out):
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", out)
    return found.group(1) if found else None


@pytest.mark.skipif(not INFO["openmp"], reason="built without OpenMP")
@pytest.mark.parametrize("first", ["nothing", "sklearn"])
def test_bounded_spin_reaches_the_runtime_recmf_runs_on(first, tmp_path):
    # recmf/_runtime.py sets GOMP_SPINCOUNT while _core (and so its libgomp)
    # loads.  scikit-learn's wheel brings its own libgomp; with it loaded
    # first, 0.1.0 skipped the setting (an OpenMP runtime was "already
    # loaded") although recmf's runtime then loaded fresh with libgomp's
    # default 300,000 spins.
    preload = ""
    if first == "sklearn":
        pytest.importorskip("sklearn")
        preload = "import sklearn.cluster; assert 'libgomp' in open('/proc/self/maps').read()"
    out = run_python(_SPIN_DISPLAY.format(preload=preload), tmp_path)
    first_line = out.splitlines()[0]
    assert first_line == recmf._runtime.SPIN_COUNT
    spin = _spin_of(out)
    if spin is not None:
        assert spin == recmf._runtime.SPIN_COUNT


@pytest.mark.skipif(not INFO["openmp"], reason="built without OpenMP")
def test_runtime_loaded_before_recmf_keeps_its_settings_and_says_so(tmp_path):
    # The very runtime recmf runs on, loaded before recmf: it has read its
    # settings already, so recmf reports that it applied nothing.
    preload = f"ctypes.CDLL({INFO['openmp_library']!r})"
    out = run_python(_SPIN_DISPLAY.format(preload=preload), tmp_path)
    assert out.splitlines()[0] == "None"
    spin = _spin_of(out)
    if spin is not None:
        assert spin != recmf._runtime.SPIN_COUNT


# -- importing from the checkout ---------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "recmf")
IN_PLACE = os.path.isdir(SOURCE) and any(f.startswith("_core.") for f in os.listdir(SOURCE))


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, "setup.py")) or IN_PLACE,
                    reason="needs a source checkout without an in-place build")
@pytest.mark.parametrize("argv", [["-c", "import recmf"], ["-m", "recmf", "info"]])
def test_import_from_the_source_tree_says_what_to_do(argv):
    # In the checkout's root, the source folder recmf/ (no compiled
    # extension) comes first on sys.path and hides the installed recmf.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert "Error importing recmf: you are importing it from its source tree" in out.stderr
    assert "pip install -e ." in out.stderr and "another directory" in out.stderr
    assert "circular import" not in out.stderr
