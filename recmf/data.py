"""Implicit-feedback interactions: ids -> dense indices, CSR of positives."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import _core
from ._checks import as_id_array, check_frame, id_column, numeric_column, time_column

__all__ = ["Interactions"]


class Interactions:
    """Positive (user, item) interactions indexed densely, as a CSR matrix.

    Build it with :meth:`from_frame`.  Users and items are numbered in
    ascending id order over the positives (``pd.factorize(sort=True)``), so
    index ``k`` of :attr:`user_ids` is user ``k``'s original id.

    Attributes
    ----------
    n_users, n_items : int
    indptr : int64 array (n_users + 1,)
    indices : int32 array (nnz,), sorted within each row, no duplicates
    user_ids, item_ids : arrays mapping dense index -> original id
    seen_indptr, seen_indices : the CSR of items excluded at recommendation
        time (the positives, or every rated item with ``seen="rated"``)
    n_duplicates : int
        Repeated (user, item) positives that were counted once.
    positions : int32 array (nnz,) or None
        Each positive's place in its user's history, aligned with
        ``indices``: 0 = the user's earliest positive.  From the time column
        (ties keep input order, as :func:`recmf.temporal_split`; a repeated
        pair counts at its latest time); None without a time column.  See
        :meth:`ages`.
    """

    def __init__(self, indptr, indices, user_ids, item_ids, seen=None, n_duplicates=0,
                 positions=None):
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        if len(self.indptr) != len(self.user_ids) + 1:
            raise ValueError("indptr must have len(user_ids) + 1 entries")
        if seen is None:
            seen = (self.indptr, self.indices)
        self.seen_indptr, self.seen_indices = (np.ascontiguousarray(seen[0], dtype=np.int64),
                                               np.ascontiguousarray(seen[1], dtype=np.int32))
        self.n_duplicates = int(n_duplicates)
        self.positions = None
        if positions is not None:
            self.positions = np.ascontiguousarray(positions, dtype=np.int32)
            if self.positions.shape != self.indices.shape:
                raise ValueError(f"positions must have one entry per positive ({len(self.indices)}), "
                                 f"got shape {self.positions.shape}")
            self.positions.flags.writeable = False
        self._user_lookup = None
        self._item_lookup = None
        for a in (self.indptr, self.indices, self.seen_indptr, self.seen_indices,
                  self.user_ids, self.item_ids):
            a.flags.writeable = False

    # -- construction ---------------------------------------------------
    @classmethod
    def from_frame(cls, frame, threshold=4, *, user_col="user_id", item_col="movie_id",
                   rating_col="rating", seen="positives", time_col="timestamp"):
        """Index the positives of ``frame``.

        Parameters
        ----------
        frame : DataFrame
            Interactions (typically the train split).  Not modified.
        threshold : float
            A row is positive when ``rating >= threshold``.  With
            ``rating_col=None`` every row is positive.
        user_col, item_col, rating_col : str
            Column names.  Ids may be any integers (negative, sparse,
            beyond 2^31) or strings.
        seen : {"positives", "rated"}
            Which items recommendation later excludes for a user: their
            positives (the notebook's rule) or every item they rated here.
        time_col : str or None
            Orders each user's positives (:attr:`positions`) when the frame
            has this column; None or an absent column: no order (models
            with a recency decay then refuse the data).

        Notes
        -----
        A (user, item) pair that appears several times among the positives is
        one positive: the matrix is 0/1.  :attr:`n_duplicates` counts the
        extra rows.
        """
        check_frame(frame, "frame", [user_col, item_col, rating_col])
        if seen not in ("positives", "rated"):
            raise ValueError(f"seen must be 'positives' or 'rated', got {seen!r}")
        users, _ = id_column(frame, user_col, "frame")
        items, _ = id_column(frame, item_col, "frame")
        if rating_col is None:
            pos = np.ones(len(frame), dtype=bool)
        else:
            if threshold is None or not np.isfinite(threshold):
                raise ValueError(f"threshold must be a finite number, got {threshold!r}")
            pos = numeric_column(frame, rating_col, "frame") >= threshold
        if not pos.any():
            raise ValueError(f"frame has no positive rows ({rating_col} >= {threshold})")
        u_codes, user_ids = _factorize(users[pos])
        i_codes, item_ids = _factorize(items[pos])
        indptr, indices = _core.build_csr(u_codes, i_codes, len(user_ids), len(item_ids))
        n_dup = int(pos.sum()) - len(indices)
        positions = None
        if time_col is not None and time_col in frame.columns:
            times = time_column(frame, time_col, "frame")[pos]
            positions = _positions(u_codes, i_codes, times, indptr)
        seen_csr = None
        if seen == "rated":
            data = cls(indptr, indices, user_ids, item_ids)
            ru = data.user_index(users)
            ri = data.item_index(items)
            keep = (ru >= 0) & (ri >= 0)
            seen_csr = _core.build_csr(ru[keep], ri[keep], len(user_ids), len(item_ids))
        return cls(indptr, indices, user_ids, item_ids, seen=seen_csr, n_duplicates=n_dup,
                   positions=positions)

    # -- shape ----------------------------------------------------------
    @property
    def n_users(self):
        return len(self.user_ids)

    @property
    def n_items(self):
        return len(self.item_ids)

    @property
    def nnz(self):
        return len(self.indices)

    @property
    def shape(self):
        return (self.n_users, self.n_items)

    def __repr__(self):
        return (f"Interactions({self.n_users} users x {self.n_items} items, "
                f"{self.nnz} positives)")

    # -- id mappings ----------------------------------------------------
    def user_index(self, user_ids):
        """Dense indices (int32) of original user ids; -1 for unknown users."""
        if self._user_lookup is None:
            self._user_lookup = _Lookup(self.user_ids)
        return self._user_lookup(user_ids, "user_ids")

    def item_index(self, item_ids):
        """Dense indices (int32) of original item ids; -1 for unknown items."""
        if self._item_lookup is None:
            self._item_lookup = _Lookup(self.item_ids)
        return self._item_lookup(item_ids, "item_ids")

    def popularity(self):
        """Positives per item (int64, by dense index)."""
        return _core.item_counts(self.indptr, self.indices, self.n_items)

    def ages(self):
        """Each positive's age (int32, aligned with ``indices``): how many of
        the user's positives came after it, 0 = the most recent.  Needs
        :attr:`positions`."""
        if self.positions is None:
            raise ValueError("these Interactions have no order of the positives: build them from "
                             "a frame with a time column (Interactions.from_frame(..., time_col=...))")
        lens = np.diff(self.indptr)
        return (np.repeat(lens, lens) - 1 - self.positions).astype(np.int32)

    def seen_csr(self):
        """``(indptr, indices, n_items)`` of the items to exclude, for the core."""
        return (self.seen_indptr, self.seen_indices, self.n_items)

    def to_scipy(self):
        """The positives as a ``scipy.sparse.csr_matrix`` of float32 ones."""
        try:
            from scipy.sparse import csr_matrix
        except ImportError as e:  # pragma: no cover - scipy is a test extra
            raise ImportError("to_scipy() needs scipy: pip install scipy") from e
        return csr_matrix((np.ones(self.nnz, dtype=np.float32), self.indices.copy(),
                           self.indptr.copy()), shape=self.shape)

    def to_frame(self):
        """The positives as a long frame ``user_id, item_id`` (original ids)."""
        rows = np.repeat(np.arange(self.n_users), np.diff(self.indptr))
        return pd.DataFrame({"user_id": self.user_ids[rows], "item_id": self.item_ids[self.indices]})

    # -- persistence helpers --------------------------------------------
    def _state(self):
        st = {"indptr": self.indptr, "indices": self.indices, "user_ids": self.user_ids,
              "item_ids": self.item_ids, "seen_indptr": self.seen_indptr,
              "seen_indices": self.seen_indices}
        if self.positions is not None:
            st["positions"] = self.positions
        return st

    @classmethod
    def _from_state(cls, st, n_duplicates=0):
        return cls(st["indptr"], st["indices"], st["user_ids"], st["item_ids"],
                   seen=(st["seen_indptr"], st["seen_indices"]), n_duplicates=n_duplicates,
                   positions=st.get("positions"))

    def __eq__(self, other):
        if not isinstance(other, Interactions):
            return NotImplemented
        a, b = self._state(), other._state()
        return a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)

    __hash__ = None


def _factorize(ids):
    """Codes (int32) and ascending uniques: the C factorizer for integer ids,
    pandas for strings."""
    if ids.dtype == np.int64:
        return _core.factorize(np.ascontiguousarray(ids))
    codes, uniques = pd.factorize(ids, sort=True)
    if len(uniques) > np.iinfo(np.int32).max:
        raise ValueError("more than 2^31 - 1 distinct ids")
    return codes.astype(np.int32), np.asarray(uniques, dtype=object)


def _positions(u_codes, i_codes, times, indptr):
    """Place of each distinct (user, item) positive in its user's history,
    in CSR order: rows in (user, time) order as the split sorts them (ties
    in input order), a repeated pair counted at its latest row."""
    users = u_codes.astype(np.int64)
    # The split's stable (major, minor) sort, twice: by (user, item) gives
    # each row's CSR entry, by (user, time) the sequence.
    by_pair, _ = _core.temporal_split(users, i_codes.astype(np.int64), 0, 0, 0)
    up, ip = u_codes[by_pair], i_codes[by_pair]
    new = np.ones(len(by_pair), dtype=bool)
    new[1:] = (up[1:] != up[:-1]) | (ip[1:] != ip[:-1])
    entry_of_row = np.empty(len(by_pair), dtype=np.int64)
    entry_of_row[by_pair] = np.cumsum(new) - 1
    order, _ = _core.temporal_split(users, times, 0, 0, 0)
    entry = entry_of_row[order]
    seq = np.arange(len(order))
    last = np.zeros(int(indptr[-1]), dtype=np.int64)
    np.maximum.at(last, entry, seq)
    kept = last[entry] == seq
    # Users' kept rows are consecutive in the sequence and user u has
    # indptr[u] kept rows before it: the running count gives the rank.
    positions = np.empty(len(last), dtype=np.int32)
    positions[entry[kept]] = np.cumsum(kept)[kept] - 1 - indptr[u_codes[order][kept]]
    return positions


class _Lookup:
    """Original id -> dense index, vectorized (binary search over the sorted
    ids for integers, a hash index for strings)."""

    def __init__(self, ids):
        self.ids = ids
        self.is_int = ids.dtype == np.int64
        if not self.is_int:
            self.index = pd.Index(ids)

    def __call__(self, values, name):
        arr, is_int = as_id_array(values, name)
        if self.is_int:
            if not is_int:
                return np.full(len(arr), -1, dtype=np.int32)
            pos = np.searchsorted(self.ids, arr)
            pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
            found = (pos < len(self.ids)) & (self.ids[pos_c] == arr) if len(self.ids) else \
                np.zeros(len(arr), dtype=bool)
            return np.where(found, pos, -1).astype(np.int32)
        return self.index.get_indexer(arr).astype(np.int32)
