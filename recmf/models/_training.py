"""The epoch loop shared by NeuralMF and BPRMF: progress bar, evaluation
every few epochs, early stopping on a watched split, per-epoch callback,
history, and a clean stop on Ctrl-C."""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd

from .. import _core
from .._checks import check_frame, check_number, check_positive_int, check_seed
from .._progress import progress

log = logging.getLogger("recmf")


def named_sampling_error(err, data):
    """The core's SamplingError names the dense user index (all it knows);
    users know their own ids: the same error naming the original id, with
    attributes ``user_id`` and ``user_index``.  The one place that
    translates it."""
    idx = getattr(err, "user_index", None)
    if idx is None or not 0 <= idx < data.n_users:
        return err
    uid = data.user_ids[idx:idx + 1].tolist()[0]
    msg = str(err).replace(f"user index {idx}", f"user {uid!r}", 1)
    named = _core.SamplingError(msg)
    named.user_id, named.user_index = uid, idx
    return named


def validation_metrics(model, val, k, columns):
    """recall/ndcg/mrr/hitrate@k of the current weights on a held-out frame."""
    from ..metrics import evaluate
    rep = evaluate(model, val, k=k, coverage_users=val[columns["user_col"]].iloc[:1],
                   catalog=model.data_.item_ids, user_col=columns["user_col"],
                   item_col=columns["item_col"], rating_col=columns["rating_col"],
                   threshold=model.columns_["threshold"], _name="val")
    return {f"val_{name}": rep[f"{name}@{k}"] for name in ("recall", "ndcg", "mrr", "hitrate")}


class EpochLoop:
    """Runs ``run_epoch(epoch) -> (loss, n_done, interrupted[, columns])``
    for up to ``epochs`` epochs with evaluation, early stopping and history
    (``columns``: a dict of further history columns for the epoch).

    Early stopping (when ``val`` is given and ``patience`` is not None):
    every ``eval_every`` epochs the watched metric is computed; the best
    weights are kept; training stops after ``patience`` evaluations without
    improvement; the best weights are restored at the end.
    """

    def __init__(self, model, val, columns, monitor="val_recall", k=10):
        self.model = model
        self.val = val
        self.columns = columns
        self.monitor = monitor
        self.k = k
        if val is not None:
            self.val = check_frame(val, "val", {c: columns[c] for c in ("user_col", "item_col",
                                                                       "rating_col")})

    def run(self, run_epoch, epochs, eval_every, patience, callback, verbose, desc):
        model = self.model
        rows = []
        best, best_theta, best_epoch, bad = -np.inf, None, 0, 0
        bar = progress(epochs, desc, verbose)
        model.interrupted_ = False
        try:
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                extra = {}
                try:
                    loss, n_done, interrupted, *more = run_epoch(epoch)
                    if more:
                        extra = more[0]
                except KeyboardInterrupt:
                    # Ctrl-C outside the core's batch loop (e.g. while
                    # sampling): no update was in flight, the weights are
                    # those of the last complete epoch.
                    loss, n_done, interrupted = float("nan"), 0, True
                row = {"epoch": epoch, "loss": loss, "n_pairs": n_done,
                       "seconds": time.perf_counter() - t0, **extra}
                if interrupted:
                    row["interrupted"] = True
                    rows.append(row)
                    model.interrupted_ = True
                    warnings.warn(f"training interrupted during epoch {epoch}: the model keeps the "
                                  "weights after the last complete batch", stacklevel=3)
                    break
                evaluate_now = self.val is not None and eval_every and epoch % eval_every == 0
                if evaluate_now:
                    t1 = time.perf_counter()
                    row.update(validation_metrics(model, self.val, self.k, self.columns))
                    row["eval_seconds"] = time.perf_counter() - t1
                rows.append(row)
                log.debug("%s epoch %d: %s", desc, epoch,
                          ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in row.items() if k != "epoch"))
                if bar is not None:
                    shown = {"loss": f"{loss:.4f}"}
                    if evaluate_now:
                        shown[self.monitor] = f"{row[self.monitor]:.4f}"
                    bar.set_postfix(shown)
                    bar.update(1)
                if evaluate_now and patience is not None:
                    if np.isnan(row[self.monitor]):
                        # NaN means "no user could be evaluated", not "worse":
                        # comparing it would stop training after `patience`
                        # evaluations for no reason.
                        raise ValueError(
                            f"early stopping watches {self.monitor}, which is NaN: no user of val has "
                            "a relevant item (rating >= threshold) and a recommendation list; pass a "
                            "val frame with positives of known users, or patience=None")
                    if row[self.monitor] > best:
                        best, best_theta, best_epoch, bad = row[self.monitor], model.theta_.copy(), epoch, 0
                    else:
                        bad += 1
                        if bad >= patience:
                            log.info("%s: early stopping after epoch %d (%d evaluations without a better "
                                     "%s); keeping epoch %d's weights (%s %.4f)", desc, epoch, bad,
                                     self.monitor, best_epoch, self.monitor, best)
                            break
                if callback is not None and callback(model, dict(row)) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        if best_theta is not None:
            model.theta_[:] = best_theta
            model.best_epoch_ = best_epoch
        else:
            model.best_epoch_ = rows[-1]["epoch"] if rows else 0
        model.history = pd.DataFrame(rows)
        return model


def common_checks(model):
    """Validate the hyperparameters every mini-batch model shares (the core
    loop's and the epoch loop's)."""
    model.batch_size = check_positive_int(model.batch_size, "batch_size")
    model.epochs = check_positive_int(model.epochs, "epochs", minimum=0)
    model.seed = check_seed(model.seed)
    if model.eval_every is not None:
        model.eval_every = check_positive_int(model.eval_every, "eval_every", minimum=0)
    if model.patience is not None:
        model.patience = check_positive_int(model.patience, "patience")
    check_number(model.lr, "lr", 0, low_open=True)
    check_number(model.weight_decay, "weight_decay", 0)


def check_adam(model):
    if model.adam not in ("dense", "lazy"):
        raise ValueError(f"adam must be 'dense' (as PyTorch) or 'lazy', got {model.adam!r}")
    if len(model.betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {model.betas!r}")
    for q, beta in enumerate(model.betas):
        check_number(beta, f"betas[{q}]", 0, 1, high_open=True)
    check_number(model.eps, "eps", 0, low_open=True)
