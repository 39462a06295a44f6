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

Optional hooks: ``_recommend_history(hist, rows, k, exclude_seen)`` scores
users from given interactions without refitting (``recommend(...,
history=frame)``), ``_similar_index(iidx, k)`` gives each item's nearest
items (``similar_items``); class attributes ``default_grid`` and
``scoring_params`` tell :func:`recmf.select` what to try.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Callable, Hashable
from typing import Any
import numbers
import time

import numpy as np
import pandas as pd

from .. import _core, persist
from .._candidates import block_size, candidate_mask, exclusions
from .._checks import (as_core_array, as_id_array, check_frame, check_k, check_number, check_positive_int,
                       check_same_kind, check_threads, id_column, numeric_column, time_column)
from .._config import FROM_CONFIG, resolve
from .._registry import register
from .._tables import is_arrow_table, type_name
from ..data import Interactions
from ._training import EpochLoop, named_sampling_error

log = logging.getLogger("recmf")

#: The data settings a model reads from recmf.set_config when it is fitted.
_DATA_SETTINGS = ("threshold", "user_col", "item_col", "rating_col", "time_col")

__all__ = ["Recommender", "EmbeddingModel", "NotFittedError"]


def check_half_life(half_life):
    """A recency half-life: None (no decay) or a finite number > 0."""
    return check_number(half_life, "half_life", 0, low_open=True, none=True)


def check_inputs(inputs):
    """What a sequence or item-item model reads: "positives" or "rated"."""
    if inputs not in ("positives", "rated"):
        raise ValueError(f"inputs must be 'positives' (each user's positives) or 'rated' (every item "
                         f"the user rated, in time order), got {inputs!r}")
    return inputs


def check_rated_inputs(data, inputs, model):
    """``data`` can give what ``inputs`` asks for (``seen="rated"`` for
    "rated"), else a ValueError saying how to build it."""
    if inputs == "rated" and data.seen_rule != "rated":
        raise ValueError(f"{model}(inputs='rated') reads every item each user rated, and these "
                         "interactions keep only the positives: build them with "
                         "Interactions.from_frame(train, seen='rated'), or fit on the DataFrame")


def rows_in_time_order(data, columns):
    """``(data, time_col)`` for a sequence model's fit.  ``columns``: the
    resolved ``{user_col, item_col, rating_col, time_col}``.  A table with
    the Arrow stream interface is read into pandas (those columns only); a
    frame without a time column (``time_col`` None or absent) gets one
    holding its row numbers, so its rows' order is taken as the time order.
    Interactions pass unchanged."""
    time_col = columns["time_col"]
    if is_arrow_table(data):
        data = check_frame(data, "data", {c: columns[c] for c in ("user_col", "item_col", "rating_col")},
                           optional=(time_col,))
    if isinstance(data, pd.DataFrame) and (time_col is None or time_col not in data.columns):
        time_col = "__recmf_row__" if time_col is None else time_col
        data = data.assign(**{time_col: np.arange(len(data), dtype=np.int64)})
    return data, time_col


def recency_weights(data, half_life, inputs="positives"):
    """Weights of each entry of ``data.input_csr(inputs)`` (float32, aligned
    with its indices): ``0.5 ** (age / half_life)``, age = how many of the
    user's positives (or rated items) came after it
    (:meth:`Interactions.ages`); None when ``half_life`` is None (every
    entry weighs 1)."""
    if half_life is None:
        return None
    order = data.positions if inputs == "positives" else data.seen_positions
    if order is None:
        what = "positives" if inputs == "positives" else "rated items"
        raise ValueError(f"half_life={half_life} needs the order of each user's {what}, and these "
                         "interactions have none: build them from a frame with a time column "
                         "(time_col=...), or use half_life=None")
    return np.exp(data.ages(inputs) * (-math.log(2.0) / half_life)).astype(np.float32)


def _same_value(x, y):
    """Whether two hyperparameter values are the same (``==`` where it gives
    one truth value, identity otherwise)."""
    try:
        return bool(x == y) or (x is None and y is None)
    except (TypeError, ValueError):
        return x is y


def _onnx_exporters():
    """Names of the registered models that override :meth:`Recommender.to_onnx`."""
    from .._registry import available_models
    return [cls.__name__ for cls in available_models().values() if cls.to_onnx is not Recommender.to_onnx]


def _frame_columns(columns):
    """The column-name part of resolved data settings (what
    ``Interactions.from_frame`` takes besides the threshold)."""
    return {name: columns[name] for name in ("user_col", "item_col", "rating_col", "time_col")}


class NotFittedError(RuntimeError):
    """The model has not been fitted (or loaded) yet."""


#: hyperparameters that may change after fit without making the fitted state
#: stale (besides each class's ``scoring_params``): how, not what, it computes
_RUNTIME_PARAMS = ("n_threads", "verbose")

#: a new number for every fitted state (fit, load): what caches of a model's
#: scores are keyed by (recmf.models.blend), so a refit never hits them
_FIT_TOKENS = itertools.count(1)


def _all_or_nothing(fit):
    """Wrap a model's ``fit``: the model ends as what this fit made, or, if
    the fit raises (a bad input found late, MemoryError, Ctrl-C in a solver,
    an exception from a callback), exactly as it was before the call --
    never new data with old weights, or a new history with old weights.
    On success the fitted state gets a new token, its hyperparameters are
    recorded and its learned arrays become read-only (:meth:`Recommender.
    _mark_fitted`)."""
    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        if self.__dict__.get("_fitting"):      # a fit calling another fit of the same model
            return fit(self, *args, **kwargs)
        before = dict(self.__dict__)
        self.__dict__["_fitting"] = True
        try:
            out = fit(self, *args, **kwargs)
        except BaseException:
            # Fits assign new arrays and never write into the ones they
            # replace, so restoring the attributes restores the model.
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        del self.__dict__["_fitting"]
        self._mark_fitted()
        return out
    wrapper._all_or_nothing = True
    return wrapper


class Recommender:
    """Base class of recmf models.

    After :meth:`fit`, ``model.data_`` is the :class:`~recmf.Interactions`
    the model was trained on: the id mappings and the seen items it excludes;
    ``model.columns_`` the column names and threshold it used (its own
    arguments, with :data:`~recmf.FROM_CONFIG` read from
    :func:`recmf.set_config` at fit time).

    scikit-learn conventions: the constructor stores its arguments as given
    and ``fit`` validates them; :meth:`get_params` / :meth:`set_params` work
    as in scikit-learn, so ``sklearn.base.clone`` gives an unfitted copy.
    """

    #: what fit learned; class-level defaults so that ``__init__`` sets
    #: nothing but the hyperparameters (unfitted: ``data_`` is None)
    data_ = None
    columns_ = None
    history = None
    n_threads = None

    #: name in the registry, saved files, the CLI and the C core's model
    #: table; None for abstract classes (not registered)
    kind = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_all_or_nothing", False):
            cls.fit = _all_or_nothing(fit)
        if cls.__dict__.get("kind") is not None:
            register(cls)
    #: hyperparameter grid recmf.select tries by default: {name: [values]}
    default_grid = {}
    #: hyperparameters that only change scoring, not what fit learns:
    #: recmf.select fits once per setting of the others and shares the fit
    scoring_params = ()

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    # -- fitting ----------------------------------------------------------
    def fit(self, data: Any, val: Any = None, callback: Callable | None = None) -> Recommender:
        """Train on ``data``.

        Parameters
        ----------
        data : Interactions, DataFrame, Arrow table or scipy.sparse matrix
            A frame (pandas, or any table with the Arrow stream interface:
            pyarrow, Polars, DuckDB) is indexed with the model's
            ``threshold`` and column names (``Interactions.from_frame``); a
            sparse user x item matrix with ``Interactions.from_scipy`` (ids
            are the row and column numbers).
        val : DataFrame or Arrow table, optional
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
        self._validate()
        columns = self._resolve_columns()
        data = self._as_interactions(data, columns["threshold"], _frame_columns(columns))
        self.data_, self.columns_ = data, columns
        t0 = time.perf_counter()
        out = self._fit(self.data_, val, callback)
        self._log_fit(time.perf_counter() - t0)
        return out

    def _validate(self):
        """What every fit runs first: ``n_threads`` (None means all cores, the
        core's 0) and the model's own checks."""
        if "n_threads" in self._param_names():
            self.n_threads = check_threads(self.n_threads)
        self._check_params()

    def _log_fit(self, seconds):
        data = self.data_
        log.info("%s fitted on %d users x %d items (%d positives) in %.3f s, n_threads=%s%s",
                 type(self).__name__, data.n_users, data.n_items, data.nnz, seconds,
                 self.n_threads or "all", " (interrupted)" if getattr(self, "interrupted_", False) else "")

    def _resolve_columns(self):
        """The model's data settings with FROM_CONFIG read from the config
        now: ``{threshold, user_col, item_col, rating_col, time_col}``."""
        return {name: resolve(getattr(self, name, FROM_CONFIG), name) for name in _DATA_SETTINGS}

    fit = _all_or_nothing(fit)

    def _frame_options(self):
        """Extra ``Interactions.from_frame`` options for a frame given to
        ``fit``: a model that reads every rated item (``inputs="rated"``)
        keeps them (``seen="rated"``)."""
        return {"seen": "rated"} if getattr(self, "inputs", "positives") == "rated" else {}

    def _check_params(self):
        """Validate the hyperparameters before fitting."""

    def _fit(self, data, val, callback):  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def _test_params(cls):
        """Constructor arguments small enough for the shared test contract
        (tests/test_contract.py) to fit the model in well under a second."""
        return {}

    def _columns(self):
        """Column names of the frames the fitted model reads (``history=``,
        ``val``): from ``columns_``, else as they would resolve now."""
        return _frame_columns(self.columns_ or self._resolve_columns())

    def _as_interactions(self, data, threshold, columns):
        if isinstance(data, Interactions):
            return data
        if isinstance(data, pd.DataFrame) or is_arrow_table(data):
            return Interactions.from_frame(data, threshold=threshold, _name="data", **columns,
                                           **self._frame_options())
        if type(data).__module__.startswith("scipy.sparse"):
            return Interactions.from_scipy(data)
        if type(data).__module__.split(".")[0] in ("dask", "dask_expr"):
            check_frame(data, "data", {})        # the message that points to recmf.dask
        raise TypeError(f"data must be a recmf.Interactions, a pandas DataFrame, a table with the "
                        f"Arrow stream interface or a scipy.sparse matrix, got {type_name(data)}")

    def _check_fitted(self):
        """Raise unless the model is fitted and its hyperparameters are still
        those its fitted state was made with (a changed ``emb_dim`` would
        describe weights of another shape; scoring parameters, ``n_threads``
        and ``verbose`` may change)."""
        if self.data_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted: call fit() first")
        fitted = self.__dict__.get("_fit_params")
        if fitted is None or self.__dict__.get("_fitting"):
            return
        free = set(type(self).scoring_params) | set(_RUNTIME_PARAMS)
        for name, now in self.get_params().items():
            if name in fitted and name not in free and not _same_value(fitted[name], now):
                raise ValueError(
                    f"{name} of this {type(self).__name__} was changed after fit ({fitted[name]!r} "
                    f"then, {now!r} now): its learned state describes {name}={fitted[name]!r}; "
                    f"set it back, or call fit() again")

    def _mark_fitted(self):
        """Record a new fitted state (after fit or load): a new token for
        caches, the hyperparameters it was made with, and its learned
        arrays read-only, so that no copy sharing them (``with_params``,
        :func:`recmf.select`) and no cache of its scores can go stale."""
        self._fit_token = next(_FIT_TOKENS)
        self._fit_params = dict(self.get_params())
        self._freeze_learned()

    def _freeze_learned(self):
        for name, value in vars(self).items():
            if name.endswith("_") and isinstance(value, np.ndarray):
                value.flags.writeable = False

    # -- recommendation ---------------------------------------------------
    def recommend(self, user_ids: Any, k: int = 10, exclude_seen: bool = True, unknown: str = "empty",
                  return_scores: bool = False, pad: Any = None, history: Any = None, *,
                  items: Any = None, exclude_items: Any = None
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for many users at once, best first.

        Parameters
        ----------
        user_ids : array-like of original user ids, or None
            Any iterable (list, array, Series, set, generator, dict keys...):
            one row per id, in iteration order.  None: every user the model
            knows (``model.data_.user_ids``, in that order).
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
        history : DataFrame or Arrow table, optional
            Fold-in: the users of ``user_ids`` that appear here (in any row,
            whatever its rating) are scored from these interactions instead
            of their training ones, without refitting; they may be new
            users.  Same columns, threshold and time column as the training
            frame; items the model does not know are ignored;
            ``exclude_seen`` then drops the history's positives.  A user
            whose history holds no known positive (only unknown items, or
            only ratings below the threshold) counts as unknown, as
            ``unknown`` says -- never as its training self.  An empty frame
            (with the columns) folds in nobody.  Models that cannot fold in
            raise ``NotImplementedError``.
        items : array-like of item ids, optional
            Candidates: only these items may be recommended (e.g. what is in
            stock).  Ids the model does not know are ignored.
        exclude_items : array-like of item ids, optional
            Never recommend these (also to users given popular items).
            Both lists apply inside the top-k selection: a list stays ``k``
            long while ``k`` allowed, unseen items remain, and is padded
            only beyond that.

        Returns
        -------
        ndarray (n_users, k) of original item ids (and scores).  Integer ids
        stay int64; string ids come as an object array.

        Raises
        ------
        ValueError
            ``k`` out of range, ``pad`` (default -1) is an item id, or
            ``items`` holds no item the model knows.
        TypeError
            A non-integer ``pad`` for integer item ids, ids of the other kind
            (strings for a model trained on integers, or the reverse).

        Notes
        -----
        Padding scores are -inf.  A real score is -inf only when a model's
        float32 arithmetic overflowed, so use the ids (``pad``), or
        :meth:`recommend_frame`, which has no padding, to find padding.
        """
        ids, lens, scores = self._recommend_all(user_ids, k, exclude_seen, unknown, history,
                                                items, exclude_items)[1:]
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

    def recommend_frame(self, user_ids: Any = None, k: int = 10, exclude_seen: bool = True,
                        unknown: str = "empty", user_col: Hashable | None = None,
                        item_col: Hashable | None = None, history: Any = None, *, items: Any = None,
                        exclude_items: Any = None) -> pd.DataFrame:
        """Recommendations as a long DataFrame ``user, rank (1-based), item, score``.

        Parameters
        ----------
        user_ids : array-like of original user ids, or None
            As in :meth:`recommend`; None: every user the model knows.
        k, exclude_seen, unknown, history, items, exclude_items :
            As in :meth:`recommend`.
        user_col, item_col : str, optional
            Names of the user and item columns (default: the model's
            training columns, ``columns_``), so the result merges directly
            with e.g. a movies frame.

        Returns
        -------
        DataFrame
            One row per recommendation, users in the order given, each
            user's items best first; short lists simply have fewer rows.
        """
        columns = self._columns() if self.data_ is not None else {}
        user_col = user_col or columns.get("user_col", "user_id")
        item_col = item_col or columns.get("item_col", "item_id")
        users, ids, lens, scores = self._recommend_all(user_ids, k, exclude_seen, unknown, history,
                                                       items, exclude_items)
        mask = np.arange(ids.shape[1])[None, :] < lens[:, None]
        rows, cols = np.nonzero(mask)
        return pd.DataFrame({user_col: users[rows], "rank": cols + 1, item_col: ids[rows, cols],
                             "score": scores[rows, cols]})

    def _recommend_all(self, user_ids, k, exclude_seen, unknown, history=None, items=None,
                       exclude_items=None):
        """``(users, ids, lens, scores)``: the users as an id array, and
        their lists padded to ``k`` (ids -1, scores -inf)."""
        self._check_fitted()
        k = check_k(k, self.data_.n_items)
        if unknown not in ("empty", "popular"):
            raise ValueError(f"unknown must be 'empty' or 'popular', got {unknown!r}")
        users = self.data_.user_ids if user_ids is None else as_id_array(user_ids, "user_ids")[0]
        mask = candidate_mask(self.data_, items, exclude_items)
        uidx = self.data_._user_codes(users)
        n = len(uidx)
        out_items = np.full((n, k), -1, dtype=np.int32)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        lens = np.zeros(n, dtype=np.int32)
        folded = replaced = np.zeros(n, dtype=bool)

        def fill(where, select):
            """Run ``select(positions) -> (items, scores, lens)`` over the
            rows ``where``, a block at a time when a mask is folded in."""
            pos = np.flatnonzero(where)
            step = len(pos) if mask is None else block_size(self.data_.n_items)
            for s in range(0, len(pos), max(step, 1)):
                p = pos[s:s + step]
                out_items[p], scores[p], lens[p] = select(p)

        if history is not None:
            self._check_fold_in()
            hist, listed = self._history_interactions(history)
            # Users listed in history= are scored from it and only from it:
            # those with no positive the model knows count as unknown.
            replaced = pd.Index(listed).get_indexer(users) >= 0 if len(listed) else replaced
            if hist is not None:
                hrow = hist._user_codes(users)
                folded = hrow >= 0
                fill(folded, lambda p: self._recommend_history(hist, hrow[p], k, exclude_seen,
                                                               **({} if mask is None else {"mask": mask})))
        known = (uidx >= 0) & ~replaced
        fill(known, lambda p: self._recommend_index_masked(np.ascontiguousarray(uidx[p]), k,
                                                           exclude_seen, mask))
        missing = ~known & ~folded
        if unknown == "popular" and missing.any():
            # The most popular items, minus those the user rated when the data
            # remembers them (users without positives, seen="rated").
            # (a user replaced by history= has no known positive to drop)
            rows_all = np.where(replaced, -1, self.data_.seen_row(users)) if exclude_seen else \
                np.full(n, -1, dtype=np.int32)
            seen_all = self.data_.seen_csr(unindexed=True) if exclude_seen else None
            counts = self.data_.popularity()

            def popular(p):
                seen, rows = exclusions(seen_all, rows_all[p], mask)
                it, ln = _core.topk_ranked(self._popular_order(), seen, rows, k)
                return it, np.where(it >= 0, counts[np.maximum(it, 0)], -np.inf), ln
            fill(missing, popular)
        item_ids = self.data_.item_ids
        ids = item_ids[np.maximum(out_items, 0)]
        if ids.dtype == np.int64:
            ids = np.where(out_items >= 0, ids, -1)
        return users, ids, lens, scores

    def _recommend_ids(self, user_ids, k, unknown="empty"):
        """(ids, lens) for evaluate(); k may exceed the catalogue there: the
        lists are then min(k, n_items) wide (never k wide: a silly k must
        not size memory)."""
        self._check_fitted()
        _, ids, lens, _ = self._recommend_all(user_ids, min(k, self.data_.n_items), True, unknown)
        return ids, lens

    def _recommend_index_masked(self, uidx, k, exclude_seen, mask):
        """``_recommend_index`` with a candidate mask.  Models whose
        ``_recommend_index`` takes ``mask`` apply it in their own top-k;
        for any other model the mask is applied to its whole score rows
        (``_score_all``) by the core's top-k, with the same result."""
        if mask is None:
            return self._recommend_index(uidx, k, exclude_seen)
        if _takes_mask(type(self)._recommend_index):
            return self._recommend_index(uidx, k, exclude_seen, mask=mask)
        seen = self.data_.seen_csr() if exclude_seen else None
        seen, rows = exclusions(seen, uidx, mask)
        return _core.topk_rows(np.ascontiguousarray(self._score_all(uidx)), seen, rows, k,
                               self.n_threads or 0)

    # -- fold-in and neighbours ------------------------------------------
    def _history_interactions(self, history):
        """``(hist, listed)`` of a ``history=`` frame: ``listed`` holds every
        user id with a row in it (whatever the rating), ``hist`` is the
        Interactions over this model's items of those with at least one
        positive the model knows (None when none has): rows in ascending
        id order, columns the model's item indices, positions ranked over
        the known positives.  Errors name ``history``."""
        columns = self._columns()
        ucol, icol, rcol, tcol = (columns[c] for c in ("user_col", "item_col", "rating_col", "time_col"))
        history = check_frame(history, "history", dict(user_col=ucol, item_col=icol, rating_col=rcol),
                              optional=(tcol,), allow_empty=True)
        data = self.data_
        users, users_int = id_column(history, ucol, "history")
        items, items_int = id_column(history, icol, "history")
        if len(history):
            check_same_kind(users_int, f"history[{ucol!r}]", data.user_ids.dtype == np.int64,
                            "the model's user ids")
            check_same_kind(items_int, f"history[{icol!r}]", data.item_ids.dtype == np.int64,
                            "the model's item ids")
        pos = np.ones(len(history), dtype=bool) if rcol is None else \
            numeric_column(history, rcol, "history") >= self.columns_["threshold"]
        times = time_column(history, tcol, "history") if tcol is not None and tcol in history.columns \
            else None
        listed = pd.unique(users)
        codes = data._item_codes(items[pos]) if pos.any() else np.zeros(0, dtype=np.int32)
        keep = codes >= 0
        if not keep.any():
            return None, listed
        known = pd.DataFrame({"u": users[pos][keep], "i": codes[keep].astype(np.int64)})
        if times is not None:
            known["t"] = times[pos][keep]
        tc = "t" if times is not None else None
        h = Interactions.from_frame(known, rating_col=None, user_col="u", item_col="i", time_col=tc)
        seen = seen_positions = None
        if data.seen_rule == "rated":
            # A model trained with seen="rated" reads (inputs="rated") and
            # drops every item the user rated: for the same users, every row
            # whose item the model knows, whatever its rating.
            codes = data._item_codes(items)
            mine = (codes >= 0) & pd.Index(users).isin(h.user_ids)
            rated = pd.DataFrame({"u": users[mine], "i": codes[mine].astype(np.int64)})
            if times is not None:
                rated["t"] = times[mine]
            r = Interactions.from_frame(rated, rating_col=None, user_col="u", item_col="i", time_col=tc)
            seen, seen_positions = (r.indptr, r.item_ids[r.indices]), r.positions
        # h's items are the model's indices that occur, ascending: mapping
        # them back keeps every row sorted.
        return Interactions(h.indptr, h.item_ids[h.indices], h.user_ids, data.item_ids,
                            positions=h.positions, seen=seen, seen_rule=data.seen_rule,
                            seen_positions=seen_positions), listed

    def _check_fold_in(self):
        """NotImplementedError up front for models that cannot fold in,
        whether or not a listed user is asked for."""
        if type(self)._recommend_history is Recommender._recommend_history:
            self._recommend_history(None, None, 0, False)

    def _recommend_history(self, hist, rows, k, exclude_seen):
        """Top-``k`` ``(items, scores, lens)`` for rows ``rows`` of ``hist``
        (Interactions over this model's items), scored from those rows;
        ``exclude_seen`` drops each row's own items."""
        raise NotImplementedError(f"{type(self).__name__} cannot score users from history= "
                                  "(fold-in); refit the model with those interactions instead")

    def similar_items(self, item_ids: Any, k: int = 10, return_scores: bool = False, *, items: Any = None,
                      exclude_items: Any = None, pad: Any = None
                      ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each given item (itself
        excluded), best first, as judged by the model (see its docstring).

        Parameters
        ----------
        item_ids : array-like of original item ids, all known to the model
            (an unknown id raises ``KeyError`` naming it).
        k : int, 1 <= k < number of items
        return_scores : bool
            Also return the (n, k) float32 similarities.
        items, exclude_items : array-like of item ids, optional
            Only these may be given as neighbours / never these, as in
            :meth:`recommend`: lists stay ``k`` long while enough
            candidates remain.
        pad : optional
            Fills the slots past the end of a short list (only possible
            with ``items``/``exclude_items``); as in :meth:`recommend`.

        Returns
        -------
        ndarray (n, k) of original item ids (and scores, -inf in padding).
        """
        self._check_fitted()
        k = check_positive_int(k, "k")
        if k >= self.data_.n_items:
            raise ValueError(f"k={k} must be below the number of items the model knows "
                             f"({self.data_.n_items}): an item is never its own neighbour")
        iidx = self.data_.item_index(item_ids, unknown="raise").astype(np.int32)
        mask = candidate_mask(self.data_, items, exclude_items)
        if mask is None:
            out, scores, lens = self._similar_index(iidx, k)
        elif not _takes_mask(type(self)._similar_index):
            raise NotImplementedError(f"{type(self).__name__}.similar_items does not take items= or "
                                      "exclude_items=")
        else:
            out = np.empty((len(iidx), k), dtype=np.int32)
            scores = np.empty((len(iidx), k), dtype=np.float32)
            lens = np.empty(len(iidx), dtype=np.int32)
            step = block_size(self.data_.n_items)
            for s in range(0, len(iidx), step):
                b = slice(s, s + step)
                out[b], scores[b], lens[b] = self._similar_index(
                    np.ascontiguousarray(iidx[b]), k, mask=mask)
        ids = self.data_.item_ids[np.maximum(out, 0)]
        short = np.arange(k)[None, :] >= lens[:, None]
        if short.any():
            ids = ids.astype(object) if ids.dtype != np.int64 else ids.copy()
            ids[short] = self._pad_value(pad)
            scores = np.where(short, -np.inf, scores).astype(np.float32)
        return (ids, scores) if return_scores else ids

    def _similar_index(self, iidx, k):
        """``(items, scores, lens)``: top-``k`` item indices for each item
        index in ``iidx``, the item itself excluded."""
        raise NotImplementedError(f"{type(self).__name__} has no item similarity")

    def _popular_order(self):
        return _core.popularity_order(self.data_.popularity())

    def score(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Scores of given (user, item) pairs, original ids, same length.

        Pairs whose user or item the model does not know raise ``KeyError``
        naming the first one.
        """
        self._check_fitted()
        users = as_id_array(user_ids, "user_ids")[0]
        items = as_id_array(item_ids, "item_ids")[0]
        if len(users) != len(items):   # before naming an unknown id: the pairs do not line up
            raise ValueError(f"user_ids and item_ids must have the same length, got {len(users)} and "
                             f"{len(items)}")
        u = self.data_.user_index(users, unknown="raise").astype(np.int32)
        i = self.data_.item_index(items, unknown="raise").astype(np.int32)
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
        persist.save_model(self, path)

    def to_onnx(self, path):
        """Export to ONNX.  Only some models have an exporter (they override
        this method, see their docstrings).

        Raises
        ------
        NotImplementedError
            This model has no ONNX export.
        """
        raise NotImplementedError(f"{type(self).__name__} has no ONNX export (models with one: "
                                  f"{', '.join(_onnx_exporters())})")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict: the constructor's arguments, as given.

        Parameters
        ----------
        deep : bool
            Also list the parameters of parameters that are models
            themselves, as ``name__param`` (scikit-learn's convention).

        Returns
        -------
        dict
        """
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", v) for key, v in value.get_params().items())
        return out

    def set_params(self, **params: Any) -> Recommender:
        """Set hyperparameters (scikit-learn's convention; ``name__param``
        reaches into a parameter that is a model).

        Validation happens at the next :meth:`fit`.  Changing, on a fitted
        model, a hyperparameter that shapes what ``fit`` learned makes the
        model refuse to recommend (``ValueError`` naming it) until it is
        fitted again or the value is set back; ``scoring_params`` (e.g. a
        recency half-life), ``n_threads`` and ``verbose`` apply at once.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A name that is not a parameter of the model.
        """
        valid = self._param_names()
        nested = {}
        for key in params:
            name = key.partition("__")[0]
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; its "
                                 f"parameters are {valid}")
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def _param_names(self):
        import inspect
        sig = inspect.signature(type(self).__init__)
        return [p for p in sig.parameters if p != "self"]

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"

    def with_params(self, **params):
        """A copy of this fitted model with scoring-only hyperparameters
        (the class's ``scoring_params``, e.g. a recency half-life) changed;
        the copy shares the learned arrays, so no refit is needed.

        Raises
        ------
        TypeError
            A name that is not a parameter of the model.
        ValueError
            A parameter that changes what ``fit`` learns.
        """
        import copy
        free = set(getattr(type(self), "scoring_params", ()))
        unknown = [name for name in params if name not in self._param_names()]
        if unknown:
            raise TypeError(f"{unknown[0]} is not a parameter of {type(self).__name__} "
                            f"(its parameters: {self._param_names()})")
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
        return self.get_params(deep=False)

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
        self.__dict__.pop("_fitting", None)
        if self.__dict__.get("data_") is not None:
            self._freeze_learned()

    def _arrays(self):
        """Learned arrays to save (besides the data); subclasses extend."""
        return {}

    def _set_arrays(self, arrays):
        pass


class EmbeddingModel(Recommender):
    """What the models whose weights the C core lays out share (NeuralMF,
    BPRMF, ALS): all weights in one flat float32 array ``theta_``, laid out
    by the core's model table (the row named ``kind``): its named blocks
    give the views (``<block>_``), the initial weights, and, for mini-batch
    models, the Adam routing of the core's one training loop; scoring and
    top-K by the core; save/load and pickling.

    A subclass gives ``_core_fields()``, the model's own fields of the
    core's config (e.g. ``{"emb_dim": 64}``); a mini-batch model's ``_fit``
    calls ``_train`` with the arrays its data source trains on each epoch
    (``recmf._core.model_info(kind)["source"]``).
    """

    def _core_fields(self):
        """The model's own fields of the core's config."""
        return {}

    def _config(self, n_users=None):
        """The core's config: the data's sizes (``n_users`` rows instead of
        the model's users: fold-in, neighbours) and the model's fields."""
        return {"n_users": self.data_.n_users if n_users is None else n_users,
                "n_items": self.data_.n_items, **self._core_fields()}

    def _layout(self):
        """``(n_params, blocks)``, each block ``(name, offset, shape, role,
        init, init_arg)``, from the core (``_core.layout``)."""
        return _core.layout(self.kind, self._config())

    def _view_attrs(self):
        """Names of the views of ``theta_`` (rebuilt, never pickled)."""
        if self.data_ is None or getattr(self, "theta_", None) is None:
            return []
        return [block[0] + "_" for block in self._layout()[1]]

    def _views(self):
        for name, offset, shape, *_ in self._layout()[1]:
            size = math.prod(shape)
            setattr(self, name + "_", self.theta_[offset:offset + size].reshape(shape))

    def _init_weights(self):
        """``theta_`` initialised block by block as the layout says, in
        block order from ``numpy.random.default_rng(seed)``: normal blocks
        N(0, std^2), uniform ones U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        (PyTorch's ``nn.Linear``), zero blocks 0."""
        n_params, blocks = self._layout()
        rng = np.random.default_rng(self.seed)
        theta = np.zeros(n_params, dtype=np.float32)
        for _, offset, shape, _, init, arg in blocks:
            size = math.prod(shape)
            if init == "normal":
                theta[offset:offset + size] = (rng.standard_normal(size) * arg).astype(np.float32)
            elif init == "uniform":
                bound = 1.0 / np.sqrt(arg)
                theta[offset:offset + size] = rng.uniform(-bound, bound, size=size).astype(np.float32)
            elif init == "one":
                theta[offset:offset + size] = 1.0
        self.theta_ = theta
        self._views()

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
        and ``adam="lazy"``, which updates only the batch's rows, is faster
        per epoch (NeuralMF at ML-20M's shape on 2 cores: 102-108 s dense
        against 58-73 s lazy, benchmarks/scale.py; different maths: rows
        absent from a batch keep their moments).  The progress bar shows the
        note."""
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

    def _train_fields(self):
        """The core loop's keywords from the hyperparameters every trained
        model shares."""
        return dict(lr=float(self.lr), weight_decay=float(self.weight_decay), beta1=float(self.betas[0]),
                    beta2=float(self.betas[1]), eps=float(self.eps), batch_size=int(self.batch_size),
                    seed=int(self.seed), n_threads=int(self.n_threads), lazy_adam=int(self.adam == "lazy"))

    def _train(self, val, callback, patience, epoch_data):
        """Initialise the weights and run the epoch loop, each epoch one
        ``_core.train_epoch`` of the core's loop on ``epoch_data(epoch)``
        (the arrays of the model's data source for that epoch), Adam's state
        kept across epochs."""
        self._init_weights()
        config = {**self._config(), **self._train_fields()}
        m = np.zeros_like(self.theta_)
        v = np.zeros_like(self.theta_)
        state = {"step": 0}

        def run_epoch(epoch):
            try:
                data = epoch_data(epoch)
                loss, n_done, state["step"], interrupted, threads = _core.train_epoch(
                    self.kind, config, data, epoch, self.theta_, m, v, state["step"])
            except _core.SamplingError as e:
                raise named_sampling_error(e, self.data_) from None
            return loss, n_done, interrupted, {"threads": threads}

        EpochLoop(self, val, self._columns()).run(run_epoch, self.epochs, self.eval_every, patience,
                                                  callback, self.verbose, self._progress_desc())
        self.adam_step_ = state["step"]
        return self

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        seen = self.data_.seen_csr() if exclude_seen else None
        return _core.recommend(self.kind, self._config(), self.theta_, uidx, seen, k, self.n_threads,
                               allowed=mask)

    def _score_index(self, uidx, iidx):
        return _core.score_pairs(self.kind, self._config(), self.theta_, uidx, iidx, self.n_threads)

    def _n_params(self):
        return _core.n_params(self.kind, self._config())

    def _arrays(self):
        return {"theta": self.theta_}

    def _set_arrays(self, arrays):
        self.theta_ = as_core_array(arrays["theta"], np.float32)
        if len(self.theta_) != self._n_params():
            raise ValueError("saved weights do not match the model's shape")
        self._views()

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._view_attrs():
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "theta_", None) is not None:
            self._views()
            self._freeze_learned()


def _takes_mask(method):
    """Whether a model's top-k method applies a candidate ``mask`` itself."""
    import inspect
    return "mask" in inspect.signature(method).parameters
