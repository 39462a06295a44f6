"""Shared fixtures: where the data lives, ML-1M loaded once per session by
recmf and by the plain pandas references, and a synthetic dataset so the
suite has something to run on machines without MovieLens.

Data folder: ``$RECMF_DATA`` if set, else ``<repo>/../shared/data``.
Tests that need MovieLens ask for the ``ml1m`` / ``ml1m_ref`` fixtures (or
carry ``@pytest.mark.ml1m``); both skip, with the path they looked at, when
the files are absent.  ``dataset`` is ML-1M when present, else synthetic.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:          # `import reference` from any test file
    sys.path.insert(0, str(TESTS))

import reference as ref  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run: a CI run must not pass
# or fail by luck.  A fuzz campaign (RECMF_FUZZ_EXAMPLES set, tests/test_fuzz.py)
# draws fresh ones.
settings.register_profile("recmf", derandomize="RECMF_FUZZ_EXAMPLES" not in os.environ, database=None)
settings.load_profile("recmf")

DATA = Path(os.environ.get("RECMF_DATA") or REPO.parent / "shared" / "data")
ML1M_DIR = DATA / "ml-1m"
ML100K_DIR = DATA / "ml-100k"
LATEST_DIR = DATA / "ml-latest-small"


def _has(folder: Path, *names) -> bool:
    return any((folder / n).is_file() for n in names)


HAVE_ML1M = _has(ML1M_DIR, "ratings.dat.gz", "ratings.dat") and _has(ML1M_DIR, "movies.dat")
HAVE_ML100K = _has(ML100K_DIR, "u.data")
HAVE_LATEST = _has(LATEST_DIR, "ratings.csv")

ML1M_REASON = f"MovieLens-1M not found in {ML1M_DIR} (set RECMF_DATA to the folder holding ml-1m/)"
ML100K_REASON = f"MovieLens-100K not found in {ML100K_DIR} (set RECMF_DATA)"
LATEST_REASON = f"ml-latest-small not found in {LATEST_DIR} (set RECMF_DATA)"

#: ``@needs_ml1m`` on a test: skip with a clear reason when ML-1M is absent.
needs_ml1m = pytest.mark.skipif(not HAVE_ML1M, reason=ML1M_REASON)
needs_ml100k = pytest.mark.skipif(not HAVE_ML100K, reason=ML100K_REASON)
needs_latest = pytest.mark.skipif(not HAVE_LATEST, reason=LATEST_REASON)


def pytest_collection_modifyitems(session, config, items):
    """The docs build runs last, so that its gallery can show the notebooks
    tests/test_notebooks.py executed in this session (tests/test_docs.py)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0].endswith("test_docs.py"))


def pytest_sessionfinish(session, exitstatus):
    """Remove the executed notebooks kept for the docs build (they hold
    figures of the data)."""
    import shutil
    import tempfile
    shutil.rmtree(Path(tempfile.gettempdir()) / f"recmf-executed-notebooks-{os.getpid()}",
                  ignore_errors=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "ml1m: needs MovieLens-1M (skipped when absent)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("ml1m") is not None and not HAVE_ML1M:
        pytest.skip(ML1M_REASON)


# ---------------------------------------------------------------------------
# Bundles
# ---------------------------------------------------------------------------

@dataclass
class Bundle:
    """One dataset run through recmf (``kind='recmf'``) or through the
    references (``kind='ref'``).  Frames are shared across tests: never
    modify them (tests that need to, copy first)."""
    name: str
    kind: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    users: pd.DataFrame | None = None
    data: object = None          # recmf.Interactions (recmf) / index_ref dict (ref)
    pop: object = None           # recmf.Popularity (recmf) / popularity_ref Series (ref)
    extra: dict = field(default_factory=dict)

    @property
    def catalog(self):
        return self.movies["movie_id"].unique()

    @property
    def test_users(self):
        return self.test["user_id"].unique()


def _recmf_bundle(name, ratings, users, movies):
    import recmf
    train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    data = recmf.Interactions.from_frame(train, threshold=4)
    pop = recmf.Popularity().fit(data)
    return Bundle(name, "recmf", ratings, movies, train, val, test, users=users, data=data, pop=pop)


def _ref_bundle(name, ratings, movies):
    train, val, test = ref.temporal_split_ref(ratings, n_val=1, n_test=5, min_train=5)
    return Bundle(name, "ref", ratings, movies, train, val, test,
                  data=ref.index_ref(train), pop=ref.popularity_ref(train))


def _read_ml1m_movies():
    return pd.read_csv(ML1M_DIR / "movies.dat", sep="::", engine="python", header=None,
                       encoding="latin-1", names=["movie_id", "title", "genres"])


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def data_dir():
    """The data folder (may not exist)."""
    return DATA


@pytest.fixture(scope="session")
def ml1m():
    """ML-1M through recmf: load_movielens, temporal_split(1, 5, 5),
    Interactions (threshold 4) and a fitted Popularity.  Skips when absent."""
    if not HAVE_ML1M:
        pytest.skip(ML1M_REASON)
    import recmf
    ratings, users, movies = recmf.load_movielens(ML1M_DIR)
    return _recmf_bundle("ml1m", ratings, users, movies)


@pytest.fixture(scope="session")
def ml1m_ref():
    """ML-1M through the plain pandas references (tests/reference.py): the
    python-engine read (~8-10 s, done once per session), the seed's split,
    index_ref and popularity_ref.  Skips when absent."""
    if not HAVE_ML1M:
        pytest.skip(ML1M_REASON)
    ratings = ref.ratings_sanity_ref(ML1M_DIR)
    return _ref_bundle("ml1m", ratings, _read_ml1m_movies())


@pytest.fixture(scope="session")
def synthetic_frames():
    """``recmf.datasets.synthetic_ratings()``: (ratings, users, movies)."""
    from recmf.datasets import synthetic_ratings
    return synthetic_ratings(n_users=300, n_items=400, seed=0)


@pytest.fixture(scope="session")
def synthetic(synthetic_frames):
    """The synthetic dataset through recmf (same steps as ``ml1m``)."""
    ratings, users, movies = synthetic_frames
    return _recmf_bundle("synthetic", ratings, users, movies)


@pytest.fixture(scope="session")
def synthetic_ref(synthetic_frames):
    """The synthetic dataset through the references."""
    ratings, _, movies = synthetic_frames
    return _ref_bundle("synthetic", ratings, movies)


@pytest.fixture(params=["ml1m", "synthetic"])
def both(request):
    """(recmf bundle, reference bundle) for ML-1M and for synthetic data:
    a test using it runs twice, and the ML-1M run skips when absent."""
    if request.param == "ml1m":
        return request.getfixturevalue("ml1m"), request.getfixturevalue("ml1m_ref")
    return request.getfixturevalue("synthetic"), request.getfixturevalue("synthetic_ref")


@pytest.fixture(params=["ml1m", "synthetic"])
def bundle(request):
    """The recmf bundle of ML-1M, then of synthetic data (no references
    loaded): a test using it runs twice, the ML-1M run skips when absent."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def dataset(request):
    """ML-1M (recmf bundle) when present, else the synthetic one: for tests
    that should run everywhere."""
    if HAVE_ML1M:
        return request.getfixturevalue("ml1m")
    return request.getfixturevalue("synthetic")


@pytest.fixture(scope="session")
def small_frames(synthetic_frames):
    """A small slice of the synthetic ratings (60 users), fast enough to
    call public functions hundreds of times."""
    ratings = synthetic_frames[0]
    return ratings[ratings["user_id"] <= 60].reset_index(drop=True)
