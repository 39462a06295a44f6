"""The model registry: ``kind -> class`` for every model recmf knows.

A :class:`~recmf.Recommender` subclass that sets ``kind`` registers itself
when its class statement runs (``Recommender.__init_subclass__``); saving and
loading, the CLI's ``--model`` choices and the shared test contract read
this table, so adding a model never means editing a list elsewhere.  This
module imports nothing from recmf, so any module may use it without an
import cycle.
"""
from __future__ import annotations

_MODELS: dict = {}

__all__ = ["available_models", "register"]


def register(cls):
    """Record ``cls`` under ``cls.kind``.

    Raises
    ------
    TypeError
        ``kind`` is not a non-empty string, or another class already holds
        it (re-running the same class statement, e.g. a module reload,
        replaces the entry).
    """
    kind = cls.kind
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__qualname__}.kind must be a non-empty string, got {kind!r}")
    other = _MODELS.get(kind)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"model kind {kind!r} of {cls.__module__}.{cls.__qualname__} is already "
                        f"registered by {other.__module__}.{other.__qualname__}")
    _MODELS[kind] = cls
    return cls


def available_models():
    """Every registered model.

    Returns
    -------
    dict
        ``{kind: class}`` in registration order, e.g. ``{"popularity":
        recmf.Popularity, "neuralmf": recmf.NeuralMF, "bprmf": recmf.BPRMF}``.
        A copy: changing it does not change the registry.
    """
    return dict(_MODELS)
