"""What every recmf model shares: fitting input, id mapping, batched
recommendation with seen items removed, scoring, save/load and pickling.

Subclasses implement ``_fit(data, val)``, ``_recommend_index(uidx, k,
exclude_seen)`` and, for learned models, ``_score_index(uidx, iidx)``.
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .._checks import as_core_array, as_id_array, check_k, check_threads
from ..data import Interactions

__all__ = ["Recommender", "NotFittedError"]


class NotFittedError(RuntimeError):
    """The model has not been fitted (or loaded) yet."""


class Recommender:
    """Base class of recmf models.

    After :meth:`fit`, ``model.data_`` is the :class:`~recmf.Interactions`
    the model was trained on: the id mappings and the seen items it excludes.
    """

    #: name used in saved files and reports
    kind = "base"

    def __init__(self, n_threads=None):
        self.n_threads = check_threads(n_threads)
        self.data_ = None

    # -- fitting ----------------------------------------------------------
    def _as_interactions(self, data, threshold, columns):
        if isinstance(data, Interactions):
            return data
        if isinstance(data, pd.DataFrame):
            return Interactions.from_frame(data, threshold=threshold, **columns)
        raise TypeError(f"data must be a recmf.Interactions or a pandas DataFrame, "
                        f"got {type(data).__name__}")

    def _check_fitted(self):
        if self.data_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted: call fit() first")

    # -- recommendation ---------------------------------------------------
    def recommend(self, user_ids, k=10, exclude_seen=True, unknown="empty", return_scores=False,
                  pad=None):
        """Top-``k`` items for many users at once, best first.

        Parameters
        ----------
        user_ids : array-like of original user ids
        k : int
            1 <= k <= number of items the model knows (a larger k raises
            ``ValueError`` rather than silently returning short lists).
        exclude_seen : bool
            Drop the items each user has seen in training (see
            ``Interactions.from_frame(seen=...)``), also from the popular
            items an unknown user gets.
        unknown : {"empty", "popular"}
            Users outside the model's index get an empty (all-padding) row,
            or the most popular items.  Outside the index are users absent
            from training and users whose training ratings are all below the
            threshold; with ``seen="rated"`` the latter never get an item they
            rated.
        return_scores : bool
            Also return the (n_users, k) float32 scores (-inf in padding).
        pad : optional
            Value for slots that could not be filled (unknown users, or fewer
            than k unseen items).  Default -1 for integer item ids, None for
            string ids.  A pad is never one of the model's item ids, so it
            always tells padding apart: a model whose items include -1 (ids
            may be negative) needs an explicit integer ``pad``, and a ``pad``
            equal to an item id raises.

        Returns
        -------
        ndarray (n_users, k) of original item ids (and scores).  Integer ids
        stay int64; string ids come as an object array.

        Raises
        ------
        ValueError
            ``k`` out of range, or ``pad`` (default -1) is an item id.
        TypeError
            A non-integer ``pad`` for integer item ids.

        Notes
        -----
        Padding scores are -inf.  A real score is -inf only when a model's
        float32 arithmetic overflowed, so use the ids (``pad``), or
        :meth:`recommend_frame`, which has no padding, to find padding.
        """
        ids, lens, scores = self._recommend_all(user_ids, k, exclude_seen, unknown)
        pad = self._pad_value(pad)
        if ids.dtype != np.int64:
            ids = ids.astype(object)
        ids[np.arange(ids.shape[1])[None, :] >= lens[:, None]] = pad
        return (ids, scores) if return_scores else ids

    def _pad_value(self, pad):
        """The checked pad: never an item id (a pad that is also an id would
        read as a recommendation of that item)."""
        item_ids = self.data_.item_ids
        is_int = item_ids.dtype == np.int64
        if pad is None and not is_int:
            return None
        explicit = pad is not None
        pad = pad if explicit else -1
        if is_int:
            if isinstance(pad, (bool, np.bool_)) or not isinstance(pad, numbers.Integral) or \
                    not -2 ** 63 <= int(pad) < 2 ** 63:
                raise TypeError(f"pad must be an int64 integer for a model with integer item ids, "
                                f"got {pad!r}")
            pos = np.searchsorted(item_ids, pad)
            taken = pos < len(item_ids) and item_ids[pos] == pad
        else:
            taken = bool((item_ids == pad).any())
        if taken:
            hint = "" if explicit else (" -1 (the default pad) is one of this model's item ids: pass "
                                        "pad= an integer that is not an item id, or use recommend_frame;")
            raise ValueError(f"pad {pad!r} is an item id of this model, so padding would read as a "
                             f"recommendation;{hint} choose a pad that is not an item id")
        return pad

    def recommend_frame(self, user_ids, k=10, exclude_seen=True, unknown="empty",
                        user_col=None, item_col=None):
        """Recommendations as a long DataFrame ``user, rank (1-based), item, score``;
        short lists simply have fewer rows.  Columns are named like the
        model's training frame (``user_col``/``item_col`` override), so the
        result merges directly with e.g. a movies frame."""
        user_col = user_col or getattr(self, "user_col", "user_id")
        item_col = item_col or getattr(self, "item_col", "item_id")
        users = as_id_array(user_ids, "user_ids")[0]
        ids, lens, scores = self._recommend_all(users, k, exclude_seen, unknown)
        mask = np.arange(ids.shape[1])[None, :] < lens[:, None]
        rows, cols = np.nonzero(mask)
        return pd.DataFrame({user_col: users[rows], "rank": cols + 1, item_col: ids[rows, cols],
                             "score": scores[rows, cols]})

    def _recommend_all(self, user_ids, k, exclude_seen, unknown):
        self._check_fitted()
        k = check_k(k, self.data_.n_items)
        if unknown not in ("empty", "popular"):
            raise ValueError(f"unknown must be 'empty' or 'popular', got {unknown!r}")
        uidx = self.data_._user_codes(user_ids)
        n = len(uidx)
        items = np.full((n, k), -1, dtype=np.int32)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        lens = np.zeros(n, dtype=np.int32)
        known = uidx >= 0
        if known.any():
            it, sc, ln = self._recommend_index(uidx[known], k, exclude_seen)
            items[known], scores[known], lens[known] = it, sc, ln
        if unknown == "popular" and not known.all():
            # The most popular items, minus those the user rated when the data
            # remembers them (users without positives, seen="rated").
            from .. import _core
            rows = self.data_.seen_row(user_ids)[~known] if exclude_seen else \
                np.full(int((~known).sum()), -1, dtype=np.int32)
            seen = self.data_.seen_csr(unindexed=True) if exclude_seen else None
            it, ln = _core.topk_ranked(self._popular_order(), seen, rows, k)
            counts = self.data_.popularity()
            items[~known], lens[~known] = it, ln
            scores[~known] = np.where(it >= 0, counts[np.maximum(it, 0)], -np.inf)
        item_ids = self.data_.item_ids
        ids = item_ids[np.maximum(items, 0)]
        if ids.dtype == np.int64:
            ids = np.where(items >= 0, ids, -1)
        return ids, lens, scores

    def _recommend_ids(self, user_ids, k, unknown="empty"):
        """(ids, lens) for evaluate(); k may exceed the catalogue there."""
        self._check_fitted()
        ids, lens, _ = self._recommend_all(user_ids, min(k, self.data_.n_items), True, unknown)
        if ids.shape[1] < k:
            pad = np.full((ids.shape[0], k - ids.shape[1]), -1, dtype=ids.dtype)
            ids = np.hstack([ids, pad])
        return ids, lens

    def _popular_order(self):
        from .. import _core
        return _core.popularity_order(self.data_.popularity())

    def score(self, user_ids, item_ids):
        """Scores of given (user, item) pairs, original ids, same length.

        Pairs whose user or item the model does not know raise ``KeyError``
        naming the first one.
        """
        self._check_fitted()
        u = self.data_.user_index(user_ids, unknown="raise").astype(np.int32)
        i = self.data_.item_index(item_ids, unknown="raise").astype(np.int32)
        if len(u) != len(i):
            raise ValueError(f"user_ids and item_ids must have the same length, got {len(u)} and {len(i)}")
        return self._score_index(u, i)

    def _score_index(self, uidx, iidx):  # pragma: no cover - overridden
        raise NotImplementedError

    #: users per block when whole rows of scores are built (rows x n_items
    #: float32 stay ~16 MB on a MovieLens-sized catalogue)
    _ROW_BLOCK_FLOATS = 1 << 22

    def _row_block(self):
        return max(1, self._ROW_BLOCK_FLOATS // max(self.data_.n_items, 1))

    def _score_all(self, uidx):
        """Scores of every item for users ``uidx`` (dense indices, int32):
        ``(len(uidx), n_items)`` float32, exactly the values ``recommend``
        ranks (seen items not removed).  What :class:`~recmf.Blend`
        combines.

        The default runs the model's own top-K with ``k = n_items`` and no
        exclusion, a block of users at a time, and puts each score back in
        its item's column; models with a direct whole-row path override it.
        """
        n_items = self.data_.n_items
        uidx = np.asarray(uidx, dtype=np.int32)
        out = np.empty((len(uidx), n_items), dtype=np.float32)
        step = self._row_block()
        for s in range(0, len(uidx), step):
            u = np.ascontiguousarray(uidx[s:s + step])
            items, scores, _ = self._recommend_index(u, n_items, False)
            out[s + np.arange(len(u))[:, None], items] = scores
        return out

    def _score_pairs_from_rows(self, uidx, iidx):
        """``_score_index`` through ``_score_all``, for models that score
        whole rows: each distinct user's row is built once."""
        users, inv = np.unique(np.asarray(uidx, dtype=np.int32), return_inverse=True)
        out = np.empty(len(uidx), dtype=np.float32)
        step = self._row_block()
        for s in range(0, len(users), step):
            rows = self._score_all(users[s:s + step])
            sel = (inv >= s) & (inv < s + step)
            out[sel] = rows[inv[sel] - s, np.asarray(iidx)[sel]]
        return out

    # -- persistence ------------------------------------------------------
    def save(self, path):
        """Save to ``path`` (.npz): weights, hyperparameters, id mappings and
        the seen-items matrix.  Load with :func:`recmf.load`."""
        from ..persist import save_model
        save_model(self, path)

    def get_params(self):
        """Hyperparameters as a dict (the constructor's arguments)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def _param_names(self):
        import inspect
        sig = inspect.signature(type(self).__init__)
        return [p for p in sig.parameters if p != "self"]

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def with_params(self, **params):
        """A copy of this fitted model with scoring-only hyperparameters
        (the class's ``scoring_params``, e.g. a recency half-life) changed;
        the copy shares the learned arrays, so no refit is needed.

        Raises
        ------
        ValueError
            A parameter that changes what ``fit`` learns, or an unknown one.
        """
        import copy
        free = set(getattr(type(self), "scoring_params", ()))
        bad = sorted(set(params) - free)
        if bad:
            raise ValueError(f"{type(self).__name__}.with_params can only change {sorted(free)} "
                             f"(scoring-only); {bad} need a refit")
        self._check_fitted()
        out = copy.copy(self)
        for name, value in params.items():
            setattr(out, name, value)
        return out

    def _saved_params(self):
        """The hyperparameters as saved (JSON values); see
        :meth:`_from_saved_params`."""
        return self.get_params()

    @classmethod
    def _from_saved_params(cls, params):
        """An unfitted model from :meth:`_saved_params`' output."""
        return cls(**params)

    def __setstate__(self, state):
        # Unpickled arrays may be unaligned, read-only views of the pickle's
        # buffers (Dask workers, joblib jobs): converted once, here, for the core.
        self.__dict__.update({
            name: as_core_array(v, v.dtype.newbyteorder("="))
            if isinstance(v, np.ndarray) and v.dtype.kind in "biuf" else v
            for name, v in state.items()})

    def _arrays(self):
        """Learned arrays to save (besides the data); subclasses extend."""
        return {}

    def _set_arrays(self, arrays):
        pass
