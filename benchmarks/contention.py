"""NeuralMF training while another program uses a core (issue 8, part 3).

    python benchmarks/contention.py [--data DIR] [--epochs 2] [--users-fraction 1.0]
                                    [--loads 0,0.25,1] [--json out.json]

For each neighbour load (0 = none, 0.25 = a process busy 25% of one core,
1 = one core kept busy) and each setting, a fresh interpreter (so libgomp
reads its settings as it loads) times NeuralMF epochs on the data:

  n_threads=1              one thread (the baseline)
  default                  n_threads=2 as recmf sets it up: bounded spinning
                           (recmf/_runtime.py) and the batch-by-batch pacer
                           that runs a batch on one thread when that is
                           faster (csrc/runtime/threads.c)
  no pacing                n_threads=2, bounded spinning, every batch on the
                           full team (the pacer's test mode 3)
  libgomp spin, no pacing  n_threads=2 with libgomp's own waiting
                           (GOMP_SPINCOUNT=300000) on the full team: what
                           recmf did in round 1
  passive                  n_threads=2 with OMP_WAIT_POLICY=passive (paced)

and prints per load the median epoch time of each setting over the
baseline's (below 1: faster than one thread) and the default's mean team
size (history's ``threads``).  The targets: with a neighbour, default /
n_threads=1 <= 1.10; idle, default / no pacing <= 1.05 (what the pacer's
probes cost) and default / libgomp spin <= 1.05.  Figures only count from an otherwise idle machine (the script
notes the load average); on a shared one, run it to see that it works.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (REPO, default_data_dir, fmt_ratio, fmt_seconds, format_table, load_average, log,
                     machine_info, print_machine, write_json)

SETTINGS = {
    "n_threads=1": ({}, 1),
    "default": ({}, 2),
    "no pacing": ({"RECMF_BENCH_PACER": "3"}, 2),
    "libgomp spin, no pacing": ({"GOMP_SPINCOUNT": "300000", "RECMF_BENCH_PACER": "3"}, 2),
    "passive": ({"OMP_WAIT_POLICY": "passive"}, 2),
}

# The neighbour: busy `duty` of every 10 ms period on whichever core the
# kernel gives it.
NEIGHBOUR = """
import sys, time
duty = float(sys.argv[1]); period = 0.01
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * period:
        pass
    if duty < 1:
        time.sleep((1 - duty) * period)
"""

# One measurement: epochs of NeuralMF, each epoch's wall time on stdout.
TRAIN = """
import json, os, sys, time
import numpy as np
import recmf
recmf._core._pacer(int(os.environ.get("RECMF_BENCH_PACER", "0")))
data_dir, epochs, n_threads, fraction = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ratings, _, _ = recmf.load_movielens(data_dir)
if fraction < 1:
    users = ratings["user_id"].unique()
    keep = np.random.default_rng(0).choice(users, max(1, int(len(users) * fraction)), replace=False)
    ratings = ratings[ratings["user_id"].isin(keep)]
train, _, _ = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
data = recmf.Interactions.from_frame(train, threshold=4)
start = time.perf_counter()
hist = recmf.NeuralMF(epochs=epochs, seed=0, n_threads=n_threads).fit(data).history
print(json.dumps({"epoch_s": hist["seconds"].tolist(), "threads": hist["threads"].tolist(),
                  "total_s": time.perf_counter() - start}))
"""


def run_setting(env_extra, n_threads, args):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", TRAIN, str(args.data), str(args.epochs), str(n_threads),
                          str(args.users_fraction)], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return statistics.median(result["epoch_s"]), statistics.mean(result["threads"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_dir("ml-1m"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--users-fraction", type=float, default=1.0,
                    help="train on this fraction of the users (a quick check of the script)")
    ap.add_argument("--loads", default="0,0.25,1", help="neighbour loads, fractions of one core")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    info = machine_info()
    load_start = load_average()
    print_machine(info)
    print(f"  load average at start: {load_start}")
    rows = []
    for load in [float(x) for x in args.loads.split(",")]:
        neighbour = None
        if load > 0:
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(load)])
            time.sleep(0.5)
        try:
            row = {"load": f"{load:.0%} of a core" if load else "idle"}
            for name, (env_extra, nt) in SETTINGS.items():
                log(f"neighbour {row['load']}: {name} ...")
                row[name], threads = run_setting(env_extra, nt, args)
                if name == "default":
                    row["default threads"] = threads
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        base = row["n_threads=1"]
        for name in SETTINGS:
            row[name + " ratio"] = row[name] / base
        rows.append(row)

    columns = [("load", "neighbour", None), ("n_threads=1", "1 thread, s/epoch", fmt_seconds)]
    columns += [(name + " ratio", f"{name} / 1 thread", fmt_ratio) for name in SETTINGS if name != "n_threads=1"]
    columns += [("default threads", "default: mean team", lambda x: f"{x:.2f}")]
    print()
    print(format_table(rows, columns))
    idle = next((r for r in rows if r["load"] == "idle"), None)
    if idle:
        print(f"\nidle cost of the default against no pacing: "
              f"{fmt_ratio(idle['default'] / idle['no pacing'])} (target <= 1.05x); against "
              f"libgomp's spinning: {fmt_ratio(idle['default'] / idle['libgomp spin, no pacing'])} "
              "(target <= 1.05x)")
    worst = max((r["default ratio"] for r in rows if r["load"] != "idle"), default=None)
    if worst is not None:
        print(f"with a neighbour, default / 1 thread at worst: {fmt_ratio(worst)} (target <= 1.10x)")
    print(f"load average at the end: {load_average()} "
          "(figures count only from an otherwise idle machine)")
    if args.json:
        write_json(args.json, {"machine": info, "load_start": load_start, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
