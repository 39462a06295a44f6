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
import os as _os

from ._runtime import bounded_spinning


def _import_core():
    """Import recmf._core (its OpenBLAS and OpenMP runtime come with it, from
    recmf.libs/, loaded for recmf alone), or say why it cannot be."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    spin = bounded_spinning()
    try:
        with spin:                # before libgomp loads with _core
            from . import _core
    except ImportError as e:
        built = any(name.startswith("_core.") for name in _os.listdir(here))
        checkout = _os.path.isfile(_os.path.join(here, _os.pardir, "setup.py"))
        if not built and checkout:
            raise ImportError(
                f"Error importing recmf: you are importing it from its source tree ({_os.path.dirname(here)}), "
                "whose recmf/ folder has no compiled extension (recmf._core) and hides the installed "
                "recmf.\n\nRun Python from another directory, or build the extension in the source tree "
                "to work on recmf itself: `pip install -e .` (editable) or "
                "`python setup.py build_ext --inplace`.") from None
        if not built:
            raise ImportError(f"recmf's compiled extension (recmf._core) is missing from {here}: "
                              "reinstall recmf (`pip install --force-reinstall recmf`).") from e
        raise ImportError(f"recmf's compiled extension in {here} could not be loaded ({e}); "
                          "it may have been built for another Python or NumPy: reinstall recmf, "
                          "or rebuild it (`pip install -e .` in a checkout).") from e
    spin.loaded(_core.build_info()["openmp_library"])
    return _core


_core = _import_core()
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

__version__ = "0.2.0.dev0"

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
        before the fork); ``blas_library`` and ``openmp_library``: the
        files of the OpenBLAS and OpenMP runtime this process runs recmf on
        (``None`` without OpenMP).  A wheel's are its own copies in
        ``recmf.libs/``; a ``RECMF_BLAS=system`` build's are the system's.
    """
    info = _core.build_info()
    for key in ("blas_library", "openmp_library"):
        if info[key]:
            info[key] = _os.path.realpath(info[key])
    return info
