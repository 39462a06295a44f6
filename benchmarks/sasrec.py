"""SASRec: recmf against the same model in PyTorch, side by side in one run (issue 18).

Both models train on the same sequences (ML-1M seed split; ``--protocol seed``: each user's
train positives, seen = positives; ``watched``: every rated item, seen = every rated item)
with the same configuration (default: RecTools' -- 2 blocks, d 64, 2 heads, L 200, full
softmax, dropout 0.2, Adam lr 2e-3 betas (0.9, 0.98), batch 128) and the same thread count.
Their epochs are interleaved (recmf epoch k, then PyTorch epoch k): both see the same load,
so the per-epoch ratio is a paired figure even on a shared machine.  The PyTorch model is
``benchmarks/sasrec_torch.py`` (right-padded batches, pads out of the loss: the packed model).

Reported: the CPU, the load average, a per-epoch table (seconds of each, their ratio,
recall@10 on val and test of each), epoch-time statistics, and for each model the epoch
val chooses with its test metrics (test is printed every epoch for the learning curves; the
figure a model is credited with is the val-chosen one), also within a training-time budget
(``--budget``, 120 s: the issue's "2 minutes of training").  ``--peak-memory`` runs each
model alone for one epoch in a child process and reports its peak RSS.  ``--only recmf``
skips PyTorch (the quality and budget figures of recmf alone; ``--shape ml20m`` trains on
ML-20M's shape, synthetic, where only speed and memory are reported).

Usage (repository root; PyTorch is a bench extra: ``pip install torch==2.13.0``)::

    python benchmarks/sasrec.py --epochs 30 --threads 2 [--protocol watched] [--json out.json]
    python benchmarks/sasrec.py --only recmf --shape ml20m --loss sampled --epochs 1
    python benchmarks/sasrec.py --peak-memory --epochs 1
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports neither numpy nor torch)

C.pin_threads_from_argv()

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="ML-1M folder (default: $RECMF_DATA/ml-1m)")
    p.add_argument("--protocol", choices=("seed", "watched"), default="seed")
    p.add_argument("--shape", choices=("ml1m", "ml20m"), default="ml1m",
                   help="ml20m: synthetic ratings of ML-20M's shape (speed and memory only)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the ml20m shape")
    p.add_argument("--only", choices=("both", "recmf", "torch"), default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--budget", type=float, default=120.0, help="training seconds for the budget figure")
    p.add_argument("--eval", choices=("every", "none"), default="every",
                   help="none: timing only (no val/test evaluation between epochs)")
    p.add_argument("--n-blocks", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=2)
    p.add_argument("--emb-dim", type=int, default=64)
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--loss", choices=("softmax", "sampled"), default="softmax")
    p.add_argument("--n-negatives", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-memory", action="store_true",
                   help="each model alone, one child process each: peak RSS of --epochs epochs")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def load_data(a):
    """(train frame, val, test, Interactions, (indptr, items)) for the protocol."""
    import recmf
    if a.shape == "ml20m":
        from recmf.datasets import ML20M_SHAPE, synthetic_ratings
        shape = dict(ML20M_SHAPE)
        if a.scale != 1.0:
            shape = {"n_users": int(shape["n_users"] * a.scale),
                     "n_items": int(shape["n_items"] * a.scale ** 0.5),
                     "n_ratings": int(shape["n_ratings"] * a.scale)}
        ratings, _, _ = synthetic_ratings(**shape, seed=a.seed, fast=True)
    else:
        ratings, _, _ = recmf.load_movielens(a.data or str(C.default_data_dir("ml-1m")))
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    model = make_recmf(a, epochs=0)
    data = model._as_interactions(train, 4, model._columns())
    model.data_, model._frame = data, train
    return train, val, test, data, model._sequences(data)   # what SASRec.fit reads


def make_recmf(a, epochs):
    import recmf
    return recmf.SASRec(n_blocks=a.n_blocks, n_heads=a.n_heads, emb_dim=a.emb_dim, max_len=a.max_len,
                        dropout=a.dropout, loss=a.loss, n_negatives=a.n_negatives, lr=a.lr,
                        batch_size=a.batch_size, epochs=epochs, seed=a.seed, n_threads=a.threads,
                        inputs="rated" if a.protocol == "watched" else "positives", eval_every=0)


def make_torch(a, n_items):
    from sasrec_torch import TorchConfig, TorchSASRec
    cfg = TorchConfig(n_blocks=a.n_blocks, n_heads=a.n_heads, emb_dim=a.emb_dim, max_len=a.max_len,
                      dropout=a.dropout, loss=a.loss, n_negatives=a.n_negatives, lr=a.lr,
                      batch_size=a.batch_size, seed=a.seed)
    return TorchSASRec(cfg, n_items, threads=a.threads)


def metrics_of(data, U, E, frame):
    from sasrec_torch import evaluate_vectors
    rep = evaluate_vectors(data, U, E, frame)
    return rep["recall@10"], rep["ndcg@10"]


def run_side_by_side(a, log):
    import recmf
    train, val, test, data, (indptr, items) = load_data(a)
    users = np.arange(data.n_users)
    n_tok = int(np.minimum(np.diff(indptr) - 1, a.max_len).clip(0).sum())
    log(f"data: {data.n_users:,} users x {data.n_items:,} items, {n_tok:,} training tokens an epoch")
    rows = []
    tm = make_torch(a, data.n_items) if a.only in ("both", "torch") else None
    state = {"epoch": 0, "cpu": time.process_time()}

    def torch_epoch(row):
        t0, c0 = time.perf_counter(), time.process_time()
        row["torch_loss"] = tm.train_epoch(indptr, items)
        row["torch_s"] = time.perf_counter() - t0
        row["torch_cpu"] = time.process_time() - c0
        if a.eval == "every":
            U, E = tm.user_vectors(indptr, items, users), tm.item_table()
            row["torch_val"], _ = metrics_of(data, U, E, val)
            row["torch_test"], row["torch_test_ndcg"] = metrics_of(data, U, E, test)

    def after_recmf_epoch(model, hist):
        # CPU seconds of every thread since the last callback ended: the recmf epoch
        row = {"epoch": hist["epoch"], "recmf_s": hist["seconds"], "recmf_loss": hist["loss"],
               "recmf_threads": hist.get("threads"), "recmf_cpu": time.process_time() - state["cpu"]}
        if a.eval == "every":
            rv = recmf.evaluate(model, val, k=10)
            rt = recmf.evaluate(model, test, k=10)
            row["recmf_val"] = rv["recall@10"]
            row["recmf_test"], row["recmf_test_ndcg"] = rt["recall@10"], rt["ndcg@10"]
        if tm is not None:
            torch_epoch(row)
        rows.append(row)
        log(C.format_table([fmt_row(row)], TABLE).splitlines()[-1])
        state["epoch"] += 1
        state["cpu"] = time.process_time()

    if a.only == "torch":
        for ep in range(1, a.epochs + 1):
            row = {"epoch": ep}
            torch_epoch(row)
            rows.append(row)
            log(C.format_table([fmt_row(row)], TABLE).splitlines()[-1])
    else:
        model = make_recmf(a, a.epochs)
        model.fit(train, callback=after_recmf_epoch)
    return rows, data


def fmt_row(r):
    out = dict(r)
    if r.get("recmf_s") and r.get("torch_s"):
        out["ratio"] = r["torch_s"] / r["recmf_s"]
    if r.get("recmf_cpu") and r.get("torch_cpu"):
        out["cpu_ratio"] = r["torch_cpu"] / r["recmf_cpu"]
    return out


def _f4(x):
    return "-" if x is None else f"{x:.4f}"


TABLE = [("epoch", "epoch", None), ("recmf_s", "recmf s", C.fmt_seconds),
         ("torch_s", "torch s", C.fmt_seconds), ("ratio", "torch/recmf", C.fmt_ratio),
         ("recmf_cpu", "recmf cpu s", C.fmt_seconds), ("torch_cpu", "torch cpu s", C.fmt_seconds),
         ("cpu_ratio", "cpu ratio", C.fmt_ratio),
         ("recmf_loss", "recmf loss", _f4), ("torch_loss", "torch loss", _f4),
         ("recmf_val", "recmf val R@10", _f4), ("recmf_test", "recmf test R@10", _f4),
         ("torch_val", "torch val R@10", _f4), ("torch_test", "torch test R@10", _f4)]


def chosen(rows, who, budget=None):
    """The epoch with the best val recall (first on ties), among those whose cumulative
    training time is within budget: (epoch, seconds so far, val, test recall, test ndcg)."""
    best, total = None, 0.0
    for r in rows:
        total += r.get(f"{who}_s") or 0.0
        if budget is not None and total > budget:
            break
        v = r.get(f"{who}_val")
        if v is not None and (best is None or v > best[2]):
            best = (r["epoch"], total, v, r[f"{who}_test"], r[f"{who}_test_ndcg"])
    return best


def peak_memory(a, log):
    out = {}
    for who in ("recmf", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--only", who, "--eval", "none",
               "--epochs", str(a.epochs), "--threads", str(a.threads), "--protocol", a.protocol,
               "--shape", a.shape, "--scale", str(a.scale), "--loss", a.loss,
               "--n-negatives", str(a.n_negatives), "--max-len", str(a.max_len),
               "--batch-size", str(a.batch_size), "--json", "/dev/stdout", "--quiet-json"]
        if a.data:
            cmd += ["--data", a.data]
        log(f"peak memory: {who} alone ({a.epochs} epoch(s))")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            log(res.stderr[-2000:])
            out[who] = None
            continue
        out[who] = json.loads(res.stdout)["peak_rss_mb"]
        log(f"  {who}: {out[who]:.0f} MB")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quiet_json = "--quiet-json" in argv
    argv = [x for x in argv if x != "--quiet-json"]
    a = parse_args(argv)
    log = (lambda *x: None) if quiet_json else C.log
    info = C.machine_info()
    load0 = C.load_average()
    if a.peak_memory:
        res = {"machine": info, "peak_rss_mb": peak_memory(a, log), "args": vars(a)}
        if a.json:
            C.write_json(a.json, res)
        return 0
    if not quiet_json:
        C.print_machine(info)
        print(f"  load average  {load0}")
    rows, data = run_side_by_side(a, log)
    table = [fmt_row(r) for r in rows]
    summary = {}
    for who in ("recmf", "torch"):
        secs = [r.get(f"{who}_s") for r in rows if r.get(f"{who}_s") is not None]
        if not secs:
            continue
        summary[who] = {"epochs": C.epoch_stats(secs), "chosen": chosen(rows, who),
                        "chosen_within_budget": chosen(rows, who, a.budget)}
    ratios = [r["ratio"] for r in table if r.get("ratio")]
    if ratios:
        summary["ratio_median"] = float(np.median(ratios))
        summary["ratio_min"] = float(np.min(ratios))
        summary["cpu_ratio_median"] = float(np.median([r["cpu_ratio"] for r in table
                                                       if r.get("cpu_ratio")]))
        # the whole runs (every paired epoch): the figure the ">= 6x" is read from
        paired = [r for r in rows if r.get("recmf_s") and r.get("torch_s")]
        summary["ratio_whole_run"] = sum(r["torch_s"] for r in paired) / sum(r["recmf_s"] for r in paired)
        summary["cpu_ratio_whole_run"] = sum(r["torch_cpu"] for r in paired) / \
            sum(r["recmf_cpu"] for r in paired)
    result = {"machine": info, "load_average_start": load0, "load_average_end": C.load_average(),
              "args": vars(a), "per_epoch": rows, "summary": summary,
              "peak_rss_mb": C.peak_rss()["peak_rss_mb"]}
    if not quiet_json:
        print()
        print(C.format_table(table, TABLE))
        print()
        print(C.format_table([C.epoch_stats_row(w, [r.get(f"{w}_s") for r in rows])
                              for w in ("recmf", "torch") if w in summary], C.EPOCH_STATS_COLUMNS))
        if ratios:
            print(f"\nwhole runs ({len(ratios)} epochs each, interleaved) torch/recmf: wall "
                  f"{summary['ratio_whole_run']:.2f}x, CPU seconds {summary['cpu_ratio_whole_run']:.2f}x")
            print(f"paired epoch ratio torch/recmf: median {summary['ratio_median']:.2f}x, "
                  f"min {summary['ratio_min']:.2f}x over {len(ratios)} epochs (CPU seconds: median "
                  f"{summary['cpu_ratio_median']:.2f}x)")
        for who in ("recmf", "torch"):
            for key, label in (("chosen", "all epochs"), ("chosen_within_budget", f"<= {a.budget:.0f} s")):
                c = summary.get(who, {}).get(key)
                if c:
                    print(f"{who:5s} {label:>10s}: val-chosen epoch {c[0]} after {c[1]:.1f} s of "
                          f"training: val R@10 {c[2]:.4f}, test R@10 {c[3]:.4f}, ndcg@10 {c[4]:.4f}")
        print(f"peak RSS of this process (both models): {result['peak_rss_mb']:.0f} MB")
    if a.json:
        C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
