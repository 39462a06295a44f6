"""Ctrl-C in long compiled calls (issue 20, field case 12).

fit stopped after the current batch on Ctrl-C (tests/test_runtime.py), but
recommend, score, evaluate and the EASE / SLIST / ALS / transition solvers ran to
the end.  Now every long call polls at block boundaries (csrc/runtime/stop.c): a
SIGINT raises KeyboardInterrupt at the next block, with nothing corrupted
(the model answers as before; a solver keeps the previous fit, ALS the
factors of its last complete iteration), while Python's own semantics hold:
a user's SIGINT handler runs, and the call goes on when it does not raise;
an ignored SIGINT is ignored; a call from another thread is never stopped.

The scenarios run in tests/interrupt_worker.py, an interpreter of its own,
where the process raises a real SIGINT at a chosen poll of the call: no
timing anywhere ("stopped at once" = no poll after the signal's).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import recmf

WORKER = Path(__file__).resolve().parent / "interrupt_worker.py"
SCENARIOS = [
    "recommend-neuralmf", "recommend-bprmf", "recommend-als", "recommend-ease", "recommend-transition",
    "recommend-sasrec", "recommend-slist", "recommend-blend", "score-neuralmf", "score-bprmf", "score-blend",
    "score-transition", "evaluate", "fold-in-ease", "recommend-neuralmf-2-threads", "fit-ease", "fit-transition",
    "fit-slist", "fit-als",
    "fit-bprmf-sampling", "custom-handler-runs-and-call-goes-on", "custom-handler-exception",
    "ignored-sigint", "handler-restored", "other-thread-not-stopped", "other-thread-signal-reaches-main",
]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    root = os.path.dirname(os.path.dirname(os.path.abspath(recmf.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, str(WORKER.parent)]))
    done = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path_factory.mktemp("interrupt"))
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return done, lines


@pytest.mark.parametrize("name", SCENARIOS)
def test_ctrl_c(name, outcome):
    done, lines = outcome
    assert done.returncode == 0 and "DONE" in done.stdout, (done.stdout[-2000:], done.stderr[-3000:])
    assert lines.get(name) == "OK", lines.get(name, f"not run: {done.stderr[-2000:]}")


def test_the_worker_reports_every_scenario(outcome):
    done, lines = outcome
    assert set(lines) - {"DONE"} == set(SCENARIOS)
