"""recmf models: Popularity, NeuralMF, BPRMF, ALS."""
from .als import ALS
from .base import NotFittedError, Recommender
from .bprmf import BPRMF
from .neuralmf import NeuralMF
from .popularity import Popularity

__all__ = ["Recommender", "NotFittedError", "Popularity", "NeuralMF", "BPRMF", "ALS"]
