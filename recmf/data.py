"""Implicit-feedback interactions: ids -> dense indices, CSR of positives."""
from __future__ import annotations

import logging
import numbers
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import _core
from ._checks import (as_core_array, as_id_array, check_frame, check_same_kind, check_threshold,
                      id_column, numeric_column, time_column)
from ._config import FROM_CONFIG, resolve_columns

log = logging.getLogger("recmf")

__all__ = ["Interactions", "Sequences"]


class Sequences(NamedTuple):
    """Each user's items in time order, as a CSR without values: user ``u``'s
    items, oldest first, are ``items[indptr[u]:indptr[u + 1]]``.

    Attributes
    ----------
    indptr : int64 ndarray (n_users + 1,)
        Row offsets, ``indptr[0] == 0``, non-decreasing.
    items : int32 ndarray (indptr[-1],)
        Dense item indices in ``[0, n_items)``.
    """

    indptr: np.ndarray
    items: np.ndarray


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
        time (the positives, or every rated item with ``seen="rated"``): one
        row per indexed user, then one per :attr:`unindexed_user_ids`
    unindexed_user_ids : array
        Users who rated items but have no positive (``seen="rated"`` only), in
        ascending id order.  They are not in the index (no model has learned
        anything about them), but what they rated is remembered, so the
        popularity fallback (``recommend(..., unknown="popular")``) never
        gives them an item they rated.
    n_duplicates : int
        Repeated (user, item) positives that were counted once.
    positions : int32 array (nnz,) or None
        Each positive's place in its user's history, aligned with
        ``indices``: 0 = the user's earliest positive.  From the time column
        (ties keep input order, as :func:`recmf.temporal_split`; a repeated
        pair counts at its latest time); None without a time column.  See
        :meth:`ages` and :meth:`sequences`.
    seen_rule : {"positives", "rated"}
        What the seen items are: the positives, or every item the user
        rated (``from_frame(..., seen="rated")``).
    seen_positions : int32 array (len(seen_indices),) or None
        With ``seen_rule="rated"``: each rated item's place in its user's
        history of rated items, aligned with ``seen_indices`` (as
        :attr:`positions`); None without a time column.  With
        ``seen_rule="positives"`` it is :attr:`positions`.
    """

    def __init__(self, indptr, indices, user_ids, item_ids, seen=None, n_duplicates=0,
                 unindexed_user_ids=None, positions=None, seen_rule=None, seen_positions=None):
        self.indptr = _frozen(as_core_array(indptr, np.int64))
        self.indices = _frozen(as_core_array(indices, np.int32))
        self.user_ids = _frozen(_id_mapping(user_ids))
        self.item_ids = _frozen(_id_mapping(item_ids))
        if len(self.indptr) != len(self.user_ids) + 1:
            raise ValueError("indptr must have len(user_ids) + 1 entries")
        if seen is None:
            seen = (self.indptr, self.indices)
        self.seen_indptr = _frozen(as_core_array(seen[0], np.int64))
        self.seen_indices = _frozen(as_core_array(seen[1], np.int32))
        if unindexed_user_ids is None:
            unindexed_user_ids = self.user_ids[:0]
        self.unindexed_user_ids = _frozen(_id_mapping(unindexed_user_ids))
        if len(self.seen_indptr) != self.n_users + len(self.unindexed_user_ids) + 1:
            raise ValueError("seen indptr must have len(user_ids) + len(unindexed_user_ids) + 1 "
                             "entries")
        self.n_duplicates = int(n_duplicates)
        self.positions = None
        if positions is not None:
            self.positions = _frozen(as_core_array(positions, np.int32))
            if self.positions.shape != self.indices.shape:
                raise ValueError(f"positions must have one entry per positive ({len(self.indices)}), "
                                 f"got shape {self.positions.shape}")
        if seen_rule is None:
            # Given seen arrays that are not the positives can only be rated
            # items (older pickles and files carry no rule).
            same = len(self.seen_indptr) == len(self.indptr) and \
                np.array_equal(self.seen_indptr, self.indptr) and \
                np.array_equal(self.seen_indices, self.indices)
            seen_rule = "positives" if seen is None or (same and seen_positions is None) else "rated"
        if seen_rule not in ("positives", "rated"):
            raise ValueError(f"seen_rule must be 'positives' or 'rated', got {seen_rule!r}")
        self.seen_rule = seen_rule
        if seen_rule == "positives":
            if seen_positions is not None:
                raise ValueError("seen_positions is only for seen_rule='rated' (with 'positives' the "
                                 "seen items are the positives, ordered by positions)")
            self.seen_positions = self.positions
        else:
            self.seen_positions = None
            if seen_positions is not None:
                self.seen_positions = _frozen(as_core_array(seen_positions, np.int32))
                if self.seen_positions.shape != self.seen_indices.shape:
                    raise ValueError(f"seen_positions must have one entry per seen item "
                                     f"({len(self.seen_indices)}), got shape "
                                     f"{self.seen_positions.shape}")
        self._user_lookup = None
        self._item_lookup = None
        self._unindexed_lookup = None

    def __setstate__(self, state):
        # Unpickled arrays may sit unaligned in the pickle's buffers (Dask,
        # joblib): rebuild through __init__'s conversion.
        seen = (state.pop("seen_indptr"), state.pop("seen_indices"))
        for name in ("_user_lookup", "_item_lookup", "_unindexed_lookup"):
            state.pop(name, None)
        rule = state.pop("seen_rule", "positives")
        seen_positions = state.pop("seen_positions", None)
        self.__init__(state.pop("indptr"), state.pop("indices"), state.pop("user_ids"),
                      state.pop("item_ids"), seen=seen, n_duplicates=state.pop("n_duplicates"),
                      unindexed_user_ids=state.pop("unindexed_user_ids", None),
                      positions=state.pop("positions", None), seen_rule=rule,
                      seen_positions=seen_positions if rule == "rated" else None)
        self.__dict__.update(state)

    # -- construction ---------------------------------------------------
    @classmethod
    def from_frame(cls, frame, threshold=FROM_CONFIG, *, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                   rating_col=FROM_CONFIG, seen="positives", time_col=FROM_CONFIG,
                   _name="frame") -> Interactions:
        """Index the positives of ``frame``.

        Parameters
        ----------
        frame : DataFrame or Arrow table
            Interactions (typically the train split).  Not modified.  A
            pandas frame, or any table with the Arrow stream interface
            (``pyarrow.Table``, a Polars or DuckDB frame): only the columns
            used are read.
        threshold : float
            A row is positive when ``rating >= threshold``.  With
            ``rating_col=None`` every row is positive.  Default: the
            configured threshold (4, see :func:`recmf.set_config`).
        user_col, item_col, rating_col : str
            Column names (default: the configured ones, ``user_id``,
            ``movie_id``, ``rating``).  Ids may be any integers (negative,
            sparse, beyond 2^31) or strings.  ``rating_col=None``: implicit
            data, every row is a positive.
        seen : {"positives", "rated"}
            Which items recommendation later excludes for a user: their
            positives (the notebook's rule) or every item they rated here,
            whatever the rating.  With ``"rated"`` the rated items are
            kept in time order too (:attr:`seen_positions`), so models can
            read them as input (``inputs="rated"``, :meth:`sequences`).
        time_col : str or None
            Orders each user's positives (:attr:`positions`) and rated items
            (:attr:`seen_positions`) when the frame has this column (default:
            the configured one, ``timestamp``); None or an absent column: no
            order (models with a recency decay or a sequence then refuse the
            data).

        Returns
        -------
        Interactions

        Notes
        -----
        A (user, item) pair that appears several times among the positives is
        one positive: the matrix is 0/1.  :attr:`n_duplicates` counts the
        extra rows.

        Who is in the index: users and items with at least one positive.  A
        user whose ratings here are all below ``threshold`` is not (no model
        can score them): ``recommend`` treats them as an unknown user (an
        empty row, or with ``unknown="popular"`` the most popular items) and
        ``evaluate`` skips them unless told ``unknown="popular"``.  With
        ``seen="rated"`` their rated items are kept
        (:attr:`unindexed_user_ids`), so the popular items they get never
        include one they rated.  Items without a positive are not in the index
        and are never recommended; users and items that appear only in later
        frames (validation, test) are unknown in the same way.
        """
        c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col,
                            rating_col=rating_col, time_col=time_col)
        threshold, user_col, item_col, rating_col, time_col = (
            c["threshold"], c["user_col"], c["item_col"], c["rating_col"], c["time_col"])
        frame = check_frame(frame, _name, dict(user_col=user_col, item_col=item_col,
                                               rating_col=rating_col), optional=(time_col,))
        if seen not in ("positives", "rated"):
            raise ValueError(f"seen must be 'positives' or 'rated', got {seen!r}")
        users, _ = id_column(frame, user_col, _name)
        items, _ = id_column(frame, item_col, _name)
        if rating_col is None:
            pos = np.ones(len(frame), dtype=bool)
        else:
            check_threshold(threshold)
            pos = numeric_column(frame, rating_col, _name) >= threshold
        if not pos.any():
            raise ValueError(f"{_name} has no positive rows ({rating_col} >= {threshold})")
        u_codes, user_ids = _factorize(users[pos])
        i_codes, item_ids = _factorize(items[pos])
        indptr, indices = _core.build_csr(u_codes, i_codes, len(user_ids), len(item_ids))
        n_dup = int(pos.sum()) - len(indices)
        positions = times = None
        if time_col is not None and time_col in frame.columns:
            times = time_column(frame, time_col, _name)
            positions = _positions(u_codes, i_codes, times[pos], indptr)
        seen_csr = unindexed = seen_positions = None
        if seen == "rated":
            data = cls(indptr, indices, user_ids, item_ids)
            ru = data._user_codes(users)
            ri = data._item_codes(items)
            # Users without positives get the rows after the indexed users'.
            out = ru < 0
            extra_codes, unindexed = _factorize(users[out])
            ru[out] = len(user_ids) + extra_codes
            keep = ri >= 0
            seen_csr = _core.build_csr(ru[keep], ri[keep], len(user_ids) + len(unindexed),
                                       len(item_ids))
            if times is not None:
                seen_positions = _positions(ru[keep], ri[keep], times[keep], seen_csr[0])
        out = cls(indptr, indices, user_ids, item_ids, seen=seen_csr, n_duplicates=n_dup,
                  unindexed_user_ids=unindexed, positions=positions, seen_rule=seen,
                  seen_positions=seen_positions)
        log.info("indexed %d rows: %d users x %d items, %d positives (%d repeated pairs folded)%s",
                 len(frame), out.n_users, out.n_items, out.nnz, n_dup,
                 "" if positions is not None else "; no time order")
        return out

    @classmethod
    def from_scipy(cls, matrix, user_ids=None, item_ids=None, *, threshold=None) -> Interactions:
        """Index the positives of a sparse user x item matrix (any
        ``scipy.sparse`` format, matrix or array).

        Parameters
        ----------
        matrix : scipy.sparse matrix or array, shape (n_users, n_items)
            Row u holds user u's interactions (benfred/implicit's
            ``user_items``).  Values must be finite numbers (or booleans).
        user_ids, item_ids : array-like, optional
            The original id of each row and column (distinct; integers or
            strings).  Default: the row and column numbers, so
            ``model.recommend([u])`` asks for row u and recommends column
            numbers.
        threshold : float, optional
            A stored entry is a positive when its value is ``>= threshold``;
            None (default): when it is > 0 (explicit zeros and negative
            values are not positives).

        Returns
        -------
        Interactions
            Without a time order (:attr:`positions` is None).  As with
            :meth:`from_frame`, only users and items with a positive are in
            the index; entries repeated in a COO matrix are one positive.

        Raises
        ------
        TypeError
            Not a scipy sparse matrix, or values that are not numbers.
        ValueError
            Ids of the wrong length or repeated, a non-finite value or
            threshold, no positive entry.
        """
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover - scipy comes with the test extra
            raise ImportError("from_scipy needs scipy: pip install scipy") from None
        if not sp.issparse(matrix):
            raise TypeError(f"matrix must be a scipy.sparse matrix or array, got {_type_name(matrix)}")
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be two-dimensional (users x items), got shape {matrix.shape}")
        coo = matrix.tocoo()
        values = np.asarray(coo.data)
        if values.dtype.kind not in "biuf":
            raise TypeError(f"matrix must hold numbers, got dtype {values.dtype}")
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("matrix has a NaN or infinite value")
        if threshold is None:
            pos = values > 0
        else:
            if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or \
                    not np.isfinite(threshold):
                raise ValueError(f"threshold must be a finite number or None, got {threshold!r}")
            pos = values >= threshold
        n_rows, n_cols = matrix.shape
        ids = []
        for name, given, n in (("user_ids", user_ids, n_rows), ("item_ids", item_ids, n_cols)):
            if given is None:
                ids.append(np.arange(n, dtype=np.int64))
                continue
            arr = as_id_array(given, name)[0]
            if len(arr) != n:
                raise ValueError(f"{name} must have one id per {'row' if name == 'user_ids' else 'column'} "
                                 f"of matrix ({n}), got {len(arr)}")
            dup = pd.Index(arr).duplicated()
            if dup.any():
                raise ValueError(f"{name} repeats id {arr[dup][:1].tolist()[0]!r}")
            ids.append(arr)
        if not pos.any():
            raise ValueError("matrix has no positive entry" +
                             (" (> 0)" if threshold is None else f" (>= {threshold})"))
        frame = pd.DataFrame({"user": ids[0][coo.row[pos]], "item": ids[1][coo.col[pos]]})
        return cls.from_frame(frame, user_col="user", item_col="item", rating_col=None, time_col=None)

    @classmethod
    def from_dask(cls, ddf, threshold=FROM_CONFIG, *, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                  rating_col=FROM_CONFIG, seen="positives", time_col=FROM_CONFIG,
                  max_bytes=None) -> Interactions:
        """Index the positives of a ``dask.dataframe`` frame on the client.

        The positives are filtered on the cluster, measured there, and only
        then gathered, so the model can be trained on one node.  Equal
        (``==``, positions included) to ``from_frame(ddf.compute(), ...)``.
        Needs the ``dask`` extra.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
        threshold, user_col, item_col, rating_col, seen, time_col :
            As in :meth:`from_frame` (``seen="rated"`` gathers every row of
            the three columns, not only the positives; the time column
            comes along when ``ddf`` has it, so models that use each user's
            order -- recency, transitions -- take the result).
        max_bytes : int, optional
            Most bytes the gathered rows may take on the client (pandas'
            deep memory usage).  Default: half the memory available now.

        Returns
        -------
        Interactions

        Raises
        ------
        MemoryError
            The rows to gather take more than ``max_bytes``; the message
            gives their count and size.
        ValueError
            No positive rows, a missing column, a bad threshold or ``seen``.
        """
        from .dask import interactions_from_dask
        return interactions_from_dask(ddf, threshold, user_col=user_col, item_col=item_col,
                                      rating_col=rating_col, seen=seen, time_col=time_col,
                                      max_bytes=max_bytes)

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
    def user_index(self, user_ids, unknown="flag"):
        """Dense indices of original user ids, as the int64 the ONNX graphs
        take.

        Parameters
        ----------
        user_ids : array-like (n,) of original ids, of the type the model was
            trained with
        unknown : {"flag", "raise"}
            An id the index does not hold gives -1 (``"flag"``, the pandas
            ``get_indexer`` convention) or a ``KeyError`` naming it.

        Returns
        -------
        int64 ndarray (n,), in ``[0, n_users)`` for known ids.

        Notes
        -----
        -1 is outside ``[0, n_users)``, but NumPy (and ONNX ``Gather``) read
        it as the *last* row: never index an array with an unchecked result.
        recmf's ONNX graphs give NaN for any index outside the range, so a
        flagged id can never be scored as another user.
        """
        return _public_index(self._user_codes(user_ids), user_ids, unknown, "user")

    def item_index(self, item_ids, unknown="flag"):
        """Dense indices (int64) of original item ids; as :meth:`user_index`."""
        return _public_index(self._item_codes(item_ids), item_ids, unknown, "item")

    def _user_codes(self, user_ids):
        """int32 codes for the core, -1 for unknown ids (callers mask them)."""
        if self._user_lookup is None:
            self._user_lookup = _Lookup(self.user_ids)
        return self._user_lookup(user_ids, "user_ids")

    def _item_codes(self, item_ids):
        if self._item_lookup is None:
            self._item_lookup = _Lookup(self.item_ids)
        return self._item_lookup(item_ids, "item_ids")

    def popularity(self):
        """Positives per item (int64, by dense index)."""
        return _core.item_counts(self.indptr, self.indices, self.n_items)

    def ages(self, inputs="positives"):
        """Each positive's age (int32, aligned with ``indices``): how many of
        the user's positives came after it, 0 = the most recent.  Needs
        :attr:`positions`.

        With ``inputs="rated"``: each rated item's age among the user's rated
        items, aligned with the indexed users' part of ``seen_indices``
        (``seen_csr()``); needs ``seen="rated"`` and a time column."""
        indptr, _, order = self._ordered(inputs)
        lens = np.diff(indptr)
        return (np.repeat(lens, lens) - 1 - order).astype(np.int32)

    def input_csr(self, inputs="positives"):
        """``(indptr, indices)`` of what a model reads for each indexed user:
        the positives (``inputs="positives"``) or every rated item
        (``"rated"``, needs ``seen="rated"``), items sorted within a row."""
        if inputs not in ("positives", "rated"):
            raise ValueError(f"inputs must be 'positives' or 'rated', got {inputs!r}")
        if inputs == "positives":
            return self.indptr, self.indices
        if self.seen_rule != "rated":
            raise ValueError("inputs='rated' reads every item each user rated, and these interactions "
                             "keep only the positives: build them with "
                             "Interactions.from_frame(..., seen='rated')")
        indptr = self.seen_indptr[:self.n_users + 1]
        return indptr, self.seen_indices[:indptr[-1]]

    def _ordered(self, inputs):
        """``input_csr(inputs)`` and each entry's place in its row's time order."""
        indptr, indices = self.input_csr(inputs)
        order = self.positions if inputs == "positives" else self.seen_positions
        if order is None:
            raise ValueError("these interactions have no time order: build them from a frame with a "
                             "time column (Interactions.from_frame(..., time_col=...))")
        return indptr, indices, order[:len(indices)]

    def sequences(self, inputs="positives"):
        """Each indexed user's items in time order, oldest first.

        Parameters
        ----------
        inputs : {"positives", "rated"}
            The user's positives, or every item the user rated (whatever
            the rating; needs ``from_frame(..., seen="rated")``).  Rated
            items the index does not hold (no positive anywhere) are left
            out: they have no dense index.

        Returns
        -------
        Sequences
            ``(indptr, items)``: int64 ``(n_users + 1,)`` offsets and int32
            dense item indices, row ``u`` = user ``u``'s items oldest first.
            Order: by the time column, ties in input order (as
            :func:`recmf.temporal_split`); an item the user has several rows
            for appears once, at its latest row.  Read-only arrays, built on
            each call.

        Raises
        ------
        ValueError
            ``inputs`` is neither name; the data has no time order (built
            without a time column); ``"rated"`` on data built with
            ``seen="positives"``.

        Examples
        --------
        >>> indptr, items = data.sequences()
        >>> items[indptr[u]:indptr[u + 1]]          # user u's positives, oldest first
        """
        indptr, indices, order = self._ordered(inputs)
        # positions are a permutation of 0..len-1 within each row: scatter.
        items = np.empty(len(indices), dtype=np.int32)
        rows = np.repeat(indptr[:-1], np.diff(indptr))
        items[rows + order] = indices
        return Sequences(_frozen(np.ascontiguousarray(indptr)), _frozen(items))

    def seen_csr(self, unindexed=False):
        """``(indptr, indices, n_items)`` of the items to exclude, for the core:
        one row per indexed user, and with ``unindexed=True`` the rows of
        :attr:`unindexed_user_ids` after them."""
        if unindexed:
            return (self.seen_indptr, self.seen_indices, self.n_items)
        indptr = self.seen_indptr[:self.n_users + 1]
        return (indptr, self.seen_indices[:indptr[-1]], self.n_items)

    def seen_row(self, user_ids):
        """Row of each original user id in ``seen_csr(unindexed=True)``
        (int32): the dense index for indexed users, ``n_users + j`` for
        ``unindexed_user_ids[j]``, -1 for users this data has not seen."""
        ids = as_id_array(user_ids, "user_ids")[0]
        rows = self._user_codes(ids)
        out = rows < 0
        if out.any() and len(self.unindexed_user_ids):
            if self._unindexed_lookup is None:
                self._unindexed_lookup = _Lookup(self.unindexed_user_ids)
            extra = self._unindexed_lookup(ids[out], "user_ids")
            rows[out] = np.where(extra >= 0, self.n_users + extra, -1)
        return rows

    def to_scipy(self):
        """The positives as a ``scipy.sparse.csr_matrix`` of float32 ones."""
        try:
            from scipy.sparse import csr_matrix
        except ImportError as e:  # pragma: no cover - scipy is a test extra
            raise ImportError("to_scipy() needs scipy: pip install scipy") from e
        return csr_matrix((np.ones(self.nnz, dtype=np.float32), self.indices.copy(),
                           self.indptr.copy()), shape=self.shape)

    def to_frame(self, user_col="user_id", item_col="item_id"):
        """The positives as a long frame ``user_col, item_col`` (original ids;
        default column names ``user_id, item_id``)."""
        rows = np.repeat(np.arange(self.n_users), np.diff(self.indptr))
        return pd.DataFrame({user_col: self.user_ids[rows], item_col: self.item_ids[self.indices]})

    # -- persistence helpers --------------------------------------------
    def _state(self):
        state = {"indptr": self.indptr, "indices": self.indices, "user_ids": self.user_ids,
                 "item_ids": self.item_ids, "seen_indptr": self.seen_indptr,
                 "seen_indices": self.seen_indices}
        if len(self.unindexed_user_ids):
            # unicode, not object, for strings: files load with allow_pickle=False
            ids = self.unindexed_user_ids
            state["unindexed_user_ids"] = ids if ids.dtype == np.int64 else ids.astype(str)
        if self.positions is not None:
            state["positions"] = self.positions
        if self.seen_rule == "rated":
            state["seen_rule"] = np.array("rated")
            if self.seen_positions is not None:
                state["seen_positions"] = self.seen_positions
        return state

    @classmethod
    def _from_state(cls, st, n_duplicates=0):
        unindexed = st.get("unindexed_user_ids")
        if unindexed is not None and unindexed.dtype.kind == "U":
            unindexed = unindexed.astype(object)
        rule = str(st["seen_rule"]) if "seen_rule" in st else "positives"
        return cls(st["indptr"], st["indices"], st["user_ids"], st["item_ids"],
                   seen=(st["seen_indptr"], st["seen_indices"]), n_duplicates=n_duplicates,
                   unindexed_user_ids=unindexed, positions=st.get("positions"), seen_rule=rule,
                   seen_positions=st.get("seen_positions") if rule == "rated" else None)

    def _check_consistent(self):
        """Raise ValueError unless the arrays describe what
        :meth:`from_frame` builds: each CSR (positives, seen items) starts
        at 0, never decreases, ends at its indices' length, and holds
        sorted, distinct column indices in ``[0, n_items)``; the ids ascend
        strictly (lookups search them), unindexed users are none of the
        indexed ones; positions rank each user's positives 0..n-1.  For
        arrays from a file: read elsewhere they could index out of range or
        answer for the wrong user."""
        for name, ids in (("user_ids", self.user_ids), ("item_ids", self.item_ids),
                          ("unindexed_user_ids", self.unindexed_user_ids)):
            if ids.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {ids.shape}")
            index = pd.Index(ids)
            if len(ids) and not (index.is_unique and index.is_monotonic_increasing):
                raise ValueError(f"{name} must be distinct and ascending")
        if len(self.unindexed_user_ids) and \
                pd.Index(self.user_ids).isin(self.unindexed_user_ids).any():
            raise ValueError("unindexed_user_ids must not hold indexed users")
        for name, indptr, indices in (("", self.indptr, self.indices),
                                      ("seen_", self.seen_indptr, self.seen_indices)):
            _check_csr(name, indptr, indices, self.n_items)
        if self.positions is not None:
            _check_ranks("positions", self.indptr, self.positions, "positives")
        if self.seen_rule == "rated" and self.seen_positions is not None:
            _check_ranks("seen_positions", self.seen_indptr, self.seen_positions, "rated items")
        return self

    def __eq__(self, other):
        """The same matrix, ids, seen items, unindexed users and order of
        the positives (``positions``: Interactions with an order never equal
        ones without, since models that use it refuse the latter).  Not
        compared: ``n_duplicates``, a count of the input rows that changes no
        result."""
        if not isinstance(other, Interactions):
            return NotImplemented
        mine, theirs = self._state(), other._state()
        return mine.keys() == theirs.keys() and all(
            np.array_equal(mine[k], theirs[k]) and mine[k].dtype == theirs[k].dtype for k in mine)

    __hash__ = None


def _type_name(obj):
    from ._tables import type_name
    return type_name(obj)
def _check_csr(prefix, indptr, indices, n_cols):
    if indptr.ndim != 1 or indices.ndim != 1:
        raise ValueError(f"{prefix}indptr and {prefix}indices must be one-dimensional")
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise ValueError(f"{prefix}indptr must start at 0, never decrease and end at "
                         f"len({prefix}indices) = {len(indices)}")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(f"{prefix}indices must lie in [0, {n_cols}) (the number of item ids)")
    # sorted and distinct within each row: every step inside a row rises
    rising = np.diff(indices.astype(np.int64)) > 0
    row_start = np.zeros(len(indices), dtype=bool)
    row_start[indptr[:-1][np.diff(indptr) > 0]] = True
    if not (rising | row_start[1:]).all():
        raise ValueError(f"{prefix}indices must be sorted and distinct within each row")


def _check_ranks(name, indptr, positions, what):
    """``positions`` rank each CSR row's entries 0..n-1 (a permutation)."""
    lens = np.diff(indptr)
    row_start = np.repeat(indptr[:-1], lens)
    p = positions.astype(np.int64)
    if ((p < 0) | (p >= np.repeat(lens, lens))).any():
        raise ValueError(f"{name} must lie in [0, number of the user's {what})")
    # distinct within each row: a permutation of 0..n-1
    hit = np.zeros(len(p), dtype=bool)
    hit[row_start + p] = True
    if not hit.all():
        raise ValueError(f"{name} must rank each user's {what} 0, 1, ..., n-1")


def _frozen(a):
    """A read-only view of ``a`` (the caller's own array stays writable)."""
    v = a.view()
    v.flags.writeable = False
    return v


def _id_mapping(ids):
    """Dense index -> original id: int64 (native, aligned) for integer ids,
    as given otherwise."""
    ids = np.asarray(ids)
    return as_core_array(ids, np.int64) if ids.dtype.kind in "iu" else ids


def _factorize(ids):
    """Codes (int32) and ascending uniques: the C factorizer for integer ids,
    pandas for strings."""
    if ids.dtype == np.int64:
        return _core.factorize(as_core_array(ids, np.int64))
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


def _public_index(codes, ids, unknown, what):
    if unknown not in ("flag", "raise"):
        raise ValueError(f"unknown must be 'flag' or 'raise', got {unknown!r}")
    if unknown == "raise" and (codes < 0).any():
        pos = int(np.flatnonzero(codes < 0)[0])
        bad = as_id_array(ids, what + "_ids")[0][pos:pos + 1].tolist()[0]
        raise KeyError(f"unknown {what} id {bad!r} at position {pos}")
    return codes.astype(np.int64)


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
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int32)
        check_same_kind(is_int, name, self.is_int, "the model's " + name.replace("_", " "))
        if self.is_int:
            pos = np.searchsorted(self.ids, arr)
            pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
            found = (pos < len(self.ids)) & (self.ids[pos_c] == arr) if len(self.ids) else \
                np.zeros(len(arr), dtype=bool)
            return np.where(found, pos, -1).astype(np.int32)
        return self.index.get_indexer(arr).astype(np.int32)
