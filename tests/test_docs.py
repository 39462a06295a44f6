"""The documentation site builds with Sphinx, warnings as errors.

The API reference comes from the numpydoc docstrings of the recmf this
process imports, the guide is the README, the gallery the notebooks with the
outputs stored in them (never executed by the build).  The committed
notebooks carry no outputs; when tests/test_notebooks.py has run in this
session (it runs first: conftest.py orders this module last) the gallery is
built from the notebooks it executed, plots included.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import recmf

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NEEDED = ("sphinx", "numpydoc", "myst_nb")


def executed_notebooks_dir():
    """Where tests/test_notebooks.py leaves the notebooks it executed in
    this pytest process."""
    import tempfile
    return Path(tempfile.gettempdir()) / f"recmf-executed-notebooks-{os.getpid()}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs need {', '.join(missing)} (pip install '.[test]')")
    if not (DOCS / "conf.py").is_file():
        pytest.skip(f"no docs/ beside the tests ({DOCS})")
    import shutil
    root = tmp_path_factory.mktemp("docs")
    src, out = root / "src", root / "html"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "gallery", "guide.md"))
    env = dict(os.environ, RECMF_DOCS_ROOT=str(REPO))
    executed = executed_notebooks_dir()
    with_outputs = executed.is_dir() and any(executed.glob("*.ipynb"))
    if with_outputs:
        env["RECMF_DOCS_NOTEBOOKS"] = str(executed)
    env.pop("MPLBACKEND", None)
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(src), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"sphinx-build -W failed:\n{run.stderr[-5000:]}"
    return out, with_outputs


def test_docs_build_without_warnings(site):
    out, _ = site
    for page in ("index.html", "guide.html", "api.html", "gallery.html"):
        assert (out / page).is_file(), page


def test_api_reference_holds_every_public_name(site):
    out, _ = site
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ["temporal_split", "Interactions", "evaluate", "select", "set_config", "FROM_CONFIG",
                 "recommend_frame", "from_scipy", "get_params", "set_params"] + \
            [cls.__name__ for cls in recmf.available_models().values()]:
        assert f'id="recmf.{name}"' in api or f'.{name}"' in api, f"{name} is not in the API reference"
    # numpydoc rendered the sections (parameters as field lists, not raw text)
    assert "Parameters" in api and "Returns" in api and "----------" not in api


def test_gallery_pages_and_their_plots(site):
    out, with_outputs = site
    for name in ("data_prep", "train_model", "model_comparison"):
        page = out / "gallery" / f"{name}.html"
        assert page.is_file(), name
        html = page.read_text(encoding="utf-8")
        assert "recmf" in html
        if with_outputs:
            assert "<img" in html, f"{name}: the executed notebook's plots are missing"


def test_readme_links_the_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "python -m sphinx -W docs docs/_build/html" in readme
