"""recmf models.  Each model is one module here whose class sets ``kind``;
importing the module registers it (see :func:`recmf.available_models`), and
every module of this package is imported below, so a new model needs no
edit here.  The three seed models come first: the registry keeps import
order, and the CLI lists models in it."""
import importlib
import pkgutil

from .._registry import available_models
from .base import EmbeddingModel, NotFittedError, Recommender
from .popularity import Popularity  # noqa: I001 - registry order
from .neuralmf import NeuralMF
from .bprmf import BPRMF

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Recommender", "EmbeddingModel", "NotFittedError", "available_models", "Popularity", "NeuralMF",
           "BPRMF"]
