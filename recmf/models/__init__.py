"""recmf models.  Each model is one module here whose class sets ``kind``;
importing the module registers it (see :func:`recmf.available_models`).
The import order below is the registry's order (the CLI lists models so)."""
from .._registry import available_models
from .base import EmbeddingModel, NotFittedError, Recommender
from .popularity import Popularity  # noqa: I001 - registry order
from .neuralmf import NeuralMF
from .bprmf import BPRMF

__all__ = ["Recommender", "EmbeddingModel", "NotFittedError", "available_models", "Popularity", "NeuralMF",
           "BPRMF"]
