"""Shuffle controls (issue 17): does a model's quality come from the order of
each user's history, or from noise in it?

ML-1M's timestamps are in seconds and 77% of the ratings share theirs with
another rating of the same user: the order inside a tie is the file's row
order, not the user's.  A model whose figures hang on it has learnt the
file, not the user.  On the seed split (k = 10, relevance = test rows rated
>= 4), under both protocols of SPEC 10b, SLIST and recency-EASE with fixed
knobs (``--knobs``; default: SLIST's chosen by ``benchmarks/slist.py`` on
the test-shaped validation, recency-EASE's chosen here the same way) are
refitted and tested under:

base
    the split and the data as they are;
a. ties shuffled
    the rows shuffled (seed s) before ``temporal_split``, whose stable sort
    then orders tied rows at random: the train/val/test rows themselves
    change where ties cross the split's cuts;
b. same-day order shuffled
    the split as in base, then within each user's calendar day (UTC) of
    train rows, the order shuffled (seed s) and the timestamps set to the
    day: the model sees which day, not which order within it;
c. scoring history shuffled
    the base model, each user scored from their own train rows in a random
    order (seed s), through ``recommend(history=...)`` (an exact fold-in):
    what the recency decay and the transitions read is noise;
d. whole training order shuffled
    (an extra) every user's train rows in a random order for fitting and
    scoring: no order left at all.

Each control runs for ``--seeds`` seeds; the table gives the mean and the
range of recall@10 and ndcg@10.

Usage (repository root, after ``python setup.py build_ext --inplace``)::

    python benchmarks/controls.py [--data ML1M_DIR] [--seeds 3] [--threads 2]
        [--knobs JSON] [--json out.json]

Measured (``python benchmarks/controls.py --seeds 3 --threads 2``, ML-1M,
Intel Xeon (family 6 model 167), 2 cores, a shared machine; recall@10 mean
of 3 seeds, as a share of base; recency-EASE l2 1000, half-life 3.5 chosen
on the inner validation under both protocols)::

    control                       SLIST seed  watched   recency-EASE seed  watched
    base (recall@10)                 0.1584    0.1887               0.1313   0.1627
    a. ties shuffled                 1.00x     1.01x                1.00x    1.02x
    b. same-day order shuffled       0.50x     0.47x                0.64x    0.54x
    c. scoring history shuffled      0.51x     0.41x                0.53x    0.43x
    d. whole order shuffled          0.42x     0.38x                0.53x    0.43x

The figures do not hang on the order inside a tie (a); they do on the
order within a day (b) and of the history read at scoring time (c), and
SLIST's fit learns from the order too (d below c; recency-EASE's fit does
not read it, so its d equals c).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = C.pin_threads_from_argv()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

K = 10
DAY = 86_400
#: SLIST: the knobs benchmarks/slist.py chose on the test-shaped validation
#: (the same under both protocols); recency-EASE: chosen here on that
#: validation over EASE.default_grid unless given
SLIST_KNOBS = {"alpha": 0.2, "l2": 300.0, "position_decay": 8.0, "window": 10, "half_life": 4.0}
DEFAULT_KNOBS = {"seed": {"SLIST": SLIST_KNOBS}, "watched": {"SLIST": SLIST_KNOBS}}
PROTOCOLS = {"seed": "positives", "watched": "rated"}


def make(name, inputs, knobs):
    import recmf
    cls = recmf.SLIST if name == "SLIST" else recmf.EASE
    return cls(inputs=inputs, n_threads=int(THREADS), **knobs)


def fit(name, protocol, knobs, train):
    import recmf
    inputs = PROTOCOLS[protocol]
    data = recmf.Interactions.from_frame(train, threshold=4, seen="rated" if inputs == "rated" else "positives")
    return make(name, inputs, knobs).fit(data)


def scores(model, test, history=None):
    """recall@K and ndcg@K on test, the users scored from ``history`` when given."""
    import recmf
    if history is None:
        rep = recmf.evaluate(model, test, k=K)
    else:
        users = test["user_id"].unique()
        ids = model.recommend(users, k=K, history=history)
        recs = {u: [i for i in row if i != -1] for u, row in zip(users, ids)}
        rep = recmf.evaluate(recs, test, k=K, catalog=model.data_.item_ids,
                             item_popularity=pd.Series(model.data_.popularity(), index=model.data_.item_ids))
    return rep[f"recall@{K}"], rep[f"ndcg@{K}"]


def shuffle_within(frame, keys, rng, day_times=False):
    """``frame`` with its rows in a random order within each group of
    ``keys`` (groups kept in place), timestamps set to the group's day when
    ``day_times``: a stable sort by (user, time) then gives that order."""
    frame = frame.reset_index(drop=True)
    noise = rng.random(len(frame))
    order = np.lexsort([noise] + [frame[k].to_numpy() for k in reversed(keys)])
    out = frame.iloc[order].reset_index(drop=True)
    if day_times:
        out["timestamp"] = out["timestamp"] // DAY * DAY
    return out


def ease_knobs(protocol, train):
    """recency-EASE's l2 and half_life chosen on the test-shaped validation
    (temporal_split(train, 1, 5, 5)) over EASE.default_grid."""
    import recmf
    inner_train, _, inner_test = recmf.temporal_split(train, n_val=1, n_test=5, min_train=5)
    inputs = PROTOCOLS[protocol]
    data = recmf.Interactions.from_frame(inner_train, threshold=4,
                                         seen="rated" if inputs == "rated" else "positives")
    grid = dict(recmf.EASE.default_grid, inputs=[inputs], n_threads=[int(THREADS)])
    grid["half_life"] = [h for h in grid["half_life"] if h is not None]      # recency-EASE
    best, _ = recmf.select(recmf.EASE, data, inner_test, grid=grid, progress=False)
    return {"l2": best.l2, "half_life": best.half_life}


def run(args, ratings):
    import recmf
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    rows = []
    for protocol in args.protocols:
        if "recency-EASE" not in args.knobs[protocol]:
            args.knobs[protocol]["recency-EASE"] = ease_knobs(protocol, train)
            C.log(f"  {protocol} recency-EASE chosen on the inner validation: {args.knobs[protocol]['recency-EASE']}")
        for name in ("SLIST", "recency-EASE"):
            knobs = args.knobs[protocol][name]
            t0 = time.perf_counter()
            base = fit(name, protocol, knobs, train)
            results = {"base": [scores(base, test)]}
            for s in range(args.seeds):
                rng = np.random.default_rng(1000 + s)
                # a. ties in time shuffled before the split
                shuffled = ratings.sample(frac=1.0, random_state=1000 + s).reset_index(drop=True)
                tr_a, _, te_a = recmf.temporal_split(shuffled, n_val=1, n_test=5, min_train=5)
                results.setdefault("a. ties shuffled before the split", []).append(
                    scores(fit(name, protocol, knobs, tr_a), te_a))
                # b. order shuffled inside each user's same-day sessions
                tr_b = train.assign(day=train["timestamp"] // DAY)
                tr_b = shuffle_within(tr_b, ["user_id", "day"], rng, day_times=True).drop(columns="day")
                results.setdefault("b. same-day order shuffled", []).append(
                    scores(fit(name, protocol, knobs, tr_b), test))
                # c. scoring history shuffled (the base model, an exact fold-in)
                hist = shuffle_within(train, ["user_id"], rng)
                hist["timestamp"] = hist.groupby("user_id").cumcount()
                results.setdefault("c. scoring history shuffled", []).append(scores(base, test, hist))
                # d. no order at all: fit and score on shuffled histories
                results.setdefault("d. whole training order shuffled", []).append(
                    scores(fit(name, protocol, knobs, hist), test))
            for control, vals in results.items():
                r = np.array([v[0] for v in vals])
                n = np.array([v[1] for v in vals])
                rows.append({"protocol": protocol, "model": name, "control": control, "runs": len(vals),
                             "recall": float(r.mean()), "recall_min": float(r.min()),
                             "recall_max": float(r.max()), "ndcg": float(n.mean()),
                             "vs_base": float(r.mean() / results["base"][0][0])})
                C.log(f"  {protocol} {name} {control}: recall {r.mean():.4f} [{r.min():.4f}, {r.max():.4f}]")
            C.log(f"  {protocol} {name}: {time.perf_counter() - t0:.0f} s")
    num = C.fmt_number
    cols = [("protocol", "protocol", None), ("model", "model", None), ("control", "control", None),
            ("runs", "runs", None), ("recall", "recall@10", num("{:.4f}")),
            ("recall_min", "min", num("{:.4f}")), ("recall_max", "max", num("{:.4f}")),
            ("ndcg", "ndcg@10", num("{:.4f}")), ("vs_base", "/ base", num("{:.3f}"))]
    print()
    print(C.format_table(rows, cols))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocols", nargs="+", default=["seed", "watched"], choices=list(PROTOCOLS))
    ap.add_argument("--knobs", default=None, help="JSON {protocol: {SLIST: {...}, recency-EASE: {...}}}")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    given = json.loads(args.knobs) if args.knobs else {}
    args.knobs = {p: dict(DEFAULT_KNOBS[p], **given.get(p, {})) for p in DEFAULT_KNOBS}
    import recmf
    info = C.machine_info()
    C.print_machine(info)
    load_start = C.load_average()
    folder = Path(args.data) if args.data else C.default_data_dir("ml-1m")
    ratings, _, _ = recmf.load_movielens(folder)
    rows = run(args, ratings)
    if args.json:
        C.write_json(args.json, {"machine": info, "load_start": load_start, "knobs": args.knobs,
                                 "rows": rows, "load_end": C.load_average()})


if __name__ == "__main__":
    main()
