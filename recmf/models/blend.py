"""Blend: a weighted sum of other models' per-user normalised scores."""
from __future__ import annotations

import collections
import hashlib
import math
import threading
import weakref

import numpy as np

from .. import _core
from .._candidates import exclusions
from ..data import Interactions
from .base import Recommender

__all__ = ["Blend", "clear_cache"]

_NORMALISERS = ("minmax", "zscore")


def normalise_rows(scores, how="minmax"):
    """Each row of ``scores`` (float32, (n, m)) min-max scaled to [0, 1]
    (``how="minmax"``) or as z-scores (``"zscore"``), in float64, returned
    as float32.  A constant row becomes 0."""
    s = scores.astype(np.float64)
    if how == "minmax":
        lo = s.min(axis=1, keepdims=True)
        span = s.max(axis=1, keepdims=True) - lo
    else:
        lo = s.mean(axis=1, keepdims=True)
        span = s.std(axis=1, keepdims=True)
    ok = span > 0
    return np.where(ok, (s - lo) / np.where(ok, span, 1.0), 0.0).astype(np.float32)


class _Components(tuple):
    """A Blend's models.  Equal to another sequence of models of the same
    types and hyperparameters, so a reloaded or unpickled Blend has equal
    ``get_params()`` and recmf.select can tell blends that share their
    components."""

    __slots__ = ()

    def __eq__(self, other):
        return (isinstance(other, (list, tuple)) and len(self) == len(other)
                and all(_same_model(a, b) for a, b in zip(self, other)))

    def __ne__(self, other):
        return not self == other

    __hash__ = None


def _settings(model):
    """A component's parameters for comparison: ``n_threads`` None (as
    given) and 0 (as ``fit`` normalises it) both mean all cores."""
    params = model.get_params(deep=False)
    if params.get("n_threads") is None and "n_threads" in params:
        params["n_threads"] = 0
    return params


def _same_model(a, b):
    """The same object, or models of one type and hyperparameters that are
    not fitted to different states: an unfitted model is a specification
    that any of its fits meets, but two fits that differ in their weights
    (an early stop, another seed of the data) are not interchangeable."""
    if a is b:
        return True
    if type(a) is not type(b) or _settings(a) != _settings(b):
        return False
    if a.data_ is None or b.data_ is None:
        return True
    mine, theirs = a._arrays(), b._arrays()
    return (a.data_ == b.data_ and mine.keys() == theirs.keys()
            and all(np.array_equal(mine[k], theirs[k]) for k in mine))


def _compositions(total, n):
    """Every n-tuple of integers >= 0 summing to ``total``, in lexicographic
    order; as many steps as tuples (not (total + 1) ** n, as filtering a
    product would take)."""
    if n == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, n - 1):
            yield (first,) + rest


def _check_weights(weights, n):
    if weights is None:
        return None
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise TypeError(f"weights must be a sequence of numbers, got {weights!r}") from None
    if len(w) != n:
        raise ValueError(f"weights must have one entry per model ({n}), got {len(w)}")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) == 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w}")
    return tuple(w)


class Blend(Recommender):
    """A weighted sum of several models' scores, each normalised per user.

    For a user, every component scores every item; each component's row is
    normalised over all items (min-max to [0, 1], or z-scores), multiplied
    by the component's weight and summed; the top items of the sum are
    recommended, seen items removed as usual.  (Normalising over the
    unseen items only gave the same validation recall on ML-1M, 0.2657 vs
    0.2655, and would make a pair's score depend on ``exclude_seen``.)  Normalising per user puts scores of different scales
    (a count, a logit, a regression output) on one footing, the usual score
    fusion of hybrid recommenders (Burke, "Hybrid recommender systems:
    survey and experiments", UMUAI 2002).

    Choose the weights on validation data with :func:`recmf.select`; the
    default grid is :meth:`weight_grid`.

    Parameters
    ----------
    models : sequence of recmf models
        At least one.  Fitted components are used as they are (they must
        have been fitted on the data later passed to ``fit``): the blend
        follows their current fitted state (refitted in place on the same
        data, the blend scores the new fit; on other data, it refuses until
        fitted again); unfitted ones are fitted by ``fit`` as copies, so the
        objects passed are never changed.  Every component must score whole
        rows (``_score_all``).
    weights : sequence of float >= 0, or None
        One per model, not all 0.  None: chosen on ``val`` when ``fit`` is
        given one (see :meth:`fit`), else every model weighs 1.
    normalise : {"minmax", "zscore"}
    n_threads : int or None
        Threads for the top-K selection (components use their own).

    Notes
    -----
    Blends keep the most recent normalised component scores (up to 256 MB,
    :func:`recmf.models.blend.clear_cache` frees them) so that a grid of
    weights scores each component once per block of users.

    Attributes
    ----------
    models_ : list
        The fitted components, in order.
    weights_ : tuple of float
        The weights in use.
    selection_ : DataFrame or None
        With ``weights=None`` and ``val``: every weight vector tried and its
        val metrics (:func:`recmf.select`'s table).
    """

    kind = "blend"
    #: only scoring changes with these: recmf.select shares one fit
    scoring_params = ("weights", "normalise")

    def __init__(self, models, weights=None, normalise="minmax", n_threads=None):
        super().__init__(n_threads=n_threads)
        self.models = models
        self.weights = weights
        self.normalise = normalise

    def _check_params(self):
        models = self.models
        if isinstance(models, Recommender) or not isinstance(models, (list, tuple)):
            raise TypeError(f"models must be a list or tuple of recmf models, got {type(models).__name__}")
        if not models:
            raise ValueError("models must hold at least one model")
        for pos, m in enumerate(models):
            if not isinstance(m, Recommender):
                raise TypeError(f"models[{pos}] must be a recmf model, got {type(m).__name__}")
        if self.normalise not in _NORMALISERS:
            raise ValueError(f"normalise must be one of {_NORMALISERS}, got {self.normalise!r}")
        _check_weights(self.weights, len(models))

    @classmethod
    def _test_params(cls):
        from .popularity import Popularity
        from .transition import ItemTransition
        return {"models": [ItemTransition(half_life=2.0), Popularity()], "weights": [0.7, 0.3]}

    # -- hyperparameters ------------------------------------------------------
    #: most weight vectors weight_grid makes (each is a candidate to score)
    MAX_GRID = 100_000

    @staticmethod
    def weight_grid(n_models, steps=None):
        """Weight vectors on the simplex with the given resolution: every
        ``(k_1, ..., k_n) / steps`` with integer ``k >= 0`` summing to
        ``steps`` (10 for two models, 4 for more), each component alone
        included, in lexicographic order of the k.

        Raises
        ------
        ValueError
            More than :attr:`MAX_GRID` vectors (``C(steps + n - 1, n - 1)``:
            20 models at 4 steps make 8,855, 50 make 292,825): choose fewer
            steps or pass the weights.
        """
        from .._checks import check_positive_int
        n_models = check_positive_int(n_models, "n_models")
        if steps is None:
            steps = 10 if n_models <= 2 else 4
        steps = check_positive_int(steps, "steps")
        count = math.comb(steps + n_models - 1, n_models - 1)
        if count > Blend.MAX_GRID:
            raise ValueError(f"the weight grid of {n_models} models at {steps} steps has {count:,} weight "
                             f"vectors (more than {Blend.MAX_GRID:,} candidates to score): choose fewer "
                             "steps, or pass weights=")
        return [tuple(k / steps for k in ks) for ks in _compositions(steps, n_models)]

    @property
    def default_grid(self):
        """The grid :func:`recmf.select` searches: the weights."""
        return {"weights": self.weight_grid(len(self.models))}

    # -- fitting --------------------------------------------------------------
    def fit(self, data, val=None):
        """Fit the unfitted components on ``data`` (``val`` is passed on to
        them), check that all share one index and, when ``weights`` is None
        and ``val`` is given, choose the weights on ``val`` with
        :func:`recmf.select` over :meth:`weight_grid` (the table is kept in
        ``selection_``).

        Raises
        ------
        ValueError
            A fitted component was trained on other users, items or
            positives than the rest (or than ``data``).
        """
        self._validate()
        fitted = []
        for m in self.models:
            if m.data_ is None:
                m = type(m)(**m.get_params(deep=False)).fit(data, val=val)
            fitted.append(m)
        ref = fitted[0].data_
        for pos, m in enumerate(fitted):
            if not _same_index(m.data_, ref):
                raise ValueError(f"models[{pos}] ({type(m).__name__}) was fitted on other data than "
                                 f"models[0]: components must share users, items and positives")
        if isinstance(data, Interactions) and not _same_index(data, ref):
            raise ValueError("the fitted components were trained on other data than `data`")
        self.models_ = fitted
        self.data_, self.columns_ = ref, fitted[0].columns_
        self.chosen_weights_, self.selection_ = None, None
        if self.weights is None and val is not None and len(fitted) > 1:
            self.chosen_weights_, self.selection_ = self._choose_weights(val)
        return self

    def _choose_weights(self, val):
        from .. import select
        first = self.models_[0]
        columns = {c: first.columns_[c] for c in ("user_col", "item_col", "rating_col")}
        grid = {"models": [self.models_], "weights": self.weight_grid(len(self.models_)),
                "normalise": [self.normalise], "n_threads": [self.n_threads]}
        best, table = select((Blend, grid), self.data_, val, progress=False,
                             threshold=first.columns_["threshold"], **columns)
        return best.weights, table.drop(columns=["models"])

    @property
    def weights_(self):
        """The weights in use: ``weights``, else those chosen on val by
        ``fit``, else all 1."""
        if self.weights is not None:
            return tuple(float(w) for w in self.weights)
        return getattr(self, "chosen_weights_", None) or (1.0,) * len(self.models)

    # -- scoring --------------------------------------------------------------
    def _check_fitted(self):
        """Fitted, and every component still fitted on this blend's users,
        items and positives: a component refitted in place on other data
        would be scored by indices that mean other users."""
        super()._check_fitted()
        for pos, m in enumerate(self.models_):
            m._check_fitted()
            if not _same_index(m.data_, self.data_):
                raise ValueError(f"models[{pos}] ({type(m).__name__}) was refitted on other data after "
                                 "this Blend was fitted: fit the Blend again")

    def _blend_rows(self, uidx):
        total = np.zeros((len(uidx), self.data_.n_items), dtype=np.float32)
        for m, w in zip(self.models_, self.weights_):
            if w:
                total += np.float32(w) * _ROWS.get(m, uidx, self.normalise)
        return total

    def _score_all(self, uidx):
        return self._blend_rows(np.asarray(uidx, dtype=np.int32))

    def _score_index(self, uidx, iidx):
        return self._score_pairs_from_rows(uidx, iidx)

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        n = len(uidx)
        items = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        lens = np.empty(n, dtype=np.int32)
        seen = self.data_.seen_csr() if exclude_seen else None
        step = self._row_block()
        for s in range(0, n, step):
            u = np.ascontiguousarray(uidx[s:s + step], dtype=np.int32)
            rows = self._blend_rows(u)
            block_seen, block_rows = exclusions(seen, u, mask)
            items[s:s + len(u)], scores[s:s + len(u)], lens[s:s + len(u)] = _core.topk_rows(
                rows, block_seen, block_rows, k, self.n_threads)
        return items, scores, lens

    # -- persistence ----------------------------------------------------------
    def _saved_params(self):
        from ..persist import component_meta
        return {"models": [component_meta(m) for m in self._components()],
                # which components were given fitted (used as they are)
                # rather than fitted by the blend as copies
                "given_fitted": [m is f for m, f in zip(self.models, self._components())],
                # the components as given, where the blend fitted copies of them
                "given_unfitted": [None if m is f else component_meta(m)
                                   for m, f in zip(self.models, self._components())],
                "weights": list(self.weights) if self.weights is not None else None,
                "normalise": self.normalise, "n_threads": self.n_threads}

    @classmethod
    def _from_saved_params(cls, params):
        """An unfitted Blend whose ``models`` are what it was given: the
        fitted components themselves, or unfitted ones like those its fit
        copied; ``_set_arrays`` completes the fitted ones."""
        from ..persist import component_from_meta
        params = dict(params)
        metas = params.pop("models")
        given = params.pop("given_fitted", None)
        as_given = params.pop("given_unfitted", None)
        if not isinstance(metas, list) or not metas:
            raise ValueError("a Blend's saved models must be a non-empty list")
        if given is None:                  # files written before given_fitted
            given = [True] * len(metas)
        if not isinstance(given, list) or len(given) != len(metas):
            raise ValueError("a Blend's given_fitted must have one flag per model")
        fitted = [component_from_meta(meta) for meta in metas]
        # Components compare by type and parameters, as the saved Blend's
        # (which held other objects) do.
        if not isinstance(as_given, list) or len(as_given) != len(metas):
            as_given = [None] * len(metas)          # files written before given_unfitted
        blend = cls(models=_Components(f if g else component_from_meta(a if isinstance(a, dict) else meta)
                                       for f, g, meta, a in zip(fitted, given, metas, as_given)),
                    **params)
        blend._loading = (fitted, metas)
        return blend

    def __setstate__(self, state):
        super().__setstate__(state)
        # An unpickled Blend holds copies of its components: compare them by
        # type and parameters, as a loaded one does.
        if isinstance(self.__dict__.get("models"), (list, tuple)):
            self.models = _Components(self.models)

    def _components(self):
        return getattr(self, "models_", None) or self.models

    def _arrays(self):
        out = {} if self.chosen_weights_ is None else {"chosen_weights": np.array(self.chosen_weights_)}
        for pos, m in enumerate(self.models_):
            out.update({f"c{pos}__{name}": a for name, a in m._arrays().items()})
        return out

    def _set_arrays(self, arrays):
        from ..persist import restore_component
        fitted, metas = self.__dict__.pop("_loading", (list(self.models), [{}] * len(self.models)))
        for pos, (m, meta) in enumerate(zip(fitted, metas)):
            prefix = f"c{pos}__"
            m.data_ = self.data_
            m._set_arrays({name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)})
            restore_component(m, meta)
        self.models_ = fitted
        chosen = arrays.get("chosen_weights")
        self.chosen_weights_ = tuple(float(w) for w in chosen) if chosen is not None else None
        if self.chosen_weights_ is not None and len(self.chosen_weights_) != len(fitted):
            raise ValueError(f"chosen_weights has {len(self.chosen_weights_)} entries for "
                             f"{len(fitted)} models")


class _RowCache:
    """The last few (component, users) normalised score blocks.

    Candidates of a weight grid (:func:`recmf.select` over a Blend's
    weights, or over components' scoring-only variants) share component
    objects and are evaluated on the same users, so each component block is
    scored once instead of once per candidate.  An entry is keyed by the
    component object (held weakly: a copy or a new model never hits), its
    fitted state (every fit and load makes a new one, so a refit misses,
    whatever its data and settings; learned arrays are read-only, so a
    state cannot change in place) and hyperparameters, the normalisation
    and the users.  At most
    ``max_bytes`` of blocks are kept, least recently used dropped first;
    :func:`clear_cache` frees them.
    """

    def __init__(self, max_bytes=256 << 20):
        self.max_bytes = max_bytes
        self.entries = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, model, uidx, how):
        key = (id(model), model.__dict__.get("_fit_token"), repr(model.get_params()), how, len(uidx),
               hashlib.blake2b(np.ascontiguousarray(uidx).tobytes(), digest_size=16).digest())
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None and hit[0]() is model:
                self.entries.move_to_end(key)
                return hit[1]
        rows = normalise_rows(model._score_all(uidx), how)
        rows.flags.writeable = False
        with self.lock:
            self.entries[key] = (weakref.ref(model), rows)
            while sum(r.nbytes for _, r in self.entries.values()) > self.max_bytes:
                self.entries.popitem(last=False)
        return rows

    def clear(self):
        with self.lock:
            self.entries.clear()


_ROWS = _RowCache()


def clear_cache():
    """Free the component scores Blends keep for reuse (at most 256 MB)."""
    _ROWS.clear()


def _same_index(a, b):
    """Same users, items and positives (the seen items may differ)."""
    return a is b or (a.shape == b.shape and np.array_equal(a.user_ids, b.user_ids)
                      and np.array_equal(a.item_ids, b.item_ids)
                      and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices))

