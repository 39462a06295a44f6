"""ALS benchmark: recmf.ALS against benfred/implicit's
``implicit.als.AlternatingLeastSquares`` (CPU, conjugate gradient) in the
same run, on the same data, thread count and hyperparameters (issue 11,
part 9).

Both factorise the 0/1 train positives of the seed's split (ML-1M:
temporal_split(n_val=1, n_test=5, min_train=5), rating >= 4) with the same
factors, regularization, iterations, CG steps (3) and threads, and the same
confidence: recmf's ``c = 1 + alpha`` is implicit's ``alpha`` (implicit
multiplies the matrix by its alpha and uses that as c), so implicit gets
``alpha = 1 + recmf alpha``.  Initial factors differ (each library's own
RNG), so the two models are different draws of the same method: their
recall@10 must agree within seed noise (``--seeds 3`` prints the spread),
not to the digit.

Measured per side: the whole ``fit`` (seconds per iteration = fit /
iterations; implicit's fit does not compute the loss, recmf's always does),
the best single iteration (implicit: its ``fit_callback``; recmf: its
``history``), the process CPU time per iteration (all threads; spinning
OpenMP threads count too), and recall@10 / ndcg@10 on val and test with seen items
removed (implicit's own ``recommend`` for implicit).  implicit runs with
OpenBLAS limited to 1 thread inside its fit (threadpoolctl), as implicit
itself advises: its parallel row loop calls BLAS per row.

Target (issue 11): recmf's time per iteration <= implicit's on the same
machine and threads.  Verdicts only for ML-1M on a machine whose 1-minute
load average was <= 1.5 at the start; timings on a busy machine mean
nothing.

Usage (repository root, after ``python setup.py build_ext --inplace``;
needs ``pip install implicit``)::

    python benchmarks/als.py [--data ML1M_DIR] [--threads 2] [--factors 64]
        [--regularization 50] [--alpha 2] [--iterations 15] [--seeds 1]
        [--json out.json] [--quick]

``--quick``: ML-100K, 5 iterations (a smoke run).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ML1M_INDEX = (6038, 3525, 554070)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="MovieLens folder (default: $RECMF_DATA/ml-1m)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--regularization", type=float, default=50.0)
    p.add_argument("--alpha", type=float, default=2.0, help="recmf's alpha (implicit gets 1 + alpha)")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--seeds", type=int, default=1, help="seeds per side (quality spread)")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.data = args.data or str(C.default_data_dir("ml-100k"))
        args.iterations = min(args.iterations, 5)
    args.data = args.data or str(C.default_data_dir("ml-1m"))
    return args


def load(path):
    import recmf
    ratings, _, _ = recmf.load_movielens(path)
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    return recmf.Interactions.from_frame(train, threshold=4), val, test


def quality(recs_for, data, val, test):
    """recall/ndcg@10 on val and test; ``recs_for`` is a recmf model or a
    mapping user id -> item ids."""
    import recmf
    out = {}
    for name, frame in (("val", val), ("test", test)):
        rep = recmf.evaluate(recs_for, frame, k=10, coverage_users=frame["user_id"].iloc[:1],
                             catalog=data.item_ids, item_popularity=dict(zip(data.item_ids, data.popularity())))
        out[f"{name}_recall@10"] = rep["recall@10"]
        out[f"{name}_ndcg@10"] = rep["ndcg@10"]
    return out


def run_recmf(data, val, test, args, seed):
    import recmf
    model = recmf.ALS(factors=args.factors, regularization=args.regularization, alpha=args.alpha,
                      iterations=args.iterations, seed=seed, n_threads=args.threads,
                      eval_every=None)
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(data)
    fit, cpu = time.perf_counter() - t0, time.process_time() - c0
    r = {"fit_s": fit, "per_iter_s": fit / args.iterations, "cpu_per_iter_s": cpu / args.iterations,
         "best_iter_s": float(model.history["seconds"].min()),
         "final_loss": float(model.history["loss"].iloc[-1])}
    r.update(quality(model, data, val, test))
    return r


def run_implicit(data, val, test, args, seed):
    import numpy as np
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    X = data.to_scipy()
    model = AlternatingLeastSquares(factors=args.factors, regularization=args.regularization,
                                    alpha=1.0 + args.alpha, iterations=args.iterations,
                                    num_threads=args.threads, random_state=seed, use_cg=True)
    iters = []
    model.fit_callback = lambda it, seconds, loss: iters.append(seconds)
    with threadpool_limits(limits=1, user_api="blas"):
        c0, t0 = time.process_time(), time.perf_counter()
        model.fit(X, show_progress=False)
        fit, cpu = time.perf_counter() - t0, time.process_time() - c0
    users = np.arange(data.n_users)
    ids, _ = model.recommend(users, X[users], N=10, filter_already_liked_items=True)
    recs = dict(zip(data.user_ids.tolist(), data.item_ids[ids].tolist()))
    r = {"fit_s": fit, "per_iter_s": fit / args.iterations, "cpu_per_iter_s": cpu / args.iterations,
         "best_iter_s": min(iters) if iters else None}
    r.update(quality(recs, data, val, test))
    return r


def main(argv=None):
    args = parse_args(argv)
    C.pin_threads_from_argv(["--threads", str(args.threads)])
    import implicit
    import numpy as np

    load_start = (C.load_average() or (None,))[0]
    info = C.machine_info(extra_modules=("numpy", "pandas", "scipy", "implicit"))
    C.log(f"als.py: {args.data}, {args.threads} thread(s), 1-min load {load_start}")
    data, val, test = load(args.data)
    sizes = (data.n_users, data.n_items, data.nnz)
    is_ml1m = sizes == ML1M_INDEX
    C.log(f"  {sizes[0]:,} users x {sizes[1]:,} items, {sizes[2]:,} positives")

    runs = {"recmf": [], "implicit": []}
    for seed in range(args.seeds):
        # Alternate the sides so drift in machine load hits both alike.
        for side, fn in (("implicit", run_implicit), ("recmf", run_recmf)):
            C.log(f"  {side} seed {seed}: {args.iterations} iterations ...")
            r = fn(data, val, test, args, seed)
            runs[side].append(r)
            C.log(f"    {r['per_iter_s']:.3f} s/iteration, test recall@10 {r['test_recall@10']:.4f}")

    def agg(side, key, f):
        vals = [r[key] for r in runs[side] if r.get(key) is not None]
        return f(vals) if vals else None

    rows = []
    for side in ("recmf", "implicit"):
        rows.append({"side": side,
                     "per_iter": agg(side, "per_iter_s", min),
                     "best_iter": agg(side, "best_iter_s", min),
                     "cpu_per_iter": agg(side, "cpu_per_iter_s", min),
                     "val_recall": agg(side, "val_recall@10", np.mean),
                     "test_recall": agg(side, "test_recall@10", np.mean),
                     "test_recall_range": (agg(side, "test_recall@10", min),
                                           agg(side, "test_recall@10", max)),
                     "test_ndcg": agg(side, "test_ndcg@10", np.mean)})
    ratio = rows[1]["per_iter"] / rows[0]["per_iter"]
    verdict = C.Verdict(is_ml1m, load_start)
    print("machine:")
    C.print_machine(info)
    print(f"implicit {implicit.__version__}; factors {args.factors}, regularization "
          f"{args.regularization}, alpha {args.alpha} (implicit {1 + args.alpha}), "
          f"{args.iterations} iterations, {args.threads} thread(s), {args.seeds} seed(s)")
    f4 = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    rng = lambda v: "-" if v[0] is None else f"{v[0]:.4f}-{v[1]:.4f}"  # noqa: E731
    print(C.format_table(rows, [("side", "side", None), ("per_iter", "s/iteration (fit/iters)", C.fmt_seconds),
                                ("best_iter", "best iteration s", C.fmt_seconds),
                                ("cpu_per_iter", "CPU s/iteration", C.fmt_seconds),
                                ("val_recall", "val recall@10", f4), ("test_recall", "test recall@10", f4),
                                ("test_recall_range", "test range", rng), ("test_ndcg", "test ndcg@10", f4)]))
    print(f"implicit / recmf time per iteration: {C.fmt_ratio(ratio)} "
          f"(target >= 1: {verdict(ratio, '>=', 1.0)})")
    if args.json:
        C.write_json(args.json, {"args": vars(args), "machine": info, "load_start": load_start,
                                 "sizes": sizes, "runs": runs, "ratio_per_iter": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
