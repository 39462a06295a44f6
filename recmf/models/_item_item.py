"""What the dense item-item models share (EASE, SLIST): a learned
``n_items x n_items`` float32 matrix ``B_`` that scores a user as ``s_u B``,
``s_u`` the user's inputs (positives, or every rated item) weighted by
recency; the memory check before a fit; recommendation, pair scores,
fold-in, ``similar_items`` and persistence from ``B_``."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._checks import check_memory
from .base import Recommender, check_rated_inputs, recency_weights

__all__ = ["ItemItemModel", "allocate_square"]

_COUNT_WORDS = {1: "an", 2: "two", 3: "three"}


def allocate_square(name, n_items, scratch=0, hint="keep fewer items (e.g. drop rare ones) or use a "
                                                   "factor model"):
    """B, a float32 ``n_items x n_items`` matrix, after checking
    (:func:`recmf._checks.check_memory`) that it and ``scratch`` more of
    the same size (which the core allocates during the fit) fit in the
    memory available now.

    Raises
    ------
    MemoryError
        With the GiB needed and available, rather than swapping.
    """
    count = 1 + scratch
    what = f"{name} on {n_items:,} items"
    shape = f"{n_items:,} x {n_items:,} float32 {'matrix' if count == 1 else 'matrices'}"
    label = f"{_COUNT_WORDS.get(count, count)} {shape}"
    need = 4 * count * n_items ** 2
    check_memory(what, [(label, need)], hint)
    try:
        return np.empty((n_items, n_items), dtype=np.float32)
    except MemoryError:
        raise MemoryError(f"{what} needs {label}: {need / 2**30:.2f} GiB, which could not be "
                          "allocated") from None


class ItemItemModel(Recommender):
    """Base of the models scored by a dense item-item matrix ``B_``.

    A subclass sets ``inputs`` and ``half_life`` in its constructor and
    implements ``_fit`` (which sets ``B_``).  Scores of user u are
    ``s_u B``, ``s_u[i] = 0.5 ** (age_i / half_life)`` over the items of
    ``data.input_csr(inputs)`` (1 with ``half_life=None``).
    """

    def _inputs(self, data):
        check_rated_inputs(data, self.inputs, type(self).__name__)
        return data.input_csr(self.inputs)

    def _weights(self, data):
        return recency_weights(data, self.half_life, self.inputs)

    def _config(self, data=None):  # pragma: no cover - overridden
        """The core's config for this model's row of the model table."""
        raise NotImplementedError

    # -- scoring ----------------------------------------------------------
    def _recommend_rows(self, hist, rows, k, seen, mask):
        """Top-k of rows ``rows`` of ``hist`` (Interactions over this
        model's items), scored from their recency-weighted inputs; only the
        items ``mask`` flags (None: all) -- inside the core's top-k."""
        indptr, indices = self._inputs(hist)
        return _core.recommend(self.kind, self._config(), self.B_, rows, seen, k, self.n_threads,
                               history=(indptr, indices), weights=self._weights(hist), allowed=mask)

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        return self._recommend_rows(self.data_, uidx, k, self.data_.seen_csr() if exclude_seen else None,
                                    mask)

    def _recommend_history(self, hist, rows, k, exclude_seen, mask=None):
        order = hist.positions if self.inputs == "positives" else hist.seen_positions
        if self.half_life is not None and order is None:
            raise ValueError(f"half_life={self.half_life} weighs each history by recency, so history= "
                             f"needs the time column {self.columns_['time_col']!r} (or use "
                             "half_life=None)")
        # A history's seen items: its positives, or every item it rated (seen="rated").
        return self._recommend_rows(hist, rows, k, hist.seen_csr() if exclude_seen else None, mask)

    def _score_index(self, uidx, iidx):
        data = self.data_
        indptr, indices = self._inputs(data)
        w = self._weights(data)
        lens = (indptr[uidx + 1] - indptr[uidx]).astype(np.int64)
        starts = np.repeat(indptr[uidx] - np.cumsum(lens) + lens, lens)
        q = starts + np.arange(lens.sum())           # the users' CSR entries, pair by pair
        terms = self.B_[indices[q], np.repeat(iidx, lens)].astype(np.float64)
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
        self._inputs(self.data_)   # a file whose data cannot give the inputs is refused
        self.B_ = B
