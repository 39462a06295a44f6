"""Blend: a weighted sum of other models' per-user normalised scores."""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import _core
from ..data import Interactions
from .base import Recommender

__all__ = ["Blend"]

_NORMALISERS = ("minmax", "zscore")


def normalise_rows(scores, excluded=None, how="minmax"):
    """Per-row normalisation of ``scores`` over the entries not ``excluded``.

    Parameters
    ----------
    scores : float32 (n, m)
    excluded : bool (n, m) or None
        Entries left out of each row's statistics (the user's seen items:
        they cannot be recommended, and a model that scores them highest
        would otherwise squeeze the rest of the row).
    how : {"minmax", "zscore"}
        ``(s - min) / (max - min)`` or ``(s - mean) / std``.  A row whose
        statistics are undefined (constant, or every entry excluded) is 0.

    Returns
    -------
    float32 (n, m); excluded entries are normalised with the same
    statistics (recommend drops them anyway).
    """
    s = scores.astype(np.float64)
    keep = np.ones(s.shape, dtype=bool) if excluded is None else ~excluded
    n_keep = keep.sum(axis=1, keepdims=True)
    if how == "minmax":
        lo = np.where(keep, s, np.inf).min(axis=1, keepdims=True)
        hi = np.where(keep, s, -np.inf).max(axis=1, keepdims=True)
        span = hi - lo
        ok = (n_keep > 0) & (span > 0)
        out = np.where(ok, (s - np.where(ok, lo, 0)) / np.where(ok, span, 1), 0.0)
    else:
        mean = np.where(keep, s, 0).sum(axis=1, keepdims=True) / np.maximum(n_keep, 1)
        var = np.where(keep, (s - mean) ** 2, 0).sum(axis=1, keepdims=True) / np.maximum(n_keep, 1)
        sd = np.sqrt(var)
        ok = (n_keep > 0) & (sd > 0)
        out = np.where(ok, (s - mean) / np.where(ok, sd, 1), 0.0)
    return out.astype(np.float32)


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
    normalised over the items that can be recommended (the user's unseen
    items: min-max to [0, 1], or z-scores), multiplied by the component's
    weight and summed; the top items of the sum are recommended, seen items
    removed as usual.  Normalising per user puts scores of different scales
    (a count, a logit, a regression output) on one footing, the usual score
    fusion of hybrid recommenders (Burke, "Hybrid recommender systems:
    survey and experiments", UMUAI 2002).

    Choose the weights on validation data with :func:`recmf.select`; the
    default grid is :meth:`weight_grid`.

    Parameters
    ----------
    models : sequence of recmf models
        At least one.  Fitted components are used as they are (they must
        have been fitted on the data later passed to ``fit``); unfitted ones
        are fitted by ``fit`` as copies, so the objects passed are never
        changed.  Every component must score whole rows (``_score_all``).
    weights : sequence of float >= 0, or None
        One per model, not all 0; None gives every model weight 1.
    normalise : {"minmax", "zscore"}
    n_threads : int or None
        Threads for the top-K selection (components use their own).

    Attributes
    ----------
    models_ : list
        The fitted components, in order.
    weights_ : tuple of float
        The weights in use.
    """

    kind = "blend"

    def __init__(self, models, weights=None, normalise="minmax", n_threads=None):
        super().__init__(n_threads=n_threads)
        if isinstance(models, Recommender) or not hasattr(models, "__iter__"):
            raise TypeError(f"models must be a sequence of recmf models, got {type(models).__name__}")
        models = list(models)
        if not models:
            raise ValueError("models must hold at least one model")
        for pos, m in enumerate(models):
            if not isinstance(m, Recommender):
                raise TypeError(f"models[{pos}] must be a recmf model, got {type(m).__name__}")
        if normalise not in _NORMALISERS:
            raise ValueError(f"normalise must be one of {_NORMALISERS}, got {normalise!r}")
        self.models = models
        self.weights = _check_weights(weights, len(models))
        self.normalise = normalise

    # -- hyperparameters ------------------------------------------------------
    @staticmethod
    def weight_grid(n_models, steps=None):
        """Weight vectors on the simplex with the given resolution: every
        ``(k_1, ..., k_n) / steps`` with integer ``k >= 0`` summing to
        ``steps`` (10 for two models, 4 for more), each component alone
        included."""
        if steps is None:
            steps = 10 if n_models <= 2 else 4
        return [tuple(k / steps for k in ks)
                for ks in itertools.product(range(steps + 1), repeat=n_models) if sum(ks) == steps]

    @property
    def default_grid(self):
        """The grid :func:`recmf.select` searches: the weights."""
        return {"weights": self.weight_grid(len(self.models))}

    # -- fitting --------------------------------------------------------------
    def fit(self, data, val=None):
        """Fit the unfitted components on ``data`` (``val`` is passed on to
        them) and check that all share one index.

        Raises
        ------
        ValueError
            A fitted component was trained on other users, items or
            positives than the rest (or than ``data``).
        """
        fitted = []
        for m in self.models:
            if m.data_ is None:
                m = type(m)(**m.get_params()).fit(data, val=val)
            fitted.append(m)
        ref = fitted[0].data_
        for pos, m in enumerate(fitted):
            if not _same_index(m.data_, ref):
                raise ValueError(f"models[{pos}] ({type(m).__name__}) was fitted on other data than "
                                 f"models[0]: components must share users, items and positives")
        if isinstance(data, Interactions) and not _same_index(data, ref):
            raise ValueError("the fitted components were trained on other data than `data`")
        self.models_ = fitted
        self.weights_ = self.weights or (1.0,) * len(fitted)
        self.data_ = ref
        return self

    # -- scoring --------------------------------------------------------------
    def _seen_mask(self, uidx):
        """Dense bool (len(uidx), n_items): the users' seen items."""
        d = self.data_
        first, counts = d.seen_indptr[uidx], np.diff(d.seen_indptr)[uidx]
        rows = np.repeat(np.arange(len(uidx)), counts)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        mask = np.zeros((len(uidx), d.n_items), dtype=bool)
        mask[rows, d.seen_indices[np.repeat(first, counts) + within]] = True
        return mask

    def _blend_rows(self, uidx, exclude_seen=True):
        mask = self._seen_mask(uidx) if exclude_seen else None
        total = np.zeros((len(uidx), self.data_.n_items), dtype=np.float32)
        for m, w in zip(self.models_, self.weights_):
            if w:
                total += np.float32(w) * normalise_rows(m._score_all(uidx), mask, self.normalise)
        return total

    def _score_all(self, uidx):
        return self._blend_rows(np.asarray(uidx, dtype=np.int32))

    def _score_index(self, uidx, iidx):
        return self._score_pairs_from_rows(uidx, iidx)

    def _recommend_index(self, uidx, k, exclude_seen):
        n = len(uidx)
        items = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        lens = np.empty(n, dtype=np.int32)
        seen = self.data_.seen_csr() if exclude_seen else None
        step = self._row_block()
        for s in range(0, n, step):
            u = np.ascontiguousarray(uidx[s:s + step], dtype=np.int32)
            rows = self._blend_rows(u, exclude_seen)
            items[s:s + len(u)], scores[s:s + len(u)], lens[s:s + len(u)] = _core.topk_rows(
                rows, seen, u, k, self.n_threads)
        return items, scores, lens

    # -- persistence ----------------------------------------------------------
    def _saved_params(self):
        from ..persist import component_meta
        return {"models": [component_meta(m) for m in self._components()],
                "weights": list(self.weights) if self.weights is not None else None,
                "normalise": self.normalise, "n_threads": self.n_threads}

    @classmethod
    def _from_saved_params(cls, params):
        from ..persist import component_from_meta
        params = dict(params)
        params["models"] = [component_from_meta(meta) for meta in params["models"]]
        return cls(**params)

    def _components(self):
        return getattr(self, "models_", None) or self.models

    def _arrays(self):
        out = {}
        for pos, m in enumerate(self.models_):
            out.update({f"c{pos}__{name}": a for name, a in m._arrays().items()})
        return out

    def _set_arrays(self, arrays):
        self.models_ = self.models
        for pos, m in enumerate(self.models_):
            prefix = f"c{pos}__"
            m.data_ = self.data_
            m._set_arrays({name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)})
        self.weights_ = self.weights or (1.0,) * len(self.models_)


def _same_index(a, b):
    """Same users, items and positives (the seen items may differ)."""
    return a is b or (a.shape == b.shape and np.array_equal(a.user_ids, b.user_ids)
                      and np.array_equal(a.item_ids, b.item_ids)
                      and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices))

