"""Tables in: pandas frames as they are, anything with the Arrow PyCapsule
stream (``__arrow_c_stream__``: pyarrow Tables, Polars and DuckDB frames, ...)
read column by column into pandas, only the columns a call needs.

The Arrow stream is read batch by batch and each batch is cut to the needed
columns before anything is kept, so a wide table costs only its used columns.
Numeric and time columns reach NumPy without a detour through Python objects
(``pyarrow.Table.to_pandas``); string ids become the object arrays recmf keeps
string ids in, as they would from a pandas frame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["is_arrow_table", "type_name", "as_frame", "read_table", "take_rows"]


def type_name(obj):
    """``polars.DataFrame``, ``pyarrow.Table``, ``dask.dataframe.DataFrame``:
    the class with its top-level package, so two ``DataFrame`` classes are
    never confused in a message."""
    cls = type(obj)
    package = cls.__module__.split(".")[0]
    if package == "dask":
        package = "dask.dataframe"
    return cls.__name__ if package == "builtins" else f"{package}.{cls.__name__}"


def _is_dask(obj):
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")


def is_arrow_table(obj):
    """True for a non-pandas table that exports the Arrow C stream."""
    return not isinstance(obj, pd.DataFrame) and hasattr(type(obj), "__arrow_c_stream__")


def _refuse(obj, name):
    if _is_dask(obj):
        raise TypeError(
            f"{name} is a {type_name(obj)}: recmf's functions take tables held in memory. For a Dask "
            "frame use recmf.dask (recmf.dask.temporal_split, recmf.Interactions.from_dask, "
            "recmf.dask.evaluate, recmf.dask.recommend), or .compute() it first")
    raise TypeError(f"{name} must be a pandas DataFrame or a table with the Arrow stream interface "
                    f"(pyarrow.Table, polars.DataFrame, a DuckDB relation, ...), got {type_name(obj)}")


def _pyarrow(obj):
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow comes with the test and dask extras
        raise ImportError(f"reading a {type_name(obj)} needs pyarrow: pip install pyarrow") from None
    return pyarrow


def read_table(obj, columns=None):
    """A ``pyarrow.Table`` of ``obj`` (an Arrow stream producer), holding
    only ``columns`` (names, in that order, all present) when given."""
    pa = _pyarrow(obj)
    if isinstance(obj, pa.Table):
        return obj if columns is None else obj.select(list(columns))
    reader = pa.RecordBatchReader.from_stream(obj)
    if columns is None:
        return reader.read_all()
    schema = pa.schema([reader.schema.field(c) for c in columns])
    batches = [pa.RecordBatch.from_arrays([b.column(c) for c in columns], schema=schema)
               for b in reader]
    return pa.Table.from_batches(batches, schema=schema)


def _schema_names(obj):
    pa = _pyarrow(obj)
    if isinstance(obj, pa.Table):
        return list(obj.column_names)
    schema = getattr(obj, "schema", None)
    # Polars and pyarrow expose their column names cheaply; otherwise the
    # stream's schema is asked for (without reading any batch).
    names = getattr(obj, "columns", None)
    if isinstance(names, (list, tuple)) and all(isinstance(c, str) for c in names):
        return list(names)
    if isinstance(schema, pa.Schema):
        return list(schema.names)
    return list(pa.RecordBatchReader.from_stream(obj).schema.names)


def as_frame(obj, name, needed, optional=()):
    """``obj`` as a pandas DataFrame for a function that reads the columns
    ``needed`` (and those of ``optional`` that exist).

    A pandas frame is returned as it is.  An Arrow stream producer becomes a
    pandas frame of just those columns.  A Dask frame, or anything else,
    raises ``TypeError`` naming its full type and what to do.  A missing
    ``needed`` column is left for the caller's own check (it names the
    arguments to pass), so the frame returned then lacks it.
    """
    if isinstance(obj, pd.DataFrame):
        return obj
    if not is_arrow_table(obj):
        _refuse(obj, name)
    have = _schema_names(obj)
    wanted = [c for c in dict.fromkeys([*needed, *optional]) if c is not None and c in have]
    if not wanted and have:
        # Nothing asked for is there: an empty frame with the table's column
        # names lets the caller's check list them.
        return pd.DataFrame(columns=have)
    return read_table(obj, wanted).to_pandas()


def take_rows(obj, table, rows):
    """Rows ``rows`` (int64 positions) of an Arrow table input, as the
    caller's own kind of table: a Polars frame stays Polars, anything else
    becomes a ``pyarrow.Table`` (``table`` is ``obj`` read whole)."""
    pa = _pyarrow(obj)
    rows = np.asarray(rows, dtype=np.int64)
    if type(obj).__module__.split(".")[0] == "polars":
        return obj[rows]
    try:
        return table.take(pa.array(rows))
    except pa.ArrowNotImplementedError:
        # Types without a take kernel (e.g. string_view): cast those columns.
        fixed = table.cast(pa.schema([
            f.with_type(pa.large_string()) if pa.types.is_string_view(f.type) else
            f.with_type(pa.large_binary()) if pa.types.is_binary_view(f.type) else f
            for f in table.schema]))
        return fixed.take(pa.array(rows))
