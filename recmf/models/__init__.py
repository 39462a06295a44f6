"""recmf models: Popularity, NeuralMF, BPRMF, ItemTransition, Blend."""
from .base import NotFittedError, Recommender
from .blend import Blend
from .bprmf import BPRMF
from .neuralmf import NeuralMF
from .popularity import Popularity
from .transition import ItemTransition

__all__ = ["Recommender", "NotFittedError", "Popularity", "NeuralMF", "BPRMF", "ItemTransition", "Blend"]
