"""Input validation shared by every public function.

Each check raises a ``TypeError`` or ``ValueError`` whose message names the
argument (and column) at fault, so a user sees *what* to fix, not a C
traceback.  Nothing here modifies its input.
"""
from __future__ import annotations

import datetime as _dt
import math
import numbers
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ._tables import type_name

__all__ = [
    "check_frame", "id_column", "numeric_column", "time_column", "check_positive_int",
    "check_k", "check_seed", "check_threads", "as_id_array", "as_core_array", "native_frame",
    "check_same_kind", "check_number", "check_threshold", "available_bytes", "check_memory",
]

# Integers beyond 2^53 are not exactly representable as float64, so float ids
# are only accepted below that bound.
_FLOAT_EXACT = 2.0 ** 53


def check_frame(frame, name, columns, optional=(), allow_empty=False):
    """``frame`` as a DataFrame holding ``columns``, a dict {argument name:
    column name} of the caller (None: not needed), and rows unless
    ``allow_empty``; the error for a missing column names only these
    arguments.

    Returns the frame to use: a pandas frame as it is; a table with the
    Arrow stream interface (pyarrow, Polars, DuckDB, ...) read into pandas,
    only ``columns`` and those of ``optional`` it has (see
    :mod:`recmf._tables`).  A Dask frame is refused with a pointer to
    :mod:`recmf.dask`.
    """
    from ._tables import as_frame
    frame = as_frame(frame, name, columns.values(), optional)
    missing = [c for c in columns.values() if c is not None and c not in frame.columns]
    if missing:
        hint = "/".join(f"{arg}=" for arg, c in columns.items() if c is not None)
        raise ValueError(
            f"{name} is missing column(s) {missing}; it has {list(frame.columns)}. "
            f"Pass {hint} to name yours.")
    if len(frame) == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    return frame


def as_core_array(values, dtype):
    """``values`` as the C-contiguous, aligned, native-byte-order array of
    ``dtype`` that ``recmf._core`` takes.

    The one place the Python API converts memory layouts: unaligned views
    (unpickled pickle-5 buffers, joblib memmaps), strided and negatively
    strided views and big-endian arrays are copied once; an array that is
    already right (read-only ones too: the core never writes into its inputs)
    is returned as is.
    """
    a = np.asarray(values, dtype=dtype)
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = a.copy(order="C")
    return a


def native_frame(frame):
    """``frame`` with big-endian numpy columns turned native (pandas cannot
    take rows from those); ``frame`` itself when it has none."""
    swap = {c: t.newbyteorder("=") for c, t in frame.dtypes.items()
            if isinstance(t, np.dtype) and not t.isnative}
    return frame.astype(swap) if swap else frame


def _as_series(values, name):
    """A 1-D Series of ``values`` (Series, Index, array-like, or any other
    iterable: a set, dict keys, a generator, in iteration order) in native
    byte order.  A lone string or number is one value."""
    if values is None:
        raise TypeError(f"{name} must be ids (a list, array or Series), got None")
    if isinstance(values, pd.Index):
        values = pd.Series(values)
    elif not isinstance(values, pd.Series):
        if isinstance(values, (pd.DataFrame, dict)):
            raise TypeError(f"{name} must be one column of ids, got a {type_name(values)}; "
                            "pass one column (e.g. frame['user_id'])")
        if not isinstance(values, (str, bytes, np.ndarray, list, tuple)) and \
                not hasattr(values, "__array__") and isinstance(values, Iterable):
            # np.asarray would make one object holding the whole set or
            # generator: a single "id", and fewer rows than were asked for.
            values = list(values)
        arr = np.asarray(values)
        if arr.dtype.kind in "US" and not isinstance(values, np.ndarray):
            # NumPy's fixed-width strings drop trailing NULs ("a\0" -> "a")
            # and turn numbers among them into text: keep the objects given
            arr = np.asarray(values, dtype=object)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        values = pd.Series(arr, copy=False)
    if isinstance(values.dtype, np.dtype) and not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    return values


def _no_missing(series, name, what="missing values"):
    missing = series.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{name} has {what} (first at position {int(np.flatnonzero(missing)[0])})")


def as_id_array(values, name):
    """Ids as int64 when they are integers, else as an object array of
    strings/other hashables.  Returns ``(array, is_integer)``.

    Accepted: any integer dtype (signed or unsigned up to 2^63 - 1), pandas
    nullable integers without missing values, floats holding exact integers
    (below 2^53), and string/object/categorical ids without missing values;
    in any memory layout (see :func:`as_core_array`).
    """
    series = _as_series(values, name)
    _no_missing(series, name)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"{name} must hold integer or string ids, got booleans")
    if pd.api.types.is_integer_dtype(dtype):
        arr = series.to_numpy()
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has ids above 2^63 - 1, which recmf cannot index")
        return as_core_array(arr, np.int64), True
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
        if not PANDAS_HASHES_NUL:
            _no_nul_strings(arr, name)
        return arr, False
    raise TypeError(f"{name} must hold integer or string ids, got dtype {dtype}")


#: Whether pandas' hash tables (factorize, unique, Index lookups) tell apart
#: strings that differ only after a NUL character: before pandas 3.1 they
#: hash and compare a string only up to its first NUL, so "a\0b", "a\0c"
#: and "a" are one value (pandas issues 34551 and 53720).
PANDAS_HASHES_NUL = len(pd.unique(np.array(["", "\0"], dtype=object))) == 2


def _no_nul_strings(arr, name):
    """Refuse string ids with a NUL character where pandas would merge them
    with other ids (see PANDAS_HASHES_NUL) instead of silently merging users
    or items."""
    try:
        found = "\0" in "".join(arr)                 # one pass in C when all are str
    except TypeError:                                # other hashables among them
        found = any(isinstance(v, str) and "\0" in v for v in arr)
    if found:
        bad = next(v for v in arr if isinstance(v, str) and "\0" in v)
        raise ValueError(
            f"{name} holds an id with a NUL character ({bad!r}): pandas {pd.__version__} treats strings "
            "that differ only after a NUL as the same value, so distinct ids would be merged (fixed in "
            "pandas 3.1); remove the NUL characters or upgrade pandas")


def id_column(frame, col, frame_name):
    """Column ``col`` of ``frame`` as ids (see :func:`as_id_array`)."""
    return as_id_array(frame[col], f"{frame_name}[{col!r}]")


def numeric_column(frame, col, frame_name):
    """Column as float64 (nullable, pyarrow and categorical numbers too);
    NaN/inf and non-numbers raise."""
    name = f"{frame_name}[{col!r}]"
    s = _as_series(frame[col], name)
    if isinstance(s.dtype, pd.CategoricalDtype) and \
            pd.api.types.is_numeric_dtype(s.cat.categories.dtype):
        _no_missing(s, name, "a missing value")
        s = s.astype(s.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        raise TypeError(f"{name} must be numeric, got dtype {s.dtype}")
    arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has a missing or infinite value at position {pos}")
    return as_core_array(arr, np.float64)


def time_column(frame, col, frame_name):
    """Timestamps as int64 keys in chronological order.

    Sorting the keys orders the rows exactly as ``frame.sort_values(col,
    kind="stable")`` does (equal times stay equal), without converting to a
    unit that could overflow: integers are their own keys (unsigned beyond
    2^63 shifted); datetimes (numpy ``datetime64`` of any unit, tz-aware,
    pyarrow timestamps and dates, object columns of ``datetime``/``date``/
    ``Timestamp``) count their own unit since the epoch, in UTC when
    tz-aware; timedeltas likewise; floats are ranked; categoricals keep
    their categories' order (the order pandas sorts them in).

    Raises
    ------
    ValueError
        A missing value (NaN, NaT, NA), naming the column and position.
    TypeError
        Booleans, strings, or a mix of tz-aware and naive datetimes (or of
        numbers and datetimes), naming the column.
    """
    name = f"{frame_name}[{col!r}]"
    s = _as_series(frame[col], name)
    _no_missing(s, name, "missing timestamps")
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        # pandas sorts a categorical by its categories' order: the codes.
        return as_core_array(s.cat.codes.to_numpy(), np.int64)
    if pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"{name} must hold times (numbers or datetimes), got booleans")
    if pd.api.types.is_integer_dtype(dtype):
        arr = s.to_numpy()
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            # x - 2^63 keeps the order of the whole uint64 range.
            return (arr.astype(np.uint64) - np.uint64(2 ** 63)).view(np.int64)
        return as_core_array(arr, np.int64)
    if pd.api.types.is_float_dtype(dtype):
        # Ranks: fractions of a second stay apart, -0.0 and 0.0 tie, as in
        # pandas' sort.
        arr = s.to_numpy(dtype=np.float64)
        return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(-1)
    if dtype.kind in "mM":
        if _tz(dtype) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        arr = s.to_numpy()
        if arr.dtype.kind not in "mM":          # pyarrow dates come out as datetime.date
            arr = _datetime_objects(arr, name)
        return as_core_array(arr.view(np.int64), np.int64)
    if dtype == object:
        values = s.to_numpy()
        is_int = np.array([isinstance(v, numbers.Integral) and not isinstance(v, bool)
                           for v in values], dtype=bool)
        is_time = np.array([isinstance(v, (_dt.date, np.datetime64)) for v in values], dtype=bool)
        if not (is_int | is_time).all():
            bad = values[np.flatnonzero(~(is_int | is_time))[0]]
            raise TypeError(f"{name} must hold times (numbers or datetimes), found {bad!r} "
                            f"({type(bad).__name__}); convert it with pd.to_datetime first")
        if is_int.all():
            try:
                return np.asarray(values, dtype=np.int64)
            except OverflowError:
                raise ValueError(f"{name} has integer times outside the int64 range") from None
        if is_int.any():
            raise TypeError(f"{name} mixes numbers and datetimes: their order is undefined")
        return as_core_array(_datetime_objects(values, name).view(np.int64), np.int64)
    raise TypeError(f"{name} must hold times (numbers or datetimes), got dtype {dtype}; "
                    "convert text with pd.to_datetime first")


def _tz(dtype):
    """The time zone of a datetime dtype (numpy, pandas or pyarrow), or None."""
    tz = getattr(dtype, "tz", None)
    if tz is None and hasattr(dtype, "pyarrow_dtype"):
        tz = getattr(dtype.pyarrow_dtype, "tz", None)
    return tz


def _datetime_objects(values, name):
    """datetime64 of an array of datetimes/dates/Timestamps: UTC when they
    are tz-aware (all or none must be)."""
    aware = {getattr(v, "tzinfo", None) is not None for v in values}
    if len(aware) > 1:
        raise TypeError(f"{name} mixes tz-aware and naive datetimes: their order is undefined")
    try:
        out = pd.to_datetime(pd.Series(values, dtype=object), utc=aware == {True})
    except (ValueError, OverflowError) as e:   # OutOfBoundsDatetime is a ValueError
        # pandas 2 converts datetime objects to nanoseconds only, which end in
        # 2262: NumPy's microseconds reach year 9999 (no precision is lost:
        # such objects hold microseconds at most)
        try:
            if any(getattr(v, "nanosecond", 0) for v in values):
                raise ValueError("nanoseconds")
            return np.array([_naive_utc(v) for v in values], dtype="datetime64[us]")
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{name}: cannot convert its datetimes ({e})") from None
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out.to_numpy()


def _naive_utc(value):
    """A datetime/date as naive UTC (tz-aware ones converted)."""
    if getattr(value, "tzinfo", None) is not None:
        return value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value


def check_threshold(threshold):
    """A positive threshold: a finite real number (bools refused); None is
    "no threshold" only where a function says so (check it there)."""
    if threshold is None:
        raise ValueError("threshold must be a finite number, got None")
    return check_number(threshold, "threshold")


def check_positive_int(value, name, minimum=1):
    """``value`` must be an integer >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(value, name, low=None, high=None, *, low_open=False, high_open=False, none=False):
    """``value`` as a float: a real number (bools rejected), finite, in the
    range the bounds give (``low``/``high``, excluded when ``low_open`` /
    ``high_open``; None: unbounded).  With ``none=True``, None is allowed
    and returned.  The one check of "a finite number in a range" every
    hyperparameter and threshold goes through.

    Raises
    ------
    TypeError
        Not a number (a string, a bool, an array).
    ValueError
        NaN, an infinity, or outside the range; the message gives the range.
    """
    if value is None and none:
        return None
    alt = " or None" if none else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number{alt}, got {type(value).__name__} ({value!r})")
    x = float(value)
    above = low is None or (x > low if low_open else x >= low)
    below = high is None or (x < high if high_open else x <= high)
    if not (math.isfinite(x) and above and below):
        if low is not None and high is not None:
            span = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            span = f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            span = f" {'<' if high_open else '<='} {high:g}"
        else:
            span = ""
        raise ValueError(f"{name} must be a finite number{span}{alt}, got {value!r}")
    return x


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
    """n_threads: None/0 = all cores, else a positive integer.  The core
    runs at most max(256, cores) threads whatever the request (more only
    oversubscribes; a team of 100,000 overflowed OpenMP's stack)."""
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


def available_bytes():
    """Memory the system can give now (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(nbytes):
    return f"{nbytes / 2 ** 30:,.2f} GiB"


def check_memory(what, parts, hint):
    """Refuse, before allocating, work whose memory exceeds what the system
    has available: a ``MemoryError`` saying ``what`` needs how much, the
    ``parts`` (``[(label, bytes)]``, the biggest first: the argument that
    sized it) and ``hint`` -- rather than a crash, an out-of-memory kill or
    swapping once the pages are touched.  Sizes are Python integers, so a
    silly value cannot overflow."""
    total = sum(int(n) for _, n in parts)
    avail = available_bytes()
    if avail is None or total <= avail:
        return
    shown = ", ".join(f"{label}: {_gib(n)}" for label, n in sorted(parts, key=lambda p: -p[1]) if n)
    raise MemoryError(f"{what} needs {_gib(total)} ({shown}), but only {_gib(avail)} is available; {hint}")
