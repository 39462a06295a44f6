"""BPRMF: dot-product matrix factorisation trained with the BPR pairwise
loss on sampled triplets (SPEC section 7)."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._config import FROM_CONFIG
from .._checks import check_memory, check_positive_int
from . import _training as T
from ._factors import FactorModel
from .base import EmbeddingModel

__all__ = ["BPRMF"]


class BPRMF(FactorModel, EmbeddingModel):
    """Bayesian personalised ranking with matrix factorisation.

    ``score(u, i) = e_u . e_i``; each epoch draws ``triplets_per_epoch``
    triplets (u, i, j): (u, i) uniformly from the train positives, j a
    non-positive of u drawn uniformly from the ``top_n`` most popular items
    (``negatives="popular"``, the notebook's "popular-hard") or from all
    items (``negatives="uniform"``); loss = mean -log sigmoid(s_ui - s_uj);
    Adam.  Defaults are the reference notebook's.

    Early stopping: with ``fit(data, val=frame)``, recall@10 on ``val`` is
    computed every ``eval_every`` epochs; the best weights are kept and
    training stops after ``patience`` evaluations without improvement.  The
    notebook watched its test set; recmf watches whatever frame you pass
    (validation by default in the docs and CLI).

    Parameters
    ----------
    emb_dim : int (64)
    negatives : {"popular", "uniform"}; top_n : int (2000)
    triplets_per_epoch : int (500_000)
    lr, weight_decay, betas, eps, adam, batch_size, epochs, eval_every,
    patience, threshold, user_col, item_col, rating_col, seed, n_threads,
    verbose : as in :class:`NeuralMF` (epochs 20, eval_every 2, patience 3).

    Determinism: the same seed gives bit-identical weights on any
    ``n_threads`` and under any load (training may run batches on one thread
    when that is faster: history's ``threads`` column); triplets, shuffling
    and every sum are split by the seed and fixed chunks, never by threads.

    Fold-in (``recommend(..., history=frame)``, :meth:`fold_in`): a user's
    embedding is solved from its history by the implicit-ALS least squares
    against the fixed item embeddings, with the class attributes
    ``fold_in_regularization`` and ``fold_in_alpha`` (set them on the model to
    change them).  ``similar_items``: cosine of the item embeddings.
    """

    kind = "bprmf"
    #: regularization and alpha of the fold-in least squares (not learned).
    #: Chosen on ML-1M's validation split for the seed configuration (val
    #: users folded in from their train positives, regularization 0.3-1000,
    #: alpha 0-4): val recall@10 0.0867, test 0.0669 -- above the trained
    #: embeddings' 0.0688 / 0.0506, as a strong ridge turns the user vector
    #: into a weighted sum of its items' embeddings.
    fold_in_regularization = 30.0
    fold_in_alpha = 0.0

    _dim_field = "emb_dim"

    def _fold_in_params(self):
        return self.fold_in_regularization, self.fold_in_alpha

    def __init__(self, emb_dim=64, negatives="popular", top_n=2000, triplets_per_epoch=500_000,
                 lr=1e-3, weight_decay=1e-6, betas=(0.9, 0.999), eps=1e-8, adam="dense",
                 batch_size=4096, epochs=20, eval_every=2, patience=3, threshold=FROM_CONFIG,
                 user_col=FROM_CONFIG, item_col=FROM_CONFIG, rating_col=FROM_CONFIG, seed=0,
                 n_threads=None, verbose=False):
        super().__init__(n_threads=n_threads)
        self.emb_dim, self.negatives, self.top_n = emb_dim, negatives, top_n
        self.triplets_per_epoch = triplets_per_epoch
        self.lr, self.weight_decay, self.betas, self.eps, self.adam = lr, weight_decay, betas, eps, adam
        self.batch_size, self.epochs, self.eval_every, self.patience = batch_size, epochs, eval_every, patience
        self.threshold, self.user_col, self.item_col, self.rating_col = threshold, user_col, item_col, rating_col
        self.seed, self.verbose = seed, verbose

    @classmethod
    def _test_params(cls):
        return dict(emb_dim=16, epochs=3, batch_size=512, triplets_per_epoch=20_000, top_n=100,
                    seed=7, n_threads=2)

    def _check_params(self):
        T.common_checks(self)
        T.check_adam(self)
        self.emb_dim = check_positive_int(self.emb_dim, "emb_dim")
        if self.negatives not in ("popular", "uniform"):
            raise ValueError(f"negatives must be 'popular' or 'uniform', got {self.negatives!r}")
        self.top_n = check_positive_int(self.top_n, "top_n")
        self.triplets_per_epoch = check_positive_int(self.triplets_per_epoch, "triplets_per_epoch")

    def candidates(self):
        """Dense indices of the items negatives are drawn from."""
        self._check_fitted()
        if self.negatives == "uniform":
            return np.arange(self.data_.n_items, dtype=np.int32)
        order = _core.popularity_order(self.data_.popularity())
        return np.ascontiguousarray(order[:self.top_n])

    def _fit(self, data, val, callback):
        d, cand = self.data_, self.candidates()
        nu, ni, t = d.n_users, d.n_items, self.triplets_per_epoch
        check_memory(f"BPRMF on {nu:,} users x {ni:,} items", [
            (f"weights, Adam moments and gradient (emb_dim={self.emb_dim})", 16 * (nu + ni) * self.emb_dim),
            (f"an epoch's triplets (triplets_per_epoch={t:,})", 20 * t)],
            "lower the setting named first")

        def triplets(epoch):   # a fresh sample each epoch (SPEC 7)
            return _core.sample_triplets(d.indptr, d.indices, d.n_items, cand, self.triplets_per_epoch,
                                         self.seed, epoch, self.n_threads)

        return self._train(val, callback, self.patience if val is not None else None, triplets)

    def to_onnx(self, path):
        """Export to ONNX (opset 17): inputs ``user_id``, ``item_id`` (int64
        dense indices [batch], from ``data_.user_index``/``item_index``) ->
        ``score`` (float32 [batch]); NaN for a pair whose index is outside
        ``[0, n)``, e.g. the -1 of an unknown id (never another row's score)."""
        from ..onnx_export import export_bprmf
        self._check_fitted()
        export_bprmf(self, path)
