"""The data core against the plain NumPy/pandas references (tests/reference.py)
and SPEC's recorded figures: loading, temporal split, index/CSR, popularity,
metrics, negative sampling, top-K, and ids of every shape.

Tests taking ``both`` or ``bundle`` run on ML-1M (skipped when absent) and on
recmf.datasets.synthetic_ratings, so the suite checks something everywhere.
"""
from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import _core

import reference as ref
from conftest import (HAVE_LATEST, HAVE_ML1M, LATEST_DIR, ML100K_DIR, ML1M_DIR, needs_latest,
                      needs_ml100k)

METRICS = ("recall@{k}", "ndcg@{k}", "mrr@{k}", "hitrate@{k}", "coverage@{k}",
           "avg_popularity@{k}")


def assert_reports_equal(got, want, k=10, tol=1e-12):
    assert got["n_users_eval"] == want["n_users_eval"]
    for name in METRICS:
        key = name.format(k=k)
        a, b = got[key], want[key]
        if isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), (key, a, b)
        else:
            assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), (key, a, b)


def rows_as_lists(ids, lens=None):
    """(n, k) padded recommendation array -> list of lists without padding."""
    out = []
    for r, row in enumerate(np.asarray(ids)):
        n = len(row) if lens is None else lens[r]
        out.append([x for x in row[:n].tolist() if x != -1 and x is not None])
    return out


def dense_mask(data):
    """Boolean n_users x n_items matrix of the positives of an Interactions."""
    m = np.zeros((data.n_users, data.n_items), dtype=bool)
    rows = np.repeat(np.arange(data.n_users), np.diff(data.indptr))
    m[rows, data.indices] = True
    return m


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def _assert_int64_ids(frame):
    for col in ("user_id", "movie_id", "timestamp"):
        assert frame[col].dtype == np.int64, (col, frame[col].dtype)


def test_load_ml1m_equals_pandas(ml1m, ml1m_ref):
    r = ml1m.ratings
    assert list(r.columns) == ref.RATING_COLUMNS
    _assert_int64_ids(r)
    assert r["rating"].dtype == np.int64          # whole stars stay integers
    pd.testing.assert_frame_equal(r, ml1m_ref.ratings)
    assert len(r) == 1_000_209
    pd.testing.assert_frame_equal(ml1m.movies, ml1m_ref.movies)
    assert len(ml1m.movies) == 3_883
    assert len(ml1m.users) == 6_040 and ml1m.users["user_id"].is_unique
    users_ref = pd.read_csv(ML1M_DIR / "users.dat", sep="::", engine="python", header=None,
                            encoding="latin-1", names=["user_id", "gender", "age", "occupation", "zip"])
    pd.testing.assert_frame_equal(ml1m.users, users_ref)
    # Latin-1 titles decoded, not mangled
    assert ml1m.movies["title"].str.contains("\u00e9").any()


@needs_ml100k
def test_load_ml100k_equals_pandas():
    r, users, movies = recmf.load_movielens(ML100K_DIR)
    expect = ref.read_ml100k_ref(ML100K_DIR)
    _assert_int64_ids(r)
    pd.testing.assert_frame_equal(r, expect)
    assert (len(users), len(movies)) == (943, 1_682)
    assert movies["movie_id"].dtype == np.int64


@needs_latest
def test_load_latest_small_equals_pandas():
    r, users, movies = recmf.load_movielens(LATEST_DIR)
    expect = ref.read_latest_small_ref(LATEST_DIR)
    _assert_int64_ids(r)
    assert r["rating"].dtype == np.float64
    assert set(np.unique(r["rating"])) == set(np.arange(1, 11) / 2)   # half stars
    pd.testing.assert_frame_equal(r, expect)
    assert len(movies) == 9_742 and movies["movie_id"].dtype == np.int64
    assert len(users) == 610


def _text_samples():
    """(name, bytes, separator, has_header) of small ratings files: slices of
    the real files when present, and always synthetic ones."""
    out = []
    if HAVE_LATEST:   # CRLF and half stars, as GroupLens ships it
        lines = (LATEST_DIR / "ratings.csv").read_bytes().split(b"\r\n")[:3001]
        out.append(("latest-head", b"\r\n".join(lines) + b"\r\n", ",", True))
    if HAVE_ML1M:
        with gzip.open(ML1M_DIR / "ratings.dat.gz", "rb") as f:
            lines = f.read(200_000).split(b"\n")[:2000]
        out.append(("ml1m-head", b"\n".join(lines) + b"\n", "::", False))
    rng = np.random.default_rng(7)
    n = 500
    df = pd.DataFrame({"user_id": rng.integers(-5, 10**12, n), "movie_id": rng.integers(0, 3000, n),
                       "rating": rng.integers(1, 11, n) / 2, "timestamp": rng.integers(0, 2**40, n)})
    body = [f"{a},{b},{c},{d}" for a, b, c, d in df.itertuples(index=False)]
    out.append(("synthetic-csv-crlf", ("userId,movieId,rating,timestamp\r\n" + "\r\n".join(body))
                .encode(), ",", True))   # no final line end
    body = [f"{a}::{b}::{int(c * 2)}::{d}" for a, b, c, d in df.itertuples(index=False)]
    out.append(("synthetic-dat-lf", ("\n".join(body) + "\n").encode(), "::", False))
    out.append(("synthetic-dat-crlf", ("\r\n".join(body) + "\r\n").encode(), "::", False))
    body = [f"{a}\t{b}\t{int(c * 2)}\t{d}" for a, b, c, d in df.itertuples(index=False)]
    out.append(("synthetic-tab", ("\n".join(body) + "\n").encode(), "\t", False))
    return out


_SAMPLES = _text_samples()


@pytest.mark.parametrize("name,raw,sep,header", _SAMPLES, ids=[s[0] for s in _SAMPLES])
def test_read_ratings_plain_gz_crlf(tmp_path, name, raw, sep, header):
    """A plain and a gzip copy of the same file parse the same, equal to
    pandas; CRLF line ends give the same frame as LF."""
    plain = tmp_path / "r.txt"
    plain.write_bytes(raw)
    gz = tmp_path / "r.txt.gz"
    with gzip.open(gz, "wb") as f:
        f.write(raw)
    lf = tmp_path / "r_lf.txt"
    lf.write_bytes(raw.replace(b"\r\n", b"\n"))

    got = recmf.read_ratings(plain)
    pd.testing.assert_frame_equal(recmf.read_ratings(gz), got)
    pd.testing.assert_frame_equal(recmf.read_ratings(lf), got)
    # separator and header given explicitly: same again
    pd.testing.assert_frame_equal(recmf.read_ratings(plain, sep=sep, header=header), got)

    expect = pd.read_csv(lf, sep=sep, engine="python", header=0 if header else None)
    expect.columns = ref.RATING_COLUMNS
    _assert_int64_ids(got)
    if expect["rating"].dtype != np.int64:
        expect["rating"] = expect["rating"].astype(np.float64)
    pd.testing.assert_frame_equal(got, expect)


def test_load_movielens_layouts(tmp_path, synthetic_frames):
    """The three folder layouts load the same data: ML-1M (gz ratings,
    Latin-1 movies), ML-100K (tab) and ml-latest (CRLF csv, half stars)."""
    ratings, users, movies = synthetic_frames
    ratings = ratings.iloc[:3000].reset_index(drop=True)
    movies = movies.assign(title=movies["title"] + " (Am\u00e9lie)", genres="Drama|Comedy")
    # quotes and commas in titles are data, not CSV syntax (as in ML-1M)
    movies.loc[movies.index[:2], "title"] = ['Say "Anything" (1989)', '"Night, Mother (1986)']

    d = tmp_path / "ml-1m"
    d.mkdir()
    text = "".join(f"{a}::{b}::{c}::{t}\n" for a, b, c, t in ratings.itertuples(index=False))
    with gzip.open(d / "ratings.dat.gz", "wt") as f:
        f.write(text)
    (d / "movies.dat").write_bytes("".join(f"{m}::{t}::{g}\n" for m, t, g in movies[["movie_id", "title", "genres"]]
                                           .itertuples(index=False)).encode("latin-1"))
    (d / "users.dat").write_text("".join(f"{u}::F::25::3::55455\n" for u in users["user_id"]))
    r1, u1, m1 = recmf.load_movielens(d)
    pd.testing.assert_frame_equal(r1, ratings)
    assert m1["title"].tolist() == movies["title"].tolist()
    assert m1["movie_id"].tolist() == movies["movie_id"].tolist()
    assert u1["user_id"].tolist() == users["user_id"].tolist()

    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text("".join(f"{a}\t{b}\t{c}\t{t}\n" for a, b, c, t in ratings.itertuples(index=False)))
    r2, u2, m2 = recmf.load_movielens(d)
    pd.testing.assert_frame_equal(r2, ratings)
    # no users/items files: the ids seen in the ratings
    assert u2["user_id"].tolist() == sorted(ratings["user_id"].unique())
    assert m2["movie_id"].tolist() == sorted(ratings["movie_id"].unique())

    d = tmp_path / "ml-latest-small"
    d.mkdir()
    half = ratings.assign(rating=ratings["rating"] - 0.5)
    (d / "ratings.csv").write_bytes(("userId,movieId,rating,timestamp\r\n" + "".join(
        f"{a},{b},{c},{t}\r\n" for a, b, c, t in half.itertuples(index=False))).encode())
    r3, _, _ = recmf.load_movielens(d)
    assert r3["rating"].dtype == np.float64
    pd.testing.assert_frame_equal(r3, half)


# ---------------------------------------------------------------------------
# Temporal split
# ---------------------------------------------------------------------------

def test_split_equals_reference(both):
    got, want = both
    # same input frame on both sides (the loader test proves they are equal)
    for g, w in zip(recmf.temporal_split(want.ratings, n_val=1, n_test=5, min_train=5),
                    (want.train, want.val, want.test)):
        pd.testing.assert_frame_equal(g, w)
    for g, w in zip((got.train, got.val, got.test), (want.train, want.val, want.test)):
        pd.testing.assert_frame_equal(g, w)


def test_split_ml1m_figures(ml1m):
    assert (len(ml1m.train), len(ml1m.val), len(ml1m.test)) == (963_969, 6_040, 30_200)
    assert ml1m.val["user_id"].nunique() == 6_040
    assert ml1m.test["user_id"].nunique() == 6_040
    # SPEC 2: the ties the stable order must keep
    assert int(ml1m.ratings.duplicated(["user_id", "timestamp"]).sum()) == 529_046


def test_split_other_parameters_and_columns(synthetic_frames):
    """Other (n_val, n_test, min_train), renamed columns and datetime
    timestamps give the reference split too."""
    ratings = synthetic_frames[0]
    renamed = ratings.rename(columns={"user_id": "uid", "movie_id": "iid", "timestamp": "ts"})
    renamed["ts"] = pd.to_datetime(renamed["ts"], unit="s")
    for n_val, n_test, min_train in [(0, 1, 0), (2, 3, 40), (3, 0, 1), (0, 0, 0)]:
        got = recmf.temporal_split(renamed, n_val=n_val, n_test=n_test, min_train=min_train,
                                   user_col="uid", time_col="ts")
        want = ref.temporal_split_ref(renamed, n_val, n_test, min_train, user_col="uid",
                                      time_col="ts", item_col="iid")
        for g, w in zip(got, want):
            pd.testing.assert_frame_equal(g, w)


# ---------------------------------------------------------------------------
# Interactions: index and CSR
# ---------------------------------------------------------------------------

def test_interactions_equal_index_ref(both):
    got, want = both
    data, ix = got.data, want.data
    assert (data.n_users, data.n_items, data.nnz) == (ix["n_users"], ix["n_items"], ix["nnz"])
    assert data.indptr.dtype == np.int64 and data.indices.dtype == np.int32
    np.testing.assert_array_equal(data.indptr, ix["indptr"])
    np.testing.assert_array_equal(data.indices, ix["indices"])
    assert data.user_ids.dtype == np.int64 and data.item_ids.dtype == np.int64
    np.testing.assert_array_equal(data.user_ids, ix["user_ids"])
    np.testing.assert_array_equal(data.item_ids, ix["item_ids"])
    assert data.n_duplicates == 0


def test_interactions_ml1m_figures(ml1m):
    assert (ml1m.data.n_users, ml1m.data.n_items, ml1m.data.nnz) == (6_038, 3_525, 554_070)
    assert ml1m.data.shape == (6_038, 3_525)


def test_to_scipy_equals_scipy(both):
    sp = pytest.importorskip("scipy.sparse")
    got, want = both
    data = got.data
    pos = want.train[want.train["rating"] >= 4]
    rows = np.searchsorted(want.data["user_ids"], pos["user_id"].to_numpy())
    cols = np.searchsorted(want.data["item_ids"], pos["movie_id"].to_numpy())
    expect = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                           shape=(want.data["n_users"], want.data["n_items"]))
    expect.sum_duplicates()
    expect.sort_indices()
    m = data.to_scipy()
    assert m.shape == expect.shape and m.dtype == np.float32
    assert m.has_sorted_indices
    np.testing.assert_array_equal(m.indptr, expect.indptr)
    np.testing.assert_array_equal(m.indices, expect.indices)
    np.testing.assert_array_equal(m.data, expect.data)
    assert (m != expect).nnz == 0


def test_id_mappings(both):
    got, want = both
    data = got.data
    users, items = want.data["user_ids"], want.data["item_ids"]
    np.testing.assert_array_equal(data.user_index(users), np.arange(len(users)))
    np.testing.assert_array_equal(data.item_index(items), np.arange(len(items)))
    # original -> dense -> original, in a shuffled order
    rng = np.random.default_rng(3)
    u = rng.permutation(users)
    np.testing.assert_array_equal(data.user_ids[data.user_index(u)], u)
    i = rng.permutation(items)
    np.testing.assert_array_equal(data.item_ids[data.item_index(i)], i)
    # unknown ids -> -1, known ones unaffected around them
    unknown_u = [int(users.max()) + 1, -5, 2**40, 0]
    unknown_u = [x for x in unknown_u if x not in set(users.tolist())]
    mixed = np.array([users[0], *unknown_u, users[-1]], dtype=np.int64)
    np.testing.assert_array_equal(data.user_index(mixed),
                                  [0, *([-1] * len(unknown_u)), len(users) - 1])
    absent_items = np.setdiff1d(np.arange(items.max() + 2), items)[:5]
    assert (data.item_index(absent_items) == -1).all()
    with pytest.raises(TypeError, match="item_ids are non-integer"):   # strings on an int index:
        data.item_index(["a", "b"])                      # a type error, not "unknown" (issue 9)
    # users who rated but have no train positive are outside the index
    no_pos = np.setdiff1d(want.train["user_id"].unique(), users)
    assert (data.user_index(no_pos) == -1).all()


# ---------------------------------------------------------------------------
# Popularity
# ---------------------------------------------------------------------------

def test_popularity_top5_spec(ml1m):
    top = ml1m.pop.popular_items(5)
    assert list(top.items()) == [(2858, 2766), (260, 2557), (1196, 2461), (1198, 2213), (2028, 2194)]


def test_popularity_counts_and_order_equal_ref(both):
    got, want = both
    full = got.pop.popular_items(got.data.n_items)
    # order: descending count, ties by lower item id (SPEC 4), as popularity_ref
    np.testing.assert_array_equal(full.index.to_numpy(), want.pop.index.to_numpy())
    np.testing.assert_array_equal(full.to_numpy(), want.pop.to_numpy())
    assert int(full.sum()) == got.data.nnz
    counts = got.data.popularity()
    np.testing.assert_array_equal(counts, want.pop.reindex(got.data.item_ids).to_numpy())


def test_popularity_recommend_equals_ref(both):
    got, want = both
    users = np.concatenate([want.ratings["user_id"].unique(), [10**9, -3]])   # + unknown
    recs = got.pop.recommend(users, k=10)
    assert recs.shape == (len(users), 10)
    expect = ref.popularity_recommend_ref(want.train, users, 10)
    assert rows_as_lists(recs) == expect
    # unknown users: padding by default, the global top 10 on request
    assert (recs[-2:] == -1).all()
    fallback = got.pop.recommend(users[-2:], k=10, unknown="popular")
    np.testing.assert_array_equal(fallback, np.tile(want.pop.index[:10].to_numpy(), (2, 1)))


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def _ref_popularity_report(want, k=10, ranking=None):
    users = want.test_users
    recs = ref.popularity_recommend_ref(want.train, users, k, ranking=ranking)
    return dict(zip(users, recs)), ref.metrics_ref(
        dict(zip(users, recs)), want.test, k=k, coverage_users=users[:1000],
        catalog=want.catalog, item_popularity=want.pop)


@pytest.mark.parametrize("k", [10, 3])
def test_evaluate_popularity_equals_ref(both, k):
    got, want = both
    report = recmf.evaluate(got.pop, got.test, k=k, coverage_users=got.test_users[:1000],
                            catalog=got.catalog)
    _, expect = _ref_popularity_report(want, k)
    assert_reports_equal(report, expect, k)
    # the default coverage users are the first 1,000 distinct test users
    assert_reports_equal(recmf.evaluate(got.pop, got.test, k=k, catalog=got.catalog), expect, k)


def test_evaluate_random_recommender_equals_ref(both):
    """A dict of random lists: short and empty lists, lists longer than k,
    items outside the catalogue, users missing from the dict and users not
    in the test set.  Same report as metrics_ref, to 1e-12."""
    got, want = both
    rng = np.random.default_rng(2024)
    catalog = want.catalog
    pool = np.concatenate([catalog, 10**7 + np.arange(200)])     # + outside items
    users = want.ratings["user_id"].unique()
    lengths = rng.choice([0, 1, 2, 5, 9, 10, 14], size=len(users))
    recs = {}
    for u, n in zip(users.tolist(), lengths):
        if rng.random() < 0.05:
            continue                                  # user missing from the dict
        # mostly popular items so there are hits; never repeated within a list
        head = want.pop.index[:40].to_numpy()
        cand = np.concatenate([head, rng.choice(pool, size=60, replace=False)])
        recs[u] = list(dict.fromkeys(rng.permutation(cand).tolist()))[:n]
    recs[-777] = [1, 2, 3]                            # not a test user
    cov_users = want.test_users[:1000]
    popularity = want.pop
    # k=5 also on a test frame with repeated rows: relevance is per distinct item
    repeated = pd.concat([want.test, want.test.sample(frac=0.2, random_state=0)])
    for k, test in ((10, want.test), (5, repeated)):
        report = recmf.evaluate(recs, test, k=k, coverage_users=cov_users, catalog=catalog,
                                item_popularity=popularity)
        expect = ref.metrics_ref(recs, test, k=k, coverage_users=cov_users, catalog=catalog,
                                 item_popularity=popularity)
        assert 0 < expect["n_users_eval"] < len(want.test_users)
        assert expect[f"recall@{k}"] > 0
        assert_reports_equal(report, expect, k)
    # the notebook's recommend_fn(user, k) signature gives the same report
    report_fn = recmf.evaluate(lambda u, k: recs.get(u, []), got.test, k=10, coverage_users=cov_users,
                               catalog=catalog, item_popularity=popularity)
    assert_reports_equal(report_fn, ref.metrics_ref(recs, want.test, k=10, coverage_users=cov_users,
                                                    catalog=catalog, item_popularity=popularity))


SPEC_POPULARITY_ROW = {"recall@10": 0.0466355, "ndcg@10": 0.0323940, "mrr@10": 0.0474210,
                       "hitrate@10": 0.1386638, "coverage@10": 0.0198300}


def test_spec_popularity_row(ml1m, ml1m_ref):
    """SPEC 10's Popularity row.

    The row was printed by a PyTorch run whose ranking came from the seed's
    ``groupby(item).size().sort_values(ascending=False)``: pandas' default
    (unstable) quicksort, which on that machine put item 1265 before item 1
    although both have 1,612 train positives (numpy's AVX-512 sort breaks
    the tie the other way, so the seed's own order is not asserted).  recmf follows SPEC 4's tie rule (lower id
    first), which moves item 1 ahead and changes a few lists, so recmf's
    ndcg/mrr are 0.0323925/0.0474205 instead of 0.0323940/0.0474210; every
    other figure agrees.  To show the metric code is not at fault, recmf's
    evaluate on lists built from that order (``spec_printed_order_ref``)
    reproduces the printed row to its digits.
    """
    test, users = ml1m.test, ml1m.test_users
    cov = users[:1000]
    # 1. recmf's own Popularity (ties -> lower id)
    rep = recmf.evaluate(ml1m.pop, test, k=10, coverage_users=cov, catalog=ml1m.catalog)
    assert rep["n_users_eval"] == 5_553
    for key in ("recall@10", "hitrate@10", "coverage@10"):
        assert round(rep[key], 7) == SPEC_POPULARITY_ROW[key], key
    assert round(rep["avg_popularity@10"], 4) == 2084.3341
    assert round(rep["ndcg@10"], 7) == 0.0323925
    assert round(rep["mrr@10"], 7) == 0.0474205

    # 2. the tie that makes the difference.  The seed's unstable sort may
    # break it either way (it depends on the CPU's sort kernel): assert only
    # that its order is a valid descending order of the same counts.
    seed = ref.seed_popularity_order_ref(ml1m_ref.train)
    ours = ml1m.pop.popular_items(ml1m.data.n_items)
    assert seed.loc[1] == seed.loc[1265] == 1612
    assert (np.diff(seed.to_numpy()) <= 0).all()
    pd.testing.assert_series_equal(seed.sort_index(), ours.sort_index(), check_names=False,
                                   check_dtype=False)
    ours = ours.index.tolist()
    assert ours.index(1) < ours.index(1265)

    # 3. recs from the order the row was printed with (1265 ahead of 1),
    # evaluated by recmf: SPEC's printed row to its digits
    printed = ref.spec_printed_order_ref(ml1m_ref.train)
    seed_recs = ref.popularity_recommend_ref(ml1m_ref.train, users, 10, ranking=printed.index)
    rep_seed = recmf.evaluate(dict(zip(users, seed_recs)), test, k=10, coverage_users=cov,
                              catalog=ml1m.catalog, item_popularity=ml1m.pop.popular_items(ml1m.data.n_items))
    assert rep_seed["n_users_eval"] == 5_553
    for key, value in SPEC_POPULARITY_ROW.items():
        assert round(rep_seed[key], 7) == value, key
    assert round(rep_seed["avg_popularity@10"], 4) == 2084.3341


def test_evaluate_per_user_frame(dataset):
    bundle = dataset
    report, frame = recmf.evaluate(bundle.pop, bundle.test, k=10, catalog=bundle.catalog, per_user=True)
    evaluated = frame.dropna(subset=["recall@10"])
    assert len(evaluated) == report["n_users_eval"]
    for m in ("recall", "ndcg", "mrr", "hitrate"):
        assert math.isclose(evaluated[f"{m}@10"].mean(), report[f"{m}@10"], rel_tol=1e-12)
    rel = bundle.test[bundle.test["rating"] >= 4].drop_duplicates(["user_id", "movie_id"])
    counts = rel.groupby("user_id").size()
    np.testing.assert_array_equal(frame["n_relevant"].to_numpy(),
                                  counts.reindex(frame["user_id"]).to_numpy())


# ---------------------------------------------------------------------------
# Negative sampling (raw core)
# ---------------------------------------------------------------------------

def test_sample_uniform(bundle):
    data = bundle.data
    csr = (data.indptr, data.indices, data.n_items)
    n_neg = 4
    neg = _core.sample_uniform(*csr, n_neg, 42, 0, 1)
    assert neg.dtype == np.int32 and neg.shape == (data.nnz * n_neg,)
    assert neg.min() >= 0 and neg.max() < data.n_items
    rows = np.repeat(np.repeat(np.arange(data.n_users), np.diff(data.indptr)), n_neg)
    assert not dense_mask(data)[rows, neg].any(), "a negative is a positive of its user"
    # determinism: seed (and epoch) only, not the thread count
    # (a second call with 2 threads: same seed -> identical, and thread-count free)
    np.testing.assert_array_equal(_core.sample_uniform(*csr, n_neg, 42, 0, 2), neg)
    other_epoch = _core.sample_uniform(*csr, n_neg, 42, 1, 2)
    other_seed = _core.sample_uniform(*csr, n_neg, 43, 0, 2)
    # fresh draws: most entries change (equal by chance ~ 1/n_items each)
    assert np.mean(other_epoch == neg) < 0.1
    assert np.mean(other_seed == neg) < 0.1
    assert not dense_mask(data)[rows, other_epoch].any()


def test_sample_triplets(bundle):
    data = bundle.data
    csr = (data.indptr, data.indices, data.n_items)
    top_n = min(2000, data.n_items // 2)
    cand = np.ascontiguousarray(bundle.pop.order_[:top_n], dtype=np.int32)
    np.testing.assert_array_equal(data.item_ids[cand], bundle.pop.popular_items(top_n).index)
    n = 500_000 if bundle.name == "ml1m" else 50_000
    u, i, j = _core.sample_triplets(*csr, cand, n, 7, 0, 1)
    for a in (u, i, j):
        assert a.dtype == np.int32 and a.shape == (n,)
    mask = dense_mask(data)
    assert mask[u, i].all(), "(u, i) is not a positive"
    assert np.isin(j, cand).all(), "j outside the top-n candidates"
    assert not mask[u, j].any(), "j is a positive of u"
    # (u, i) uniform over positives: user u drawn nnz_u / nnz of the time.
    # Fixed seed, so this chi-square test is deterministic, not flaky.
    stats = pytest.importorskip("scipy.stats")
    counts = np.bincount(u, minlength=data.n_users)
    expected = np.diff(data.indptr) / data.nnz * n
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # same seed and epoch with 2 threads: identical
    for a, b in zip(_core.sample_triplets(*csr, cand, n, 7, 0, 2), (u, i, j)):
        np.testing.assert_array_equal(a, b)
    u2, i2, j2 = _core.sample_triplets(*csr, cand, n, 7, 1, 2)
    assert np.mean((u2 == u) & (i2 == i)) < 0.05
    assert mask[u2, i2].all() and not mask[u2, j2].any()


# ---------------------------------------------------------------------------
# Top-K (raw core)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 7, 25])
def test_topk_rows_equals_ref(k):
    rng = np.random.default_rng(k)
    n_rows, n_cols = 40, 17
    # few distinct values: many ties; plus NaN and infinities
    scores = rng.integers(-3, 4, size=(n_rows, n_cols)).astype(np.float32)
    special = rng.random((n_rows, n_cols))
    scores[special < 0.08] = np.nan
    scores[(special >= 0.08) & (special < 0.12)] = -np.inf
    scores[(special >= 0.12) & (special < 0.14)] = np.inf
    scores[0] = np.nan                                   # a row of NaN only
    scores[1] = 2.0                                      # a row of ties only
    n_seen_rows = 12
    seen_sets = [sorted(rng.choice(n_cols, size=rng.integers(0, n_cols + 1), replace=False).tolist())
                 for _ in range(n_seen_rows)]
    seen_sets[3] = list(range(n_cols))                   # everything seen: empty row
    indptr = np.zeros(n_seen_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in seen_sets])
    indices = np.array([c for s in seen_sets for c in s], dtype=np.int32)
    seen_rows = rng.integers(-1, n_seen_rows, size=n_rows).astype(np.int32)   # -1: no exclusion
    seen_rows[5] = 3

    items, vals, lens = _core.topk_rows(scores, (indptr, indices, n_cols), seen_rows, k, 1)
    lists = [seen_sets[r] if r >= 0 else None for r in seen_rows]
    ei, es, el = ref.pad_topk(*ref.topk_ref(scores, lists, k), k)
    np.testing.assert_array_equal(items, ei)
    np.testing.assert_array_equal(vals, es)              # NaN == NaN here
    np.testing.assert_array_equal(lens, el)
    assert lens[5] == 0 and (items[5] == -1).all()
    # without a seen matrix, and with 2 threads: same as the reference
    items2, vals2, lens2 = _core.topk_rows(scores, None, None, k, 2)
    ei, es, el = ref.pad_topk(*ref.topk_ref(scores, None, k), k)
    np.testing.assert_array_equal(items2, ei)
    np.testing.assert_array_equal(vals2, es)
    np.testing.assert_array_equal(lens2, el)


def test_topk_signed_zeros_tie():
    """-0.0 == 0.0: a tie, broken by the lower column (recmf.h contract).
    NeuralMF/BPRMF scores can be signed zeros (ReLU outputs, dot products of
    zero vectors)."""
    scores = np.array([[-0.0, 0.0, -0.0, 0.0]], dtype=np.float32)
    items, _, _ = _core.topk_rows(scores, None, None, 4, 1)
    ei, _ = ref.topk_ref(scores, None, 4)
    assert items[0].tolist() == ei[0] == [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# Ids of every shape
# ---------------------------------------------------------------------------

def _pipeline(ratings, catalog, k=10):
    train, val, test = recmf.temporal_split(ratings)
    data = recmf.Interactions.from_frame(train)
    pop = recmf.Popularity().fit(data)
    users = test["user_id"].unique()
    report = recmf.evaluate(pop, test, k=k, coverage_users=users[:1000], catalog=catalog)
    return dict(train=train, val=val, test=test, data=data, pop=pop, report=report,
                recs=pop.recommend(users, k=k), users=users)


def test_string_ids_match_integer_ids(synthetic_frames):
    """Users 'u1'.., items 'm10'.. go through split, Interactions, Popularity
    and evaluate; the integer version of the same data gives the same
    results.  The integer version numbers the strings in their sorted order,
    because popularity ties go to the lower id: 'm100' < 'm20' as strings,
    so relabelling in another order would legitimately change tie-breaks."""
    ratings, _, movies = synthetic_frames
    s_user = "u" + ratings["user_id"].astype(str)
    s_item = "m" + ratings["movie_id"].astype(str)
    s_catalog = "m" + movies["movie_id"].astype(str)
    str_frame = ratings.assign(user_id=s_user, movie_id=s_item)
    u_codes, u_uni = pd.factorize(s_user, sort=True)
    i_codes, i_uni = pd.factorize(pd.concat([s_item, s_catalog]), sort=True)
    int_frame = ratings.assign(user_id=u_codes + 1, movie_id=i_codes[:len(ratings)] + 1)
    int_catalog = i_codes[len(ratings):] + 1
    item_to_int = dict(zip(i_uni, np.arange(len(i_uni)) + 1))

    s = _pipeline(str_frame, s_catalog)
    n = _pipeline(int_frame, int_catalog)
    for a, b, w in zip((s["train"], s["val"], s["test"]), (n["train"], n["val"], n["test"]),
                       ref.temporal_split_ref(str_frame)):
        np.testing.assert_array_equal(a.index, b.index)
        pd.testing.assert_frame_equal(a, w)
    np.testing.assert_array_equal(s["data"].indptr, n["data"].indptr)
    np.testing.assert_array_equal(s["data"].indices, n["data"].indices)
    assert list(s["data"].user_ids) == list(u_uni[n["data"].user_ids - 1])
    assert s["data"].user_index(["u1", "nobody"]).tolist() == [
        n["data"].user_index([u_uni.get_loc("u1") + 1])[0], -1]
    mapped = [[item_to_int[x] for x in row] for row in rows_as_lists(s["recs"])]
    assert mapped == rows_as_lists(n["recs"])
    assert isinstance(s["recs"][0, 0], str)
    assert_reports_equal(s["report"], n["report"])
    assert s["report"]["n_users_eval"] > 0


def test_negative_huge_sparse_ids_match_dense(synthetic_frames):
    """Ids that are negative, beyond 2^31 and sparse give the same split,
    CSR, recommendations and metrics as the densely relabelled data (an
    increasing relabelling, so ties break the same way)."""
    ratings, _, movies = synthetic_frames
    f_user = lambda x: (np.asarray(x, dtype=np.int64) - 150) * 2**33 - 1       # noqa: E731
    f_item = lambda x: (np.asarray(x, dtype=np.int64) - 2000) * 2**31 * 3 + 7  # noqa: E731
    sparse = ratings.assign(user_id=f_user(ratings["user_id"]), movie_id=f_item(ratings["movie_id"]))
    assert sparse["user_id"].min() < 0 and sparse["user_id"].max() > 2**31
    assert sparse["movie_id"].min() < -2**31 and sparse["movie_id"].max() > 2**32
    dense_u, uu = pd.factorize(ratings["user_id"].to_numpy(), sort=True)
    dense_i, ii = pd.factorize(pd.concat([ratings["movie_id"], movies["movie_id"]]).to_numpy(), sort=True)
    dense = ratings.assign(user_id=dense_u, movie_id=dense_i[:len(ratings)])
    a = _pipeline(sparse, f_item(movies["movie_id"]))
    b = _pipeline(dense, dense_i[len(ratings):])
    for x, y in zip(("train", "val", "test"), ("train", "val", "test")):
        np.testing.assert_array_equal(a[x].index, b[y].index)
    np.testing.assert_array_equal(a["data"].indptr, b["data"].indptr)
    np.testing.assert_array_equal(a["data"].indices, b["data"].indices)
    np.testing.assert_array_equal(a["data"].user_ids, f_user(uu[b["data"].user_ids]))
    np.testing.assert_array_equal(a["data"].item_ids, f_item(ii[b["data"].item_ids]))
    back = f_item(ii[np.maximum(b["recs"], 0)])
    np.testing.assert_array_equal(a["recs"], np.where(b["recs"] >= 0, back, -1))
    assert_reports_equal(a["report"], b["report"])
    # and both equal the references on the sparse ids
    ix = ref.index_ref(a["train"])
    np.testing.assert_array_equal(a["data"].indices, ix["indices"])
    np.testing.assert_array_equal(a["data"].item_ids, ix["item_ids"])


def test_duplicates_counted_once(synthetic_frames):
    ratings = synthetic_frames[0]
    train = ratings.iloc[:4000]
    pos = train[train["rating"] >= 4]
    extra_pos = pos.sample(150, random_state=1).assign(rating=5)          # positive again
    extra_neg = train.sample(100, random_state=2).assign(rating=1)        # negative copies
    dup = pd.concat([train, extra_pos, extra_pos.iloc[:20], extra_neg], ignore_index=True)
    clean = recmf.Interactions.from_frame(train)
    data = recmf.Interactions.from_frame(dup)
    assert clean.n_duplicates == 0
    assert data.n_duplicates == len(extra_pos) + 20
    ix = ref.index_ref(dup)
    np.testing.assert_array_equal(data.indptr, ix["indptr"])
    np.testing.assert_array_equal(data.indices, ix["indices"])
    # a negative copy of a positive pair does not remove it
    np.testing.assert_array_equal(data.indices, clean.indices)
    np.testing.assert_array_equal(data.popularity(), clean.popularity())
    top = recmf.Popularity().fit(dup).popular_items(20)
    expect = ref.popularity_ref(dup).iloc[:20]
    np.testing.assert_array_equal(top.index, expect.index)
    np.testing.assert_array_equal(top.to_numpy(), expect.to_numpy())
