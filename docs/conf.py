"""Sphinx configuration of recmf's documentation.

Build it with ``python -m sphinx -W docs docs/_build/html`` (warnings are
errors, as in the test suite: tests/test_docs.py).  The API reference comes
from the numpydoc docstrings of the installed recmf; the guide is the
README; the gallery shows the notebooks with the outputs stored in them,
never executing them (``RECMF_DOCS_NOTEBOOKS`` names a folder of executed
copies, e.g. from ``jupyter nbconvert --execute``; the committed notebooks
carry no outputs).
"""
import os
import shutil
from pathlib import Path

import recmf

HERE = Path(__file__).resolve().parent
# The checkout (the test suite builds a copy of docs/ elsewhere).
ROOT = Path(os.environ.get("RECMF_DOCS_ROOT") or HERE.parent)

project = "recmf"
author = "recmf developers"
copyright = "recmf developers"
release = version = recmf.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# numpydoc: the docstrings are the reference; no autosummary stub pages.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "inherited-members": False}

# The notebooks: their stored outputs (plots included), never executed here.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "myst.xref_missing", "mystnb.unknown_mime_type"]

html_theme = "alabaster"
html_title = f"recmf {release}"
html_static_path = []


def _copy_notebooks(app):
    """The gallery's notebooks: executed copies when given, else the
    committed ones (without outputs)."""
    source = Path(os.environ.get("RECMF_DOCS_NOTEBOOKS") or ROOT / "notebooks")
    gallery = Path(app.srcdir) / "gallery"
    gallery.mkdir(exist_ok=True)
    for name in ("train_model.ipynb", "data_prep.ipynb", "model_comparison.ipynb"):
        found = source / name
        shutil.copyfile(found if found.is_file() else ROOT / "notebooks" / name, gallery / name)


def _copy_readme(app):
    """The guide is the README (one text, so the two never drift apart)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (Path(app.srcdir) / "guide.md").write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _copy_notebooks)
    app.connect("builder-inited", _copy_readme)
