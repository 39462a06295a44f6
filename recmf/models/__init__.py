"""recmf models: Popularity, NeuralMF, BPRMF, EASE."""
from .base import NotFittedError, Recommender
from .bprmf import BPRMF
from .ease import EASE
from .neuralmf import NeuralMF
from .popularity import Popularity

__all__ = ["Recommender", "NotFittedError", "Popularity", "NeuralMF", "BPRMF", "EASE"]
