"""What dot-product factor models (ALS, BPRMF) share beyond training:
fold-in of users from a history by least squares against the fixed item
factors, and item neighbours by cosine of the item factors.  Scoring and
top-K are the core's dot-product kernels (``_core.recommend`` with the
model's kind) in both cases."""
from __future__ import annotations

import numpy as np

from .. import _core

# Solver codes of rmf_als_solve (csrc/recmf.h).
ALS_CG, ALS_CHOLESKY = 0, 1


class FactorModel:
    """Mixin for models whose score is ``user_factors[u] . item_factors[i]``,
    kept in ``theta_ = [user factors | item factors]`` (the core's BPRMF
    layout, so both score with its kernels).

    Subclasses set ``_dim_field`` (the constructor argument holding the
    latent dimension, also the field's name in the core's config) and
    provide the fold-in hyperparameters ``_fold_in_params() ->
    (regularization, alpha)``.
    """

    _dim_field = "factors"

    def _core_fields(self):
        return {self._dim_field: getattr(self, self._dim_field)}

    def _blocks(self):
        """The names of the user and item factor views."""
        return [name + "_" for name, *_ in self._layout()[1]]

    def _user_factors(self):
        return getattr(self, self._blocks()[0])

    def _item_factors(self):
        return getattr(self, self._blocks()[1])

    def fold_in(self, history):
        """User factors solved from a history, the item factors fixed.

        Each history user's factors minimise the implicit-ALS objective of
        its row, ``sum_i c_i (p_i - x . y_i)^2 + regularization |x|^2`` with
        ``c_i = 1 + alpha`` on its positives (``p_i = 1``) and 1 elsewhere,
        solved exactly (Cholesky, double precision) -- Hu, Koren & Volinsky
        (2008), eq. 4.

        Parameters
        ----------
        history : DataFrame
            Rows with the model's user, item and rating columns; positives
            are ``rating >= threshold``; items the model does not know are
            ignored.

        Returns
        -------
        (user_ids, factors) : the history's users with at least one known
            positive (ascending id) and their (n, factors) float32 factors
            (none when no user has one: all ratings below the threshold, or
            only items the model does not know).
        """
        self._check_fitted()
        hist, listed = self._history_interactions(history)
        if hist is None:
            return listed[:0], np.zeros((0, self._item_factors().shape[1]), dtype=np.float32)
        return hist.user_ids, self._fold_in_factors(hist)

    def _fold_in_factors(self, hist):
        reg, alpha = self._fold_in_params()
        Y = self._item_factors()
        X = np.zeros((hist.n_users, Y.shape[1]), dtype=np.float32)
        _core.als_solve(hist.indptr, hist.indices, None, Y, X, float(reg), float(alpha),
                        ALS_CHOLESKY, 1, self.n_threads, False)
        return X

    def _recommend_history(self, hist, rows, k, exclude_seen, mask=None):
        X = self._fold_in_factors(hist)
        Y = self._item_factors()
        theta = np.concatenate([X.ravel(), Y.ravel()])
        seen = hist.seen_csr() if exclude_seen else None
        return _core.recommend(self.kind, self._config(n_users=hist.n_users), theta, rows, seen, k,
                               self.n_threads, allowed=mask)

    def _similar_index(self, iidx, k, mask=None):
        Y = self._item_factors()
        norms = np.sqrt(np.einsum("ij,ij->i", Y, Y, dtype=np.float64))
        # An all-zero item (possible with ALS: an item without positives gets
        # x = 0) has cosine 0 with everything, not NaN.
        Yn = (Y / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
        n_q, n_items = len(iidx), Y.shape[0]
        theta = np.concatenate([Yn[iidx].ravel(), Yn.ravel()])
        # Each query row "has seen" itself, so the core's top-K skips it.
        self_csr = (np.arange(n_q + 1, dtype=np.int64), iidx.astype(np.int32), n_items)
        return _core.recommend(self.kind, self._config(n_users=n_q), theta, np.arange(n_q, dtype=np.int32),
                               self_csr, k, self.n_threads, allowed=mask)
