"""The base classes of recmf models.

:class:`Recommender` is what every model shares: fitting input, id mapping,
batched recommendation with seen items removed, scoring, save/load and
pickling.  A subclass sets ``kind`` (which registers it, see
:mod:`recmf._registry`) and implements

- ``_check_params()``: validate the hyperparameters (optional);
- ``_fit(data, val, callback)``: learn from ``data`` (Interactions);
  :meth:`Recommender.fit` has already checked the parameters, converted the
  input and set ``data_``;
- ``_recommend_index(uidx, k, exclude_seen)`` and ``_score_index(uidx, iidx)``
  on dense indices;
- ``_arrays()`` / ``_set_arrays(arrays)``: the learned arrays to save/load;
- ``_test_params()`` (classmethod): small constructor arguments for the
  shared test contract (tests/test_contract.py).

:class:`EmbeddingModel` adds what the models with one flat weight array
trained by the C core share (NeuralMF, BPRMF).
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .. import _core, persist
from .._checks import as_core_array, as_id_array, check_k, check_threads
from .._registry import register
from ..data import Interactions
from ._training import EpochLoop, named_sampling_error

__all__ = ["Recommender", "EmbeddingModel", "NotFittedError"]


class NotFittedError(RuntimeError):
    """The model has not been fitted (or loaded) yet."""


class Recommender:
    """Base class of recmf models.

    After :meth:`fit`, ``model.data_`` is the :class:`~recmf.Interactions`
    the model was trained on: the id mappings and the seen items it excludes.
    """

    #: name in the registry, saved files, the CLI and the C core's model
    #: table; None for abstract classes (not registered)
    kind = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind") is not None:
            register(cls)

    def __init__(self, n_threads=None):
        self.n_threads = check_threads(n_threads)
        self.data_ = None

    # -- fitting ----------------------------------------------------------
    def fit(self, data, val=None, callback=None):
        """Train on ``data``.

        Parameters
        ----------
        data : Interactions or DataFrame
            A DataFrame is indexed with the model's ``threshold`` and column
            names (``Interactions.from_frame``).
        val : DataFrame, optional
            Held-out rows for models that evaluate while training (see the
            model's docstring); models without epochs ignore it.
        callback : callable(model, row) -> bool or None, optional
            Called after every training epoch with that epoch's history row;
            return False to stop.  Models without epochs never call it.

        Returns
        -------
        self
            Ctrl-C during training stops after the current batch, keeping a
            usable model and its history (``interrupted_`` is True).

        Raises
        ------
        TypeError, ValueError
            A bad hyperparameter (named) or bad input data.
        """
        self._check_params()
        self.data_ = self._as_interactions(data, getattr(self, "threshold", 4), self._columns())
        return self._fit(self.data_, val, callback)

    def _check_params(self):
        """Validate (and normalise) the hyperparameters before fitting."""

    def _fit(self, data, val, callback):  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def _test_params(cls):
        """Constructor arguments small enough for the shared test contract
        (tests/test_contract.py) to fit the model in well under a second."""
        return {}

    def _columns(self):
        return {name: getattr(self, name, default) for name, default in
                (("user_col", "user_id"), ("item_col", "movie_id"), ("rating_col", "rating"))}

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

    # -- persistence ------------------------------------------------------
    def save(self, path):
        """Save to ``path`` (.npz): weights, hyperparameters, id mappings and
        the seen-items matrix.  Load with :func:`recmf.load`."""
        persist.save_model(self, path)

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


class EmbeddingModel(Recommender):
    """What NeuralMF and BPRMF share: all weights in one flat float32 array
    ``theta_`` (layout in csrc/recmf.h) with named views, Adam state kept
    across epochs, scoring and top-K by the C core (its model table row
    named ``kind``), save/load and pickling.

    A subclass provides ``_shape()`` (the core's ``(n_users, n_items,
    emb_dim, hidden_dim)``) and ``_views()`` (named views of ``theta_``).
    """

    #: names of the views of theta_ (rebuilt, never pickled)
    _view_names = ()

    #: dense Adam "dominates" a step when it updates more than this many
    #: times the embedding rows a batch can touch (see dense_adam_note)
    DENSE_ADAM_DOMINATES = 8

    def dense_adam_note(self):
        """A sentence when dense Adam's per-step cost dominates training, else None.

        Dense Adam (``adam="dense"``, the seed's semantics) updates the
        moments of every embedding row on every step: (n_users + n_items) x
        emb_dim floats, four arrays read and written.  A batch touches at most
        ``3 * batch_size`` rows (BPRMF's triplets; NeuralMF's pairs touch at
        most 2 each).  When the catalogue and users outnumber that by more
        than :attr:`DENSE_ADAM_DOMINATES` times (ML-20M: 165k rows against
        12k), memory traffic for rows the batch never saw dominates the step
        and ``adam="lazy"``, which updates only the batch's rows, is several
        times faster per epoch (different maths: rows absent from a batch
        keep their moments).  The progress bar shows the note."""
        if getattr(self, "adam", None) != "dense" or self.data_ is None:
            return None
        rows = self.data_.n_users + self.data_.n_items
        touched = 3 * self.batch_size
        if rows <= self.DENSE_ADAM_DOMINATES * touched:
            return None
        return (f"dense Adam updates all {rows:,} embedding rows every step (a batch touches "
                f"<= {touched:,}); adam='lazy' updates only those")

    def _progress_desc(self):
        note = self.dense_adam_note()
        return type(self).__name__ + (f" [{note}]" if note else "")

    def _train(self, val, callback, patience, step_epoch):
        """Run the epoch loop; ``step_epoch(epoch, m, v, step)`` trains one
        epoch in the core and returns ``(loss, n_done, step, interrupted)``."""
        m = np.zeros_like(self.theta_)
        v = np.zeros_like(self.theta_)
        state = {"step": 0}

        def run_epoch(epoch):
            try:
                loss, n_done, state["step"], interrupted = step_epoch(epoch, m, v, state["step"])
            except _core.SamplingError as e:
                raise named_sampling_error(e, self.data_) from None
            return loss, n_done, interrupted

        EpochLoop(self, val, self._columns()).run(run_epoch, self.epochs, self.eval_every, patience,
                                                  callback, self.verbose, self._progress_desc())
        self.adam_step_ = state["step"]
        return self

    def _recommend_index(self, uidx, k, exclude_seen):
        seen = self.data_.seen_csr() if exclude_seen else None
        return _core.recommend(self.kind, self._shape(), self.theta_, uidx, seen, k, self.n_threads)

    def _score_index(self, uidx, iidx):
        return _core.score_pairs(self.kind, self._shape(), self.theta_, uidx, iidx, self.n_threads)

    def _n_params(self):
        return _core.n_params(self.kind, self._shape())

    def _arrays(self):
        return {"theta": self.theta_}

    def _set_arrays(self, arrays):
        self.theta_ = as_core_array(arrays["theta"], np.float32)
        if len(self.theta_) != self._n_params():
            raise ValueError("saved weights do not match the model's shape")
        self._views()

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._view_names:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "theta_", None) is not None:
            self._views()
