"""Process-wide settings of recmf (the shape of scikit-learn's config API):
the floating-point mode of the core, and the column names and positive
threshold every function and model uses by default."""
from __future__ import annotations

import contextlib
import math
import numbers
import threading
from collections.abc import Hashable

from . import _core

__all__ = ["FROM_CONFIG", "get_config", "set_config", "config_context", "resolve"]


class _FromConfig:
    """The type of :data:`FROM_CONFIG` (one instance)."""

    __slots__ = ()
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "FROM_CONFIG"

    def __reduce__(self):          # pickles (and deep-copies) as the one instance
        return "FROM_CONFIG"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


#: Default of every ``user_col``, ``item_col``, ``rating_col``, ``time_col``
#: and ``threshold`` argument: the value :func:`set_config` holds when the
#: call runs (a model reads it when ``fit`` runs and keeps what it used in
#: ``columns_``).
FROM_CONFIG = _FromConfig()

#: MovieLens' names: the settings a fresh process starts with.
_DATA_DEFAULTS = {"user_col": "user_id", "item_col": "movie_id", "rating_col": "rating",
                  "time_col": "timestamp", "threshold": 4}
_data = dict(_DATA_DEFAULTS)
_lock = threading.Lock()


class _Keep:
    __slots__ = ()

    def __repr__(self):
        return "<unchanged>"


_KEEP = _Keep()


def _passed(**settings):
    """The data settings actually passed (not left at ``_KEEP``)."""
    return {name: value for name, value in settings.items() if value is not _KEEP}


def resolve(value, name):
    """``value``, or the configured setting ``name`` when ``value`` is
    :data:`FROM_CONFIG`."""
    if value is FROM_CONFIG:
        return _data[name]
    return value


def resolve_columns(**given):
    """``{name: resolve(value, name)}`` for each keyword."""
    return {name: resolve(value, name) for name, value in given.items()}


def get_config() -> dict:
    """Return recmf's current process-wide settings.

    Returns
    -------
    dict
        ``exact_subnormals`` (bool), ``user_col``, ``item_col``,
        ``rating_col``, ``time_col`` and ``threshold`` -- see
        :func:`set_config`.

    See Also
    --------
    set_config, config_context
    """
    return {"exact_subnormals": bool(_core.exact_subnormals()), **_data}


def _check_setting(name, value):
    if name == "threshold":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"threshold must be a finite number, got {value!r}")
        return value
    if value is None:
        if name in ("user_col", "item_col"):
            raise ValueError(f"{name} must name a column, got None")
        return None
    if not isinstance(value, Hashable) or isinstance(value, bool):
        raise TypeError(f"{name} must be a column name (a string), got {type(value).__name__}")
    return value


def set_config(exact_subnormals: bool | None = None, *, user_col: Hashable = _KEEP,
               item_col: Hashable = _KEEP, rating_col: Hashable | None = _KEEP,
               time_col: Hashable | None = _KEEP, threshold: float = _KEEP) -> None:
    """Change recmf's process-wide settings; a setting not passed (or
    ``exact_subnormals=None``) stays as it is.

    Parameters
    ----------
    user_col, item_col : str
        The user and item id columns of every frame recmf reads (default
        ``"user_id"`` and ``"movie_id"``, MovieLens' names).
    rating_col : str or None
        The rating column (default ``"rating"``).  ``None``: implicit data,
        every row is a positive (and, in :func:`recmf.evaluate`, relevant).
    time_col : str or None
        The time column (default ``"timestamp"``); ``None``: no time order.
    threshold : float
        A row is a positive when its rating is at least this (default 4).

        Every function and model argument of these names defaults to
        :data:`FROM_CONFIG`, which reads the setting when the call runs;
        a model reads them when ``fit`` runs and keeps the values it used
        (``model.columns_``) for its later calls (``history=``,
        :meth:`~recmf.Recommender.recommend_frame`, saving).  An argument
        passed explicitly always wins.
    exact_subnormals : bool or None
        ``False`` (the default): recmf's own compute -- ``fit``, ``recommend``
        (so also ``evaluate``) and ``score``, on the calling thread, its
        OpenMP threads and OpenBLAS's jobs -- flushes subnormal floats to zero
        (x86 FTZ/DAZ, AArch64 FZ).  On Intel cores every operation on a
        subnormal costs ~100x a normal one, and NeuralMF's training produces
        them after a few epochs.  Each thread gets its own floating-point
        mode back when the call returns: your NumPy code keeps IEEE
        behaviour.  ``True`` keeps IEEE subnormals inside recmf too, for
        results bit for bit as an IEEE computation gives (slower on Intel).
        The setting applies to calls that start after it is made, from any
        thread.

    Raises
    ------
    TypeError
        If ``exact_subnormals`` is not a bool or None, or a column name is
        not hashable.
    ValueError
        A threshold that is not a finite number, or ``user_col``/``item_col``
        set to None.  Nothing is changed then.

    See Also
    --------
    get_config, config_context

    Examples
    --------
    A click log with ``user_id, item_id, ts`` and no ratings:

    >>> recmf.set_config(item_col="item_id", rating_col=None, time_col="ts")  # doctest: +SKIP
    """
    given = _passed(user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col,
                    threshold=threshold)
    checked = {name: _check_setting(name, value) for name, value in given.items()}
    if exact_subnormals is not None:
        if not isinstance(exact_subnormals, bool):
            raise TypeError(f"exact_subnormals must be a bool or None, got {type(exact_subnormals).__name__}")
        _core.exact_subnormals(exact_subnormals)
    with _lock:
        _data.update(checked)


@contextlib.contextmanager
def config_context(*, exact_subnormals=None, user_col=_KEEP, item_col=_KEEP, rating_col=_KEEP,
                   time_col=_KEEP, threshold=_KEEP):
    """Context manager: :func:`set_config` inside the block, the previous settings after it.

    Parameters
    ----------
    exact_subnormals, user_col, item_col, rating_col, time_col, threshold
        As in :func:`set_config`.

    Notes
    -----
    The settings are process-wide, not per thread: another thread's recmf
    calls that start inside the block see them too.

    Examples
    --------
    >>> import recmf
    >>> with recmf.config_context(exact_subnormals=True):
    ...     recmf.get_config()["exact_subnormals"]
    True
    """
    before = get_config()
    given = _passed(user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col,
                    threshold=threshold)
    set_config(exact_subnormals=exact_subnormals, **given)
    try:
        yield
    finally:
        set_config(**before)
