"""Saving and loading models as ``.npz`` (no pickle).

Layout: arrays ``theta`` (weights, when the model has any), the
Interactions (``indptr, indices, user_ids, item_ids, seen_indptr,
seen_indices``, ``positions``) and ``meta``: a JSON string with the format
version, the model kind, its hyperparameters, the id types, the training
history and the other fitted attributes (``best_epoch_``, ``interrupted_``,
...).  Floats are written with every digit (Python's ``json``), so a loaded
model equals the saved one in everything it exposes.  Files are read with
``allow_pickle=False``, so loading cannot run code, and a file whose parts
are well-formed but inconsistent with each other (a CSR that is not one,
ids out of order, positions that are not a ranking, parameters the class
refuses) is refused at load, never turned into a model that answers
wrongly.
"""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._checks import check_threads
from ._config import FROM_CONFIG
from ._registry import available_models

FORMAT_VERSION = 1
_MAGIC = "recmf-model"

__all__ = ["load", "save_model", "FORMAT_VERSION"]


def _ids_to_array(ids, name):
    """Id arrays for npz: int64 as is, strings as a unicode array (which
    loads back as the same strings: numeric-looking "007" and "" included)."""
    if ids.dtype == np.int64:
        return ids, "int64"
    if not all(isinstance(x, str) for x in ids):
        raise TypeError(f"only integer or string {name} ids can be saved")
    # NumPy's fixed-width strings drop trailing NUL characters: "a\0" would
    # load as "a" (another id, or a duplicate).  Refuse rather than corrupt.
    bad = [x for x in ids if x.endswith("\0")]
    if bad:
        raise ValueError(f"{name} id {bad[0]!r} ends with a NUL character, which the .npz format "
                         "cannot keep; pickle the model instead")
    return np.asarray(ids, dtype=str), "str"


#: how FROM_CONFIG (a parameter left to the config) is written in JSON
_FROM_CONFIG_JSON = {"recmf": "FROM_CONFIG"}


def _params_from_json(params):
    """Saved hyperparameters with FROM_CONFIG restored."""
    return {k: FROM_CONFIG if v == _FROM_CONFIG_JSON else v for k, v in params.items()}


def _columns_of(model, meta):
    """The data settings a loaded model was fitted with: saved since they
    were kept (``columns``), else its parameters (older files always held
    explicit names), resolved now."""
    saved = meta.get("columns")
    if saved is not None:
        keys = {"threshold", "user_col", "item_col", "rating_col", "time_col"}
        if not isinstance(saved, dict) or set(saved) != keys:
            raise ValueError(f"its columns must be a mapping of {sorted(keys)}, got {saved!r}")
        return dict(saved)
    return model._resolve_columns()


def _jsonable(value):
    if value is FROM_CONFIG:
        return dict(_FROM_CONFIG_JSON)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _frame_records(frame):
    """A frame as JSON records (Python floats: every digit, NaN as NaN) and
    its column dtypes, which the records alone would not bring back."""
    records = [{str(k): _jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return records, {str(c): str(t) for c, t in frame.dtypes.items()}


def _history_records(model):
    """The training history as JSON records and its column dtypes; (None,
    None) without one."""
    history = getattr(model, "history", None)
    if history is None:
        return None, None
    return _frame_records(history)


def _fitted_attributes(model):
    """What fit set besides the learned arrays (``_arrays``), the data and
    the components -- ``best_epoch_``, ``interrupted_``, ``adam_step_``, a
    Blend's ``chosen_weights_`` and ``selection_`` -- as ``{name: {"value":
    v} | {"tuple": [...]} | {"frame": records, "dtypes": {...}}}``.

    Raises
    ------
    TypeError
        An attribute of another type (a model that adds one must say how it
        is saved), rather than a file that silently forgets it.
    """
    out = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_") or name in ("data_", "models_", "columns_") or \
                isinstance(value, np.ndarray):
            continue
        if isinstance(value, pd.DataFrame):
            records, dtypes = _frame_records(value)
            out[name] = {"frame": records, "dtypes": dtypes}
        elif isinstance(value, tuple):
            out[name] = {"tuple": _jsonable(value)}
        elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
            out[name] = {"value": _jsonable(value)}
        else:
            raise TypeError(f"cannot save {type(model).__name__}.{name} (a {type(value).__name__}): "
                            "model files keep numbers, strings, tuples and frames")
    return out


def _set_fitted_attributes(model, fitted):
    """Set what :func:`_fitted_attributes` saved (ValueError if malformed)."""
    if not isinstance(fitted, dict):
        raise ValueError("its fitted attributes are not a mapping")
    for name, spec in fitted.items():
        if not (isinstance(name, str) and name.endswith("_") and not name.startswith("_")
                and name not in ("data_", "models_", "columns_") and isinstance(spec, dict)
                and spec.keys() in ({"value"}, {"tuple"}, {"frame", "dtypes"})):
            raise ValueError(f"its fitted attribute {name!r} is malformed")
        if "frame" in spec:
            value = _history_frame(spec["frame"], spec["dtypes"])
        elif "tuple" in spec:
            if not isinstance(spec["tuple"], list):
                raise ValueError(f"its fitted attribute {name!r} is malformed")
            value = tuple(spec["tuple"])
        else:
            value = spec["value"]
        setattr(model, name, value)


def _restore_fitted(model, meta):
    """The history and other fitted attributes of ``meta`` (a file's or a
    component's) on a model whose arrays are set."""
    if meta.get("history") is not None:
        model.history = _history_frame(meta["history"], meta.get("history_dtypes"))
    _set_fitted_attributes(model, meta.get("fitted", {}))
    model.columns_ = _columns_of(model, meta)


def component_meta(model):
    """What a model nested in another (a Blend's component) saves besides
    its arrays: kind, hyperparameters, history and fitted attributes, as
    JSON values."""
    history, dtypes = _history_records(model)
    return {"kind": model.kind, "params": {k: _jsonable(v) for k, v in model._saved_params().items()},
            "history": history, "history_dtypes": dtypes, "fitted": _fitted_attributes(model),
            "columns": model.columns_}


def component_from_meta(meta):
    """An unfitted model from :func:`component_meta`'s output (its parent's
    ``_set_arrays`` completes it with :func:`restore_component`)."""
    classes = available_models()
    if not isinstance(meta, dict) or meta.get("kind") not in classes:
        kind = meta.get("kind") if isinstance(meta, dict) else meta
        raise ValueError(f"unknown component model kind {kind!r}")
    return _construct(classes[meta["kind"]], meta.get("params"))


def restore_component(model, meta):
    """A component whose ``data_`` and arrays are set gets its history and
    fitted attributes from ``meta`` and becomes a fitted state."""
    _restore_fitted(model, meta)
    model._mark_fitted()


def _construct(cls, params):
    """An unfitted ``cls`` from saved parameters, checked as fit checks them
    (a file may hold values the constructor alone lets through)."""
    if not isinstance(params, dict):
        raise ValueError(f"its parameters are not a mapping: {params!r}")
    params = _params_from_json(params)
    if isinstance(params.get("betas"), list):
        params["betas"] = tuple(params["betas"])
    try:
        model = cls._from_saved_params(params)
        check_threads(getattr(model, "n_threads", None))   # checked, kept as saved
        model._check_params()
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"its parameters are refused by {cls.__name__}: {e}") from None
    return model


def save_model(model, path):
    """Write ``model`` to ``path`` (see the module docstring)."""
    from . import __version__
    model._check_fitted()
    data = model.data_
    arrays = dict(data._state())
    arrays["user_ids"], user_kind = _ids_to_array(data.user_ids, "user")
    arrays["item_ids"], item_kind = _ids_to_array(data.item_ids, "item")
    arrays.update(model._arrays())
    history, history_dtypes = _history_records(model)
    meta = {
        "magic": _MAGIC, "format_version": FORMAT_VERSION, "recmf_version": __version__,
        "kind": model.kind, "params": {k: _jsonable(v) for k, v in model._saved_params().items()},
        "user_id_type": user_kind, "item_id_type": item_kind, "history": history,
        "history_dtypes": history_dtypes, "fitted": _fitted_attributes(model),
        "n_duplicates": data.n_duplicates, "columns": model.columns_,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(path)
    # Write to a buffer first so a failure never leaves half a file behind.
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _history_frame(records, dtypes):
    """A frame from :func:`_frame_records` (or an older file's records)."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) or \
            not isinstance(dtypes, (dict, type(None))):
        raise ValueError("a saved frame (history, selection) is malformed")
    frame = pd.DataFrame(records)
    for col, dtype in (dtypes or {}).items():
        if col not in frame:
            continue
        if dtype == "object":
            # JSON has lists where Python had tuples (a Blend's weights)
            values = [tuple(v) if isinstance(v, list) else v for v in frame[col]]
            column = pd.Series(values, index=frame.index, dtype=object)
            frame[col] = column.where(column.notna(), np.nan)
        else:
            frame[col] = frame[col].astype(dtype)
    return frame


_INTERACTION_ARRAYS = ("indptr", "indices", "user_ids", "item_ids", "seen_indptr", "seen_indices")


def load(path: str | Path) -> Any:
    """Load a model saved with ``model.save(path)``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A file that is not a recmf model, is truncated or corrupt, was
        written by a newer recmf format, or whose parts are inconsistent
        with each other; the message names the file and the part.
    """
    from .data import Interactions
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as f:
        is_zip = f.read(2) == b"PK"       # a truncated archive still starts so: "not readable" below
    if not is_zip:
        # np.load would read it as pickle, .npy or text and advise allow_pickle
        raise ValueError(f"{path} is not a recmf model file (not an .npz archive; model files are "
                         "written by model.save() or `recmf run --save`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as e:
        why = "it holds pickled arrays, which recmf model files never do" if "allow_pickle" in str(e) \
            else str(e)
        raise ValueError(f"{path} is not a readable recmf model file ({why})") from None
    if "meta" not in arrays:
        raise ValueError(f"{path} is not a recmf model file (no metadata)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} has corrupt metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("magic") != _MAGIC:
        raise ValueError(f"{path} is not a recmf model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in model format {version}; this recmf reads format "
                         f"{FORMAT_VERSION} and older: upgrade recmf to load it")
    classes = available_models()
    if not isinstance(meta.get("kind"), str) or meta["kind"] not in classes:
        raise ValueError(f"{path} holds an unknown model kind {meta.get('kind')!r}")
    missing = [n for n in _INTERACTION_ARRAYS if n not in arrays]
    if missing:
        raise ValueError(f"{path} is missing arrays {missing}")
    try:
        for key in ("user_ids", "item_ids"):
            kind = meta.get(key[:-1] + "_type")
            a = arrays[key]
            if kind == "str" and a.dtype.kind == "U":
                arrays[key] = a.astype(object)
            elif kind == "int64" and a.dtype.kind in "iu":
                arrays[key] = a.astype(np.int64)
            else:
                raise ValueError(f"{key} hold {a.dtype} values but the metadata says {kind!r} ids")
        n_dup = meta.get("n_duplicates", 0)
        if isinstance(n_dup, bool) or not isinstance(n_dup, int) or n_dup < 0:
            raise ValueError(f"n_duplicates must be a count, got {n_dup!r}")
        model = _construct(classes[meta["kind"]], meta.get("params"))
        model.data_ = Interactions._from_state(arrays, n_duplicates=n_dup)
        model.data_._check_consistent()
        model._set_arrays(arrays)
        _restore_fitted(model, meta)
    except KeyError as e:
        raise ValueError(f"{path} is inconsistent: it lacks {e.args[0] if e.args else e!r}") from None
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{path} is inconsistent: {e}") from None
    model._mark_fitted()
    return model
