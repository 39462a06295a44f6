"""The README's Python blocks run as written, so they cannot drift from the
code: every ```python block outside "More than one machine" (which
tests/test_dask.py runs on a cluster) is executed in order, in one script,
on ML-100K where it is found, else on the built-in synthetic data (ML-1M's
path is the only text replaced)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DATA = Path(os.environ.get("RECMF_DATA") or REPO.parent / "shared" / "data")
ML100K = DATA / "ml-100k"
RUN_ELSEWHERE = {"More than one machine": "tests/test_dask.py::test_readme_more_than_one_machine_runs"}


def python_blocks():
    """``[(section title, code)]`` of the README, in order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for section in re.split(r"\n## ", "\n" + text)[1:]:
        title = section.split("\n", 1)[0].strip()
        out += [(title, code) for code in re.findall(r"```python\n(.*?)```", section, re.S)]
    return out


def test_every_python_block_parses():
    blocks = python_blocks()
    assert len(blocks) >= 6
    for title, code in blocks:
        compile(code, f"README.md ({title})", "exec")


def test_readme_python_blocks_run(tmp_path):
    pytest.importorskip("polars")
    pytest.importorskip("scipy")
    pytest.importorskip("onnx")
    blocks = [(t, c) for t, c in python_blocks() if t not in RUN_ELSEWHERE]
    assert any(t == "Quickstart" for t, _ in blocks)
    script = "\n".join(f"# --- README: {t}\n{c}" for t, c in blocks)
    load = 'recmf.load_movielens("path/to/ml-1m")'
    assert script.count(load) == 1, "the Quickstart loads the data once, from this path"
    if (ML100K / "u.data").is_file():
        script = script.replace(load, f"recmf.load_movielens({str(ML100K)!r})")
    else:
        script = script.replace(load, "recmf.datasets.synthetic_ratings(seed=0)")
    (tmp_path / "readme_blocks.py").write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "readme_blocks.py"], cwd=tmp_path, env=env, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "recall@10" in done.stdout
    assert (tmp_path / "nmf.npz").is_file() and (tmp_path / "nmf.onnx").is_file()
