"""The user-facing notebooks, executed end to end with nbclient.

* ``train_model.ipynb`` runs with its default parameters on MovieLens-1M when
  the data is found (``$RECMF_DATA`` or ``<repo>/../shared/data``), else on
  the synthetic fallback.  Besides "no cell failed", the test checks what the
  notebook computed: it writes its metrics table to ``OUT_DIR/metrics.json``;
  on ML-1M the popularity row must be the reference's exact figures (SPEC
  section 10) and both learned models must beat it on recall@10; the figures,
  the saved models and the ONNX file must exist.
* ``train_model.ipynb`` also runs on the synthetic data and on ML-100K (when
  present) with a couple of epochs, so the fallback and the small-dataset
  paths keep working on machines that have ML-1M.
* ``data_prep.ipynb`` runs on the same data as the main run and its summary
  (``OUT_DIR/data_summary.json``) is checked against the known ML-1M figures.
* ``model_comparison.ipynb`` tunes every model, under both protocols (seed
  and watched), on a validation shaped like the test and writes its test
  tables to ``OUT_DIR/comparison.json``: on ML-1M the order-aware models must
  beat the seed's, the blend its two parts, and SLIST the issue's figures.
* The committed notebooks carry no outputs (no data-derived content in git).

The kernel is the interpreter running pytest: a kernelspec pointing at
``sys.executable`` is written to a temporary directory, so a ``python3``
kernelspec of another environment can never be picked up.  Each notebook runs
with a temporary working directory and ``RECMF_NOTEBOOK_OUT`` pointing into
it; a failing cell fails the test (nbclient raises CellExecutionError).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
# The kernel must import the recmf this test process imported: the installed
# package in CI, the in-place build in a developer's checkout.
import recmf  # noqa: E402
RECMF_ROOT = Path(recmf.__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK_FILES = ["data_prep.ipynb", "train_model.ipynb", "model_comparison.ipynb"]
DATA = Path(os.environ.get("RECMF_DATA") or REPO.parent / "shared" / "data")
ML1M = DATA / "ml-1m"
ML100K = DATA / "ml-100k"
HAVE_ML1M = any((ML1M / f).is_file() for f in ("ratings.dat", "ratings.dat.gz")) and \
    (ML1M / "movies.dat").is_file()
HAVE_ML100K = (ML100K / "u.data").is_file()

#: Per-cell timeout: NeuralMF's 20 ML-1M epochs run in one cell (about a minute
#: at the speed SPEC section 11 asks for); raise it on slow machines.
CELL_TIMEOUT = int(os.environ.get("RECMF_NOTEBOOK_CELL_TIMEOUT", 900))
KERNEL_NAME = "recmf-test-python"
#: SASRec's epochs in the comparison notebook's test run (its default is 30).
SASREC_TEST_EPOCHS = 4

# The main run: ML-1M with the notebook's default parameters, else synthetic.
MAIN_DATA = str(ML1M) if HAVE_ML1M else "synthetic"
MAIN_ID = "ml-1m" if HAVE_ML1M else "synthetic"

# SPEC section 10: the deterministic popularity baseline on ML-1M.  ndcg and
# mrr follow SPEC section 4's tie rule (lower id first); the printed 0.0323940
# / 0.0474210 came from pandas' unstable sort putting item 1265 before item 1
# (tests/test_data_core.py reproduces those from the seed's order).
ML1M_POPULARITY = {"recall@10": 0.0466355, "ndcg@10": 0.0323925, "mrr@10": 0.0474205,
                   "hitrate@10": 0.1386638, "coverage@10": 0.0198300,
                   "avg_popularity@10": 2084.3341}
METRICS = ["recall@10", "ndcg@10", "mrr@10", "hitrate@10", "n_users_eval", "coverage@10",
           "avg_popularity@10"]


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory):
    """A kernelspec directory whose only kernel runs this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }))
    return root


def execute(nb, kernel_dir, workdir, env, timeout):
    """Run every cell of ``nb`` in place (cwd ``workdir``, environment ``env``)
    on the kernel of ``kernel_dir``; a failing cell raises CellExecutionError."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=KERNEL_NAME,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = nbclient.NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=timeout,
                                     startup_timeout=120,
                                     resources={"metadata": {"path": str(workdir)}})
    # cleanup_kc: nbclient leaves a kernel it did not create running otherwise.
    client.execute(env=env, cleanup_kc=True)
    return nb


def run_notebook(name, workdir, kernel_dir, data, **env_extra):
    """Execute ``notebooks/<name>`` in ``workdir``; return (notebook, out_dir, seconds)."""
    out_dir = workdir / "out"
    env = dict(os.environ)
    env["RECMF_NOTEBOOK_DATA"] = data
    env["RECMF_NOTEBOOK_OUT"] = str(out_dir)
    # The kernel imports the same recmf as this process (see RECMF_ROOT).
    env["PYTHONPATH"] = os.pathsep.join([str(RECMF_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    # A non-interactive MPLBACKEND (Agg, common in CI) would swallow the figures.
    env.pop("MPLBACKEND", None)
    env.update({k: str(v) for k, v in env_extra.items()})

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    t0 = time.perf_counter()
    execute(nb, kernel_dir, workdir, env, CELL_TIMEOUT)
    seconds = time.perf_counter() - t0
    print(f"{name} on {data}: {seconds:.1f} s")
    if data == MAIN_DATA and not env_extra:
        # The main run's outputs are the docs gallery's (tests/test_docs.py).
        import tempfile
        stash = Path(tempfile.gettempdir()) / f"recmf-executed-notebooks-{os.getpid()}"
        stash.mkdir(exist_ok=True)
        nbformat.write(nb, stash / name)
    return nb, out_dir, seconds


def outputs(nb, kind=None):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if kind is None or out.get("output_type") == kind:
                    yield out


def n_images(nb):
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def test_kernel_is_this_interpreter(tmp_path, kernel_dir):
    """The notebooks run on the interpreter (and so the venv) running pytest."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, recmf; print(sys.executable); print(sys.prefix); print(recmf.__file__)")])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(RECMF_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    execute(nb, kernel_dir, tmp_path, env, 120)
    exe, prefix, module = nb.cells[0].outputs[0]["text"].split("\n")[:3]
    assert exe == sys.executable and prefix == sys.prefix     # same interpreter, same venv
    import recmf
    assert Path(module).resolve() == Path(recmf.__file__).resolve()


# -- the committed files --------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOK_FILES)
def test_notebook_is_stripped_and_parametrised(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [], f"{name}: outputs committed in a cell ({cell.source[:60]!r})"
        assert cell.execution_count is None, f"{name}: execution_count committed"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{name}: first code cell not tagged"
    for var in ("DATA_DIR", "OUT_DIR", "RECMF_NOTEBOOK_DATA", "RECMF_NOTEBOOK_OUT"):
        assert var in first.source, f"{name}: parameters cell lacks {var}"


# -- executed notebooks ----------------------------------------------------

def _check_reports(models):
    assert set(models) == {"Popularity", "NeuralMF", "BPRMF"}
    for name, rep in models.items():
        assert set(METRICS) <= set(rep), name
        assert rep["n_users_eval"] > 0, name
        for m in METRICS[:4] + ["coverage@10"]:
            assert 0.0 <= rep[m] <= 1.0 and math.isfinite(rep[m]), (name, m, rep[m])
        assert rep["avg_popularity@10"] > 0, name


@pytest.mark.parametrize("data", [pytest.param(MAIN_DATA, id=MAIN_ID)])
def test_train_model_notebook(tmp_path, kernel_dir, data):
    nb, out, seconds = run_notebook("train_model.ipynb", tmp_path, kernel_dir, data)

    summary = json.loads((out / "metrics.json").read_text())
    models = summary["models"]
    _check_reports(models)
    assert summary["params"]["nmf_epochs"] == 20 and summary["params"]["bpr_epochs"] == 20
    if HAVE_ML1M:
        assert summary["dataset"] == "ml-1m"
        assert summary["split"] == {"train": 963_969, "val": 6_040, "test": 30_200}
        pop = models["Popularity"]
        for m, expected in ML1M_POPULARITY.items():
            assert pop[m] == pytest.approx(expected, abs=5e-5 if m == "avg_popularity@10" else 5e-8), m
        for name in ("Popularity", "NeuralMF", "BPRMF"):
            assert models[name]["n_users_eval"] == 5553, name
        # Both learned models beat the baseline (by a margin well outside seed noise).
        assert models["NeuralMF"]["recall@10"] > pop["recall@10"]
        assert models["BPRMF"]["recall@10"] > pop["recall@10"]
        assert models["NeuralMF"]["ndcg@10"] > pop["ndcg@10"]
    else:
        assert summary["dataset"] == "synthetic"

    # Figures: training curves, metric bars, popularity bias/coverage, per-user.
    assert n_images(nb) >= 4
    # The comparison table is displayed; the ONNX and reload checks ran.
    for f in ("neuralmf.npz", "bprmf.npz", "popularity.npz", "neuralmf.onnx"):
        assert (out / f).is_file(), f
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "identical after reload" in text
    assert "max |onnxruntime - recmf|" in text
    assert set(summary["timings_s"]) >= {"load", "split", "fit NeuralMF", "fit BPRMF", "evaluate"}


SMOKE = [pytest.param("synthetic", id="synthetic")]
if HAVE_ML100K:
    SMOKE.append(pytest.param(str(ML100K), id="ml-100k"))


@pytest.mark.parametrize("data", SMOKE)
def test_train_model_notebook_small(tmp_path, kernel_dir, data):
    """The synthetic fallback and ML-100K, with a few epochs: the notebook
    must not depend on ML-1M's shapes (catalogue size < top_n, short users...)."""
    nb, out, _ = run_notebook("train_model.ipynb", tmp_path, kernel_dir, data,
                              RECMF_NOTEBOOK_NMF_EPOCHS=2, RECMF_NOTEBOOK_BPR_EPOCHS=4)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["dataset"] == ("synthetic" if data == "synthetic" else "ml-100k")
    assert summary["params"]["nmf_epochs"] == 2
    _check_reports(summary["models"])
    assert n_images(nb) >= 4
    assert (out / "neuralmf.onnx").is_file()


@pytest.mark.parametrize("data", [pytest.param(MAIN_DATA, id=MAIN_ID)])
def test_data_prep_notebook(tmp_path, kernel_dir, data):
    nb, out, seconds = run_notebook("data_prep.ipynb", tmp_path, kernel_dir, data)
    summary = json.loads((out / "data_summary.json").read_text())
    if HAVE_ML1M:
        assert summary["dataset"] == "ml-1m"
        assert (summary["n_ratings"], summary["n_users"], summary["n_items"]) == (1_000_209, 6_040, 3_706)
        assert summary["n_movies_catalogue"] == 3_883
        assert summary["n_tied_timestamps"] == 529_046
        assert summary["split"] == {"train": 963_969, "val": 6_040, "test": 30_200}
    else:
        assert summary["dataset"] == "synthetic"
        assert sum(summary["split"].values()) == summary["n_ratings"]
    # Ratings, long tail, time, ties, split.
    assert n_images(nb) >= 5


@pytest.mark.parametrize("data", [pytest.param(MAIN_DATA, id=MAIN_ID)])
def test_model_comparison_notebook(tmp_path, kernel_dir, data, monkeypatch):
    if not all(hasattr(recmf, name) for name in ("select", "EASE")):
        pytest.skip("model_comparison.ipynb needs recmf.select and recmf.EASE (issue 11)")
    # SASRec's 30 epochs per protocol would add minutes: a few show it runs and learns (the docs
    # gallery shows this run; README and benchmarks/sasrec_quality.py have the full training)
    monkeypatch.setenv("RECMF_NOTEBOOK_SASREC_EPOCHS", str(SASREC_TEST_EPOCHS))
    nb, out, seconds = run_notebook("model_comparison.ipynb", tmp_path, kernel_dir, data)
    summary = json.loads((out / "comparison.json").read_text())
    models, watched = summary["models"], summary["watched"]   # the seed and the watched protocol
    expected = {"Popularity", "NeuralMF", "BPRMF", "EASE", "ItemTransition", "SLIST", "SASRec", "Blend"}
    assert expected <= set(models) and set(models) == set(watched)
    for name, rep in [*models.items(), *watched.items()]:
        for m in METRICS[:4] + ["coverage@10"]:
            assert 0.0 <= rep[m] <= 1.0 and math.isfinite(rep[m]), (name, m, rep[m])
    assert summary["chosen"]["watched"]["SLIST"]["inputs"] == "rated"
    assert summary["chosen"]["seed"]["SLIST"]["inputs"] == "positives"
    assert {(a["protocol"], a["model"]) for a in summary["agreement"]} == \
        {(p, m) for p in ("seed", "watched") for m in ("SLIST", "Blend")}
    assert n_images(nb) >= 2                      # the metric bars and the coverage scatter
    assert (out / "blend.npz").is_file() and (out / "slist.npz").is_file()
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "identical after reload" in text
    if HAVE_ML1M:
        assert summary["dataset"] == "ml-1m"
        recall = {name: rep["recall@10"] for name, rep in models.items()}
        # SASRec after a few epochs already beats the baseline, under both protocols
        assert summary["chosen"]["watched"]["SASRec"]["inputs"] == "rated"
        assert summary["chosen"]["seed"]["SASRec"]["epochs"] == SASREC_TEST_EPOCHS
        assert recall["SASRec"] > recall["Popularity"] and \
            watched["SASRec"]["recall@10"] > watched["Popularity"]["recall@10"]
        for name in ("EASE", "ItemTransition", "Blend"):
            assert recall[name] > max(recall["NeuralMF"], recall["BPRMF"], recall["Popularity"]), name
        assert recall["Blend"] > max(recall["EASE"], recall["ItemTransition"])
        # issue 11's target for the best model, every knob chosen on validation (the numpy probe's
        # 0.1341 / 0.0957); with window-3 transitions the top validation settings give 0.138-0.143
        assert recall["Blend"] >= 0.134 and models["Blend"]["ndcg@10"] >= 0.096
        # issue 17: SLIST chosen on the test-shaped validation beats the numpy probe's figures
        # (seed 0.1435 / watched 0.1806; benchmarks/slist.py measured 0.1584 / 0.1887), and
        # reading every rated item helps every model that reads a history
        assert recall["SLIST"] >= 0.150 and watched["SLIST"]["recall@10"] >= 0.182
        for name in ("EASE", "ItemTransition", "SLIST", "Blend"):
            assert watched[name]["recall@10"] > recall[name], name
