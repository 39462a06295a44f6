"""Implicit ALS: weighted matrix factorisation of the 0/1 positives solved by
alternating least squares (Hu, Koren & Volinsky, ICDM 2008), in C."""
from __future__ import annotations


import numpy as np

from .. import _core
from .._config import FROM_CONFIG
from .._checks import check_memory, check_number, check_positive_int, check_seed
from ._factors import ALS_CG, ALS_CHOLESKY, FactorModel
from ._training import EpochLoop
from .base import EmbeddingModel

__all__ = ["ALS"]


class ALS(FactorModel, EmbeddingModel):
    """Implicit alternating least squares (Hu, Koren & Volinsky, "Collaborative
    Filtering for Implicit Feedback Datasets", ICDM 2008).

    Minimises, over user factors X (n_users x factors) and item factors Y
    (n_items x factors),

    ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization (|X|^2 + |Y|^2)``

    where ``p_ui = 1`` for the train positives and 0 for every other pair,
    and the confidence ``c_ui = 1 + alpha`` on positives, 1 elsewhere.  Each
    iteration solves every user's least squares with Y fixed, then every
    item's with X fixed.  ``score(u, i) = x_u . y_i``.

    Parameters
    ----------
    factors : int (64)
        Latent dimension.
    regularization : float >= 0 (50.0)
        L2 weight on both factor matrices (not scaled by counts).
    alpha : float >= 0 (2.0)
        Extra confidence of a positive: ``c = 1 + alpha``.  benfred/implicit
        calls the whole confidence ``alpha`` (its ``c = alpha``): implicit's
        ``alpha=a`` is recmf's ``alpha=a - 1``.
    iterations : int (15)
        ALS iterations (each a user half and an item half).
    solver : {"cg", "cholesky"}
        "cg": ``cg_steps`` conjugate-gradient steps per row from the previous
        iteration's factors (Takacs, Pilaszy & Tikk, "Applications of the
        conjugate gradient method for implicit feedback collaborative
        filtering", RecSys 2011; as implicit's default solver): O(factors^2 +
        n_u factors) per row and step.  "cholesky": the exact solve of
        every row in double precision, O(n_u factors^2 + factors^3) per row.
    cg_steps : int (3)
    eval_every : int or None (5)
        With ``fit(val=...)``, recall@10 etc. on ``val`` every ``eval_every``
        iterations, in ``history``.  No early stopping unless ``patience``.
    patience : int or None (None)
        Stop after this many evaluations without improvement, keeping the
        best factors.
    threshold : float (4), user_col, item_col, rating_col : used when fit
        gets a frame.
    seed : int
        Initial factors: N(0, 0.01^2), from ``numpy.random.default_rng(seed)``.
    n_threads : int or None
        Threads for the row loops and OpenBLAS (None: all cores).
    verbose : bool
        Progress bar.

    Determinism: the same seed gives bit-identical factors and history
    losses, whatever ``n_threads`` (on the same CPU: AVX2 and plain x86-64
    kernels may round differently).  Every row is solved by one thread in a
    fixed order, and Y^T Y is one single-threaded sgemm.

    Attributes after fit: ``user_factors_`` (n_users, factors),
    ``item_factors_`` (n_items, factors) -- float32 views of ``theta_`` --,
    ``history`` (DataFrame, one row per iteration, columns as the other
    models': ``epoch`` (the iteration, from 1), ``loss`` (the objective above
    divided by the total confidence ``n_users n_items + alpha nnz``, as
    implicit reports it), ``n_pairs`` (positives), ``seconds``, and val
    metrics when evaluated).

    The defaults are the best of ``default_grid`` on ML-1M's validation
    split (the seed's split, threshold 4): test recall@10 0.0848, ndcg@10
    0.0587.  For scale, implicit 0.7.3's ALS chosen on the same validation
    split from factors 64/128, regularization 0.05/0.5/5 and (its) alpha
    1/5/20 reaches 0.0781 / 0.0542: the regularization that suits this data
    lies above that grid (recmf's own run of that grid picks regularization 5,
    alpha 4: 0.0780).  ``default_grid`` is what :func:`recmf.select`
    searches by default.
    """

    kind = "als"
    default_grid = {"factors": [64, 128], "regularization": [5.0, 15.0, 50.0],
                    "alpha": [1.0, 2.0, 4.0]}

    def __init__(self, factors=64, regularization=50.0, alpha=2.0, iterations=15, solver="cg",
                 cg_steps=3, eval_every=5, patience=None, threshold=FROM_CONFIG, user_col=FROM_CONFIG,
                 item_col=FROM_CONFIG, rating_col=FROM_CONFIG, seed=0, n_threads=None, verbose=False):
        super().__init__(n_threads=n_threads)
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.solver, self.cg_steps = iterations, solver, cg_steps
        self.eval_every, self.patience = eval_every, patience
        self.threshold, self.user_col, self.item_col, self.rating_col = threshold, user_col, item_col, rating_col
        self.seed, self.verbose = seed, verbose

    def _fold_in_params(self):
        return self.regularization, self.alpha

    def _check_params(self):
        self.factors = check_positive_int(self.factors, "factors")
        self.regularization = check_number(self.regularization, "regularization", 0)
        self.alpha = check_number(self.alpha, "alpha", 0)
        self.iterations = check_positive_int(self.iterations, "iterations", minimum=0)
        if self.solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', got {self.solver!r}")
        self.cg_steps = check_positive_int(self.cg_steps, "cg_steps")
        if self.eval_every is not None:
            self.eval_every = check_positive_int(self.eval_every, "eval_every", minimum=0)
        if self.patience is not None:
            self.patience = check_positive_int(self.patience, "patience")
        self.seed = check_seed(self.seed)

    @classmethod
    def _test_params(cls):
        return dict(factors=8, iterations=3, seed=7, n_threads=2)

    # -- training ----------------------------------------------------------
    def _fit(self, data, val, callback):
        """One EpochLoop "epoch" per ALS iteration: the user half, then the
        item half (which reports the loss).  ``val`` is evaluated every
        ``eval_every`` iterations; Ctrl-C stops the current half and
        keeps the factors of the last complete iteration (``interrupted_`` is
        then True)."""
        nu, ni, f = self.data_.n_users, self.data_.n_items, self.factors
        check_memory(f"ALS on {nu:,} users x {ni:,} items", [
            (f"factors (factors={f})", 4 * (nu + ni) * f),
            (f"one {f} x {f} system per thread (factors={f})", 8 * f * f * max(1, self.n_threads)),
            ("the transposed positives", 12 * data.nnz)],
            "lower factors")
        self._init_weights()
        nu, ni = self.data_.n_users, self.data_.n_items
        data_ = self.data_
        # The item half solves against the transposed positives.
        rows = np.repeat(np.arange(nu, dtype=np.int32), np.diff(data_.indptr))
        t_indptr, t_indices = _core.build_csr(data_.indices, rows, ni, nu)
        solver = ALS_CG if self.solver == "cg" else ALS_CHOLESKY
        args = (float(self.regularization), float(self.alpha), solver, self.cg_steps, self.n_threads)
        total_confidence = float(nu) * ni + self.alpha * data_.nnz

        def run_epoch(epoch):
            # Ctrl-C stops a half-sweep mid-way (csrc/runtime/stop.c): the factors go
            # back to the last complete iteration, which the epoch loop keeps
            # (interrupted_ True).
            before = self.theta_.copy()
            try:
                _core.als_solve(data_.indptr, data_.indices, None, self.item_factors_, self.user_factors_,
                                *args, False)
                loss = _core.als_solve(t_indptr, t_indices, None, self.user_factors_, self.item_factors_,
                                       *args, True)
            except KeyboardInterrupt:
                self.theta_[:] = before
                raise
            return loss / total_confidence, data_.nnz, False

        EpochLoop(self, val, self._columns()).run(run_epoch, self.iterations, self.eval_every,
                                                  self.patience if val is not None else None,
                                                  callback, self.verbose, "ALS")
        return self

    def to_onnx(self, path):
        """Export to ONNX (opset 17): inputs ``user_id``, ``item_id`` (int64
        dense indices [batch]) -> ``score`` (float32 [batch]) = the dot product
        of the factors, as :meth:`score`."""
        from ..onnx_export import export_dot_product
        self._check_fitted()
        export_dot_product(self, self.user_factors_, self.item_factors_, path, "recmf_als")
