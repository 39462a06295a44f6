"""Per-user temporal split (SPEC section 2)."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from . import _core
from ._checks import check_frame, id_column, native_frame, time_column
from ._config import FROM_CONFIG, resolve_columns
from ._tables import is_arrow_table, read_table, take_rows

__all__ = ["temporal_split"]


def _check_count(value, name):
    import numbers
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def temporal_split(ratings: Any, n_val: int = 1, n_test: int = 5, min_train: int = 5, *,
                   user_col: Hashable = FROM_CONFIG,
                   time_col: Hashable | None = FROM_CONFIG) -> tuple[Any, Any, Any]:
    """Split each user's history by time: the last ``n_test`` rows go to
    test, the ``n_val`` before them to validation, the rest to train.

    Rows are ordered per user by timestamp; rows with equal timestamps keep
    their input order (a stable sort by ``(user, time)``, exactly what
    ``ratings.sort_values([user_col, time_col])`` gives).  Users with fewer
    than ``min_train + n_val + n_test`` rows go to train entirely.

    Parameters
    ----------
    ratings : DataFrame or Arrow table
        One row per interaction; every column is carried through.  A pandas
        frame, or any table with the Arrow stream interface (``pyarrow.Table``,
        a Polars or DuckDB frame).
    n_val, n_test, min_train : int >= 0
    user_col, time_col : str
        Column names (default: the configured ones, ``user_id`` and
        ``timestamp``, see :func:`recmf.set_config`).  Times may be integers (e.g. Unix seconds, nullable
        ``Int64`` too), floats, datetimes of any unit (``datetime64[s/ms/us/ns]``,
        tz-aware, pyarrow timestamps and dates, object columns of
        ``datetime``/``Timestamp``) or timedeltas; rows are ordered exactly as
        pandas sorts that column, without converting to nanoseconds (dates such
        as 9999-12-31 keep their place).

    Raises
    ------
    ValueError
        A missing time (NaN, NaT, NA), naming the column and position.
    TypeError
        Times that are text, booleans, or a mix of tz-aware and naive datetimes.

    Returns
    -------
    train, val, test : DataFrame
        Rows of ``ratings`` (original index kept) in ``(user, time)`` order.
        The input is not modified.  The same kind of table as ``ratings``:
        pandas gives pandas, a Polars frame Polars frames, any other Arrow
        table ``pyarrow.Table`` objects.

    Examples
    --------
    >>> train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    """
    n_val = _check_count(n_val, "n_val")
    n_test = _check_count(n_test, "n_test")
    min_train = _check_count(min_train, "min_train")
    c = resolve_columns(user_col=user_col, time_col=time_col)
    user_col, time_col = c["user_col"], c["time_col"]
    if time_col is None:
        raise ValueError("temporal_split needs a time column: pass time_col= (the configured "
                         "time_col is None)")
    table = None
    if is_arrow_table(ratings):
        # Every column comes back, so the table is read whole, once (a
        # stream may be single-use); only user and time go to pandas.
        table = read_table(ratings)
    keys = check_frame(ratings if table is None else table, "ratings",
                       dict(user_col=user_col, time_col=time_col))
    users, is_int = id_column(keys, user_col, "ratings")
    if not is_int:
        # Sorted codes order users exactly as sorting the ids would.
        users = pd.factorize(users, sort=True)[0].astype(np.int64)
    times = time_column(keys, time_col, "ratings")
    order, part = _core.temporal_split(users, times, n_val, n_test, min_train)
    if table is not None:
        return tuple(take_rows(ratings, table, order[part == p]) for p in (0, 1, 2))
    ratings = native_frame(ratings)
    return tuple(ratings.take(order[part == p]) for p in (0, 1, 2))
