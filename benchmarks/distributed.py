"""The whole workflow on an ML-20M-shaped log: one process against a Dask cluster.

    python benchmarks/distributed.py [--scale 1.0] [--workers 2] [--threads-per-worker 1]
        [--epochs 5] [--parquet DIR] [--json out.json] [--markdown table.md]

Stages, each timed on its own (wall clock, the stage's results computed and
held in memory before the clock stops):

========  ===============================  ==========================================
stage     one process (pandas + recmf)      Dask cluster (recmf.dask)
========  ===============================  ==========================================
read      ``pd.read_parquet``               ``dd.read_parquet`` (lazy; read in split)
split     ``recmf.temporal_split``          ``rd.temporal_split`` + persist
index     ``Interactions.from_frame``       ``Interactions.from_dask`` (to the client)
fit       ``BPRMF.fit`` on the client, the same model and thread count both ways
top-10    ``recommend_frame(all users)``    ``rd.recommend(all users)`` + persist
evaluate  ``recmf.evaluate(test)``          ``rd.evaluate(test, shuffle=False)``
========  ===============================  ==========================================

Then users scored per second and the peak resident memory of every process
(the client, and each worker).  Each side runs in its own child process, so
one side's memory does not count for the other.  Before any figure counts,
both sides must agree: the same split sizes, positives and users evaluated,
and metrics within 1e-4 (the one-process side scores with all cores, the
workers with one thread each, so BLAS rounding can reorder near-ties).

The log is ``recmf.datasets.synthetic_ratings(**ML20M_SHAPE, fast=True)``
scaled by ``--scale`` (users and ratings times scale, items times its square
root), written as Parquet files in timestamp order (a log as it arrives:
every user spans many files, so the split has to shuffle).  ``--scale 0.01``
runs in about a minute; the full size needs ~10 GB of memory and some
minutes.  Take figures on an idle machine only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file's name is the `distributed` package's: take its folder off the
# path so that `import distributed` finds Dask's, and load _common by path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)     # puts the repository first on sys.path


def _hwm_mb():
    """Peak resident memory of the calling process, MB (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _shape(scale):
    from recmf.datasets import ML20M_SHAPE
    n_users = max(50, round(ML20M_SHAPE["n_users"] * scale))
    n_items = max(100, round(ML20M_SHAPE["n_items"] * math.sqrt(min(scale, 1.0))))
    lo, hi = ML20M_SHAPE["ratings_per_user"]
    hi = min(hi, n_items // 2)
    n_ratings = min(max(round(ML20M_SHAPE["n_ratings"] * scale), lo * n_users), hi * n_users)
    return dict(n_users=n_users, n_items=n_items, n_ratings=n_ratings, ratings_per_user=(lo, hi))


def make_log(scale, folder, n_files):
    from recmf.datasets import synthetic_ratings, write_parquet
    with C.Timer() as t:
        ratings, _, movies = synthetic_ratings(**_shape(scale), seed=0, fast=True)
    C.log(f"generated {len(ratings):,} ratings in {t.seconds:.1f} s")
    write_parquet(ratings, folder, n_files=n_files, sort_by="timestamp")
    movies[["movie_id"]].to_parquet(Path(folder).parent / "movies.parquet")
    return len(ratings)


def _model(args):
    import recmf
    return recmf.BPRMF(emb_dim=64, epochs=args.epochs, seed=0, n_threads=args.fit_threads)


def _workflow(args, read, split, index, recommend, evaluate, count):
    """read -> split -> index -> fit -> top-k -> evaluate, each stage timed;
    the callables are one side's way of doing each step."""
    stages = {}

    def timed(name, fn, *a):
        with C.Timer() as t:
            result = fn(*a)
        stages[name] = t.seconds
        return result

    log = timed("read", read)
    train, val, test = timed("split", split, log)
    del log
    data = timed("index", index, train)
    model = timed("fit", lambda: _model(args).fit(data))
    recs = timed("top-k", recommend, model, data.user_ids)
    n_recs = count(recs)
    del recs
    report = timed("evaluate", evaluate, model, test)
    return dict(sizes=[count(f) for f in (train, val, test)], nnz=data.nnz, n_recs=n_recs,
                n_users=data.n_users, report=report, stages=stages)


def run_single(args):
    import pandas as pd
    import recmf
    catalog = pd.read_parquet(Path(args.parquet).parent / "movies.parquet")["movie_id"]
    out = _workflow(
        args, read=lambda: pd.read_parquet(args.parquet),
        split=lambda log: recmf.temporal_split(log, n_val=1, n_test=5, min_train=5),
        index=lambda train: recmf.Interactions.from_frame(train, threshold=4),
        recommend=lambda model, users: model.recommend_frame(users, k=args.k),
        evaluate=lambda model, test: recmf.evaluate(model, test, k=args.k, catalog=catalog),
        count=len)
    out["memory_mb"] = {"process": _hwm_mb()}
    return out


def run_dask(args):
    import dask
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster, wait

    import recmf
    import recmf.dask as rd
    catalog = pd.read_parquet(Path(args.parquet).parent / "movies.parquet")["movie_id"]

    def persisted(*frames):     # computed and held on the workers
        frames = dask.persist(*frames)
        wait(list(frames))
        return frames

    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                      processes=True, host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        out = _workflow(
            args, read=lambda: dd.read_parquet(args.parquet),
            split=lambda log: persisted(*rd.temporal_split(log, n_val=1, n_test=5, min_train=5)),
            index=lambda train: recmf.Interactions.from_dask(train, threshold=4),
            recommend=lambda model, users: persisted(rd.recommend(model, users, k=args.k))[0],
            evaluate=lambda model, test: rd.evaluate(model, test, k=args.k, catalog=catalog,
                                                     shuffle=False),
            count=lambda frame: int(frame.map_partitions(len).sum().compute()))
        workers = client.run(_hwm_mb)
        out["memory_mb"] = {"client": _hwm_mb(),
                            **{f"worker {n}": mb for n, mb in enumerate(workers.values())}}
    return out


def _child(args, mode, result):
    cmd = [sys.executable, __file__, "--mode", mode, "--parquet", args.parquet, "--result", result,
           "--epochs", str(args.epochs), "--k", str(args.k), "--workers", str(args.workers),
           "--threads-per-worker", str(args.threads_per_worker), "--fit-threads", str(args.fit_threads)]
    subprocess.run(cmd, check=True)
    return json.loads(Path(result).read_text())


def _agree(one, many):
    problems = []
    for key in ("sizes", "nnz", "n_recs", "n_users"):
        if one[key] != many[key]:
            problems.append(f"{key}: {one[key]} vs {many[key]}")
    a, b = one["report"], many["report"]
    if a.get("n_users_eval") != b.get("n_users_eval"):
        problems.append(f"n_users_eval: {a.get('n_users_eval')} vs {b.get('n_users_eval')}")
    for key in a:
        if abs(a[key] - b[key]) > 1e-4 * max(1.0, abs(a[key])):
            problems.append(f"{key}: {a[key]} vs {b[key]}")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of ML-20M's users and ratings")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--fit-threads", type=int, default=2, help="recmf threads for fit on the client")
    p.add_argument("--epochs", type=int, default=5, help="BPRMF epochs (500,000 triplets each)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--parquet", help="folder of Parquet files to read (default: generate one)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--mode", choices=["both", "single", "dask"], default="both", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.mode != "both":
        out = run_single(args) if args.mode == "single" else run_dask(args)
        Path(args.result).write_text(json.dumps(out, default=float))
        return 0

    load_start = C.load_average()
    with tempfile.TemporaryDirectory(prefix="recmf-dist-") as tmp:
        if args.parquet is None:
            args.parquet = str(Path(tmp) / "log")
            n_files = max(4, round(64 * min(args.scale, 1.0)))
            make_log(args.scale, args.parquet, n_files)
        C.log("one process ...")
        one = _child(args, "single", str(Path(tmp) / "single.json"))
        C.log(f"Dask, {args.workers} workers x {args.threads_per_worker} threads ...")
        many = _child(args, "dask", str(Path(tmp) / "dask.json"))
    load_end = C.load_average()

    problems = _agree(one, many)
    if problems:
        print("RESULTS DISAGREE:\n  " + "\n  ".join(problems))
        return 1
    rows = []
    for stage in one["stages"]:
        a, b = one["stages"][stage], many["stages"][stage]
        rows.append({"stage": stage, "one": a, "dask": b, "ratio": a / b if b else None})
    rows.append({"stage": "total", "one": sum(one["stages"].values()),
                 "dask": sum(many["stages"].values())})
    rows[-1]["ratio"] = rows[-1]["one"] / rows[-1]["dask"]
    cols = [("stage", "stage", None), ("one", "one process s", C.fmt_seconds),
            ("dask", f"Dask {args.workers}x{args.threads_per_worker} s", C.fmt_seconds),
            ("ratio", "one / Dask", C.fmt_ratio)]
    info = C.machine_info(extra_modules=("numpy", "pandas", "dask", "distributed"))
    C.print_machine(info)
    print(f"log: {sum(one['sizes']):,} ratings, {one['n_users']:,} users scored, "
          f"{one['nnz']:,} train positives; load average {load_start} -> {load_end}"
          + ("  (BUSY: not figures)" if load_start and load_start[0] > C.BUSY_LOAD else ""))
    print(C.format_table(rows, cols))
    for name, side in (("one process", one), ("Dask", many)):
        rate = side["n_users"] / side["stages"]["top-k"]
        mem = ", ".join(f"{k} {v:,.0f} MB" for k, v in side["memory_mb"].items())
        print(f"{name}: {rate:,.0f} users/s in top-{args.k}; peak memory {mem}")
    print("report:", {k: round(v, 6) for k, v in many["report"].items()})
    payload = {"machine": info, "args": vars(args), "load": [load_start, load_end],
               "one_process": one, "dask": many}
    if args.json:
        C.write_json(args.json, payload)
    if args.markdown:
        Path(args.markdown).write_text(C.markdown_table(rows, cols) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
