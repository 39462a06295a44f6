"""NeuralMF: embeddings + a one-hidden-layer MLP, BCE on sampled negatives
(SPEC section 6), trained and scored by the C core."""
from __future__ import annotations

from .._config import FROM_CONFIG
from .._checks import check_memory, check_number, check_positive_int
from . import _training as T
from .base import EmbeddingModel

__all__ = ["NeuralMF"]


class NeuralMF(EmbeddingModel):
    """Neural matrix factorisation for implicit feedback.

    ``logit(u, i) = w2 . dropout(relu(W1 [e_u ; e_i] + b1)) + b2``, trained
    with mean binary cross-entropy on every positive (label 1) and ``n_neg``
    uniformly drawn non-positive items per positive (label 0), fresh every
    epoch, shuffled, in batches, with Adam.  The defaults are the reference
    notebook's.

    Parameters
    ----------
    emb_dim, hidden_dim : int
        Embedding size (64) and hidden layer width (128).
    dropout : float
        Dropout on the hidden layer during training (0.1).
    lr, weight_decay, betas, eps : Adam settings (1e-3, 1e-6 as L2 added to
        the gradient -- not AdamW --, (0.9, 0.999), 1e-8).
    adam : {"dense", "lazy"}
        "dense" updates every parameter every step, exactly as PyTorch's Adam
        does with dense embedding gradients; "lazy" only touches the
        embedding rows of the batch (faster, not the same maths).  Dense
        Adam's cost grows with n_users + n_items per step, not with the
        batch: on large catalogues it dominates the epoch
        (``dense_adam_note()`` says when; the progress bar shows it).
    batch_size : int (4096)
    epochs : int (20)
    n_neg : int (4) negatives per positive.
    eval_every : int (2), patience : int or None (None: no early stopping)
        With ``fit(val=...)``, evaluate recall@10 on ``val`` every
        ``eval_every`` epochs; with ``patience`` set, stop after that many
        evaluations without improvement and keep the best weights.
    threshold : float (4), user_col, item_col, rating_col : used when
        ``fit``/``val`` get frames.
    seed : int
        Initial weights, negatives, shuffling and dropout all derive from it.
    n_threads : int or None
        Threads for fit/recommend (None: all cores): recmf's OpenMP team,
        which also runs the first layer's matrix products as pieces on one
        OpenBLAS thread each; the caller's BLAS thread setting is restored
        afterwards.  Training measures as it goes and runs a batch on one
        thread instead when that is faster (another program busy on a
        core); the history's ``threads`` column gives each epoch's mean
        team size.
    verbose : bool
        Progress bar (tqdm, notebook-aware).

    Determinism: the same seed gives bit-identical weights on any
    ``n_threads`` and under any load.  Sampling, shuffling and dropout masks
    depend on the seed only, every sum is split by fixed chunks, and the
    first-layer weight gradient, which OpenBLAS would round differently on
    one thread and on several, is summed in fixed parts on one BLAS thread
    each.

    Attributes after fit: ``history`` (DataFrame, one row per epoch: epoch,
    loss, n_pairs, seconds, threads, and val metrics when evaluated),
    ``data_`` (Interactions), ``theta_`` (all weights, flat float32), and
    its views as the core lays them out (``_core.layout("neuralmf", ...)``):
    ``user_emb_`` (n_users, emb_dim), ``item_emb_`` (n_items, emb_dim),
    ``W1_`` (hidden_dim, 2 emb_dim), ``b1_``, ``w2_`` (hidden_dim,), ``b2_``
    (1,).
    """

    kind = "neuralmf"

    def __init__(self, emb_dim=64, hidden_dim=128, dropout=0.1, lr=1e-3, weight_decay=1e-6,
                 betas=(0.9, 0.999), eps=1e-8, adam="dense", batch_size=4096, epochs=20, n_neg=4,
                 eval_every=2, patience=None, threshold=FROM_CONFIG, user_col=FROM_CONFIG,
                 item_col=FROM_CONFIG, rating_col=FROM_CONFIG, seed=0, n_threads=None, verbose=False):
        super().__init__(n_threads=n_threads)
        self.emb_dim, self.hidden_dim, self.dropout = emb_dim, hidden_dim, dropout
        self.lr, self.weight_decay, self.betas, self.eps, self.adam = lr, weight_decay, betas, eps, adam
        self.batch_size, self.epochs, self.n_neg = batch_size, epochs, n_neg
        self.eval_every, self.patience = eval_every, patience
        self.threshold, self.user_col, self.item_col, self.rating_col = threshold, user_col, item_col, rating_col
        self.seed, self.verbose = seed, verbose

    def _core_fields(self):
        return {"emb_dim": self.emb_dim, "hidden_dim": self.hidden_dim, "dropout": float(self.dropout),
                "n_neg": int(self.n_neg)}

    def _check_params(self):
        T.common_checks(self)
        T.check_adam(self)
        self.emb_dim = check_positive_int(self.emb_dim, "emb_dim")
        self.hidden_dim = check_positive_int(self.hidden_dim, "hidden_dim")
        self.n_neg = check_positive_int(self.n_neg, "n_neg")
        check_number(self.dropout, "dropout", 0, 1, high_open=True)

    @classmethod
    def _test_params(cls):
        return dict(emb_dim=16, hidden_dim=32, epochs=3, batch_size=512, seed=7, n_threads=2)

    # -- training ---------------------------------------------------------
    def _fit(self, data, val, callback):
        nu, ni, d, h = self.data_.n_users, self.data_.n_items, self.emb_dim, self.hidden_dim
        pairs = data.nnz * (1 + self.n_neg)
        check_memory(f"NeuralMF on {nu:,} users x {ni:,} items", [
            (f"weights, Adam moments and gradient (emb_dim={d}, hidden_dim={h})",
             16 * ((nu + ni) * d + 2 * h * d + 2 * h + 1)),
            (f"an epoch's {pairs:,} pairs (n_neg={self.n_neg})", 12 * pairs),
            (f"a batch's activations (batch_size={self.batch_size}, hidden_dim={h})",
             16 * min(self.batch_size, pairs) * (h + d))],
            "lower the setting named first")
        positives = (self.data_.indptr, self.data_.indices)   # negatives drawn by the core each epoch
        return self._train(val, callback, self.patience, lambda epoch: positives)

    def to_onnx(self, path):
        """Export to ONNX (opset 17) as the reference notebook does: inputs
        ``user_id`` and ``item_id`` (int64 dense indices, shape [batch]),
        output ``logit`` (float32 [batch]); NaN for a pair whose index is
        outside ``[0, n)``, e.g. the -1 that ``data_.user_index`` gives an
        unknown id (never another row's score).  Needs the ``onnx`` package."""
        from ..onnx_export import export_neuralmf
        self._check_fitted()
        export_neuralmf(self, path)
