"""Input validation shared by every public function.

Each check raises a ``TypeError`` or ``ValueError`` whose message names the
argument (and column) at fault, so a user sees *what* to fix, not a C
traceback.  Nothing here modifies its input.
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = [
    "check_frame", "id_column", "numeric_column", "time_column", "check_positive_int",
    "check_k", "check_seed", "check_threads", "as_id_array", "check_same_kind",
]

# Integers beyond 2^53 are not exactly representable as float64, so float ids
# are only accepted below that bound.
_FLOAT_EXACT = 2.0 ** 53


def check_frame(frame, name, columns):
    """``frame`` must be a non-empty DataFrame holding ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; it has {list(frame.columns)}. "
            "Pass user_col=/item_col=/rating_col=/time_col= to name yours.")
    if len(frame) == 0:
        raise ValueError(f"{name} is empty")
    return frame


def as_id_array(values, name):
    """Ids as int64 when they are integers, else as an object array of
    strings/other hashables.  Returns ``(array, is_integer)``.

    Accepted: any integer dtype (signed or unsigned up to 2^63 - 1), pandas
    nullable integers without missing values, floats holding exact integers
    (below 2^53), and string/object/categorical ids without missing values.
    """
    if isinstance(values, (pd.Series, pd.Index)):
        series = pd.Series(values) if isinstance(values, pd.Index) else values
    else:
        arr = np.asarray(values)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        series = pd.Series(arr)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    if series.isna().any():
        bad = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise ValueError(f"{name} has missing values (first at position {bad})")
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"{name} must hold integer or string ids, got booleans")
    if pd.api.types.is_integer_dtype(dtype):
        arr = series.to_numpy()
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has ids above 2^63 - 1, which recmf cannot index")
        return np.ascontiguousarray(arr, dtype=np.int64), True
    if pd.api.types.is_float_dtype(dtype):
        arr = series.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr) | (np.floor(arr) != arr) | (np.abs(arr) >= _FLOAT_EXACT)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} must hold integer ids; position {pos} holds {arr[pos]!r}")
        return arr.astype(np.int64), True
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        arr = series.to_numpy(dtype=object)
        kinds = set(map(type, arr))  # every value: a float after row 1000 is still a mix
        if any(issubclass(t, (float, np.floating)) for t in kinds):
            raise TypeError(f"{name} mixes numbers and other values; use one id type")
        if any(issubclass(t, numbers.Integral) and not issubclass(t, bool) for t in kinds) and \
                all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr):
            try:
                return np.asarray(arr, dtype=np.int64), True
            except OverflowError:
                raise ValueError(f"{name} has ids outside the int64 range") from None
        return arr, False
    raise TypeError(f"{name} must hold integer or string ids, got dtype {dtype}")


def id_column(frame, col, frame_name):
    """Column ``col`` of ``frame`` as ids (see :func:`as_id_array`)."""
    return as_id_array(frame[col], f"{frame_name}[{col!r}]")


def numeric_column(frame, col, frame_name):
    """Column as float64; NaN/inf and non-numbers raise."""
    s = frame[col]
    name = f"{frame_name}[{col!r}]"
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        raise TypeError(f"{name} must be numeric, got dtype {s.dtype}")
    arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has a missing or infinite value at position {pos}")
    return arr


def time_column(frame, col, frame_name):
    """Timestamps as int64: integers (e.g. Unix seconds) or datetimes."""
    s = frame[col]
    name = f"{frame_name}[{col!r}]"
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if s.isna().any():
            raise ValueError(f"{name} has missing timestamps (NaT)")
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    arr, is_int = as_id_array(s, name)
    if not is_int:
        raise TypeError(f"{name} must hold integer or datetime timestamps, got dtype {s.dtype}")
    return arr


def check_positive_int(value, name, minimum=1):
    """``value`` must be an integer >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_k(k, n_items):
    """k must be >= 1 and at most the number of items a model knows."""
    k = check_positive_int(k, "k")
    if k > n_items:
        raise ValueError(f"k={k} is larger than the catalogue the model knows ({n_items} items)")
    return k


def check_seed(seed):
    """Seeds are non-negative integers below 2^64."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"seed must be in [0, 2^64), got {seed}")
    return int(seed)


def check_threads(n_threads):
    """n_threads: None/0 = all cores, else a positive integer."""
    if n_threads is None:
        return 0
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be an integer or None, got {type(n_threads).__name__}")
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0 (0 = all cores), got {n_threads}")
    return int(n_threads)


_ID_KIND = {True: "integer", False: "non-integer (e.g. string)"}


def check_same_kind(is_int, name, want_int, want_name):
    """Integer and string ids never match each other (7 is not "007"): a
    mix is a type changed at a boundary (a file read with ``dtype=str``, a
    command line), so it raises instead of finding nothing.  ``None`` for
    either kind: nothing to compare."""
    if is_int is None or want_int is None or bool(is_int) == bool(want_int):
        return
    raise TypeError(f"{name} are {_ID_KIND[bool(is_int)]} ids but {want_name} are "
                    f"{_ID_KIND[bool(want_int)]} ids: ids keep the type the model was trained with; "
                    "convert one side (e.g. .astype(str))")
