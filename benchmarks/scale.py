"""Cost that grows with the data: the seed workflow on an ML-20M-shaped log
(issue 8 part 4).

``recmf.datasets.synthetic_ratings(**ML20M_SHAPE, fast=True)`` makes 20M
ratings over 138,493 users x 26,744 items with long-tailed popularity and
ties in time (``--scale`` shrinks users, items and ratings together).  Each
stage is timed as a whole, in one process, with the CPU model, vendor and the
1-minute load average recorded:

* generate the log (not recmf's work; for reference);
* ``temporal_split(ratings, 1, 5, 5)`` and ``Interactions.from_frame(train, 4)``;
* NeuralMF epochs with dense Adam (the seed's semantics: every embedding
  row's moments are updated on every step) and with ``adam="lazy"`` (only
  the rows in the batch), ``--epochs`` each, every epoch's seconds kept;
* a BPRMF epoch (popular-hard triplets, dense Adam);
* top-10 for every user with seen items removed (BPRMF and NeuralMF), set
  against BPRMF's sgemm FLOP bound (2 * users * items * dim) at the sgemm
  rate measured in the same run (numpy float32 matmul, same thread count);
* ``evaluate`` on the test split;
* peak RSS of the process (VmHWM).

Targets (issue 8, 2 idle cores): the lazy NeuralMF epoch within 1.5x of
(positives / 554,070) x the ML-1M epoch given with ``--ml1m-epoch`` (the
median of benchmarks/models.py on the same machine); BPRMF top-10 of all
users within 1.5x of its sgemm FLOP bound.  Expect about 15-25 minutes at
full scale on 2 cores (dense-Adam NeuralMF epochs dominate).

Usage (repository root, after ``python setup.py build_ext --inplace``)::

    python benchmarks/scale.py [--scale 1.0] [--threads 2] [--epochs 2]
        [--ml1m-epoch SECONDS] [--json out.json]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports neither numpy nor torch)

C.pin_threads_from_argv()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ML1M_POSITIVES = 554_070


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of ML-20M's users and ratings (items: its square root)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="NeuralMF epochs per Adam variant (default 2)")
    p.add_argument("--ml1m-epoch", type=float, default=None,
                   help="median ML-1M NeuralMF epoch (s) measured on this machine, for the lazy target")
    p.add_argument("--skip-dense", action="store_true", help="skip the dense-Adam NeuralMF epochs")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def sgemm_rate(threads, m, n, k, seconds=1.0):
    """GFLOP/s of numpy's float32 matmul on an (m x k) @ (k x n) product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2.0 * m * n * k * reps / (time.perf_counter() - t0) / 1e9


def main(argv=None):
    args = parse_args(argv)
    import recmf
    from recmf.datasets import synthetic_ratings

    T = args.threads
    la0 = C.load_average()
    info = C.machine_info()
    shape = C.ml20m_shape(args.scale)
    st = {}

    def timed(name, fn):
        C.log(f"  {name} ...")
        t0 = time.perf_counter()
        out = fn()
        st[name] = time.perf_counter() - t0
        C.log(f"    {st[name]:.2f} s")
        return out

    C.log(f"scale.py: {shape}, {T} thread(s), {info['cpu']} ({info['cpu_vendor']}), load {la0}")
    ratings, _, _ = timed("generate", lambda: synthetic_ratings(**shape, fast=True, seed=0))
    train, val, test = timed("temporal_split", lambda: recmf.temporal_split(ratings, 1, 5, 5))
    data = timed("from_frame", lambda: recmf.Interactions.from_frame(train, threshold=4))
    sizes = {"ratings": len(ratings), "n_users": data.n_users, "n_items": data.n_items,
             "positives": data.nnz}
    C.log(f"  {data}")

    epochs = {}
    variants = ["lazy"] if args.skip_dense else ["dense", "lazy"]
    models = {}
    for adam in variants:
        m = timed(f"neuralmf_{adam}_fit", lambda a=adam: recmf.NeuralMF(
            epochs=args.epochs, adam=a, seed=0, n_threads=T).fit(data))
        epochs[f"neuralmf_{adam}"] = m.history["seconds"].tolist()
        models["neuralmf"] = m
    bpr = timed("bprmf_fit", lambda: recmf.BPRMF(epochs=1, seed=0, n_threads=T).fit(data))
    epochs["bprmf"] = bpr.history["seconds"].tolist()

    users = data.user_ids
    timed("recommend_bprmf", lambda: bpr.recommend(users, k=10))
    timed("recommend_neuralmf", lambda: models["neuralmf"].recommend(users, k=10))
    report = timed("evaluate_bprmf", lambda: recmf.evaluate(bpr, test, k=10))

    dim = bpr.emb_dim
    flops = 2.0 * data.n_users * data.n_items * dim
    rate = sgemm_rate(T, 4096, data.n_items, dim)
    bound = flops / (rate * 1e9)
    rss = C.peak_rss()
    la1 = C.load_average()

    print()
    print(f"== scale.py: {sizes['ratings']:,} ratings -> {sizes['n_users']:,} users x {sizes['n_items']:,} "
          f"items, {sizes['positives']:,} positives; {T} thread(s); {info['cpu']} ({info['cpu_vendor']}) ==")
    rows = [{"what": k, "s": C.fmt_seconds(v)} for k, v in st.items()]
    print(C.format_table(rows, [("what", "stage", None), ("s", "seconds", None)]))
    print()
    print("per-epoch seconds:")
    print(C.format_table([C.epoch_stats_row(k, v) for k, v in epochs.items()], C.EPOCH_STATS_COLUMNS))
    lazy = float(np.median(epochs["neuralmf_lazy"]))
    print()
    if args.ml1m_epoch:
        want = args.ml1m_epoch * sizes["positives"] / ML1M_POSITIVES
        print(f"lazy NeuralMF epoch {lazy:.1f} s vs (positives / 554,070) x ML-1M epoch = {want:.1f} s: "
              f"{lazy / want:.2f}x (target <= 1.5x)")
    if "neuralmf_dense" in epochs:
        dense = float(np.median(epochs["neuralmf_dense"]))
        print(f"dense / lazy Adam epoch: {dense / lazy:.2f}x (dense updates all "
              f"{sizes['n_users'] + sizes['n_items']:,} embedding rows' moments every step)")
    print(f"BPRMF top-10 of all users {st['recommend_bprmf']:.2f} s; sgemm FLOP bound {flops / 1e9:.3g} GFLOP "
          f"at {rate:.0f} GFLOP/s = {bound:.2f} s: {st['recommend_bprmf'] / bound:.2f}x (target <= 1.5x)")
    print(f"evaluate: {report}")
    print(f"peak RSS {rss.get('peak_rss_mb', float('nan')):.0f} MB; 1-min load {la0} -> {la1}"
          + (" (machine busy: timings not trustworthy)" if la0 and la0[0] > C.BUSY_LOAD else ""))
    if args.json:
        C.write_json(args.json, {"machine": info, "shape": shape, "sizes": sizes, "stages": st,
                                 "epochs": epochs, "sgemm_gflops": rate, "bprmf_flop_bound_s": bound,
                                 "report": report, "peak": rss, "load": [la0, la1]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
