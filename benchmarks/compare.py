"""The whole workflow end to end, recmf side by side with PyTorch and
``implicit`` (SPEC sections 10-11): speed of every stage and quality of
every model, one table.

The workflow: load ML-1M, per-user temporal split (1 val, 5 test, min 5
train), index + CSR of the train positives, popularity, NeuralMF
(20 epochs, evaluated on val every 2 epochs), BPRMF popular-hard (up to 20
epochs, early stopping on val recall@10 every 2 epochs, patience 3), and the
final evaluation of all three on test (SPEC section 9 metrics).

Runs, each in its own child process so its peak memory is its own (the
child's ``VmHWM``; ``ru_maxrss`` would inherit the parent's high-water mark
through vfork + exec):

* ``recmf``: the public API (``load_movielens``, ``temporal_split``,
  ``Interactions.from_frame``, ``Popularity``, ``NeuralMF``, ``BPRMF``,
  ``evaluate``).  recmf samples inside its training epoch; the samplers are
  also timed apart, after the workflow (not counted in its total).
* ``PyTorch fast``: ``reference_torch.run(mode="fast")``, the whole workflow.
* ``PyTorch fast+FTZ``: the same with ``torch.set_flush_denormal(True)``
  first (what a well-informed PyTorch user sets; ``--no-fast-ftz`` skips it).
* ``notebook``: ``reference_torch.run(mode="faithful")``, the notebook's code.
  By default it runs 1 NeuralMF and 1 BPRMF epoch, each evaluated once, and
  its per-epoch stages are **extrapolated** to the epochs and evaluations
  the recmf run used (load, split, index, popularity and the final
  evaluations are measured as they are); its metrics after 1 epoch are not
  shown.  ``--faithful-full`` runs it completely (about 45-50 minutes on 2
  cores) and shows its own numbers and metrics.
* ``implicit``: ``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=64)``
  (implicit adds a bias column: 65 columns) on the same train positives
  (loaded, split and indexed with recmf), with ``--implicit-iterations``
  variants: ``matched`` = as many sampled triplets as recmf's BPRMF run
  (epochs run x triplets per epoch / positives; implicit draws one triplet
  per positive per iteration, negatives in proportion to item popularity,
  plain SGD with lr 0.01), or a number (100 is implicit's default).  Its
  top-10 (seen items filtered) are mapped back to original ids and scored by
  ``recmf.evaluate``.  Only its BPR rows, evaluation and memory apply.

Every run uses ``--threads`` threads (default 2: OMP/OPENBLAS/MKL
environment, ``torch.set_num_threads``, recmf ``n_threads``, implicit
``num_threads``).  The popularity tie order is SPEC section 4's (lower id
first) in every run (``--pop-order``), so the Popularity rows of recmf and
PyTorch must agree exactly.

A second table gives every run's per-epoch seconds (min/median/max, first,
last, last/first), with the CPU model and vendor: subnormal floats slow
Intel cores down later in a run.

Targets printed (SPEC 11, issue 8 and tests/test_parity_ml1m.py): whole workflow
>= 50x the notebook, >= 8x PyTorch fast and >= 3x PyTorch fast+FTZ, peak memory < 1 GB, NeuralMF and
BPRMF recall@10 / ndcg@10 inside the test's bands.  Speed verdicts only on
ML-1M with a 1-minute load average <= 1.5 at the start ("machine busy"
otherwise); metric verdicts only on ML-1M.

Usage (repository root, after ``python setup.py build_ext --inplace``)::

    python benchmarks/compare.py [--data ML1M_DIR] [--threads 2] [--seed 0]
        [--faithful-full | --no-faithful] [--no-fast] [--no-implicit]
        [--implicit-iterations matched,100] [--json out.json] [--markdown out.md]
        [--quick]

ML-1M: about 15 minutes on an idle 2-core machine with the extrapolated
notebook (recmf ~1-2 min, PyTorch fast ~7-8 min, notebook ~4-5 min, implicit
< 1 min); about an hour with ``--faithful-full``.  ``--quick``: ML-100K,
4 + 4 epochs, 100,000 triplets per BPRMF epoch (a smoke run: no verdicts).
"""
from __future__ import annotations

import os
import sys


# BLAS / OpenMP pools are sized when numpy and torch are imported: the thread
# count must be in the environment before those imports.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports neither numpy nor torch)

C.pin_threads_from_argv()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent

BUSY_LOAD = C.BUSY_LOAD
ML1M_INDEX = (6_038, 3_525, 554_070)
METRICS = ("recall@10", "ndcg@10", "mrr@10", "hitrate@10", "coverage@10", "avg_popularity@10",
           "n_users_eval")
MODELS = ("popularity", "neuralmf", "bprmf")
MODEL_LABEL = {"popularity": "Popularity", "neuralmf": "NeuralMF", "bprmf": "BPRMF"}


def _bands():
    """The quality bands of tests/test_parity_ml1m.py (imported; the copy
    below is used only if that import fails, and is the same as of this
    writing)."""
    try:
        sys.path.insert(0, str(C.REPO / "tests"))
        from test_parity_ml1m import BANDS
        return BANDS, "tests/test_parity_ml1m.py"
    except Exception:  # noqa: BLE001
        return ({"neuralmf": {"recall@10": (0.0610, 0.0780), "ndcg@10": (0.0420, 0.0550)},
                 "bprmf": {"recall@10": (0.0440, 0.0590), "ndcg@10": (0.0300, 0.0420)}},
                "copy of tests/test_parity_ml1m.py")
    finally:
        if sys.path and sys.path[0] == str(C.REPO / "tests"):
            sys.path.pop(0)


log = C.log
peak_rss = C.peak_rss


def _la(x):
    return "?" if x is None else f"{x:.2f}"


def loadavg1():
    la = C.load_average()
    return None if la is None else la[0]


# ===========================================================================
# children
# ===========================================================================

def child_recmf(p):
    import numpy as np
    import recmf
    from recmf import _core
    T, seed = p["threads"], p["seed"]
    st = {}
    t_all = time.perf_counter()

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        st[name] = time.perf_counter() - t0
        return out

    ratings, _users, movies = timed("load", lambda: recmf.load_movielens(p["data"]))
    train, val, test = timed("split", lambda: recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5))
    data = timed("index", lambda: recmf.Interactions.from_frame(train, threshold=4))
    pop = timed("popularity", lambda: recmf.Popularity().fit(data))
    nmf = timed("neuralmf_fit", lambda: recmf.NeuralMF(
        epochs=p["nmf_epochs"], eval_every=p["eval_every"], seed=seed, n_threads=T).fit(data, val=val))
    bpr = timed("bprmf_fit", lambda: recmf.BPRMF(
        negatives="popular", top_n=2000, triplets_per_epoch=p["triplets_per_epoch"], epochs=p["bpr_epochs"],
        eval_every=p["eval_every"], patience=3, seed=seed, n_threads=T).fit(data, val=val))
    cov_users = test["user_id"].unique()[:1000]
    catalog = movies["movie_id"].unique()
    metrics = {}
    for name, model in (("popularity", pop), ("neuralmf", nmf), ("bprmf", bpr)):
        metrics[name] = timed(f"eval_{name}", lambda m=model: recmf.evaluate(
            m, test, k=10, coverage_users=cov_users, catalog=catalog))
    st["total"] = time.perf_counter() - t_all

    per_model = {}
    for name, model in (("neuralmf", nmf), ("bprmf", bpr)):
        h = model.history
        ev = h["eval_seconds"].dropna() if "eval_seconds" in h else []
        per_model[name] = {"epochs": int(len(h)), "epoch_s": h["seconds"].tolist(),
                           "n_evals": int(len(ev)), "eval_s": [float(x) for x in ev],
                           "best_epoch": int(getattr(model, "best_epoch_", len(h))),
                           "loss": h["loss"].tolist(),
                           "val_recall": h["val_recall"].tolist() if "val_recall" in h else []}
    # recmf samples inside its epochs: the samplers timed apart (not in the total)
    cand = np.ascontiguousarray(_core.popularity_order(data.popularity())[:2000])
    samp = {}
    for name, fn in (("neuralmf", lambda: _core.sample_uniform(data.indptr, data.indices, data.n_items, 4,
                                                                seed, 1, T)),
                     ("bprmf", lambda: _core.sample_triplets(data.indptr, data.indices, data.n_items, cand,
                                                             p["triplets_per_epoch"], seed, 1, T))):
        samp[name] = C.best_of(fn, repeats=3, warmup=True)[0]
    for name in ("neuralmf", "bprmf"):
        pm = per_model[name]
        pm["sampling_apart_s"] = samp[name]
    return {"framework": "recmf", "stages": st, "per_model": per_model, "metrics": metrics,
            "sizes": {"n_users": data.n_users, "n_items": data.n_items, "n_positives": int(len(data.indices)),
                      "train": len(train), "val": len(val), "test": len(test)}}


def child_torch(p, faithful, flush_denormal=False):
    import reference_torch as R
    ftz = None
    if flush_denormal:
        # what a well-informed PyTorch user sets: FTZ/DAZ on the calling
        # thread (and the threads torch starts after it)
        import torch
        ftz = bool(torch.set_flush_denormal(True))
    cfg = R.Config(data=p["data"], mode="faithful" if faithful else "fast", threads=p["threads"],
                   seed=p["seed"], early_stop_on="val", pop_order=p["pop_order"],
                   triplets_per_epoch=p["triplets_per_epoch"], verbose=p.get("verbose", False),
                   nmf_epochs=p["nmf_epochs"], bpr_epochs=p["bpr_epochs"], eval_every=p["eval_every"])
    res = R.run(cfg)
    per_model = {}
    for name in ("neuralmf", "bprmf"):
        eps = [r for r in res["per_epoch"] if r["model"] == name]
        ev = [r["eval_s"] for r in eps if r["eval_s"] is not None]
        per_model[name] = {"epochs": len(eps), "sampling_s": [r["sampling_s"] for r in eps],
                           "sgd_s": [r["training_s"] for r in eps], "n_evals": len(ev), "eval_s": ev,
                           "loss": [r["loss"] for r in eps]}
    fw = "torch-faithful" if faithful else ("torch-fast-ftz" if flush_denormal else "torch-fast")
    return {"framework": fw, "flush_denormal": ftz, "stages": res["stages"],
            "per_model": per_model, "metrics": res["metrics"], "sizes": res["sizes"],
            "torch_version": res["torch_version"], "torch_num_threads": res["torch_num_threads"],
            "cpu_time_s": res["cpu_time_s"], "config": res["config"]}


def child_implicit(p):
    import numpy as np
    import pandas as pd
    import recmf
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    import implicit
    st = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    ratings, _users, movies = recmf.load_movielens(p["data"])
    train, _val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4)
    X = data.to_scipy().tocsr().astype(np.float32)
    st["prep_recmf"] = time.perf_counter() - t0
    iters = int(p["iterations"])
    model = BayesianPersonalizedRanking(factors=64, iterations=iters, num_threads=p["threads"],
                                        random_state=p["seed"])
    ep = []
    t0 = time.perf_counter()
    model.fit(X, show_progress=False, callback=lambda epoch, elapsed, *a: ep.append(elapsed))
    st["bprmf_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids, _scores = model.recommend(np.arange(data.n_users), X, N=10, filter_already_liked_items=True)
    recs = {uid: data.item_ids[row[row >= 0]].tolist() for uid, row in zip(data.user_ids.tolist(), ids)}
    st["recommend_bprmf"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = recmf.evaluate(recs, test, k=10, coverage_users=test["user_id"].unique()[:1000],
                       catalog=movies["movie_id"].unique(),
                       item_popularity=pd.Series(data.popularity(), index=data.item_ids))
    st["eval_bprmf"] = time.perf_counter() - t0
    st["evaluate_only_bprmf"] = time.perf_counter() - t1
    st["total"] = time.perf_counter() - t_all
    return {"framework": "implicit", "implicit_version": implicit.__version__, "iterations": iters,
            "factor_columns": int(model.item_factors.shape[1]), "stages": st,
            "per_model": {"bprmf": {"epochs": iters, "iteration_elapsed_s": ep,
                                    "triplets_per_iteration": int(X.nnz)}},
            "metrics": {"bprmf": m}}


def run_child_main(args):
    p = json.loads(args._params)
    la0 = loadavg1()
    c0 = time.process_time()
    if args._child == "recmf":
        out = child_recmf(p)
    elif args._child == "torch-fast":
        out = child_torch(p, faithful=False)
    elif args._child == "torch-fast-ftz":
        out = child_torch(p, faithful=False, flush_denormal=True)
    elif args._child == "torch-faithful":
        out = child_torch(p, faithful=True)
    elif args._child == "implicit":
        out = child_implicit(p)
    else:
        raise SystemExit(f"unknown child {args._child}")
    out.update(peak_rss())
    out["cpu_time_s"] = out.get("cpu_time_s", time.process_time() - c0)
    out["loadavg_1min"] = {"start": la0, "end": loadavg1()}
    C.write_json(args._out, out)
    return 0


def spawn(kind, params, threads, timeout=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads), "--_child", kind,
               "--_out", str(out), "--_params", json.dumps(params)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if p.returncode != 0 or not out.exists():
            log(p.stdout[-4000:])
            raise SystemExit(f"child {kind} failed (exit {p.returncode})")
        res = json.loads(out.read_text())
        res["child_wall_s"] = time.perf_counter() - t0
        return res


# ===========================================================================
# assembling the table
# ===========================================================================

def _mean(x):
    x = [v for v in x if v is not None]
    return sum(x) / len(x) if x else None


def _sum(x):
    return sum(x) if x else 0.0


def stage_view(res, recmf_res=None):
    """Per-stage seconds of one run in a common layout (None: not applicable).
    With ``recmf_res`` a 1-epoch faithful run is extrapolated to recmf's
    epochs and evaluations."""
    fw = res["framework"]
    st = res["stages"]
    v = {}
    if fw == "recmf":
        for k in ("load", "split", "index", "popularity"):
            v[k] = st[k]
        for m in ("neuralmf", "bprmf"):
            pm = res["per_model"][m]
            v[f"{m}_epoch"] = _mean(pm["epoch_s"])
            v[f"{m}_sampling"] = pm["sampling_apart_s"]
            v[f"{m}_sgd"] = None if v[f"{m}_epoch"] is None else max(0.0, v[f"{m}_epoch"] - pm["sampling_apart_s"])
            v[f"{m}_eval"] = _mean(pm["eval_s"])
            v[f"{m}_fit"] = st[f"{m}_fit"]
            v[f"{m}_epochs"] = pm["epochs"]
            v[f"{m}_n_evals"] = pm["n_evals"]
        v["final_eval"] = sum(st[f"eval_{m}"] for m in MODELS)
        v["total"] = st["total"]
    elif fw in ("torch-fast", "torch-fast-ftz", "torch-faithful"):
        v["load"], v["split"], v["index"], v["popularity"] = st["load"], st["split"], st["index"], st["popularity"]
        extrap = recmf_res is not None
        total = st["load"] + st["split"] + st["index"] + st["popularity"]
        for m in ("neuralmf", "bprmf"):
            pm = res["per_model"][m]
            samp, sgd, ev = _mean(pm["sampling_s"]), _mean(pm["sgd_s"]), _mean(pm["eval_s"])
            v[f"{m}_sampling"], v[f"{m}_sgd"], v[f"{m}_eval"] = samp, sgd, ev
            v[f"{m}_epoch"] = None if samp is None else samp + sgd
            if extrap:
                rp = recmf_res["per_model"][m]
                n_ep, n_ev = rp["epochs"], rp["n_evals"]
                fit = n_ep * v[f"{m}_epoch"] + n_ev * (ev or 0.0)
            else:
                n_ep, n_ev = pm["epochs"], pm["n_evals"]
                fit = st.get(f"{m}_fit")
            v[f"{m}_fit"], v[f"{m}_epochs"], v[f"{m}_n_evals"] = fit, n_ep, n_ev
            total += (fit or 0.0) + st.get(f"{m}_setup", 0.0)
        v["final_eval"] = sum(st.get(f"eval_{m}", 0.0) for m in MODELS)
        total += v["final_eval"]
        v["total"] = total if extrap else st["total"]
        v["total_measured"] = st["total"]
    elif fw == "implicit":
        pm = res["per_model"]["bprmf"]
        el = pm["iteration_elapsed_s"]
        v["bprmf_epoch"] = _mean(el) if el else st["bprmf_fit"] / max(1, res["iterations"])
        v["bprmf_fit"] = st["bprmf_fit"]
        v["bprmf_epochs"] = res["iterations"]
        v["final_eval"] = st["eval_bprmf"]
        v["total"] = None
    return v


STAGE_ROWS = [
    ("load", "load"), ("split", "split"), ("index", "index + CSR"), ("popularity", "popularity"),
    ("neuralmf_sampling", "NeuralMF sampling / epoch"), ("neuralmf_sgd", "NeuralMF SGD / epoch"),
    ("neuralmf_epoch", "NeuralMF epoch"), ("neuralmf_eval", "NeuralMF val evaluation (each)"),
    ("neuralmf_epochs", "NeuralMF epochs / evaluations"), ("neuralmf_fit", "NeuralMF fit (epochs + evals)"),
    ("bprmf_sampling", "BPRMF sampling / epoch"), ("bprmf_sgd", "BPRMF SGD / epoch"),
    ("bprmf_epoch", "BPRMF epoch"), ("bprmf_eval", "BPRMF val evaluation (each)"),
    ("bprmf_epochs", "BPRMF epochs / evaluations"), ("bprmf_fit", "BPRMF fit (epochs + evals)"),
    ("final_eval", "final evaluation (test)"), ("total", "total (whole workflow)"),
]


def fmt_metric(name, x):
    if x is None:
        return "-"
    if name == "n_users_eval":
        return f"{int(x)}"
    if name.startswith("avg_popularity"):
        return f"{x:.1f}"
    return f"{x:.4f}"


def build_table(runs, views, bands, bands_src, verdict_speed, verdict_quality, quick):
    """Rows of string cells; ``runs`` is an ordered list of (key, header, result)."""
    keys = [k for k, _, _ in runs]
    headers = {k: h for k, h, _ in runs}
    ratio_of = [k for k in keys if k in RATIO_LABEL]
    cols = [("stage", "stage / metric", None)]
    for k in keys:
        cols.append((k, headers[k], None))
        if k in ratio_of:
            cols.append((f"x_{k}", f"{RATIO_LABEL[k]}/recmf", None))
    cols += [("target", "target", None), ("verdict", "verdict", None)]
    rows = []
    rv = views.get("recmf", {})
    for key, label in STAGE_ROWS:
        r = {"stage": label}
        for k in keys:
            v = views[k]
            if key.endswith("_epochs"):
                m = key[:-len("_epochs")]
                n_ep, n_ev = v.get(f"{m}_epochs"), v.get(f"{m}_n_evals")
                r[k] = "-" if n_ep is None else f"{n_ep} / {'-' if n_ev is None else n_ev}"
                continue
            r[k] = C.fmt_seconds(v.get(key))
            if k in ratio_of:
                a, b = v.get(key), rv.get(key)
                r[f"x_{k}"] = C.fmt_ratio(a / b) if a is not None and b else "-"
        if key == "total":
            r["target"] = ", ".join(f">= {t:g}x {RATIO_LABEL[k]}" for k, t in TOTAL_TARGETS.items())
            parts = []
            for k, t in TOTAL_TARGETS.items():
                if k in views and rv.get("total"):
                    parts.append(f"{RATIO_LABEL[k]} " + verdict_speed(views[k]["total"] / rv["total"], ">=", t))
            r["verdict"] = verdict_speed.reason or "; ".join(parts) or "-"
        rows.append(r)
    r = {"stage": "peak memory, MB (child VmHWM)"}
    for k in keys:
        r[k] = f"{runs[keys.index(k)][2]['peak_rss_mb']:.0f}"
    if "recmf" in views:
        r["target"] = "recmf < 1 GB"
        r["verdict"] = verdict_quality(runs[keys.index("recmf")][2]["peak_rss_mb"], "<", 1024.0)
    rows.append(r)
    for model in MODELS:
        for metric in METRICS:
            r = {"stage": f"{MODEL_LABEL[model]} {metric}"}
            for k in keys:
                res = runs[keys.index(k)][2]
                if k == "torch-faithful" and res.get("extrapolated"):
                    r[k] = "(1 epoch)" if model != "popularity" else fmt_metric(
                        metric, res["metrics"].get(model, {}).get(metric))
                    continue
                r[k] = fmt_metric(metric, res["metrics"].get(model, {}).get(metric))
            band = bands.get(model, {}).get(metric)
            if band:
                r["target"] = f"[{band[0]}, {band[1]}]"
                parts = []
                for k in keys:
                    res = runs[keys.index(k)][2]
                    if k == "torch-faithful" and res.get("extrapolated"):
                        continue
                    val = res["metrics"].get(model, {}).get(metric)
                    if val is not None:
                        verdict = verdict_quality(val, "in", band)
                        parts.append(verdict if k == "recmf" else f"{k}: {verdict}")
                r["verdict"] = verdict_quality.reason or "; ".join(parts)
            rows.append(r)
    return rows, cols


Verdict = C.Verdict

# ratio column labels, and the whole-workflow targets of issue 8 / SPEC 11
RATIO_LABEL = {"torch-fast": "fast", "torch-fast-ftz": "fast+FTZ", "torch-faithful": "nb"}
TOTAL_TARGETS = {"torch-fast": 8.0, "torch-fast-ftz": 3.0, "torch-faithful": 50.0}


def per_epoch_seconds(res, model):
    """Every epoch's seconds of one run (recmf: its history; PyTorch:
    sampling + SGD), in order."""
    pm = res["per_model"].get(model, {})
    if res["framework"] == "recmf":
        return pm.get("epoch_s", [])
    if "sampling_s" in pm:
        return [a + b for a, b in zip(pm["sampling_s"], pm["sgd_s"])]
    return pm.get("iteration_elapsed_s", [])


def epoch_table(runs):
    """Per-epoch seconds over each whole run: min/median/max and the last
    epoch against the first (a run that slows down shows here)."""
    rows = []
    for key, header, res in runs:
        if res.get("extrapolated"):
            continue
        for model in ("neuralmf", "bprmf"):
            sec = per_epoch_seconds(res, model)
            if sec:
                rows.append(C.epoch_stats_row(f"{header}: {MODEL_LABEL[model]}", sec))
    return rows


# ===========================================================================
# main
# ===========================================================================

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="ML-1M folder (default $RECMF_DATA/ml-1m or ../shared/data/ml-1m)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nmf-epochs", type=int, default=20)
    p.add_argument("--bpr-epochs", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--triplets-per-epoch", type=int, default=500_000)
    p.add_argument("--pop-order", choices=["id", "notebook"], default="id",
                   help="popularity tie order of the PyTorch runs (recmf: id, SPEC section 4)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--faithful-full", action="store_true",
                   help="run the notebook's code completely (~45-50 min on ML-1M) instead of extrapolating")
    g.add_argument("--no-faithful", action="store_true")
    p.add_argument("--no-fast", action="store_true")
    p.add_argument("--no-fast-ftz", action="store_true",
                   help="skip the PyTorch fast run with torch.set_flush_denormal(True)")
    p.add_argument("--no-implicit", action="store_true")
    p.add_argument("--implicit-iterations", default="matched,100",
                   help="comma list: 'matched' (same triplets as recmf's BPRMF run) and/or numbers")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="write the table (and notes) as markdown here")
    p.add_argument("--quick", action="store_true", help="smoke run: ML-100K, 4+4 epochs, 100k triplets")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_params", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.data = a.data or str(C.default_data_dir("ml-100k"))
        a.nmf_epochs = min(a.nmf_epochs, 4)
        a.bpr_epochs = min(a.bpr_epochs, 4)
        a.triplets_per_epoch = min(a.triplets_per_epoch, 100_000)
    a.data = a.data or str(C.default_data_dir("ml-1m"))
    return a


def main(argv=None):
    args = parse_args(argv)
    if args._child:
        return run_child_main(args)

    T = args.threads
    load_start = loadavg1()
    info = C.machine_info(extra_modules=("numpy", "pandas", "scipy", "torch"))
    try:
        import implicit  # noqa: F401
        info["implicit"] = implicit.__version__
    except ImportError:
        info["implicit"] = None
    bands, bands_src = _bands()
    t_run = time.perf_counter()
    params = {"data": args.data, "threads": T, "seed": args.seed, "nmf_epochs": args.nmf_epochs,
              "bpr_epochs": args.bpr_epochs, "eval_every": args.eval_every,
              "triplets_per_epoch": args.triplets_per_epoch, "pop_order": args.pop_order}
    log(f"compare.py: {args.data}, {T} thread(s), 1-min load {load_start}")

    runs = []  # (key, header, result)
    log("  recmf ...")
    rres = spawn("recmf", params, T)
    runs.append(("recmf", "recmf", rres))
    log(f"    total {rres['stages']['total']:.2f}s, peak {rres['peak_rss_mb']:.0f} MB")
    notes = []
    if not args.no_fast:
        log("  PyTorch fast ...")
        fres = spawn("torch-fast", params, T)
        runs.append(("torch-fast", "PyTorch fast", fres))
        log(f"    total {fres['stages']['total']:.1f}s, peak {fres['peak_rss_mb']:.0f} MB")
    if not args.no_fast_ftz:
        log("  PyTorch fast with torch.set_flush_denormal(True) ...")
        zres = spawn("torch-fast-ftz", params, T)
        runs.append(("torch-fast-ftz", "PyTorch fast+FTZ", zres))
        log(f"    total {zres['stages']['total']:.1f}s, peak {zres['peak_rss_mb']:.0f} MB")
        if not zres.get("flush_denormal"):
            notes.append("PyTorch fast+FTZ: torch.set_flush_denormal(True) returned False (not supported on "
                         "this CPU): the run is the same as PyTorch fast")
    if not args.no_faithful:
        if args.faithful_full:
            log("  notebook (faithful), complete run ...")
            nres = spawn("torch-faithful", params, T)
            nres["extrapolated"] = False
            runs.append(("torch-faithful", "notebook", nres))
        else:
            log("  notebook (faithful), 1 epoch per model, evaluated once, to extrapolate ...")
            nres = spawn("torch-faithful", dict(params, nmf_epochs=1, bpr_epochs=1, eval_every=1), T)
            nres["extrapolated"] = True
            runs.append(("torch-faithful", "notebook (extrapolated)", nres))
            rp = rres["per_model"]
            notes.append(
                "notebook (extrapolated): its load, split, index, popularity and final evaluations are "
                "measured; its per-epoch sampling, SGD and val evaluation are measured on 1 epoch "
                f"each and multiplied by recmf's NeuralMF {rp['neuralmf']['epochs']} epochs / "
                f"{rp['neuralmf']['n_evals']} evaluations and BPRMF {rp['bprmf']['epochs']} epochs / "
                f"{rp['bprmf']['n_evals']} evaluations; its metrics after 1 epoch are not comparable "
                f"(it ran {nres['stages']['total']:.0f} s). --faithful-full runs it completely.")
        log(f"    measured total {nres['stages']['total']:.1f}s, peak {nres['peak_rss_mb']:.0f} MB")
    if not args.no_implicit:
        try:
            import implicit  # noqa: F401
            have_implicit = True
        except ImportError:
            have_implicit = False
            notes.append("implicit is not installed (pip install implicit): skipped")
        if have_implicit:
            n_pos = rres["sizes"]["n_positives"]
            bpr_epochs = rres["per_model"]["bprmf"]["epochs"]
            for spec in [s.strip() for s in args.implicit_iterations.split(",") if s.strip()]:
                it = math.ceil(bpr_epochs * args.triplets_per_epoch / n_pos) if spec == "matched" else int(spec)
                log(f"  implicit BPR, {it} iterations ({spec}) ...")
                ires = spawn("implicit", dict(params, iterations=it), T)
                label = f"implicit BPR it={it}" + (" (matched)" if spec == "matched" else "")
                runs.append((f"implicit-{it}", label, ires))
            notes.append(
                f"implicit: BayesianPersonalizedRanking(factors=64 -> {ires['factor_columns']} columns with "
                "its bias), lr 0.01, reg 0.01, plain SGD, one triplet per positive per iteration, negatives "
                "in proportion to item popularity; 'matched' = recmf's BPRMF triplets "
                f"({bpr_epochs} epochs x {args.triplets_per_epoch:,}) / {n_pos:,} positives. Its column: "
                "BPRMF epoch = one iteration, final evaluation = recommend + recmf.evaluate; data prepared "
                "with recmf (not timed in it).")

    load_end = loadavg1()
    sizes = rres["sizes"]
    is_ml1m = (sizes["n_users"], sizes["n_items"], sizes["n_positives"]) == ML1M_INDEX
    v_speed = Verdict(is_ml1m, load_start, speed=True)
    v_quality = Verdict(is_ml1m, load_start, speed=False)

    views = {}
    for key, _h, res in runs:
        views[key] = stage_view(res, rres if (key == "torch-faithful" and res.get("extrapolated")) else None)
    rows, cols = build_table(runs, views, bands, bands_src, v_speed, v_quality, args.quick)

    # cross-checks: the runs worked on the same data; Popularity is deterministic
    checks = []
    for key, _h, res in runs:
        s = res.get("sizes", {})
        if "n_positives" in s and (s["n_users"], s["n_items"], s["n_positives"]) != \
                (sizes["n_users"], sizes["n_items"], sizes["n_positives"]):
            checks.append(f"{key} indexed {s} != recmf's")
    if "torch-fast" in views and args.pop_order == "id":
        a, b = rres["metrics"]["popularity"], {k: r for k, _h, r in runs}["torch-fast"]["metrics"].get("popularity", {})
        bad = [m for m in METRICS if m in b and abs(a[m] - b[m]) > 1e-9 * max(1.0, abs(a[m]))]
        if bad:
            checks.append(f"Popularity metrics differ between recmf and PyTorch fast: {bad}")
    if "recmf" in views:
        notes.insert(0, "recmf: an epoch includes its sampling; 'sampling / epoch' is its sampler timed apart "
                        "after the workflow (not in its total) and 'SGD / epoch' = epoch - sampling. "
                        "Ratio columns: other run's seconds / recmf's.")

    title = (f"compare.py: {args.data} ({sizes['n_users']:,} users x {sizes['n_items']:,} items, "
             f"{sizes['n_positives']:,} positives), {T} thread(s) everywhere, seed {args.seed}")
    print()
    print("== " + title + " ==")
    print(C.format_table(rows, cols))
    erows = epoch_table(runs)
    print()
    print(f"per-epoch seconds over each whole run ({info.get('cpu')}, {info.get('cpu_vendor')}):")
    print(C.format_table(erows, C.EPOCH_STATS_COLUMNS))
    print("notes:")
    for n in notes:
        print("  - " + n)
    print(f"  - bands: {bands_src}; speed verdicts need ML-1M and a 1-min load <= {BUSY_LOAD} at the start, "
          "metric verdicts need ML-1M")
    print(f"  - 1-min load average {_la(load_start)} at start, {_la(load_end)} at end"
          + (" (> 1.5: machine busy, timings not trustworthy)" if load_start and load_start > BUSY_LOAD else ""))
    if checks:
        print("RESULTS DISAGREE: " + "; ".join(checks))
    run_s = time.perf_counter() - t_run
    print(f"  - run time {run_s:.0f} s")

    payload = {"title": title, "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
               "machine": info, "loadavg_1min": {"start": load_start, "end": load_end},
               "bands": {"source": bands_src, "bands": bands}, "runs": {k: r for k, _h, r in runs},
               "views": views, "table": rows, "epoch_table": erows, "notes": notes, "checks": checks, "run_seconds": run_s}
    if args.json:
        C.write_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.markdown:
        md = [f"### {title}", "", C.markdown_table(rows, cols), "",
              f"Per-epoch seconds over each whole run ({info.get('cpu')}, {info.get('cpu_vendor')}):", "",
              C.markdown_table(erows, C.EPOCH_STATS_COLUMNS), ""]
        md += [f"- {n}" for n in notes]
        md += [f"- bands from {bands_src}", f"- 1-min load average {_la(load_start)} -> {_la(load_end)}"
               + (" (machine busy: timings not trustworthy)" if load_start and load_start > BUSY_LOAD else ""),
               f"- machine: {info.get('cpu')} ({info.get('cpu_vendor')}), {info.get('usable_cpus')} CPUs, Python {info.get('python')}, "
               f"numpy {info.get('numpy')}, torch {info.get('torch')}, implicit {info.get('implicit')}, "
               f"commit {info.get('commit')}"]
        Path(args.markdown).write_text("\n".join(md) + "\n")
        print(f"wrote {args.markdown}")
    return 1 if checks else 0


if __name__ == "__main__":
    sys.exit(main())
