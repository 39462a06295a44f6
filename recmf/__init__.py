"""recmf: implicit-feedback recommenders with a C core.

The workflow of a MovieLens notebook -- per-user temporal split, CSR of
positives, negative sampling, NeuralMF and BPRMF training, batched top-K
scoring and ranking metrics -- with the heavy work in C::

    import recmf
    ratings, users, movies = recmf.load_movielens("path/to/ml-1m")
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4)
    pop = recmf.Popularity().fit(data)
    report = recmf.evaluate(pop, test, k=10, catalog=movies["movie_id"].unique())
"""
try:
    # The default build links OpenBLAS from the scipy-openblas32 wheel;
    # importing it loads the library (RTLD_GLOBAL) before our extension.
    import scipy_openblas32 as _scipy_openblas32  # noqa: F401
except ImportError:  # built against a system OpenBLAS
    pass

from ._runtime import bounded_spinning

with bounded_spinning():          # before libgomp loads with _core
    from . import _core
from . import datasets
from ._config import FROM_CONFIG, config_context, get_config, set_config
from ._core import SamplingError
from .data import Interactions
from .metrics import evaluate
from .models import BPRMF, NeuralMF, NotFittedError, Popularity, Recommender, available_models
from .movielens import download_movielens, find_movielens, load_movielens, read_ratings
from .persist import load
from .selection import select
from .split import temporal_split

__version__ = "0.1.0"

__all__ = [
    "Interactions", "Popularity", "NeuralMF", "BPRMF", "select", "load", "Recommender", "NotFittedError", "SamplingError",
    "evaluate", "temporal_split", "load_movielens", "read_ratings", "find_movielens",
    "download_movielens", "build_info", "get_config", "set_config", "config_context",
    "available_models", "FROM_CONFIG",
]

# Facts a run reports (sizes, fit times, threads, early stopping) go to the
# "recmf" logger; a library adds no handler of its own (logging.basicConfig
# or the application decides where they go).
import logging as _logging  # noqa: E402

_logging.getLogger("recmf").addHandler(_logging.NullHandler())

# Every registered model is recmf.<ClassName>, also one added without
# editing this file.
for _cls in available_models().values():
    globals().setdefault(_cls.__name__, _cls)
    if _cls.__name__ not in __all__:
        __all__.append(_cls.__name__)
del _cls


def build_info():
    """Facts about this build and process.

    Returns
    -------
    dict
        ``openmp``, ``blas_config``, ``blas_threads``, ``blas_on_openmp``
        (OpenBLAS's jobs run on recmf's OpenMP threads); ``flush_subnormals``
        (this CPU lets recmf flush subnormal floats in its compute, see
        :func:`set_config`); ``forked_child`` (this process was forked after
        recmf used its threads) and ``forked_one_thread`` (recmf's loops run
        on one thread here because the thread pool could not be released
        before the fork).
    """
    return _core.build_info()
