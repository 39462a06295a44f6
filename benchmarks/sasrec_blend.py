"""The SASRec blend (issue 18's moonshot): SASRec plus SLIST, weights chosen on a validation.

On the ML-1M seed split, under the seed protocol (inputs and seen items = train positives) or the
watched protocol (``--protocol watched``: every rated item as input and as seen).  Every knob is
chosen on the **inner split** (``temporal_split(train, 1, 5, 5)``: each user's last 5 train rows
after a 1-row gap, shaped like the test; the seed's one-row val moves too much between settings
to weigh two models), then the models are refitted on the whole train:

* SLIST: its default grid, chosen on the inner split (``recmf.select``), refitted on train;
* SASRec: the knobs given (``benchmarks/sasrec_tune.py`` chose them), trained on the inner train
  with its epochs early-stopped on the inner test, and on train with its epochs early-stopped on
  the seed's val (patience 6) (as ``benchmarks/sasrec_quality.py``); both keep their best epoch;
* ``recmf.Blend`` of the two inner models: weights and score normaliser chosen on the inner test
  over ``Blend.weight_grid(2, steps)``; the chosen ones blend the two models fitted on train.

Test is scored once per model, at the end.  Prints the test table (recall/ndcg@10), the chosen
settings and the seconds each step took; ``--json`` writes them.

Usage::

    python benchmarks/sasrec_blend.py [--protocol watched] [--epochs 40] [--patience 6] [--threads 2]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

C.pin_threads_from_argv()

import argparse  # noqa: E402
import time  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--protocol", choices=("seed", "watched"), default="seed")
    ap.add_argument("--epochs", type=int, default=40, help="most SASRec epochs (early stopping)")
    ap.add_argument("--patience", type=int, default=6,
                    help="epochs without a better val before stopping (the seed's val moves by +-0.006)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--loss", choices=("softmax", "sampled"), default="softmax")
    ap.add_argument("--n-negatives", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="weight grid steps (Blend.weight_grid)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import recmf

    C.print_machine(C.machine_info())
    ratings, _, movies = recmf.load_movielens(a.data or str(C.default_data_dir("ml-1m")))
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    inner_train, _, inner_test = recmf.temporal_split(train, n_val=1, n_test=5, min_train=5)
    rated = a.protocol == "watched"
    seen = "rated" if rated else "positives"
    data = recmf.Interactions.from_frame(train, seen=seen)
    inner = recmf.Interactions.from_frame(inner_train, seen=seen)
    kw = {"inputs": "rated"} if rated else {}
    timings, chosen = {}, {}

    def sasrec():
        return recmf.SASRec(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, dropout=a.dropout,
                            loss=a.loss, n_negatives=a.n_negatives, patience=a.patience,
                            inputs="rated" if rated else "positives", n_threads=a.threads, seed=0)

    t0 = time.perf_counter()
    cands = [recmf.SLIST(**kw, **p) for p in _grid(recmf.SLIST)]
    slist_inner, _ = recmf.select(cands, inner, inner_test, progress=False)
    chosen["SLIST"] = {k: v for k, v in slist_inner.get_params().items()
                       if isinstance(v, (int, float, str, type(None)))}
    slist = type(slist_inner)(**slist_inner.get_params()).fit(data)
    timings["SLIST"] = time.perf_counter() - t0
    C.log(f"SLIST: {chosen['SLIST']} ({timings['SLIST']:.0f} s)")

    t0 = time.perf_counter()
    sas_inner = sasrec().fit(inner_train, val=inner_test)
    timings["SASRec (inner)"] = time.perf_counter() - t0
    C.log(f"SASRec on the inner train: best epoch {sas_inner.best_epoch_} ({timings['SASRec (inner)']:.0f} s)")
    t0 = time.perf_counter()
    sas = sasrec().fit(train, val=val)
    timings["SASRec"] = time.perf_counter() - t0
    chosen["SASRec"] = {"best_epoch": int(sas.best_epoch_), "inner_best_epoch": int(sas_inner.best_epoch_)}
    C.log(f"SASRec: best epoch {sas.best_epoch_} of {len(sas.history)} ({timings['SASRec']:.0f} s)")

    t0 = time.perf_counter()
    blends = [recmf.Blend([sas_inner, slist_inner], weights=w, normalise=norm)
              for norm in ("minmax", "zscore") for w in recmf.Blend.weight_grid(2, a.steps)
              if all(x > 0 for x in w)]
    best, table = recmf.select(blends, inner, inner_test, progress=False)
    blend = recmf.Blend([sas, slist], weights=best.weights, normalise=best.normalise).fit(data)
    timings["Blend"] = time.perf_counter() - t0
    chosen["Blend"] = {"weights": [float(w) for w in best.weights], "normalise": best.normalise,
                       "inner_recall@10": float(table["recall@10"].max())}
    C.log(f"Blend: {chosen['Blend']}")

    models = {"SASRec": sas, "SLIST": slist, "Blend": blend}
    report = {name: recmf.evaluate(m, test, k=10, catalog=movies["movie_id"].unique())
              for name, m in models.items()}
    print(f"ML-1M seed split, {a.protocol} protocol, knobs on the inner split, test once (k=10):")
    for name, rep in report.items():
        print(f"  {name:8s} recall@10 {rep['recall@10']:.4f}  ndcg@10 {rep['ndcg@10']:.4f}")
    print("seconds:", {k: round(v) for k, v in timings.items()})
    if a.json:
        C.write_json(a.json, {"machine": C.machine_info(), "args": vars(a), "report": report,
                              "chosen": chosen, "seconds": timings})
    return 0


def _grid(cls):
    """Every setting of the class's default grid, as keyword dicts."""
    import itertools
    names = list(cls.default_grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*cls.default_grid.values())]


if __name__ == "__main__":
    sys.exit(main())
