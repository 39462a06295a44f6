"""The SASRec blend (issue 18's moonshot): SASRec plus a closed-form item-item model, weights on val.

On the ML-1M seed split, under the seed protocol (inputs and seen items = train positives) or the
watched protocol (``--protocol watched``: every rated item as input and as seen), this fits

* SASRec, its epochs chosen on val by early stopping (patience 3, best epoch kept);
* the partner: ``recmf.SLIST`` with its grid chosen on val when this recmf has it, else
  recency-EASE and ItemTransition, each chosen on val (``recmf.select``);
* ``recmf.Blend`` of SASRec and the partner(s): weights (and the score normaliser) chosen on
  val over ``Blend.weight_grid``; the variants share their components' fits.

Test is scored once per model, at the end.  Prints the test table (recall/ndcg@10) and the
chosen settings; ``--json`` writes them.

Usage::

    python benchmarks/sasrec_blend.py [--protocol watched] [--epochs 30] [--threads 2]
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
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import recmf

    ratings, _, movies = recmf.load_movielens(a.data or str(C.default_data_dir("ml-1m")))
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    rated = a.protocol == "watched"
    data = recmf.Interactions.from_frame(train, seen="rated" if rated else "positives")
    timings, chosen = {}, {}

    t0 = time.perf_counter()
    sas = recmf.SASRec(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, eval_every=1, patience=3,
                       inputs="rated" if rated else "positives", n_threads=a.threads, seed=0)
    sas.fit(train, val=val)
    timings["SASRec"] = time.perf_counter() - t0
    chosen["SASRec"] = {"best_epoch": int(sas.best_epoch_)}
    C.log(f"SASRec: best epoch {sas.best_epoch_} of {len(sas.history)}, {timings['SASRec']:.0f} s")

    partners = []
    kw = {"inputs": "rated"} if rated else {}
    if hasattr(recmf, "SLIST"):
        t0 = time.perf_counter()
        cands = [recmf.SLIST(**kw, **p) for p in _grid(recmf.SLIST)] if kw else recmf.SLIST
        slist, _ = recmf.select(cands, data, val, progress=False)
        timings["SLIST"] = time.perf_counter() - t0
        partners.append(("SLIST", slist))
    else:
        for name, cls in (("EASE", recmf.EASE), ("ItemTransition", recmf.ItemTransition)):
            t0 = time.perf_counter()
            model, _ = recmf.select(cls, data, val, progress=False)
            timings[name] = time.perf_counter() - t0
            partners.append((name, model))
    for name, model in partners:
        chosen[name] = {k: v for k, v in model.get_params().items()
                        if isinstance(v, (int, float, str, type(None)))}
        C.log(f"{name}: {chosen[name]}")

    members = [sas] + [m for _, m in partners]
    blends = [recmf.Blend(members, weights=w, normalise=norm)
              for norm in ("minmax", "zscore") for w in recmf.Blend.weight_grid(len(members))
              if all(x > 0 for x in w)]
    t0 = time.perf_counter()
    best, table = recmf.select(blends, data, val, progress=False)
    timings["Blend"] = time.perf_counter() - t0
    chosen["Blend"] = {"weights": list(best.weights), "normalise": best.normalise}
    C.log(f"Blend: {chosen['Blend']}")

    models = {"SASRec": sas, **dict(partners), "Blend": best}
    report = {name: recmf.evaluate(m, test, k=10, catalog=movies["movie_id"].unique())
              for name, m in models.items()}
    print(f"ML-1M seed split, {a.protocol} protocol, knobs on val, test once (k=10):")
    for name, rep in report.items():
        print(f"  {name:15s} recall@10 {rep['recall@10']:.4f}  ndcg@10 {rep['ndcg@10']:.4f}  "
              f"({timings.get(name, 0):.0f} s)")
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
