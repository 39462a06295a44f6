"""Model selection on a validation split (never on test)."""
from __future__ import annotations

import copy
import inspect
import itertools
import re
import time
from typing import Any

import numpy as np
import pandas as pd

from ._checks import check_frame
from ._progress import progress as make_progress
from ._config import FROM_CONFIG, resolve
from ._tables import is_arrow_table
from .data import Interactions
from .metrics import METRIC_NAMES, evaluate
from .models.base import _same_value as _same

__all__ = ["select"]

#: recmf.evaluate's parameters: what select may pass on, and their defaults
_EVALUATE_PARAMS = inspect.signature(evaluate).parameters


def _grid_points(grid, name):
    """A dict {param: values} (or a list of such dicts) -> list of param dicts."""
    grids = grid if isinstance(grid, (list, tuple)) else [grid]
    points = []
    for g in grids:
        if not isinstance(g, dict):
            raise TypeError(f"the grid of {name} must be a dict of lists (or a list of them), "
                            f"got {type(g).__name__}")
        keys = list(g)
        values = []
        for key in keys:
            v = g[key]
            v = list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v]
            if not v:
                raise ValueError(f"the grid of {name} has no values for {key!r}")
            values.append(v)
        points += [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    return points


def _check_grid_names(cls, points):
    """Every name a grid sets must be a parameter of the class: refused
    here, before any candidate is fitted."""
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for params in points:
        for key in params:
            if key not in names:
                raise TypeError(f"the grid of {cls.__name__} sets {key!r}, which is not a parameter of "
                                f"{cls.__name__} (its parameters: {sorted(names)})")


def _expand(candidates, grid):
    """Candidates -> list of (label, class or None, params, unfitted model or None)."""
    single = inspect.isclass(candidates) or (isinstance(candidates, tuple) and len(candidates) == 2
                                             and inspect.isclass(candidates[0]))
    items = [candidates] if single or not isinstance(candidates, (list, tuple)) else list(candidates)
    if not items:
        raise ValueError("candidates is empty")
    if grid is not None and not single:
        raise ValueError("grid= applies to one model class; for several, pass (class, grid) pairs")
    out = []
    for item in items:
        cls, g = (item if isinstance(item, tuple) else (item, None))
        if inspect.isclass(cls):
            g = grid if (grid is not None and single) else g
            g = getattr(cls, "default_grid", {}) if g is None else g
            points = _grid_points(g, cls.__name__)
            if not points:
                raise ValueError(f"the grid of {cls.__name__} is empty: it gives no candidate to try "
                                 "(a grid is a dict {param: [values]} or a non-empty list of them)")
            _check_grid_names(cls, points)
            for params in points:
                out.append((cls.__name__, cls, params, None))
        elif hasattr(cls, "fit") and hasattr(cls, "get_params"):
            out.append((type(cls).__name__, None, _non_default_params(cls), cls))
        else:
            raise TypeError("candidates must be a model class, a (class, grid) pair, a model, or a "
                            f"list of these; got {type(cls).__name__}")
    return out


def _build(plan):
    """The plan's models, built and checked as fit checks them, before any
    candidate is fitted: a bad value in a grid fails now, naming the
    candidate, not after the others have trained."""
    models = []
    for label, cls, params, model in plan:
        try:
            if model is None:
                model = cls(**params)
            model._validate()           # what fit checks (and n_threads=None -> all cores)
        except (TypeError, ValueError) as e:
            raise type(e)(f"candidate {label}({', '.join(f'{k}={v!r}' for k, v in params.items())}): "
                          f"{e}") from None
        models.append(model)
    return models


def _adopt_fit(target, source):
    """``target`` (a model instance given to select) takes the fitted
    state of ``source``, which differs from it only in scoring parameters:
    it is fitted in place, as documented, sharing the read-only arrays."""
    own = set(target._param_names())
    for name, value in vars(source).items():
        if name not in own:
            setattr(target, name, value)
    return target


def _why_no_metric(data, val, metric, evaluate_kwargs):
    """Why no candidate got a finite metric on val: what evaluate needs is
    a val user with a relevant row and a non-empty list."""
    from ._checks import id_column
    from .metrics import relevant_rows
    get = lambda c: evaluate_kwargs.get(c, _EVALUATE_PARAMS[c].default)  # noqa: E731
    ucol, rcol, threshold = get("user_col"), get("rating_col"), get("threshold")
    rel = relevant_rows(val, threshold, rcol, "val")
    if not rel.any():
        return f"no row of val is relevant ({rcol} >= {threshold})"
    users = id_column(val, ucol, "val")[0][rel]
    if not (data._user_codes(users) >= 0).any():
        return (f"none of the {len(pd.unique(users))} users of val with a relevant row is in data "
                "(pass unknown='popular' to evaluate them on the most popular items)")
    return ("every user of val with a relevant row got an empty list (they have seen every item "
            "the models know)")


def _non_default_params(model):
    try:
        default = _comparable(type(model)())
    except TypeError:  # a class without defaults for every parameter
        return model.get_params(deep=False)
    return {k: v for k, v in _comparable(model).items()
            if k not in default or not _same(default[k], v)}


def _parse_metric(metric):
    m = re.fullmatch(r"([a-z_]+)@(\d+)", str(metric))
    if m is None or m.group(1) not in METRIC_NAMES + ("coverage",) or int(m.group(2)) < 1:
        raise ValueError(f"metric must look like 'recall@10' (one of {list(METRIC_NAMES)} "
                         f"or coverage, at a k >= 1), got {metric!r}")
    return int(m.group(2))


def select(candidates: Any, data: Any, val: Any, metric: str = "recall@10", *, grid: Any = None,
           threshold: float = FROM_CONFIG, progress: bool = True, fit_val: bool = True,
           **evaluate_kwargs: Any) -> tuple[Any, pd.DataFrame]:
    """Fit every candidate on ``data``, score each on ``val`` only, return the best.

    Parameters
    ----------
    candidates : model class, (class, grid), fitted-or-not model, or a list of these
        A class is tried over its grid: ``grid=`` when given (for a single
        class), else the class's ``default_grid``; a grid is a dict
        ``{param: [values]}`` (every combination is tried) or a list of such
        dicts.  A model instance is fitted (in place) as it is configured:
        when it differs from the candidate before it only in
        ``scoring_params`` it takes that candidate's fit (sharing its
        read-only arrays) instead of fitting again, and is fitted all the
        same.  Every candidate is built and its parameters checked before
        the first fit.
    data : Interactions, DataFrame or Arrow table
        The training data; a frame is indexed once (``threshold``) and
        shared by every candidate.
    val : DataFrame or Arrow table
        The validation split.  Only it is evaluated: pass the test split to
        :func:`recmf.evaluate` once, for the chosen model, afterwards.
    metric : str
        The key of :func:`recmf.evaluate`'s report to maximise, e.g.
        ``"recall@10"`` or ``"ndcg@20"``; its k is the evaluation's k.
    threshold : float
        Positive threshold for ``data`` (when a frame) and relevance
        threshold on ``val`` (default: the configured one, 4).
    progress : bool
        Show a tqdm progress bar over the candidates.
    fit_val : bool
        Pass ``val`` to ``fit`` for models that take it (early stopping of
        NeuralMF/BPRMF, which watch that same validation split).
    **evaluate_kwargs
        Passed to :func:`recmf.evaluate` (``user_col``, ``item_col``,
        ``rating_col``, ``catalog``, ...).

    Returns
    -------
    best : fitted model
        The candidate with the highest ``metric`` on ``val`` (the first one
        on a tie, in candidate order): for a model instance, that instance
        itself.
    table : DataFrame
        One row per candidate in the order tried: ``model`` (class name),
        its grid's hyperparameters, or for a model instance those that
        differ from the class defaults (one column each; NaN where a row has
        no such parameter), every val metric, ``fit_seconds`` (0 for a candidate
        that shared the fit of the previous one: it differs only in
        ``scoring_params``, e.g. EASE's ``half_life``), ``best``.

    Notes
    -----
    Only the best model and the one being fitted are kept in memory (two
    ``n_items**2`` matrices for EASE).

    Examples
    --------
    >>> best, table = recmf.select(recmf.EASE, data, val)
    >>> best, table = recmf.select([recmf.Popularity(), (recmf.EASE, {"l2": [200, 500]})], data, val)
    >>> recmf.evaluate(best, test, k=10)   # test, once, for the chosen model
    """
    k = _parse_metric(metric)
    _check_evaluate_kwargs(evaluate_kwargs, metric)
    threshold = resolve(threshold, "threshold")
    for c in ("user_col", "item_col", "rating_col"):
        evaluate_kwargs[c] = resolve(evaluate_kwargs.get(c, _EVALUATE_PARAMS[c].default), c)
    cols = {c: evaluate_kwargs[c] for c in ("user_col", "item_col", "rating_col")}
    # Read once here, not once per candidate.
    val = check_frame(val, "val", cols)
    plan = _expand(candidates, grid)
    models = _build(plan)
    if isinstance(data, pd.DataFrame) or is_arrow_table(data):
        data = Interactions.from_frame(data, threshold=threshold, _name="data", **cols)
    elif not isinstance(data, Interactions):
        from ._tables import type_name
        raise TypeError(f"data must be a recmf.Interactions, a DataFrame or an Arrow table, "
                        f"got {type_name(data)}")
    evaluate_kwargs.setdefault("threshold", threshold)

    bar = make_progress(len(plan), "select", progress, unit="model")
    rows, best, best_value, last = [], None, -np.inf, None
    try:
        for (label, cls, params, given), model in zip(plan, models):
            shared = _shares_fit(last, model)
            t0 = time.perf_counter()
            if shared is not None:
                # an instance given to select is fitted in place, as documented
                model = _adopt_fit(given, shared) if given is not None else shared
            else:
                last = None  # at most two fitted models alive: the best and this one
                fit_kwargs = {"val": val} if fit_val and "val" in inspect.signature(model.fit).parameters \
                    else {}
                model.fit(data, **fit_kwargs)
            seconds = 0.0 if shared is not None else time.perf_counter() - t0
            report = evaluate(model, val, k=k, _name="val", **evaluate_kwargs)
            if metric not in report:
                raise ValueError(f"metric {metric!r} is not in evaluate's report {sorted(report)}")
            value = report[metric]
            rows.append({"model": label, **params, **report, "fit_seconds": seconds})
            if np.isfinite(value) and value > best_value:
                best, best_value = model, value
            last = model
            if bar is not None:
                bar.set_postfix({metric: f"{value:.4f}", "best": f"{best_value:.4f}"})
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if best is None:
        raise ValueError(f"no candidate gave a finite {metric} on val: "
                         f"{_why_no_metric(data, val, metric, evaluate_kwargs)}")
    table = pd.DataFrame(rows)
    values = table[metric].to_numpy(dtype=float)
    table["best"] = np.arange(len(table)) == int(np.flatnonzero(values == np.nanmax(values))[0])
    return best, table


def _check_evaluate_kwargs(evaluate_kwargs, metric):
    """select's own check of what it passes on to evaluate: unknown names
    fail here, naming the argument, before any fit or progress bar."""
    if "k" in evaluate_kwargs:
        raise ValueError(f"k={evaluate_kwargs['k']!r} conflicts with metric={metric!r}, which already "
                         "sets k (the number after '@'): drop k=")
    taken = {"model", "test", "k", "threshold"}   # select passes these itself
    allowed = [p for p in _EVALUATE_PARAMS if p not in taken and not p.startswith("_")]
    unknown = [name for name in evaluate_kwargs if name not in allowed]
    if unknown:
        raise TypeError(f"select() got an unexpected keyword argument {unknown[0]!r} (besides its own, "
                        f"it takes recmf.evaluate's {allowed})")


def _shares_fit(last, model):
    """A copy of the fitted ``last`` with ``model``'s scoring parameters,
    when the two differ only in the class's ``scoring_params``; else None."""
    if last is None or type(last) is not type(model) or not type(model).scoring_params:
        return None
    a, b = _comparable(last), _comparable(model)
    free = set(type(model).scoring_params)
    if any(not _same(a[p], b[p]) for p in a if p not in free):
        return None
    shared = copy.copy(last)  # shares the fitted arrays; they are never written after fit
    for p in free:
        setattr(shared, p, b[p])
    return shared


def _comparable(model):
    """Parameters with ``n_threads`` None (as given) and 0 (as fit
    normalises it) alike: both mean all cores."""
    params = model.get_params(deep=False)
    if "n_threads" in params and params["n_threads"] is None:
        params["n_threads"] = 0
    return params
