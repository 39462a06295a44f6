"""Helpers shared by the benchmarks in this folder.

Timing (best of N), machine facts, data location, the results table and
JSON output.  Benchmarks import recmf from the repository they live in
(an in-place build: ``python setup.py build_ext --inplace``) unless
``RECMF_BENCH_INSTALLED=1`` asks for the installed package.
"""
from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("RECMF_BENCH_INSTALLED") != "1" and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def pin_threads_from_argv(argv=None, default="2"):
    """Put ``--threads N`` (default 2) into OMP/OPENBLAS/MKL_NUM_THREADS.

    BLAS and OpenMP pools are sized when numpy and torch are imported, so a
    script calls this before importing them (this module imports neither).
    Returns the thread count as a string."""
    argv = sys.argv[1:] if argv is None else argv
    value = default
    for n, a in enumerate(argv):
        if a == "--threads" and n + 1 < len(argv):
            value = argv[n + 1]
        elif a.startswith("--threads="):
            value = a.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = value
    return value


def default_data_dir(name="ml-1m"):
    """``$RECMF_DATA/<name>`` when set, else ``../shared/data/<name>`` beside
    the repository (the layout of the project's machines)."""
    env = os.environ.get("RECMF_DATA")
    if env:
        return Path(env) / name
    return REPO.parent / "shared" / "data" / name


def find_file(folder, *names):
    for n in names:
        p = Path(folder) / n
        if p.is_file():
            return p
    raise FileNotFoundError(f"none of {names} in {folder}")


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def best_of(fn, repeats=3, warmup=False, cpu="process"):
    """Run ``fn()`` ``repeats`` times; return ``(best_wall, best_cpu,
    last_result)`` in seconds.

    ``cpu="thread"`` measures the calling thread's CPU time (right for
    single-threaded code: immune to other processes taking the cores, and
    to idle library threads spinning); ``"process"`` counts every thread of
    the process (right for multi-threaded code).  The garbage collector runs
    before and is disabled during each call, so one call does not pay for
    another's garbage."""
    clock = time.thread_time if cpu == "thread" else time.process_time
    if warmup:
        fn()
    walls, cpus = [], []
    result = None
    for _ in range(max(1, repeats)):
        result = None
        gc.collect()
        gc.disable()
        try:
            c0 = clock()
            t0 = time.perf_counter()
            result = fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(clock() - c0)
        finally:
            gc.enable()
    return min(walls), min(cpus), result


def ml20m_shape(scale=1.0):
    """``synthetic_ratings`` arguments of ML-20M's shape, or a ``scale``
    fraction of its users and ratings (items shrink more slowly, as the
    square root: a catalogue of a few hundred items cannot hold the
    long-tailed users' distinct items)."""
    from recmf.datasets import ML20M_SHAPE
    shape = dict(ML20M_SHAPE)
    if scale != 1.0:
        shape["n_users"] = max(100, int(shape["n_users"] * scale))
        shape["n_items"] = max(1_000, int(shape["n_items"] * scale ** 0.5))
        shape["n_ratings"] = max(10_000, int(shape["n_ratings"] * scale))
        shape["ratings_per_user"] = (20, min(shape["ratings_per_user"][1], shape["n_items"] // 4))
    return shape


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return None


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


# ---------------------------------------------------------------------------
# machine facts
# ---------------------------------------------------------------------------

def log(*a):
    """Progress on stderr (results go to stdout)."""
    print(*a, file=sys.stderr, flush=True)


def peak_rss():
    """This process's peak resident set, MB.

    ``VmHWM`` (/proc/self/status) is the high-water mark of this process's
    own address space.  ``ru_maxrss`` is kept for the record but is NOT used:
    Python starts children with vfork + exec, and Linux carries the parent's
    high-water mark into the child's ru_maxrss at exec, so a small child of
    a 400 MB parent reports 400 MB."""
    out = {"ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_mb"] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    out.setdefault("peak_rss_mb", out["ru_maxrss_mb"])
    return out


#: A 1-minute load average above this at the start means the timings of a
#: run are not trustworthy: no speed verdicts.
BUSY_LOAD = 1.5


class Verdict:
    """met / missed against a target, or why no verdict is given: targets
    are for ML-1M, and speed targets (``speed=True``) also need a machine
    that was idle (load <= BUSY_LOAD) when the run started."""

    def __init__(self, is_ml1m, load_start, speed=True):
        self.reason = None
        if not is_ml1m:
            self.reason = "n/a (not ML-1M)"
        elif speed and load_start is not None and load_start > BUSY_LOAD:
            self.reason = "machine busy"

    def __call__(self, value, op, target):
        """op: "<", "<=", ">=", or "in" with target = (low, high)."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if self.reason:
            return self.reason
        if op == "in":
            ok = target[0] <= value <= target[1]
        else:
            ok = {"<": value < target, "<=": value <= target, ">=": value >= target}[op]
        return "met" if ok else "missed"


def _cpuinfo_field(name):
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model():
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def _cpu_vendor():
    """GenuineIntel / AuthenticAMD / ...: subnormal floats cost ~100x per
    operation on Intel cores and little on AMD's, so every speed figure
    needs it next to it."""
    return _cpuinfo_field("vendor_id") or platform.machine()


def epoch_stats(seconds):
    """Summary of a whole training run's per-epoch seconds: a run can start
    fast and slow down later (subnormal floats on Intel), so one epoch, or
    the best one, says little.  Keys: n, total, min, median, max, first,
    last, last_over_first, max_over_first."""
    x = [float(v) for v in seconds if v is not None]
    if not x:
        return {"n": 0, "total": None, "min": None, "median": None, "max": None,
                "first": None, "last": None, "last_over_first": None, "max_over_first": None}
    s = sorted(x)
    mid = len(s) // 2
    med = s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])
    return {"n": len(x), "total": sum(x), "min": s[0], "median": med, "max": s[-1],
            "first": x[0], "last": x[-1], "last_over_first": x[-1] / x[0] if x[0] > 0 else None,
            "max_over_first": s[-1] / x[0] if x[0] > 0 else None}


EPOCH_STATS_COLUMNS = [("run", "run", None), ("n", "epochs", None),
                       ("total", "sum s", None), ("min", "min s", None), ("median", "median s", None),
                       ("max", "max s", None), ("first", "first s", None), ("last", "last s", None),
                       ("last_over_first", "last/first", None), ("max_over_first", "max/first", None)]


def epoch_stats_row(label, seconds):
    """A row of formatted cells for ``format_table(rows, EPOCH_STATS_COLUMNS)``."""
    st = epoch_stats(seconds)
    row = {"run": label, "n": str(st["n"])}
    for k in ("total", "min", "median", "max", "first", "last"):
        row[k] = fmt_seconds(st[k])
    row["last_over_first"] = fmt_ratio(st["last_over_first"])
    row["max_over_first"] = fmt_ratio(st["max_over_first"])
    row["_stats"] = st
    return row


def _git_commit():
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(extra_modules=("numpy", "pandas", "scipy")):
    """CPU, cores, Python and library versions, recmf.build_info(), commit."""
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cpu_vendor": _cpu_vendor(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": _git_commit(),
    }
    for name in extra_modules:
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "?")
        except ImportError:
            info[name] = None
    try:
        import recmf
        info["recmf"] = getattr(recmf, "__version__", "?")
        info["recmf_path"] = str(Path(recmf.__file__).parent)
        info["recmf_build"] = recmf.build_info()
    except Exception as e:  # noqa: BLE001 - report, do not die
        info["recmf"] = f"import failed: {e!r}"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def print_machine(info, file=sys.stdout):
    keys = ["date", "cpu", "cpu_vendor", "logical_cpus", "usable_cpus", "python", "numpy", "pandas", "scipy",
            "recmf", "recmf_build", "commit", "platform"]
    for k in keys + [k for k in info if k not in keys and k != "recmf_path"]:
        if k in info:
            print(f"  {k:13s} {info[k]}", file=file)


def begin_run():
    """A run's frame: print the machine and the load average; returns the
    state :func:`end_run` reads (machine facts, load at start)."""
    info = machine_info()
    print_machine(info)
    load = load_average()
    print(f"  load average  {load}")
    return {"machine": info, "load_start": load}


def end_run(run, args, rows, t0):
    """Print the seconds since ``t0`` (``time.perf_counter()``) and the load
    average's change; write the machine, load, arguments and ``rows`` to
    ``args.json`` if given."""
    load_end = load_average()
    print(f"\nwhole run {time.perf_counter() - t0:.0f} s; load average {run['load_start']} -> "
          f"{load_end}")
    if args.json:
        write_json(args.json, {"machine": run["machine"], "load_start": run["load_start"],
                               "load_end": load_end, "args": vars(args), "rows": rows})


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

def fmt_seconds(s):
    if s is None:
        return "-"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 0.01:
        return f"{s:.3f}"
    return f"{s:.5f}"


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def fmt_number(spec):
    """A column formatter for format_table: ``spec`` (e.g. "{:.4f}") or "-"
    for a missing value."""
    return lambda v: "-" if v is None else spec.format(v)


def format_table(rows, columns):
    """``rows``: list of dicts; ``columns``: list of (key, header, formatter)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([f(r.get(k)) if f else ("-" if r.get(k) is None else str(r.get(k)))
                      for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                               for i, (x, w) in enumerate(zip(c, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows, columns):
    out = ["| " + " | ".join(h for _, h, _ in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f(r.get(k)) if f else ("-" if r.get(k) is None else str(r.get(k)))
                                     for k, _, f in columns) + " |")
    return "\n".join(out)


def write_json(path, payload):
    def default(o):
        try:
            import numpy as np
            if isinstance(o, np.generic):
                return o.item()
            if isinstance(o, np.ndarray):
                return o.tolist()
        except ImportError:
            pass
        return str(o)
    Path(path).write_text(json.dumps(payload, indent=2, default=default) + "\n")
