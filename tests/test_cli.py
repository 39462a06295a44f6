"""The command line: `recmf run` prints the same metrics as the Python API,
`recmf recommend` reads a saved model, and bad arguments end with exit code 2
and a one-line message on stderr."""
import json
import os
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

import recmf
from conftest import HAVE_ML100K, ML100K_DIR, ML100K_REASON


# The child must import the recmf under test (installed, or an in-place build).
RECMF_ROOT = str(Path(recmf.__file__).resolve().parents[1])


def cli(*args, cwd=None):
    # `python -m` puts the working directory first on sys.path: run outside
    # the checkout, whose source folder has no compiled core
    cwd = cwd if cwd is not None else tempfile.gettempdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [RECMF_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, "-m", "recmf", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.mark.skipif(not HAVE_ML100K, reason=ML100K_REASON)
def test_run_popularity_matches_the_api_and_recommend_reads_the_saved_model(tmp_path):
    saved = tmp_path / "pop.npz"
    res = cli("run", "--data", str(ML100K_DIR), "--model", "popularity", "--json", "--save", str(saved),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)           # stdout holds only the result
    assert "split:" in res.stderr          # progress goes to stderr
    ratings, _, movies = recmf.load_movielens(ML100K_DIR)
    train, val, test = recmf.temporal_split(ratings)
    want = recmf.evaluate(recmf.Popularity().fit(train), test, catalog=movies["movie_id"].unique())
    for key, value in want.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key

    res = cli("recommend", "--model", str(saved), "--users", "1", "2", "--k", "3", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    model = recmf.load(saved)
    want = model.recommend([1, 2], k=3)
    assert [r["movie_id"] for r in rows] == want.ravel().tolist()


def test_run_trains_a_model_on_synthetic_data_folder(tmp_path):
    ratings, users, movies = recmf.datasets.synthetic_ratings(n_users=80, n_items=120, seed=5)
    folder = tmp_path / "mini"
    folder.mkdir()
    ratings.to_csv(folder / "ratings.csv", index=False)
    res = cli("run", "--data", str(folder), "--model", "bprmf", "--epochs", "2",
              "--triplets-per-epoch", "5000", "--top-n", "50", "--json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model"] == "bprmf" and 0 <= out["recall@10"] <= 1 and out["n_users_eval"] > 0


@pytest.mark.parametrize("args, message", [
    (["run", "--data", "/nonexistent/folder"], "not found"),
    (["run", "--model", "popularity", "--dropout", "0.3"], "does not take --dropout"),
    (["recommend", "--model", "/nonexistent.npz", "--users", "1"], "not found"),
    (["run", "--data", __file__], f"is a file: pass the MovieLens folder that holds it, {Path(__file__).parent}"),
    (["recommend", "--model", __file__, "--users", "1"], "is not a recmf model file (not an .npz archive"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path):
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("recmf: error")]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "allow_pickle" not in res.stderr


def test_unknown_model_name_is_an_argparse_error(tmp_path):
    res = cli("run", "--model", "svd", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_first_run_of_the_main_job_prints_no_warning(tmp_path):
    """The README's main job right after `pip install .`: `recmf run --model
    neuralmf` on the built-in synthetic data (no MovieLens anywhere it looks)
    finishes with progress on stderr and not one warning (issue 9: it
    printed "verbose=True needs tqdm" with a line of recmf's source)."""
    # tqdm is a runtime dependency: in the installed package's metadata (CI,
    # pip install .), else in the checkout's pyproject.toml (in-place build)
    pyproject = Path(RECMF_ROOT) / "pyproject.toml"
    if pyproject.is_file():
        tomllib = pytest.importorskip("tomllib")
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:
        from importlib.metadata import requires
        deps = [d for d in requires("recmf") or [] if "extra ==" not in d]
    assert any(d.startswith("tqdm") for d in deps), "tqdm must be a runtime dependency"
    from recmf.datasets import synthetic_ratings
    ratings, _, _ = synthetic_ratings(n_users=60, n_items=80, ratings_per_user=(15, 30))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in
                                              ratings.itertuples(index=False)))
    env = dict(os.environ, PYTHONWARNINGS="default",
               PYTHONPATH=os.pathsep.join([RECMF_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    res = subprocess.run([sys.executable, "-W", "error::UserWarning", "-m", "recmf", "run", "--data",
                          str(tiny), "--model", "neuralmf", "--epochs", "2", "--emb-dim", "8",
                          "--hidden-dim", "16", "--threads", "1", "--json"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    # the report is that of the same workflow run here (same seed: same
    # weights, same lists), not merely some number
    report = json.loads(res.stdout)
    ratings, _, movies = recmf.load_movielens(tiny)
    train, val, test = recmf.temporal_split(ratings)
    model = recmf.NeuralMF(epochs=2, emb_dim=8, hidden_dim=16, n_threads=1).fit(
        recmf.Interactions.from_frame(train), val=val)
    want = recmf.evaluate(model, test, k=10, catalog=movies["movie_id"].unique())
    assert want["n_users_eval"] > 0
    assert json.dumps({key: report[key] for key in want}) == json.dumps(want)
    assert "Warning" not in res.stderr and "warn" not in res.stderr.lower(), res.stderr
    assert "NeuralMF" in res.stderr          # the progress bar is there


@pytest.mark.parametrize("args, kind, want", [
    (["--model", "ease", "--l2", "80", "--half-life", "3"], "ease", {"l2": 80.0, "half_life": 3.0}),
    (["--model", "transition", "--window", "3", "--gap-decay", "0.25", "--half-life", "2"], "transition",
     {"window": 3, "gap_decay": 0.25, "half_life": 2.0}),
])
def test_ease_and_transition_hyperparameter_flags_reach_the_model(args, kind, want):
    from recmf import cli as recmf_cli
    model = recmf_cli._model(recmf_cli._parser().parse_args(["run", *args]))
    assert model.kind == kind
    assert {name: getattr(model, name) for name in want} == want


@pytest.mark.parametrize("args, flag", [
    (["--model", "transition", "--l2", "10"], "--l2"),
    (["--model", "ease", "--window", "2"], "--window"),
    (["--model", "popularity", "--half-life", "2"], "--half-life"),
    (["--model", "als", "--gap-decay", "0.5"], "--gap-decay"),
])
def test_hyperparameter_flag_of_another_model_is_rejected(args, flag):
    from recmf import cli as recmf_cli
    with pytest.raises(recmf_cli.CliError, match=f"does not take {flag}$"):
        recmf_cli._model(recmf_cli._parser().parse_args(["run", *args]))


def _mini_folder(tmp_path):
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=60, n_items=80, seed=2)
    folder = tmp_path / "mini"
    folder.mkdir(exist_ok=True)
    ratings.to_csv(folder / "ratings.csv", index=False)
    return folder


def test_quiet_prints_nothing_on_stderr_and_saved_is_shown_once(tmp_path):
    folder = _mini_folder(tmp_path)
    res = cli("run", "--data", str(folder), "--model", "popularity", "--quiet", "--save",
              str(tmp_path / "p.npz"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.count("saved") == 1 and str(tmp_path / "p.npz") in res.stdout
    res = cli("run", "--data", str(folder), "--model", "popularity", cwd=tmp_path)
    assert "data:" in res.stderr and "split:" in res.stderr and "index:" in res.stderr


def test_closed_stdout_ends_without_a_traceback(tmp_path):
    folder = _mini_folder(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [RECMF_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.Popen([sys.executable, "-m", "recmf", "run", "--data", str(folder), "--model",
                             "popularity", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=env)
    proc.stdout.close()          # the reader is gone before anything is written (`| head`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=600)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("args, message", [
    (["run", "--k", "0"], "--k must be >= 1, got 0"),
    (["run", "--model", "bprmf", "--epochs", "0"], "--epochs must be >= 1"),
    (["run", "--model", "neuralmf", "--epochs", "0"], "--epochs must be >= 1"),
    (["run", "--model", "als", "--iterations", "0"], "--iterations must be >= 1"),
    (["run", "--model", "neuralmf", "--dropout", "1.5"], "dropout must be a finite number in [0, 1)"),
    (["recommend", "--model", "/nonexistent.npz", "--users", "1", "--k", "0"], "--k must be >= 1, got 0"),
])
def test_bad_numbers_are_rejected_before_loading(args, message, tmp_path):
    if args[0] == "run":
        args = [*args, "--data", "/nonexistent/folder"]    # loading would fail with "not found"
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("recmf: error")]
    assert len(lines) == 1 and message in lines[0], res.stderr
