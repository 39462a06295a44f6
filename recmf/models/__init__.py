"""recmf models: Popularity, NeuralMF, BPRMF."""
from .base import NotFittedError, Recommender
from .bprmf import BPRMF
from .neuralmf import NeuralMF
from .popularity import Popularity

__all__ = ["Recommender", "NotFittedError", "Popularity", "NeuralMF", "BPRMF"]
