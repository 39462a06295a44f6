"""SLIST (issue 17): quality under both protocols with knobs chosen on a
validation shaped like the test, the fit against a NumPy implementation of
the same solve, and the ML-20M shape.

Parts (``--part``, default ``all``):

quality
    ML-1M, the seed split (``temporal_split(ratings, 1, 5, 5)``), relevance =
    test rows rated >= 4, k = 10, under both protocols of SPEC 10b:
    *seed* (inputs and seen items = train positives) and *watched* (inputs =
    every rated item in time order, seen = every rated item;
    ``Interactions.from_frame(train, seen="rated")``, ``inputs="rated"``).
    Knobs are chosen on a validation shaped like the test: the inner split
    ``temporal_split(train, 1, 5, 5)`` holds out each user's last 5 train
    rows after a 1-row gap, as the test follows val; every candidate is
    fitted on the inner train and scored on those 5 rows.  The best is
    refitted on the whole train and the test scored once.  Models: SLIST over
    ``SLIST_GRID``, and the round-2 blend (recency-EASE + ItemTransition)
    over ``BLEND_GRID``.  For the record only (never to choose), every
    candidate is also refitted on the whole train and scored on the seed's
    1-row val and on test, giving the rank agreement (Spearman, Kendall)
    of each validation with the test over the grid, and the test figure of
    what the 1-row val would have chosen.
speed
    The ML-1M fit (seed protocol, the chosen knobs or ``--knobs``) against
    ``numpy_slist``: X, S and T built vectorised with scipy.sparse, the three
    Gram matrices by sparse products, ``np.linalg.solve`` in float64 (and in
    float32), interleaved repeats on the same thread count; the ratio of
    medians, and max |B_recmf - B_numpy| / max |B_numpy|.
scale
    ML-20M's shape from the fast generator
    (``synthetic_ratings(**ML20M_SHAPE, fast=True)``): fit seconds and peak
    memory (``VmHWM``) of SLIST in a child process, per protocol; then a
    catalogue too large for this machine, to show the error with its GiB.

Usage (repository root, after ``python setup.py build_ext --inplace``)::

    python benchmarks/slist.py [--part all|quality|speed|scale] [--data ML1M_DIR]
        [--models slist blend] [--protocols seed watched] [--threads 2] [--repeats 5]
        [--scale 1.0] [--json out.json] [--quick]

``--quick``: ML-100K, a 2-point grid and 1% of ML-20M (a smoke run).
Timings from a busy machine mean little: the speed part reports ratios of
runs interleaved in the same process, and the load average.

Measured (``python benchmarks/slist.py --part quality --threads 2``, ML-1M,
Intel Xeon (family 6 model 167), 2 cores, a shared machine; the quality
figures are deterministic)::

    protocol  model  grid  chosen on the inner val                   test R@10  N@10    rho inner/test  rho val/test  test if chosen on 1-row val
    seed      SLIST    54  alpha 0.2 l2 300 decay 8 window 10 hl 4      0.1584  0.1178  0.89            0.57          0.1602
    watched   SLIST    54  (the same)                                   0.1887  0.1382  0.62            0.08          0.1879
    seed      Blend   108  EASE l2 500 hl 3.5 + trans hl 1, w 0.4       0.1427  0.1035  0.92            0.74          0.1419
    watched   Blend   108  EASE l2 500 hl 7 + trans hl 2, w 0.4         0.1704  0.1205  0.97            0.39          0.1706

(The NumPy probe of issue 17: 0.1435 seed, 0.1806 watched.)

``--part speed --repeats 3`` on the same shared machine (load average ~10),
medians: the fit takes 2.15 s (seed, 554k entries) and 2.59 s (watched,
963k), 5.7x and 6.5x the NumPy float64 solve (6.0x and 6.4x its float32);
max|dB| / max|B| 3.8e-7 and 4.8e-7.

``--part scale --scale 0.25`` (a quarter of ML-20M's users and ratings,
half its items: 34,622 users x 13,371 items), same machine: the fit takes
115 s (seed, 2.4M entries) and 114 s (watched, 4.8M), peak RSS 1.6 GB; a
67,524-item catalogue is refused before allocating ("SLIST on 67,524
items needs 33.97 GiB (two 67,524 x 67,524 float32 matrices: 33.97 GiB),
but only 20.03 GiB is available; ..."), peak RSS 112 MB.

``--part scale --scale 1`` (the full ML-20M shape: 138,486 users x 26,744
items), Intel Xeon (model 167), 2 threads, machine idle (load ~1.9): the fit
takes 158 s (seed, 9.8M entries) and 169 s (watched, 19.2M), peak RSS 4.5 GB
and 4.8 GB; a 72,144-item catalogue is refused before allocating ("SLIST on
72,144 items needs 38.78 GiB ..., but only 22.92 GiB is available").
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads_from_argv()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

K = 10


def num(fmt):
    """A table formatter that shows None as '-'."""
    return lambda v: "-" if v is None else fmt.format(v)

SLIST_GRID = {"alpha": [0.05, 0.2], "l2": [100.0, 300.0, 1000.0], "position_decay": [4.0, 8.0, 16.0],
              "window": [10], "half_life": [3.0, 4.0, 6.0]}
BLEND_GRID = {"ease_l2": [250.0, 500.0], "ease_half_life": [2.0, 3.5, 7.0],
              "transition_half_life": [1.0, 2.0],
              "transition_weight": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}
QUICK_SLIST = {"alpha": [0.1], "l2": [30.0, 100.0], "position_decay": [4.0], "window": [10],
               "half_life": [3.0]}
QUICK_BLEND = {"ease_l2": [250.0], "ease_half_life": [3.5], "transition_half_life": [1.0],
               "transition_weight": [0.3, 0.5]}
PROTOCOLS = {"seed": ("positives", "positives"), "watched": ("rated", "rated")}


def points(grid):
    return [dict(zip(grid, v)) for v in itertools.product(*grid.values())]


def ranks_agree(a, b):
    from scipy.stats import kendalltau, spearmanr
    return float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic)


# ---------------------------------------------------------------------------
# quality
# ---------------------------------------------------------------------------

class Protocol:
    """One protocol's data: the whole train and the inner split."""

    def __init__(self, name, train, val, test):
        import recmf
        self.name = name
        self.inputs, seen = PROTOCOLS[name]
        inner_train, _, self.inner_test = recmf.temporal_split(train, n_val=1, n_test=5, min_train=5)
        self.data = recmf.Interactions.from_frame(train, threshold=4, seen=seen)
        self.inner = recmf.Interactions.from_frame(inner_train, threshold=4, seen=seen)
        self.val, self.test = val, test

    def recall(self, model, frame):
        import recmf
        return recmf.evaluate(model, frame, k=K)[f"recall@{K}"]


def slist_candidates(proto, grid):
    """(params, inner model, full model) over the grid; the half_life
    variants of one fit share it (``with_params``)."""
    import recmf
    fit_keys = [k for k in grid if k != "half_life"]
    for p in points({k: grid[k] for k in fit_keys}):
        inner, full = (recmf.SLIST(inputs=proto.inputs, n_threads=int(THREADS), **p).fit(d)
                       for d in (proto.inner, proto.data))
        for hl in grid["half_life"]:
            yield dict(p, half_life=hl), inner.with_params(half_life=hl), full.with_params(half_life=hl)


def blend_candidates(proto, grid):
    import recmf

    def components(data):
        eases = {l2: recmf.EASE(l2=l2, inputs=proto.inputs, n_threads=int(THREADS)).fit(data)
                 for l2 in grid["ease_l2"]}
        trans = recmf.ItemTransition(window=3, inputs=proto.inputs, n_threads=int(THREADS)).fit(data)
        return eases, trans

    from recmf.models import blend as blend_module

    # One variant object per (component, setting), shared by the candidates
    # that differ only in weights (the innermost loop), and a row cache big
    # enough for its six blocks (two components x inner val, val, test: 0.5
    # GB on ML-1M): each component's scores are computed once per setting,
    # not once per weight.  Same figures, a fraction of the time.
    blend_module._ROWS.max_bytes = max(blend_module._ROWS.max_bytes, 1 << 30)
    inner, full = components(proto.inner), components(proto.data)
    variants = {}

    def variant(model, half_life):
        key = (id(model), half_life)
        if key not in variants:
            variants[key] = model.with_params(half_life=half_life)
        return variants[key]

    for p in points(grid):
        made = []
        for eases, trans in (inner, full):
            e = variant(eases[p["ease_l2"]], p["ease_half_life"])
            t = variant(trans, p["transition_half_life"])
            w = p["transition_weight"]
            made.append(recmf.Blend([e, t], weights=(1 - w, w)).fit(e.data_))
        yield p, made[0], made[1]
    blend_module.clear_cache()


def run_grid(proto, candidates, label):
    """Every candidate on the inner validation (the choice), and for the
    record on the seed's val and on test; the chosen one's full test report."""
    import recmf
    rows, best, best_model = [], None, None
    t0 = time.perf_counter()
    for params, inner, full in candidates:
        row = {**params, "inner_val": proto.recall(inner, proto.inner_test),
               "seed_val": proto.recall(full, proto.val), "test": proto.recall(full, proto.test)}
        rows.append(row)
        if best is None or row["inner_val"] > rows[best]["inner_val"]:   # the first best on a tie
            best, best_model = len(rows) - 1, full
        C.log(f"  {proto.name} {label} {len(rows)}: {params} inner {row['inner_val']:.4f} "
              f"val {row['seed_val']:.4f} ({time.perf_counter() - t0:.0f} s)")
    report = recmf.evaluate(best_model, proto.test, k=K)
    table = pd.DataFrame(rows)
    best_val = int(np.argmax(table["seed_val"].to_numpy()))
    inner_rho, inner_tau = ranks_agree(table["inner_val"], table["test"])
    val_rho, val_tau = ranks_agree(table["seed_val"], table["test"])
    return {"protocol": proto.name, "model": label, "n_candidates": len(rows),
            "chosen": {k: v for k, v in rows[best].items() if k not in ("inner_val", "seed_val", "test")},
            "inner_val_recall": rows[best]["inner_val"], "test_recall": report[f"recall@{K}"],
            "test_ndcg": report[f"ndcg@{K}"], "test_coverage": report[f"coverage@{K}"],
            "n_users_eval": report["n_users_eval"],
            "spearman_inner_test": inner_rho, "kendall_inner_test": inner_tau,
            "spearman_val_test": val_rho, "kendall_val_test": val_tau,
            "test_if_chosen_on_seed_val": float(table["test"][best_val]),
            "best_test_in_grid": float(table["test"].max()), "table": rows}


def quality(args, ratings):
    import recmf
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    results = []
    for name in args.protocols:
        proto = Protocol(name, train, val, test)
        C.log(f"{name}: {proto.data}; inner {proto.inner}")
        if "slist" in args.models:
            results.append(run_grid(proto, slist_candidates(proto, args.slist_grid), "SLIST"))
        if "blend" in args.models:
            results.append(run_grid(proto, blend_candidates(proto, args.blend_grid),
                                    "Blend (recency-EASE + ItemTransition)"))
    cols = [("protocol", "protocol", None), ("model", "model", None),
            ("n_candidates", "grid", None), ("chosen", "chosen on inner val", None),
            ("inner_val_recall", "inner val R@10", num("{:.4f}")),
            ("test_recall", "test R@10", num("{:.4f}")), ("test_ndcg", "test N@10", num("{:.4f}")),
            ("spearman_inner_test", "rho inner/test", num("{:.2f}")),
            ("spearman_val_test", "rho val/test", num("{:.2f}")),
            ("test_if_chosen_on_seed_val", "test if chosen on 1-row val", num("{:.4f}"))]
    print()
    print(C.format_table(results, cols))
    return results


# ---------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------

def numpy_slist(indptr, items, n_items, alpha, l2, position_decay, window, dtype=np.float64):
    """SLIST with NumPy and scipy.sparse, as a careful user would write it:
    S and T built vectorised (one pass per distance d < window over every
    place t < L - 1 of every sequence), Gram matrices by sparse products,
    then one dense solve in ``dtype``."""
    from scipy.sparse import csr_matrix
    lens = np.diff(indptr)
    n_rows_user = np.maximum(lens - 1, 0)
    row0 = np.concatenate([[0], np.cumsum(n_rows_user)])
    n_rows = int(row0[-1])
    user = np.repeat(np.arange(len(lens)), n_rows_user)
    t = np.arange(n_rows) - row0[user]                   # place of each row in its sequence
    start, L = indptr[user], lens[user]
    S_r, S_c, S_v, T_r, T_c, T_v = [], [], [], [], [], []
    rows = np.arange(n_rows)
    for d in range(min(window, int(lens.max()))):
        w = math.exp(-d / position_decay)
        ok = t - d >= 0
        S_r.append(rows[ok]), S_c.append(items[start[ok] + t[ok] - d]), S_v.append(np.full(ok.sum(), w))
        ok = t + 1 + d <= L - 1
        T_r.append(rows[ok]), T_c.append(items[start[ok] + t[ok] + 1 + d]), T_v.append(np.full(ok.sum(), w))
    S = csr_matrix((np.concatenate(S_v), (np.concatenate(S_r), np.concatenate(S_c))), shape=(n_rows, n_items))
    T = csr_matrix((np.concatenate(T_v), (np.concatenate(T_r), np.concatenate(T_c))), shape=(n_rows, n_items))
    X = csr_matrix((np.ones(len(items)), items, indptr), shape=(len(lens), n_items))
    XX = (X.T @ X).toarray()
    A = alpha * XX + (1 - alpha) * (S.T @ S).toarray()
    A[np.diag_indices_from(A)] += l2
    R = alpha * XX + (1 - alpha) * (S.T @ T).toarray()
    return np.linalg.solve(A.astype(dtype), R.astype(dtype))


def speed(args, ratings, knobs):
    import recmf
    train = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)[0]
    out = []
    for name in args.protocols:
        inputs, seen = PROTOCOLS[name]
        data = recmf.Interactions.from_frame(train, threshold=4, seen=seen)
        k = knobs.get(name, {"alpha": 0.1, "l2": 100.0, "position_decay": 4.0, "window": 10})
        k = {p: k[p] for p in ("alpha", "l2", "position_decay", "window")}
        indptr, items = data.sequences(inputs)
        times = {"recmf": [], "numpy f64": [], "numpy f32": []}
        B = {}
        for rep in range(args.repeats):           # interleaved: a busy spell hits both
            for side in times:
                t0 = time.perf_counter()
                if side == "recmf":
                    B[side] = recmf.SLIST(inputs=inputs, n_threads=int(THREADS), **k).fit(data).B_
                else:
                    B[side] = numpy_slist(indptr, items, data.n_items, **k,
                                          dtype=np.float64 if side == "numpy f64" else np.float32)
                times[side].append(time.perf_counter() - t0)
            C.log(f"  {name} repeat {rep + 1}: " + ", ".join(f"{s} {v[-1]:.2f} s" for s, v in times.items()))
        med = {s: statistics.median(v) for s, v in times.items()}
        scale = np.abs(B["numpy f64"]).max()
        out.append({"protocol": name, "knobs": k, "n_items": data.n_items, "entries": len(items),
                    "recmf_s": med["recmf"], "numpy_f64_s": med["numpy f64"], "numpy_f32_s": med["numpy f32"],
                    "ratio_f64": med["numpy f64"] / med["recmf"], "ratio_f32": med["numpy f32"] / med["recmf"],
                    "max_rel_diff_f64": float(np.abs(B["recmf"] - B["numpy f64"]).max() / scale),
                    "times": times})
    cols = [("protocol", "protocol", None), ("n_items", "items", None), ("entries", "sequence entries", None),
            ("recmf_s", "recmf (s)", C.fmt_seconds), ("numpy_f64_s", "numpy f64 (s)", C.fmt_seconds),
            ("ratio_f64", "ratio", C.fmt_ratio), ("numpy_f32_s", "numpy f32 (s)", C.fmt_seconds),
            ("ratio_f32", "ratio", C.fmt_ratio), ("max_rel_diff_f64", "max|dB|/max|B|", num("{:.1e}"))]
    print()
    print(C.format_table(out, cols))
    return out


# ---------------------------------------------------------------------------
# scale
# ---------------------------------------------------------------------------

def child(args):
    """One SLIST fit at ML-20M's shape in this process; prints JSON."""
    import recmf
    from recmf.datasets import synthetic_ratings
    shape = C.ml20m_shape(args.scale)
    if args.items_override:
        return too_big(args.items_override)
    ratings, _, _ = synthetic_ratings(**shape, fast=True, seed=0)
    train = recmf.temporal_split(ratings, 1, 5, 5)[0]
    del ratings
    inputs, seen = PROTOCOLS[args.child]
    data = recmf.Interactions.from_frame(train, threshold=4, seen=seen)
    del train
    C.log(f"  child {args.child}: {data}, {len(data.sequences(inputs).items):,} sequence entries")
    rss0 = C.peak_rss()
    out = {"protocol": args.child, "n_users": data.n_users, "n_items": data.n_items,
           "entries": int(len(data.sequences(inputs).items)), "rss_before_fit_mb": rss0.get("peak_rss_mb")}
    try:
        with C.Timer() as t:
            recmf.SLIST(alpha=0.1, l2=100.0, position_decay=4.0, window=10, inputs=inputs,
                        n_threads=int(THREADS)).fit(data)
        out.update(seconds=t.seconds, **C.peak_rss())
    except MemoryError as e:
        out.update(error=f"MemoryError: {e}")
    print(json.dumps(out))


def too_big(n_items):
    """The fit on a catalogue of n_items (each item in one 10-item
    sequence): the memory check must refuse it before allocating."""
    import recmf
    n_users = n_items // 10
    indptr = np.arange(0, 10 * n_users + 1, 10, dtype=np.int64)
    data = recmf.Interactions(indptr, np.arange(10 * n_users, dtype=np.int32) % n_items,
                              np.arange(n_users), np.arange(n_items),
                              positions=np.tile(np.arange(10, dtype=np.int32), n_users))
    out = {"protocol": "seed", "n_users": n_users, "n_items": n_items, "entries": 10 * n_users}
    try:
        with C.Timer() as t:
            recmf.SLIST(n_threads=int(THREADS)).fit(data)
        out.update(seconds=t.seconds, **C.peak_rss())
    except MemoryError as e:
        out.update(error=f"MemoryError: {e}", **C.peak_rss())
    print(json.dumps(out))


def run_child(protocol, args, items=None):
    cmd = [sys.executable, __file__, "--child", protocol, "--scale", str(args.scale), "--threads", THREADS]
    if items:
        cmd += ["--items-override", str(items)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        return {"protocol": protocol, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale(args):
    rows = [run_child(p, args) for p in args.protocols]
    # A catalogue that cannot fit: 2 n^2 float32 above this machine's memory.
    from recmf._checks import available_bytes
    avail = available_bytes() or 24 * 2 ** 30
    too_big = int(math.sqrt(avail / 8) * 1.3)
    rows.append(run_child("seed", args, items=too_big))
    cols = [("protocol", "protocol", None), ("n_users", "users", None), ("n_items", "items", None),
            ("entries", "entries", None), ("seconds", "fit (s)", C.fmt_seconds),
            ("peak_rss_mb", "peak RSS (MB)", num("{:.0f}")), ("error", "error", None)]
    print()
    print(C.format_table(rows, cols))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["all", "quality", "speed", "scale"], default="all")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of ML-20M for the scale part")
    ap.add_argument("--models", nargs="+", default=["slist", "blend"], choices=["slist", "blend"],
                    help="quality part: the grids to run (the blend's 108 settings take the longest)")
    ap.add_argument("--protocols", nargs="+", default=["seed", "watched"], choices=list(PROTOCOLS))
    ap.add_argument("--knobs", default=None, help="JSON {protocol: {alpha, l2, position_decay, window}} "
                                                  "for the speed part (default: those chosen by quality)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=list(PROTOCOLS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--items-override", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    args.slist_grid, args.blend_grid = (QUICK_SLIST, QUICK_BLEND) if args.quick else (SLIST_GRID, BLEND_GRID)
    if args.quick:
        args.repeats, args.scale = min(args.repeats, 2), min(args.scale, 0.01)
    import recmf
    info = C.machine_info()
    C.print_machine(info)
    load_start = C.load_average()
    folder = Path(args.data) if args.data else C.default_data_dir("ml-100k" if args.quick else "ml-1m")
    ratings = None
    if args.part in ("all", "quality", "speed"):
        ratings, _, _ = recmf.load_movielens(folder)
    payload = {"machine": info, "load_start": load_start, "data": str(folder), "threads": THREADS}
    knobs = json.loads(args.knobs) if args.knobs else {}
    if args.part in ("all", "quality"):
        payload["quality"] = quality(args, ratings)
        for r in payload["quality"]:
            if r["model"] == "SLIST" and r["protocol"] not in knobs:
                knobs[r["protocol"]] = r["chosen"]
    if args.part in ("all", "speed"):
        payload["speed"] = speed(args, ratings, knobs)
    if args.part in ("all", "scale"):
        payload["scale"] = scale(args)
    payload["load_end"] = C.load_average()
    print(f"\nload average at start {load_start}, at end {payload['load_end']} ({THREADS} threads)")
    if args.json:
        C.write_json(args.json, payload)


if __name__ == "__main__":
    main()
