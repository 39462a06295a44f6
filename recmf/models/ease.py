"""EASE: the closed-form item-item model of Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data" (WWW 2019), with an optional recency decay of
each user's history at scoring time."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._checks import check_memory, check_number
from .._config import FROM_CONFIG
from .base import Recommender, check_half_life, recency_weights

__all__ = ["EASE"]


def _check_l2(l2):
    return check_number(l2, "l2", 0, low_open=True)


class EASE(Recommender):
    """EASE (Steck, WWW 2019): item-item weights in closed form.

    ``B = I - P diag(1/diag(P))`` with ``P = (X^T X + l2 I)^-1`` and a zero
    diagonal, X the 0/1 user x item matrix of train positives; a user's
    scores are ``x_u B`` (``B[i, j]``: how much holding item i raises item
    j).  No epochs, no seed: the fit is deterministic up to the float
    rounding of the thread count.

    Recency: with ``half_life`` set, the user's history is weighted at
    scoring time, ``x_ui = 0.5 ** (age_i / half_life)`` where ``age_i`` counts
    the user's positives after item i (0 = the most recent; from the time
    column, ties in input order).  Age counts interactions, not seconds:
    users watch at very different paces (ML-1M users rate dozens of films in
    one sitting), so "the last five things you liked" is comparable across
    users where "the last five days" is not.  ``exp(-age/5)`` is
    ``half_life = 5 ln 2 = 3.47``.  The fit (B) does not depend on it.

    Precision: B is computed in float32 (Gram matrix exact; Cholesky
    ``spotrf``/``spotri`` from recmf's OpenBLAS).  Its error grows with the
    condition number of ``X^T X + l2 I`` (at most ``(largest eigenvalue +
    l2) / l2``): on ML-1M at l2 = 250 (condition 437) B agrees with NumPy's
    float64 inverse to 2e-6 absolute for entries up to 0.34, and the tests
    hold it to ``1e-4 * max|B|``.  Double precision would double the memory
    (3.2 GB at 20k items) for differences far below ranking ties.

    Memory: ``n_items**2`` float32 (50 MB for ML-1M's 3.5k items, 1.6 GB for
    20k); ``fit`` checks this against the memory available and raises
    ``MemoryError`` with the figure rather than swapping.

    Parameters
    ----------
    l2 : float > 0
        L2 regularisation (lambda; 100-1000 suits MovieLens).
    half_life : float > 0 or None
        Recency half-life in interactions (None: no decay).
    threshold : float
        Positive threshold when ``fit`` is given a DataFrame.
    user_col, item_col, rating_col, time_col : str
        Column names of the frames given to ``fit`` and ``history=``.
    n_threads : int or None
        Threads for the Gram matrix, LAPACK and scoring (None: all cores).

    Attributes
    ----------
    B_ : float32 array (n_items, n_items)

    Raises
    ------
    ValueError
        l2 <= 0 or not finite, half_life <= 0, empty data, or half_life set
        on data without a time order.
    MemoryError
        ``n_items**2`` floats do not fit in the available memory.
    """

    kind = "ease"
    default_grid = {"l2": [100.0, 250.0, 500.0, 1000.0],
                    "half_life": [None, 1.0, 2.0, 3.5, 7.0, 14.0]}
    scoring_params = ("half_life",)

    B_ = None

    def __init__(self, l2=250.0, half_life=None, threshold=FROM_CONFIG, user_col=FROM_CONFIG,
                 item_col=FROM_CONFIG, rating_col=FROM_CONFIG, time_col=FROM_CONFIG,
                 n_threads=None):
        super().__init__(n_threads=n_threads)
        self.l2 = l2
        self.half_life = half_life
        self.threshold = threshold
        self.user_col, self.item_col, self.rating_col, self.time_col = (
            user_col, item_col, rating_col, time_col)

    @classmethod
    def _test_params(cls):
        return {"l2": 10.0}

    def _check_params(self):
        _check_l2(self.l2)
        check_half_life(self.half_life)

    def _fit(self, data, val, callback):
        if data.nnz == 0 or data.n_items == 0:
            raise ValueError(f"data is empty ({data.n_users} users x {data.n_items} items, "
                             f"{data.nnz} positives): EASE needs at least one positive")
        recency_weights(data, self.half_life)  # fail now, not at recommend time
        B = self._allocate(data.n_items)
        _core.fit(self.kind, self._config(data), (data.indptr, data.indices), B, self.n_threads)
        self.B_, self.data_ = B, data
        return self

    @staticmethod
    def _allocate(n_items):
        what = f"EASE on {n_items:,} items"
        check_memory(what, [(f"an {n_items:,} x {n_items:,} float32 matrix", 4 * n_items ** 2)],
                     "keep fewer items (e.g. drop rare ones) or use a factor model")
        try:
            return np.empty((n_items, n_items), dtype=np.float32)
        except MemoryError:
            raise MemoryError(f"{what} needs an {n_items:,} x {n_items:,} float32 matrix: "
                              f"{4 * n_items ** 2 / 2**30:.2f} GiB, which could not be allocated") from None

    # -- scoring ----------------------------------------------------------
    def _config(self, data=None):
        """The core's config (its model table's row "ease")."""
        data = self.data_ if data is None else data
        return {"n_users": data.n_users, "n_items": data.n_items, "l2": self.l2}

    def _recommend_rows(self, hist, rows, k, seen, mask):
        """Top-k of rows ``rows`` of ``hist`` (Interactions over this
        model's items), scored from their recency-weighted positives; only
        the items ``mask`` flags (None: all) -- inside the core's top-k."""
        return _core.recommend(self.kind, self._config(), self.B_, rows, seen, k, self.n_threads,
                               history=(hist.indptr, hist.indices),
                               weights=recency_weights(hist, self.half_life), allowed=mask)

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        return self._recommend_rows(self.data_, uidx, k, self.data_.seen_csr() if exclude_seen else None,
                                    mask)

    def _recommend_history(self, hist, rows, k, exclude_seen, mask=None):
        if self.half_life is not None and hist.positions is None:
            raise ValueError(f"half_life={self.half_life} weighs each history by recency, so history= "
                             f"needs the time column {self.columns_['time_col']!r} (or use half_life=None)")
        # A history's seen items are its positives.
        seen = (hist.indptr, hist.indices, hist.n_items) if exclude_seen else None
        return self._recommend_rows(hist, rows, k, seen, mask)

    def _score_index(self, uidx, iidx):
        data = self.data_
        w = recency_weights(data, self.half_life)
        lens = (data.indptr[uidx + 1] - data.indptr[uidx]).astype(np.int64)
        starts = np.repeat(data.indptr[uidx] - np.cumsum(lens) + lens, lens)
        q = starts + np.arange(lens.sum())           # the users' CSR entries, pair by pair
        terms = self.B_[data.indices[q], np.repeat(iidx, lens)].astype(np.float64)
        if w is not None:
            terms *= w[q]
        pair = np.repeat(np.arange(len(uidx)), lens)
        return np.bincount(pair, weights=terms, minlength=len(uidx)).astype(np.float32)

    def _similar_index(self, iidx, k, mask=None):
        """Items j with the largest ``B[i, j]``: what a history holding i
        raises most."""
        n, ni = len(iidx), self.data_.n_items
        items = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        lens = np.empty(n, dtype=np.int32)
        step = max(1, (1 << 22) // ni)  # ~16 MB of rows at a time
        for s in range(0, n, step):
            block = iidx[s:s + step]
            m = len(block)
            self_csr = (np.arange(m + 1, dtype=np.int64), np.ascontiguousarray(block), ni)
            items[s:s + m], scores[s:s + m], lens[s:s + m] = _core.topk_rows(
                np.ascontiguousarray(self.B_[block]), self_csr, np.arange(m, dtype=np.int32), k,
                self.n_threads, allowed=mask)
        return items, scores, lens

    # -- persistence ------------------------------------------------------
    def _arrays(self):
        return {"B": self.B_}

    def _set_arrays(self, arrays):
        B = np.ascontiguousarray(arrays["B"], dtype=np.float32)
        n = self.data_.n_items
        if B.shape != (n, n):
            raise ValueError(f"saved B is {B.shape}, expected ({n}, {n})")
        self.B_ = B
