"""Saving and loading models as ``.npz`` (no pickle).

Layout: arrays ``theta`` (weights, when the model has any), the
Interactions (``indptr, indices, user_ids, item_ids, seen_indptr,
seen_indices``) and ``meta``: a JSON string with the format version, the
model kind, its hyperparameters, the id types and the training history.
Files are read with ``allow_pickle=False``, so loading cannot run code.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

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
        return dict(saved)
    return model._resolve_columns()


def _jsonable(value):
    if value is FROM_CONFIG:
        return dict(_FROM_CONFIG_JSON)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _history_records(model):
    """The training history as JSON records and its column dtypes (JSON
    has no NaN: it writes null, which loads as None, an object column,
    unless the dtypes come back too); (None, None) without one."""
    history = getattr(model, "history", None)
    if history is None:
        return None, None
    return (json.loads(history.to_json(orient="records")),
            {str(c): str(t) for c, t in history.dtypes.items()})


def component_meta(model):
    """What a model nested in another (a Blend's component) saves besides
    its arrays: kind, hyperparameters and history, as JSON values."""
    history, dtypes = _history_records(model)
    return {"kind": model.kind, "params": {k: _jsonable(v) for k, v in model._saved_params().items()},
            "history": history, "history_dtypes": dtypes, "columns": model.columns_}


def component_from_meta(meta):
    """An unfitted model from :func:`component_meta`'s output."""
    classes = available_models()
    if meta.get("kind") not in classes:
        raise ValueError(f"unknown component model kind {meta.get('kind')!r}")
    model = classes[meta["kind"]]._from_saved_params(_params_from_json(meta["params"]))
    model.columns_ = _columns_of(model, meta)
    if meta.get("history") is not None:
        model.history = _history_frame(meta["history"], meta.get("history_dtypes"))
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
        "history_dtypes": history_dtypes,
        "n_duplicates": data.n_duplicates, "columns": model.columns_,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(path)
    # Write to a buffer first so a failure never leaves half a file behind.
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _history_frame(records, dtypes):
    frame = pd.DataFrame(records)
    for col, dtype in (dtypes or {}).items():
        if col in frame:
            frame[col] = frame[col].astype(dtype) if dtype != "object" else \
                frame[col].where(frame[col].notna(), np.nan)
    return frame


def load(path):
    """Load a model saved with ``model.save(path)``.

    Raises ``ValueError`` for a file that is not a recmf model, is truncated
    or corrupt, or was written by a newer recmf format.
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
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        why = "it holds pickled arrays, which recmf model files never do" if "allow_pickle" in str(e) \
            else str(e)
        raise ValueError(f"{path} is not a readable recmf model file ({why})") from None
    if "meta" not in arrays:
        raise ValueError(f"{path} is not a recmf model file (no metadata)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} has corrupt metadata ({e})") from None
    if meta.get("magic") != _MAGIC:
        raise ValueError(f"{path} is not a recmf model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} was written in model format {version}; this recmf reads format "
                         f"{FORMAT_VERSION} and older: upgrade recmf to load it")
    classes = available_models()
    if meta.get("kind") not in classes:
        raise ValueError(f"{path} holds an unknown model kind {meta.get('kind')!r}")
    needed = ["indptr", "indices", "user_ids", "item_ids", "seen_indptr", "seen_indices"]
    missing = [n for n in needed if n not in arrays]
    if missing:
        raise ValueError(f"{path} is missing arrays {missing}")
    for key, kind in (("user_ids", meta["user_id_type"]), ("item_ids", meta["item_id_type"])):
        arrays[key] = arrays[key].astype(object) if kind == "str" else arrays[key].astype(np.int64)
    params = _params_from_json(meta["params"])
    if "betas" in params:
        params["betas"] = tuple(params["betas"])
    try:
        model = classes[meta["kind"]]._from_saved_params(params)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} has inconsistent parameters: {e}") from None
    model.columns_ = _columns_of(model, meta)
    try:
        model.data_ = Interactions._from_state(arrays, n_duplicates=meta.get("n_duplicates", 0))
        model._set_arrays(arrays)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path} is inconsistent: {e}") from None
    if meta.get("history") is not None:
        model.history = _history_frame(meta["history"], meta.get("history_dtypes"))
    return model
