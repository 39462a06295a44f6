"""SASRec: the self-attentive sequential recommender, trained by the C core."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd

from .. import _core
from .._config import FROM_CONFIG
from .._checks import as_core_array, check_positive_int
from ..data import Interactions
from . import _training as T
from .base import EmbeddingModel

__all__ = ["SASRec"]

LOSSES = {"softmax": 0, "sampled": 1}
INPUTS = ("positives", "rated")


def _positive_sequences(data):
    """(indptr, items): each indexed user's positives oldest first, from
    ``data.positions`` (time order, ties in input order)."""
    if data.positions is None:
        raise ValueError("SASRec needs the order of each user's positives: build the Interactions "
                         "from a frame with a time column (Interactions.from_frame(..., time_col=...))")
    rows = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(data.indptr))
    order = np.lexsort((data.positions, rows))
    return (np.ascontiguousarray(data.indptr, dtype=np.int64),
            np.ascontiguousarray(data.indices[order], dtype=np.int32))


def _frame_sequences(data, frame, columns, threshold, rated):
    """(indptr, items): each indexed user's rows of ``frame`` oldest first
    -- every rated row (``rated``) or the positives (``rating >=
    threshold``) -- ordered as :func:`recmf.temporal_split` orders rows
    (time, ties in input order; input order when the frame has no time
    column).  Items outside the index (never a positive) are left out: the
    model has no embedding for them."""
    user_col, item_col, rating_col, time_col = (columns[c] for c in
                                                ("user_col", "item_col", "rating_col", "time_col"))
    u = data._user_codes(frame[user_col].to_numpy())
    i = data._item_codes(frame[item_col].to_numpy())
    keep = (u >= 0) & (i >= 0)
    if not rated and rating_col is not None and threshold is not None:
        keep &= frame[rating_col].to_numpy() >= threshold
    if time_col is not None and time_col in frame:
        t = frame[time_col].to_numpy()[keep]
        if np.issubdtype(t.dtype, np.datetime64):
            t = t.astype("datetime64[ns]").view(np.int64)
        elif not np.issubdtype(t.dtype, np.integer):
            t = pd.Series(t).rank(method="dense").to_numpy()   # same order, ties kept
    else:
        t = np.zeros(int(keep.sum()), dtype=np.int64)          # input order
    order, _ = _core.temporal_split(np.ascontiguousarray(u[keep], dtype=np.int64),
                                    np.ascontiguousarray(t, dtype=np.int64), 0, 0, 0)
    uu, ii = u[keep][order], i[keep][order]
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(uu, minlength=data.n_users), out=indptr[1:])
    return indptr, np.ascontiguousarray(ii, dtype=np.int32)


class SASRec(EmbeddingModel):
    """SASRec (Kang & McAuley, ICDM 2018): a causal transformer over each
    user's items in time order that predicts the next item, trained as
    RecTools 0.19 trains it, with full-softmax cross-entropy over every item
    (SASRec+, Klenitskiy & Vasilev, RecSys 2023) or sampled softmax.

    Token t of a user's last ``max_len`` items reads ``E[item_t] (+ P[n-1-t])``
    (a learned embedding of the distance from the sequence's end), goes
    through ``n_blocks`` blocks of pre-norm causal multi-head attention and
    a ReLU feed-forward layer, and a last layer norm gives ``h_t``; the score
    of item j after the user's last item is ``h . E[j]``.  Each user's last
    ``max_len + 1`` items form one training window (every token predicts the
    next item), padding never enters the loss, and a window of n tokens
    costs n rows (no padding).

    Parameters
    ----------
    n_blocks, n_heads, emb_dim : int
        Transformer blocks (2), attention heads (2, divides ``emb_dim``) and
        width d (64).  The feed-forward layer is d wide.
    max_len : int
        Tokens a user's sequence is cut to, most recent kept (200).
    dropout : float in [0, 1)
        On the input embeddings, the attention probabilities and both
        feed-forward layers (0.2).
    loss : {"softmax", "sampled"}
        Cross-entropy of the next item over every item, or over the target
        and ``n_negatives`` items drawn uniformly per batch and shared by its
        tokens, each user's own items masked out of their negatives (for
        catalogues where every item per token is too many).
    n_negatives : int (256)
    lr, weight_decay, betas, eps : Adam (2e-3, 0 as L2 added to the
        gradient, (0.9, 0.98), 1e-8): RecTools' settings.
    adam : {"dense", "lazy"}
        "dense" steps every item row every batch, as PyTorch; "lazy" only
        the rows a batch touched (with full softmax every row is touched).
    batch_size : int
        Users (windows) per batch (128).
    epochs : int (20)
    inputs : {"positives", "rated"}
        What a user's sequence holds: their positives (``rating >=
        threshold``), or every item they rated (needs a frame with a time
        column in ``fit``; items without a train positive are left out, as
        the model has no embedding for them).  With ``"rated"`` the frame is
        indexed with ``seen="rated"``: recommendations drop every rated
        item (the watched protocol).
    scale_emb : bool
        Multiply item embeddings by sqrt(d) at the input (the SASRec paper's
        code; RecTools does not) (False).
    eval_every : int (1), patience : int or None
        With ``fit(val=...)``, recall@10 on ``val`` every ``eval_every``
        epochs; with ``patience``, stop after that many evaluations without
        improvement and keep the best weights.
    threshold, user_col, item_col, rating_col, time_col : used when ``fit``
        gets a frame.
    seed : int
        Initial weights, shuffling, dropout and negatives derive from it.
    n_threads : int or None
        Threads (None: all cores).  A batch is cut into parts fixed by the
        data, each part's layers run on one thread, and the parts' gradients
        are added in order: a seed gives bit-identical weights on any
        ``n_threads``.
    verbose : bool
        Progress bar.

    Attributes after fit: ``history`` (one row per epoch: loss, n_pairs =
    tokens, seconds, threads, val metrics), ``theta_`` (every weight, flat
    float32) and its views as the core lays them out
    (``_core.layout("sasrec", ...)``: ``item_emb_`` (n_items, d), ``pos_emb_``
    (max_len, d), then each block's parameters stacked over the blocks:
    ``in_proj_`` (n_blocks 3d, d) = [Wq; Wk; Wv] per block, ...),
    ``sequences_`` = (``seq_indptr_``, ``seq_items_``) the users' training
    sequences.

    Raises
    ------
    ValueError, TypeError
        A hyperparameter out of range (named), or ``inputs="rated"`` without
        a frame holding every rating.

    Notes
    -----
    The defaults are RecTools' configuration, tuned for many epochs.  With
    a training budget of minutes, smaller batches and sampled negatives
    learn more per second: on ML-1M's seed split, ``batch_size=32,
    lr=3e-3, dropout=0.1, loss="sampled", n_negatives=1024`` reaches test
    recall@10 0.177 after 67 s of training on 2 cores (19 epochs of 3.5
    s), where the defaults reach 0.164 after 19 epochs of about 6 s
    (``benchmarks/sasrec_tune.py`` chose these knobs on a validation
    shaped like the test; README, "SASRec").
    """

    kind = "sasrec"
    default_grid = {"epochs": [10, 20, 30], "dropout": [0.1, 0.2, 0.3]}

    def __init__(self, n_blocks=2, n_heads=2, emb_dim=64, max_len=200, dropout=0.2, loss="softmax",
                 n_negatives=256, lr=2e-3, weight_decay=0.0, betas=(0.9, 0.98), eps=1e-8,
                 adam="dense", batch_size=128, epochs=20, inputs="positives", scale_emb=False,
                 eval_every=1,
                 patience=None, threshold=FROM_CONFIG, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                 rating_col=FROM_CONFIG, time_col=FROM_CONFIG, seed=0, n_threads=None, verbose=False):
        super().__init__(n_threads=n_threads)
        self.n_blocks, self.n_heads, self.emb_dim, self.max_len = n_blocks, n_heads, emb_dim, max_len
        self.dropout, self.loss, self.n_negatives = dropout, loss, n_negatives
        self.lr, self.weight_decay, self.betas, self.eps, self.adam = lr, weight_decay, betas, eps, adam
        self.batch_size, self.epochs, self.inputs, self.scale_emb = batch_size, epochs, inputs, scale_emb
        self.eval_every, self.patience = eval_every, patience
        self.threshold, self.user_col, self.item_col = threshold, user_col, item_col
        self.rating_col, self.time_col = rating_col, time_col
        self.seed, self.verbose = seed, verbose

    # -- parameters --------------------------------------------------------
    def _check_params(self):
        T.common_checks(self)
        self.n_blocks = check_positive_int(self.n_blocks, "n_blocks", minimum=0)
        self.n_heads = check_positive_int(self.n_heads, "n_heads")
        self.max_len = check_positive_int(self.max_len, "max_len")
        self.n_negatives = check_positive_int(self.n_negatives, "n_negatives")
        if self.emb_dim % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide emb_dim ({self.emb_dim})")
        if self.emb_dim > 512:
            raise ValueError(f"emb_dim must be <= 512, got {self.emb_dim}")
        if self.max_len > 65536:
            raise ValueError(f"max_len must be <= 65536, got {self.max_len}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or \
                not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be 'softmax' or 'sampled', got {self.loss!r}")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be 'positives' or 'rated', got {self.inputs!r}")
        T.check_adam(self)
        self.scale_emb = bool(self.scale_emb)

    @classmethod
    def _test_params(cls):
        return dict(n_blocks=1, emb_dim=16, max_len=20, epochs=3, batch_size=16, seed=7, n_threads=2)

    def _core_fields(self):
        return {"emb_dim": int(self.emb_dim), "n_heads": int(self.n_heads),
                "n_blocks": int(self.n_blocks), "max_len": int(self.max_len),
                "dropout": float(self.dropout), "loss": LOSSES[self.loss],
                "n_negatives": int(self.n_negatives), "scale_emb": int(self.scale_emb)}

    # -- training ----------------------------------------------------------
    def fit(self, data, val=None, callback=None):
        """Train on ``data`` (a frame, or Interactions built from one with a
        time column); see :meth:`Recommender.fit`.  ``inputs="rated"`` needs
        the frame itself (every rating, not only the positives)."""
        self._frame = data if isinstance(data, pd.DataFrame) else None
        try:
            return super().fit(data, val, callback)
        finally:
            self._frame = None

    def _as_interactions(self, data, threshold, columns):
        # the watched protocol: a model fed every rating also drops every
        # rated item when it recommends
        if isinstance(data, pd.DataFrame) and self.inputs == "rated":
            return Interactions.from_frame(data, threshold=threshold, seen="rated", **columns)
        return super()._as_interactions(data, threshold, columns)

    def _sequences(self, data):
        if self.inputs == "positives" and data.positions is not None:
            return _positive_sequences(data)
        if self._frame is None:
            if self.inputs == "rated":
                raise ValueError("inputs='rated' needs every rating in time order: pass fit() the "
                                 "train frame, not Interactions")
            return _positive_sequences(data)       # raises: no order known
        columns = self._columns()
        if columns["time_col"] is None or columns["time_col"] not in self._frame:
            warnings.warn(f"the frame has no time column {columns['time_col']!r}: SASRec reads each user's "
                          "rows in the frame's order", stacklevel=4)
        return _frame_sequences(data, self._frame, columns, self._threshold(),
                                self.inputs == "rated")

    def _threshold(self):
        """The positive threshold of the fitted data (``columns_``), else as it resolves now."""
        return (self.columns_ or self._resolve_columns())["threshold"]

    @property
    def sequences_(self):
        """``(indptr, items)``: each user's training sequence, oldest first
        (int64 offsets, int32 item indices); what the model scores users
        from."""
        return self.seq_indptr_, self.seq_items_

    def _fit(self, data, val, callback):
        self.seq_indptr_, self.seq_items_ = self._sequences(data)
        indptr = self.seq_indptr_
        if not (np.diff(indptr) >= 2).any():
            warnings.warn("no user has two or more items in sequence: SASRec has nothing to learn from "
                          "and keeps its initial weights", stacklevel=4)
            self._init_weights()
            self.history = pd.DataFrame(columns=["epoch", "loss", "n_pairs", "seconds"])
            self.best_epoch_ = 0
            return self
        return self._train(val, callback, self.patience, lambda epoch: self.sequences_)

    # -- scoring -----------------------------------------------------------
    # A sequence model scores a user from their sequence: the core gets the
    # training sequences as the history its rows index.
    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        seen = self.data_.seen_csr() if exclude_seen else None
        return _core.recommend(self.kind, self._config(), self.theta_, uidx, seen, k, self.n_threads,
                               history=self.sequences_, allowed=mask)

    def _score_index(self, uidx, iidx):
        return _core.score_pairs(self.kind, self._config(), self.theta_, uidx, iidx, self.n_threads,
                                 history=self.sequences_)

    def _history_interactions(self, history):
        if self.inputs != "rated":
            return super()._history_interactions(history)
        # every rated row counts as an input (and as seen)
        saved = self.columns_
        try:
            self.columns_ = {**saved, "rating_col": None}
            return super()._history_interactions(history)
        finally:
            self.columns_ = saved

    def _recommend_history(self, hist, rows, k, exclude_seen, mask=None):
        seqs = _positive_sequences(hist)
        seen = (hist.indptr, hist.indices, hist.n_items) if exclude_seen else None
        return _core.recommend(self.kind, self._config(), self.theta_,
                               np.ascontiguousarray(rows, dtype=np.int32), seen, k, self.n_threads,
                               history=seqs, allowed=mask)

    # -- export ------------------------------------------------------------------
    def to_onnx(self, path):
        """Export the scoring network to ONNX (opset 17, standard operators
        only: LayerNormalization, MatMul, Softmax, Trilu, ...).

        Input ``item_seq``: int64 [batch, seq] with ``seq <= max_len``, each
        row a user's most recent item indices (``data_.item_index``), oldest
        first and **left**-padded with -1 (any index outside ``[0,
        n_items)`` is left out, as an unknown item).  Output ``scores``:
        float32 [batch, n_items], the score of every item as the next one
        (``recommend``'s scores, before its seen-item filter); NaN for a row
        with no item in range.  Rows are scored independently, so new users
        need no refit (as ``recommend(history=)``).  Needs the ``onnx``
        package.

        Raises
        ------
        RuntimeError
            The model is not fitted.
        ImportError
            The ``onnx`` package is missing.
        """
        from ..onnx_export import export_sasrec
        self._check_fitted()
        export_sasrec(self, path)

    # -- persistence ---------------------------------------------------------
    def _arrays(self):
        return {"theta": self.theta_, "seq_indptr": self.seq_indptr_, "seq_items": self.seq_items_}

    def _set_arrays(self, arrays):
        super()._set_arrays(arrays)
        self.seq_indptr_ = as_core_array(arrays["seq_indptr"], np.int64)
        self.seq_items_ = as_core_array(arrays["seq_items"], np.int32)
        if len(self.seq_indptr_) != self.data_.n_users + 1 or \
                self.seq_indptr_[-1] != len(self.seq_items_):
            raise ValueError("saved sequences do not match the model's users")
