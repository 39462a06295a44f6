"""SASRec's quality on the seed split under both protocols, and the shuffle controls (issue 18).

ML-1M, ``temporal_split(n_val=1, n_test=5, min_train=5)``, k = 10, relevance = test rows
rated >= 4 (SPEC 10b).  The model is RecTools' architecture (2 blocks, d 64, 2 heads, L 200,
Adam betas (0.9, 0.98)) trained with the knobs ``benchmarks/sasrec_tune.py`` chose for a
2-minute budget on a validation shaped like the test: batch 32, lr 3e-3, dropout 0.1, sampled
softmax over 1,024 shared negatives (``--batch-size 128 --lr 2e-3 --dropout 0.2 --loss softmax``
is RecTools' own configuration).  The one knob chosen here is the number of epochs, on val
(recall@10 every epoch, early stopping with ``--patience``, the best epoch's weights kept, at
most ``--epochs``).  Test is scored once per fitted model: for the val-chosen epoch, and for the
val-chosen epoch among those whose cumulative training time is within ``--budget`` seconds (the
issue's "2 minutes of training"; its weights are kept by a callback when val improves within the
budget).

Protocols (SPEC 10b): ``seed`` (inputs and seen = the train positives) and ``watched``
(``inputs="rated"``: every rated item in time order, seen = every rated item).

Shuffle controls (the SLIST issue's, SPEC 10b: 77% of ML-1M's timestamps tie within a user,
and the order inside a tie is the file's, not the user's).  Each retrained control trains for
the base model's val-chosen number of epochs (no val; one seed, to bound the run):

base   the split and the data as they are;
a      the rows shuffled (seeded) before ``temporal_split``, whose stable sort then orders
       tied rows at random (train/val/test change where ties cross the cuts);
b      within each user's calendar day (UTC) of train rows, the order shuffled and the
       timestamps set to the day: the model sees which day, not which order within it;
c      the base model, each user scored from their own train rows in a random order
       (``recommend(history=...)``);
d      every user's train rows in a random order for fitting and scoring: no order left.

``--controls`` picks them per protocol (default: a b c d under seed, c d under watched: the
run is bounded to about 30 minutes on a shared 2-core machine).

Usage (repository root)::

    python benchmarks/sasrec_quality.py [--data ML1M_DIR] [--threads 2] [--epochs 40]
        [--patience 6] [--budget 120] [--protocols seed watched] [--controls seed=cd watched=c]
        [--batch-size 32 --lr 3e-3 --dropout 0.1 --loss sampled --n-negatives 1024] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads_from_argv()

import numpy as np  # noqa: E402

from controls import DAY, shuffle_within  # noqa: E402  (the SLIST controls' shuffles)

K = 10
INPUTS = {"seed": "positives", "watched": "rated"}
DEFAULT_CONTROLS = {"seed": "abcd", "watched": "cd"}


def make(args, protocol, epochs, patience=None):
    import recmf
    return recmf.SASRec(n_blocks=2, n_heads=2, emb_dim=64, max_len=args.max_len, dropout=args.dropout,
                        loss=args.loss, n_negatives=args.n_negatives, lr=args.lr,
                        batch_size=args.batch_size, epochs=epochs,
                        inputs=INPUTS[protocol], patience=patience, seed=args.seed,
                        n_threads=int(args.threads))


def test_metrics(model, test, history=None):
    """(recall@K, ndcg@K) on test; users scored from ``history`` when given."""
    import recmf
    if history is None:
        rep = recmf.evaluate(model, test, k=K)
    else:
        users = test["user_id"].unique()
        ids = model.recommend(users, k=K, history=history)
        recs = {u: [i for i in row if i != -1] for u, row in zip(users, ids)}
        rep = recmf.evaluate(recs, test, k=K, catalog=model.data_.item_ids)
    return rep[f"recall@{K}"], rep[f"ndcg@{K}"]


def base_run(args, protocol, train, val, test):
    """Fit with epochs chosen on val; test scored for the chosen epoch and the chosen epoch
    within the budget."""
    model = make(args, protocol, args.epochs, patience=args.patience)
    kept = {"best": -np.inf, "theta": None, "epoch": 0, "seconds": 0.0, "total": 0.0}

    def within_budget(m, row):
        kept["total"] += row["seconds"]
        if kept["total"] <= args.budget and row["val_recall"] > kept["best"]:
            kept.update(best=row["val_recall"], theta=m.theta_.copy(), epoch=row["epoch"],
                        seconds=kept["total"])
        C.log(f"  {protocol} epoch {row['epoch']:2d}: {row['seconds']:.1f} s, loss {row['loss']:.4f}, "
              f"val R@10 {row['val_recall']:.4f}")

    t0 = time.perf_counter()
    model.fit(train, val=val, callback=within_budget)
    wall = time.perf_counter() - t0
    h = model.history
    best = int(model.best_epoch_)
    train_s = float(h.loc[h["epoch"] <= best, "seconds"].sum())
    out = {"protocol": protocol, "control": "base", "epochs_run": int(h["epoch"].max()),
           "epoch": best, "train_s": train_s, "epoch_s_median": float(h["seconds"].median()),
           "fit_wall_s": wall, "val": float(h.loc[h["epoch"] == best, "val_recall"].iloc[0])}
    out["recall"], out["ndcg"] = test_metrics(model, test)
    rows = [out]
    if kept["theta"] is not None and kept["epoch"] != best:
        # the fitted model's arrays are read-only: score a shallow copy holding the weights
        within = copy.copy(model)
        within.theta_ = kept["theta"]
        r, n = test_metrics(within, test)
        rows.append({"protocol": protocol, "control": f"base, <= {args.budget:.0f} s",
                     "epoch": kept["epoch"], "train_s": kept["seconds"], "val": kept["best"],
                     "recall": r, "ndcg": n})
    elif kept["theta"] is not None:
        rows.append(dict(out, control=f"base, <= {args.budget:.0f} s"))
    return model, rows


def run(args, ratings):
    import recmf
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    rows = []
    for protocol in args.protocols:
        base, base_rows = base_run(args, protocol, train, val, test)
        rows += base_rows
        epochs = int(base.best_epoch_)
        base_recall = base_rows[0]["recall"]
        rng = np.random.default_rng(1000 + args.seed)

        def control(name, fit_frame, test_frame, history=None, model=None):
            t0 = time.perf_counter()
            if model is None:
                model = make(args, protocol, epochs).fit(fit_frame)
            r, n = test_metrics(model, test_frame, history)
            rows.append({"protocol": protocol, "control": name, "epoch": epochs, "recall": r,
                         "ndcg": n, "vs_base": r / base_recall, "fit_wall_s": time.perf_counter() - t0})
            C.log(f"  {protocol} {name}: recall@10 {r:.4f} ({r / base_recall:.3f} of base)")

        hist = shuffle_within(train, ["user_id"], rng)
        hist["timestamp"] = hist.groupby("user_id").cumcount()
        for c in args.controls[protocol]:
            if c == "a":
                shuffled = ratings.sample(frac=1.0, random_state=1000 + args.seed).reset_index(drop=True)
                tr_a, _, te_a = recmf.temporal_split(shuffled, n_val=1, n_test=5, min_train=5)
                control("a. ties shuffled before the split", tr_a, te_a)
            elif c == "b":
                tr_b = train.assign(day=train["timestamp"] // DAY)
                tr_b = shuffle_within(tr_b, ["user_id", "day"], rng, day_times=True).drop(columns="day")
                control("b. same-day order shuffled", tr_b, test)
            elif c == "c":
                control("c. scoring history shuffled", None, test, history=hist, model=base)
            elif c == "d":
                control("d. whole training order shuffled", hist, test, history=hist)
    num = C.fmt_number
    cols = [("protocol", "protocol", None), ("control", "model / control", None),
            ("epoch", "epochs", None), ("train_s", "training s", num("{:.0f}")),
            ("val", "val R@10", num("{:.4f}")), ("recall", "test recall@10", num("{:.4f}")),
            ("ndcg", "test ndcg@10", num("{:.4f}")), ("vs_base", "/ base", num("{:.3f}"))]
    print()
    print(C.format_table(rows, cols))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="ML-1M folder (default: $RECMF_DATA/ml-1m)")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--epochs", type=int, default=40, help="most epochs of the val-chosen fit")
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--loss", choices=("softmax", "sampled"), default="sampled")
    ap.add_argument("--n-negatives", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--protocols", nargs="+", default=["seed", "watched"], choices=list(INPUTS))
    ap.add_argument("--controls", nargs="*", default=None,
                    help="protocol=letters, e.g. seed=abcd watched=cd (default); watched= for none")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.controls = dict(DEFAULT_CONTROLS, **dict(c.split("=", 1) for c in (args.controls or [])))
    import recmf
    frame = C.begin_run()
    ratings, _, _ = recmf.load_movielens(Path(args.data) if args.data else C.default_data_dir("ml-1m"))
    t0 = time.perf_counter()
    rows = run(args, ratings)
    C.end_run(frame, args, rows, t0)


if __name__ == "__main__":
    main()
