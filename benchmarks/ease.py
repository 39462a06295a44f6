"""EASE benchmark: recmf.EASE's fit against the usual NumPy implementation
(float64: Gram by scipy.sparse, ``np.linalg.inv``, B), side by side in one
run on the same thread count, on ML-1M and on a synthetic catalogue of
``--items`` items (issue 11).

Measured:

1. ML-1M (seed split, train positives at threshold 4): fit seconds of both
   (best of ``--repeats``), the ratio, and max |B_recmf - B_numpy|;
2. synthetic, ``--items`` items (20,000 by default) and ``--users`` users
   with a Zipf-like popularity: recmf's fit seconds and peak memory, each in
   a child process of its own (its ``VmHWM``), and NumPy's only with
   ``--numpy-synthetic`` (float64 needs 2 x 8 n^2 bytes: 6.4 GB at 20k).

Targets (printed next to the figures; verdicts only on ML-1M and when the
1-minute load average was <= 1.5 at the start): fit >= 3x faster than
NumPy on ML-1M; 20k items in < 120 s and < 4 GB.

Usage (repository root, after ``python setup.py build_ext --inplace``)::

    python benchmarks/ease.py [--data ML1M_DIR] [--threads 2] [--items 20000]
        [--users 100000] [--repeats 3] [--numpy-synthetic] [--json out.json] [--quick]

``--quick``: ML-100K and 2,000 synthetic items (a smoke run).  Timings
taken on a busy machine mean nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads_from_argv()

import numpy as np  # noqa: E402


def synthetic_interactions(n_users, n_items, mean_len=100, seed=0):
    """A 0/1 matrix with Zipf-like item popularity and geometric history
    lengths (>= 5), as recmf.Interactions."""
    import recmf
    from recmf import _core
    rng = np.random.default_rng(seed)
    lens = np.minimum(5 + rng.geometric(1.0 / max(mean_len - 5, 1), size=n_users), n_items)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    cdf = np.cumsum(rng.permutation(p))
    cdf /= cdf[-1]
    rows = np.repeat(np.arange(n_users, dtype=np.int32), lens)
    cols = np.minimum(np.searchsorted(cdf, rng.random(len(rows))), n_items - 1).astype(np.int32)
    indptr, indices = _core.build_csr(rows, cols, n_users, n_items)
    used = np.unique(indices)
    remap = np.full(n_items, -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    return recmf.Interactions(indptr, remap[indices], np.arange(n_users, dtype=np.int64),
                              used.astype(np.int64))


def numpy_ease(data, l2):
    """The usual NumPy EASE in float64 (what the issue compares with)."""
    X = data.to_scipy()
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)
    B = P / (-np.diag(P))
    np.fill_diagonal(B, 0.0)
    return B


def child(args):
    """One fit in this (child) process; prints JSON with seconds and peak RSS."""
    import recmf  # noqa: F401
    data = synthetic_interactions(args.users, args.items, seed=0)
    C.log(f"  child {args.child}: {data}")
    with C.Timer() as t:
        if args.child == "recmf":
            recmf.EASE(l2=args.l2, n_threads=int(THREADS)).fit(data)
        else:
            numpy_ease(data, args.l2)
    print(json.dumps({"seconds": t.seconds, "n_items": data.n_items, "nnz": data.nnz,
                      **C.peak_rss()}))


def run_child(kind, args):
    cmd = [sys.executable, __file__, "--child", kind, "--items", str(args.items), "--users",
           str(args.users), "--threads", THREADS, "--l2", str(args.l2)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--l2", type=float, default=250.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-synthetic", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=["recmf", "numpy"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.items, args.users, args.repeats = 2_000, 5_000, 1
    load_start = C.load_average()[0] if C.load_average() else None
    import recmf
    info = C.machine_info()
    C.print_machine(info)
    name = "ml-100k" if args.quick else "ml-1m"
    folder = Path(args.data) if args.data else C.default_data_dir(name)
    ratings, _, _ = recmf.load_movielens(folder)
    train, _, _ = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4)
    is_ml1m = data.n_items > 3000 and "1m" in str(folder).lower()
    verdict = C.Verdict(is_ml1m, load_start)
    C.log(f"{name}: {data}; threads {THREADS}; load at start {load_start}")

    t_rmf, _, model = C.best_of(lambda: recmf.EASE(l2=args.l2, n_threads=int(THREADS)).fit(data),
                                repeats=args.repeats)
    t_np, _, B_np = C.best_of(lambda: numpy_ease(data, args.l2), repeats=args.repeats)
    ratio = t_np / t_rmf
    err = float(np.abs(model.B_ - B_np).max())
    rows = [{"what": f"{name} fit ({data.n_items} items)", "recmf": t_rmf, "numpy": t_np,
             "ratio": ratio, "target": ">= 3x", "verdict": verdict(ratio, ">=", 3.0)}]
    del model, B_np

    syn = run_child("recmf", args)
    syn_np = run_child("numpy", args) if args.numpy_synthetic else {}
    syn_verdict = C.Verdict(args.items >= 20_000, load_start)
    rows.append({"what": f"synthetic fit ({syn.get('n_items', args.items)} items)",
                 "recmf": syn.get("seconds"), "numpy": syn_np.get("seconds"),
                 "ratio": (syn_np["seconds"] / syn["seconds"]) if syn_np.get("seconds") and
                 syn.get("seconds") else None,
                 "target": "< 120 s", "verdict": syn_verdict(syn.get("seconds"), "<", 120.0)})
    rows.append({"what": "synthetic peak memory (GB)",
                 "recmf": syn.get("peak_rss_mb", float("nan")) / 1024,
                 "numpy": syn_np.get("peak_rss_mb", float("nan")) / 1024 if syn_np else None,
                 "target": "< 4 GB", "verdict": syn_verdict(syn.get("peak_rss_mb", 0) / 1024, "<", 4.0)})
    cols = [("what", "", None), ("recmf", "recmf (s)", C.fmt_seconds), ("numpy", "numpy f64 (s)", C.fmt_seconds),
            ("ratio", "ratio", C.fmt_ratio), ("target", "target", None), ("verdict", "verdict", None)]
    print()
    print(C.format_table(rows, cols))
    print(f"\nmax |B_recmf - B_numpy| on {name}: {err:.2e}  (recmf float32, numpy float64)")
    if syn.get("error") or syn_np.get("error"):
        print(f"synthetic errors: {syn.get('error')} {syn_np.get('error')}")
    if args.json:
        C.write_json(args.json, {"machine": info, "load_start": load_start, "rows": rows,
                                 "max_abs_B_diff": err, "synthetic": syn, "synthetic_numpy": syn_np})


if __name__ == "__main__":
    main()
