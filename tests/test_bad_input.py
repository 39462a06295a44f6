"""Bad input gives a clear exception naming the argument; inputs are never
modified; repeated calls do not leak (STYLE.md habits, bottleneck-style)."""
from __future__ import annotations

import gc
import gzip
import os
import re
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import _core

import reference as ref


@pytest.fixture(scope="module")
def small(small_frames):
    """A small ratings frame, its split, Interactions and a fitted Popularity."""
    ratings = small_frames
    train, val, test = recmf.temporal_split(ratings)
    data = recmf.Interactions.from_frame(train)
    pop = recmf.Popularity().fit(data)
    return dict(ratings=ratings, train=train, val=val, test=test, data=data, pop=pop,
                catalog=np.unique(ratings["movie_id"].to_numpy()))


def with_value(frame, col, pos, value, dtype=None):
    """A copy of ``frame`` whose ``col`` holds ``value`` at row ``pos``."""
    out = frame.copy()
    values = out[col].to_numpy(dtype=dtype if dtype is not None else object).copy()
    values[pos] = value
    out[col] = pd.Series(values, index=out.index, dtype=dtype)
    return out


# ---------------------------------------------------------------------------
# Frames: values, dtypes, columns
# ---------------------------------------------------------------------------

def _split(f):
    return recmf.temporal_split(f)


def _index(f):
    return recmf.Interactions.from_frame(f)


def _evaluate(small):
    return lambda f: recmf.evaluate(small["pop"], f, k=5, catalog=small["catalog"])


def test_nan_ratings(small):
    bad = with_value(small["train"], "rating", 7, np.nan, dtype=np.float64)
    with pytest.raises(ValueError, match=r"frame\['rating'\] has a missing or infinite value at position 7"):
        _index(bad)
    with pytest.raises(ValueError, match=r"test\['rating'\].*position 7"):
        _evaluate(small)(with_value(small["test"], "rating", 7, np.nan, dtype=np.float64))
    with pytest.raises(ValueError, match=r"frame\['rating'\].*infinite"):
        _index(with_value(small["train"], "rating", 3, np.inf, dtype=np.float64))
    with pytest.raises(TypeError, match=r"frame\['rating'\] must be numeric"):
        _index(small["train"].assign(rating="5"))


@pytest.mark.parametrize("col", ["user_id", "movie_id"])
def test_nan_and_non_integer_float_ids(small, col):
    nan_frame = with_value(small["train"], col, 4, np.nan, dtype=np.float64)
    half = with_value(small["train"], col, 4, 2.5, dtype=np.float64)
    with pytest.raises(ValueError, match=rf"frame\['{col}'\] has missing values \(first at position 4\)"):
        _index(nan_frame)
    with pytest.raises(ValueError, match=rf"frame\['{col}'\] must hold integer ids; position 4"):
        _index(half)
    with pytest.raises(ValueError, match=rf"frame\['{col}'\] must hold integer ids"):
        _index(with_value(small["train"], col, 0, np.inf, dtype=np.float64))
    with pytest.raises(ValueError, match=rf"test\['{col}'\] has missing values"):
        _evaluate(small)(with_value(small["test"], col, 4, np.nan, dtype=np.float64))
    if col == "user_id":
        with pytest.raises(ValueError, match=r"ratings\['user_id'\] has missing values"):
            _split(with_value(small["ratings"], col, 4, np.nan, dtype=np.float64))
        with pytest.raises(ValueError, match=r"ratings\['user_id'\] must hold integer ids"):
            _split(with_value(small["ratings"], col, 4, 2.5, dtype=np.float64))
    # floats holding exact integers are ids like any other
    as_float = small["train"].assign(**{col: small["train"][col].astype(np.float64)})
    assert _index(as_float) == small["data"]


@pytest.mark.parametrize("pos", [0, 3, 1500])
def test_object_ids_mixing_ints_and_floats(small, pos):
    """Position 1500 checks that the whole column is inspected, not a prefix."""
    frame = pd.concat([small["train"]] * 2, ignore_index=True)
    assert len(frame) > 1500
    bad = with_value(frame, "movie_id", pos, 2.5)
    assert bad["movie_id"].dtype == object
    with pytest.raises(TypeError, match=r"frame\['movie_id'\] mixes numbers and other values"):
        _index(bad)
    bad = with_value(small["ratings"], "user_id", min(pos, len(small["ratings"]) - 1), 1.0)
    with pytest.raises(TypeError, match=r"ratings\['user_id'\] mixes numbers"):
        _split(bad)


def test_bool_ids(small):
    with pytest.raises(TypeError, match=r"ratings\['user_id'\] must hold integer or string ids, got booleans"):
        _split(small["ratings"].assign(user_id=small["ratings"]["user_id"] > 30))
    with pytest.raises(TypeError, match=r"frame\['movie_id'\].*booleans"):
        _index(small["train"].assign(movie_id=small["train"]["movie_id"] > 100))
    with pytest.raises(TypeError, match=r"user_ids must hold integer or string ids, got booleans"):
        small["pop"].recommend(np.array([True, False]))
    with pytest.raises(TypeError, match=r"ratings\['timestamp'\]"):
        _split(small["ratings"].assign(timestamp=True))


def test_missing_timestamps(small):
    """NaN, NaT and NA in a time column of any dtype: an error naming the
    column and the first position, never a silently reordered split."""
    ratings = small["ratings"]
    msg = r"ratings\['timestamp'\] has missing timestamps \(first at position 5\)"
    with pytest.raises(ValueError, match=msg):
        _split(with_value(ratings, "timestamp", 5, np.nan, dtype=np.float64))
    dt = ratings.assign(timestamp=pd.to_datetime(ratings["timestamp"], unit="s"))
    dt.loc[dt.index[5], "timestamp"] = pd.NaT
    with pytest.raises(ValueError, match=msg):
        _split(dt)
    with pytest.raises(ValueError, match=msg):
        _split(dt.assign(timestamp=dt["timestamp"].dt.tz_localize("UTC")))
    nullable = ratings["timestamp"].astype("Int64")
    nullable.iloc[5] = pd.NA
    with pytest.raises(ValueError, match=msg):
        _split(ratings.assign(timestamp=nullable))
    objects = pd.Series(list(dt["timestamp"].dt.to_pydatetime()), index=dt.index, dtype=object)
    objects.iloc[5] = None
    with pytest.raises(ValueError, match=msg):
        _split(ratings.assign(timestamp=objects))
    pa = pytest.importorskip("pyarrow")
    with pytest.raises(ValueError, match=msg):
        _split(ratings.assign(timestamp=nullable.astype(pd.ArrowDtype(pa.int64()))))


def test_time_columns_that_are_not_times(small):
    ratings = small["ratings"]
    col = r"ratings\['timestamp'\] "
    # text: pandas 3's str dtype, pandas 2's object column of str
    with pytest.raises(TypeError, match=col + r"must hold times \(numbers or datetimes\), (got dtype|found '\d+' \(str\))"):
        _split(ratings.assign(timestamp=ratings["timestamp"].astype(str)))
    with pytest.raises(TypeError, match=col + r"must hold times.*found '5' \(str\)"):
        _split(ratings.assign(timestamp=ratings["timestamp"].astype(object).where(
            ratings.index != ratings.index[3], "5")))
    with pytest.raises(TypeError, match=col + r"must hold times.*found 2.5 \(float\)"):
        _split(ratings.assign(timestamp=ratings["timestamp"].astype(object).where(
            ratings.index != ratings.index[3], 2.5)))
    aware = pd.Timestamp("2020-01-01", tz="UTC")
    mixed = pd.Series([pd.Timestamp("2020-01-02")] * len(ratings), index=ratings.index, dtype=object)
    mixed.iloc[3] = aware
    with pytest.raises(TypeError, match=col + "mixes tz-aware and naive datetimes"):
        _split(ratings.assign(timestamp=mixed))


@pytest.mark.parametrize("missing", ["user_id", "movie_id", "rating", "timestamp"])
def test_missing_columns(small, missing):
    frame = small["train"].drop(columns=missing)
    if missing in ("user_id", "timestamp"):
        with pytest.raises(ValueError, match=rf"ratings is missing column\(s\) \['{missing}'\]") as err:
            _split(frame)
        # only the arguments of temporal_split are offered
        assert str(err.value).endswith("Pass user_col=/time_col= to name yours."), err.value
    if missing != "timestamp":
        with pytest.raises(ValueError, match=rf"frame is missing column\(s\) \['{missing}'\].*"
                                             r"Pass user_col=/item_col=/rating_col= to name yours\.$"):
            _index(frame)
        with pytest.raises(ValueError, match=rf"test is missing column\(s\) \['{missing}'\]"):
            _evaluate(small)(small["test"].drop(columns=missing))
        with pytest.raises(ValueError, match=rf"^val is missing column\(s\) \['{missing}'\]"):
            recmf.select(recmf.Popularity, small["data"], small["val"].drop(columns=missing), progress=False)
    # a renamed column works once named
    renamed = small["train"].rename(columns={"movie_id": "item"})
    assert recmf.Interactions.from_frame(renamed, item_col="item") == small["data"]


def test_not_a_frame_and_empty_frames(small):
    with pytest.raises(TypeError, match=r"ratings must be a pandas DataFrame or a table with the Arrow stream interface .*got numpy.ndarray"):
        recmf.temporal_split(small["ratings"].to_numpy())
    with pytest.raises(ValueError, match="ratings is empty"):
        _split(small["ratings"].iloc[:0])
    with pytest.raises(ValueError, match="frame is empty"):
        _index(small["train"].iloc[:0])
    with pytest.raises(ValueError, match="test is empty"):
        _evaluate(small)(small["test"].iloc[:0])
    with pytest.raises(ValueError, match=r"frame has no positive rows \(rating >= 4\)"):
        _index(small["train"].assign(rating=1))
    with pytest.raises(TypeError, match="data must be a recmf.Interactions, a pandas DataFrame"):
        recmf.Popularity().fit(small["train"].to_numpy())


@pytest.mark.parametrize("name", ["n_val", "n_test", "min_train"])
def test_split_counts(small, name):
    with pytest.raises(ValueError, match=rf"{name} must be >= 0, got -1"):
        recmf.temporal_split(small["ratings"], **{name: -1})
    for bad, shown in [(2.0, "float"), ("5", "str"), (True, "bool"), (None, "NoneType")]:
        with pytest.raises(TypeError, match=rf"{name} must be an integer, got {shown}"):
            recmf.temporal_split(small["ratings"], **{name: bad})
    # numpy integers are integers
    parts = recmf.temporal_split(small["ratings"], **{name: np.int64(1)})
    assert sum(len(p) for p in parts) == len(small["ratings"])


def test_k(small):
    pop, n_items = small["pop"], small["data"].n_items
    users = small["data"].user_ids[:3]
    for k in (0, -1):
        with pytest.raises(ValueError, match=rf"k must be >= 1, got {k}"):
            pop.recommend(users, k=k)
        with pytest.raises(ValueError, match=rf"k must be >= 1, got {k}"):
            recmf.evaluate(pop, small["test"], k=k, catalog=small["catalog"])
    with pytest.raises(ValueError, match=rf"k={n_items + 1} is larger than the catalogue the model knows \({n_items} items\)"):
        pop.recommend(users, k=n_items + 1)
    with pytest.raises(TypeError, match="k must be an integer, got float"):
        pop.recommend(users, k=10.0)
    # k equal to the catalogue: every unseen item, padded
    full = pop.recommend(users, k=n_items)
    seen = ref.train_positive_sets(small["train"])
    for u, row in zip(users, full):
        assert sorted(x for x in row if x != -1) == sorted(set(small["data"].item_ids) - seen[u])


def test_unknown_users(small):
    pop = small["pop"]
    known = small["data"].user_ids[0]
    users = np.array([known, 10**12, -1], dtype=np.int64)
    recs = pop.recommend(users, k=5)
    assert (recs[1:] == -1).all() and (recs[0] != -1).all()
    ids, scores = pop.recommend(users, k=5, return_scores=True)
    assert np.isneginf(scores[1:]).all()
    top5 = pop.popular_items(5).index.to_numpy()
    np.testing.assert_array_equal(pop.recommend(users, k=5, unknown="popular")[1:], [top5, top5])
    np.testing.assert_array_equal(pop.recommend(users, k=5, pad=0)[1:], 0)
    with pytest.raises(ValueError, match=r"unknown must be 'empty' or 'popular', got 'fallback'"):
        pop.recommend(users, k=5, unknown="fallback")
    with pytest.raises(KeyError, match=r"unknown user id .*1000000000000.* at position 1"):
        pop.score(users[:2], small["data"].item_ids[:2])
    with pytest.raises(ValueError, match="user_ids has missing values"):
        pop.recommend([1.0, np.nan])
    with pytest.raises(recmf.NotFittedError, match="not fitted"):
        recmf.Popularity().recommend([1])


def test_other_arguments(small):
    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        recmf.Interactions.from_frame(small["train"], threshold=np.nan)
    for bad in ("4", True, [4]):
        with pytest.raises(TypeError, match=rf"^threshold must be a number, got {type(bad).__name__}"):
            recmf.Interactions.from_frame(small["train"], threshold=bad)
    assert recmf.Interactions.from_frame(small["train"], threshold=np.float32(4)) == small["data"]
    with pytest.raises(ValueError, match=r"seen must be 'positives' or 'rated', got 'all'"):
        recmf.Interactions.from_frame(small["train"], seen="all")
    with pytest.raises(TypeError, match="model must be a fitted recmf model, a mapping"):
        recmf.evaluate(42, small["test"], catalog=small["catalog"])
    with pytest.raises(ValueError, match="catalog is required"):
        recmf.evaluate({}, small["test"])
    with pytest.raises(ValueError, match="catalog is empty"):
        recmf.evaluate(small["pop"], small["test"], catalog=[])
    with pytest.raises(ValueError, match="user_ids must be one-dimensional"):
        small["data"].user_index(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"frame\['user_id'\] has ids above 2\^63 - 1"):
        _index(small["train"].assign(user_id=np.uint64(2**63) + small["train"]["user_id"].astype(np.uint64)))


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("body,line,what", [
    (b"1::2::3::10\n1::x::4::11\n", 2, "item id"),
    (b"1::2::3::10\n2::3::4::11::5\n", 2, "after the timestamp"),
    (b"1::2::3::10\n1::3::4::12\n\n1::3::4\n", 4, "after the rating"),
    (b"1::2::3::10\r\n1::2::3::10\r\n1::2::three::10\r\n", 3, "rating"),
    (b"-::2::3::10\n", 1, "user id"),
    (b"1::2::3::99999999999999999999999\n", 1, "timestamp"),
])
def test_malformed_ratings_file_names_the_line(tmp_path, body, line, what):
    path = tmp_path / "ratings.dat"
    path.write_bytes(body)
    with pytest.raises(ValueError, match=rf"ratings\.dat: line {line}: .*{what}"):
        recmf.read_ratings(path, sep="::", header=False)
    gz = tmp_path / "ratings.dat.gz"
    with gzip.open(gz, "wb") as f:
        f.write(body)
    with pytest.raises(ValueError, match=rf"line {line}:"):
        recmf.read_ratings(gz, sep="::", header=False)
    # and through load_movielens
    with pytest.raises(ValueError, match=rf"line {line}:"):
        recmf.load_movielens(tmp_path)


def test_malformed_csv_with_header(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\r\n1,2,3.5,10\r\n1,2,,11\r\n")
    with pytest.raises(ValueError, match=r"ratings\.csv: line 3:"):
        recmf.read_ratings(path)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="MovieLens folder not found"):
        recmf.load_movielens(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a MovieLens folder"):
        recmf.load_movielens(tmp_path)
    with pytest.raises(FileNotFoundError, match="ratings file not found"):
        recmf.read_ratings(tmp_path / "ratings.dat")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match=rf"file is a file: pass the MovieLens folder that holds it, "
                                                rf"{re.escape(str(tmp_path))}$"):
        recmf.load_movielens(tmp_path / "file")


# ---------------------------------------------------------------------------
# The raw core: dtype, contiguity, writability, named arguments
# ---------------------------------------------------------------------------

def _csr():
    indptr = np.array([0, 2, 3, 5], dtype=np.int64)
    indices = np.array([0, 2, 1, 0, 3], dtype=np.int32)
    return indptr, indices, 4


def _core_cases():
    ip, ix, n = _csr()
    i64 = np.arange(6, dtype=np.int64)
    f64 = i64.astype(np.float64)
    i32 = np.arange(6, dtype=np.int32)
    f32 = np.zeros((3, 4), dtype=np.float32)
    cand = np.array([0, 1, 2, 3], dtype=np.int32)
    recs = np.zeros((2, 3), dtype=np.int64)
    lens = np.array([3, 1], dtype=np.int32)
    relp = np.array([0, 1, 2], dtype=np.int64)
    rel = np.array([5, 6], dtype=np.int64)
    theta = np.zeros(8, dtype=np.float32)
    stride = lambda a: np.repeat(a, 2)[::2]            # noqa: E731 - same values, non-contiguous
    ro = lambda a: _readonly(a)                        # noqa: E731
    return [
        # (id, call, exception, message naming the argument)
        ("split-user-dtype", lambda: _core.temporal_split(i32, i64, 1, 1, 1),
         TypeError, "user must have dtype int64"),
        ("split-time-strided", lambda: _core.temporal_split(i64, stride(i64), 1, 1, 1),
         ValueError, "time must be C-contiguous"),
        ("split-time-len", lambda: _core.temporal_split(i64, i64[:3], 1, 1, 1),
         ValueError, "time must have 6 elements"),
        ("split-list", lambda: _core.temporal_split(list(i64), i64, 1, 1, 1),
         TypeError, "user must be a numpy array"),
        ("split-n_val", lambda: _core.temporal_split(i64, i64, -1, 1, 1), ValueError, "n_val must be >= 0"),
        ("factorize-dtype", lambda: _core.factorize(i64.astype(np.float64)),
         TypeError, "ids must have dtype int64"),
        ("factorize-2d", lambda: _core.factorize(i64.reshape(2, 3)), ValueError, "ids must be 1-dimensional"),
        ("factorize-strided", lambda: _core.factorize(stride(i64)), ValueError, "ids must be C-contiguous"),
        ("csr-rows-dtype", lambda: _core.build_csr(i64, i32, 6, 6), TypeError, "rows must have dtype int32"),
        ("csr-cols-range", lambda: _core.build_csr(i32, i32, 6, 5),
         ValueError, "column index 5 at position 5 is outside"),
        ("csr-rows-range", lambda: _core.build_csr(i32, i32, 5, 6), ValueError, "row index 5"),
        ("csr-cols-len", lambda: _core.build_csr(i32, i32[:2], 6, 6),
         ValueError, "cols must have 6 elements"),
        ("counts-indptr-dtype", lambda: _core.item_counts(ip.astype(np.int32), ix, n),
         TypeError, "indptr must have dtype int64"),
        ("counts-indices-strided", lambda: _core.item_counts(ip, stride(ix), n),
         ValueError, "indices must be C-contiguous"),
        ("counts-indices-unsorted", lambda: _core.item_counts(ip, ix[[1, 0, 2, 3, 4]].copy(), n),
         ValueError, "indices of row 0 must be sorted"),
        ("counts-indptr-end", lambda: _core.item_counts(ip, ix[:4].copy(), n),
         ValueError, "indptr must start at 0 and end at len"),
        ("popularity-dtype", lambda: _core.popularity_order(i32), TypeError, "counts must have dtype int64"),
        ("uniform-indptr-list", lambda: _core.sample_uniform(list(ip), ix, n, 2, 0, 0, 1),
         TypeError, "indptr must be a numpy array"),
        ("uniform-indices-dtype", lambda: _core.sample_uniform(ip, ix.astype(np.int64), n, 2, 0, 0, 1),
         TypeError, "indices must have dtype int32"),
        ("uniform-n_neg", lambda: _core.sample_uniform(ip, ix, n, 0, 0, 0, 1),
         ValueError, "n_neg must be >= 1"),
        ("uniform-n_cols", lambda: _core.sample_uniform(ip, ix, 3, 2, 0, 0, 1), ValueError, r"in \[0, 3\)"),
        ("triplets-cand-dtype", lambda: _core.sample_triplets(ip, ix, n, cand.astype(np.int64), 5, 0, 0, 1),
         TypeError, "candidates must have dtype int32"),
        ("triplets-cand-strided", lambda: _core.sample_triplets(ip, ix, n, stride(cand), 5, 0, 0, 1),
         ValueError, "candidates must be C-contiguous"),
        ("triplets-cand-range", lambda: _core.sample_triplets(ip, ix, n, cand + 1, 5, 0, 0, 1),
         ValueError, "candidate 4 at position 3 is outside"),
        ("triplets-cand-empty", lambda: _core.sample_triplets(ip, ix, n, cand[:0], 5, 0, 0, 1),
         ValueError, "top_n must leave at least one candidate"),
        ("triplets-n", lambda: _core.sample_triplets(ip, ix, n, cand, -1, 0, 0, 1),
         ValueError, "triplets_per_epoch must be >= 0"),
        ("topk-dtype", lambda: _core.topk_rows(f32.astype(np.float64), None, None, 2, 1),
         TypeError, "scores must have dtype float32"),
        ("topk-strided", lambda: _core.topk_rows(np.zeros((4, 3), np.float32).T, None, None, 2, 1),
         ValueError, "scores must be C-contiguous"),
        ("topk-1d", lambda: _core.topk_rows(f32.ravel(), None, None, 2, 1),
         ValueError, "scores must be 2-dimensional"),
        ("topk-seen_rows-dtype", lambda: _core.topk_rows(f32, (ip, ix, n), i64[:3], 2, 1),
         TypeError, "seen_rows must have dtype int32"),
        ("topk-seen_rows-len", lambda: _core.topk_rows(f32, (ip, ix, n), i32[:2], 2, 1),
         ValueError, "seen_rows must have 3 elements"),
        ("topk-seen_rows-range", lambda: _core.topk_rows(f32, (ip, ix, n), i32[3:6], 2, 1),
         ValueError, "user index 3 is outside"),
        ("topk-k", lambda: _core.topk_rows(f32, None, None, 0, 1), ValueError, "k must be >= 1, got 0"),
        ("ranked-dtype", lambda: _core.topk_ranked(cand.astype(np.int64), None, i32[:2], 2),
         TypeError, "ranking must have dtype int32"),
        ("ranked-users-dtype", lambda: _core.topk_ranked(cand, None, i64[:2], 2),
         TypeError, "users must have dtype int32"),
        ("ranked-users-range", lambda: _core.topk_ranked(cand, (ip, ix, n), i32[2:5], 2),
         ValueError, "user index 3 is outside"),
        ("metrics-recs-dtype", lambda: _core.ranking_metrics(recs.astype(np.int32), lens, relp, rel),
         TypeError, "recs must have dtype int64"),
        ("metrics-rec_len-len", lambda: _core.ranking_metrics(recs, lens[:1], relp, rel),
         ValueError, "rec_len must have 2 elements"),
        ("metrics-rel_indptr", lambda: _core.ranking_metrics(recs, lens, relp[::-1].copy(), rel),
         ValueError, "rel_indptr must start at 0"),
        ("metrics-rel_items-strided", lambda: _core.ranking_metrics(recs, lens, relp, stride(rel)),
         ValueError, "rel_items must be C-contiguous"),
        ("coverage-pop_ids-unsorted", lambda: _core.coverage_popularity(recs, lens, i64, i64[::-1].copy(), f64),
         ValueError, "pop_ids must be sorted ascending"),
        ("coverage-pop_values-dtype", lambda: _core.coverage_popularity(recs, lens, i64, i64, i64),
         TypeError, "pop_values must have dtype float64"),
        ("coverage-pop_values-len", lambda: _core.coverage_popularity(recs, lens, i64, i64, f64[:2]),
         ValueError, "pop_values must have 6 elements"),
        ("coverage-catalog", lambda: _core.coverage_popularity(recs, lens, i64[:0], i64, f64),
         ValueError, "catalog must hold at least one item"),
        ("coverage-catalog-unsorted", lambda: _core.coverage_popularity(recs, lens, i64[::-1].copy(), i64, f64),
         ValueError, "catalog must be sorted ascending and distinct"),
        ("parse-str", lambda: _core.parse_ratings("1::2::3::4\n", "::", 0), TypeError, "bytes-like"),
        ("adam-theta-readonly", lambda: _core.adam_step(ro(theta), theta.copy(), theta.copy(), theta.copy(), 1),
         ValueError, "theta must be writable"),
        ("adam-m-readonly", lambda: _core.adam_step(theta.copy(), theta.copy(), ro(theta), theta.copy(), 1),
         ValueError, "adam_m must be writable"),
        ("adam-grad-dtype", lambda: _core.adam_step(theta.copy(), theta.astype(np.float64), theta.copy(), theta.copy(), 1),
         TypeError, "grad must have dtype float32"),
        ("adam-v-strided", lambda: _core.adam_step(theta.copy(), theta.copy(), theta.copy(), stride(theta), 1),
         ValueError, "adam_v must be C-contiguous"),
        ("adam-grad-len", lambda: _core.adam_step(theta.copy(), theta[:3].copy(), theta.copy(), theta.copy(), 1),
         ValueError, "grad must have 8 elements"),
        ("adam-step", lambda: _core.adam_step(theta.copy(), theta.copy(), theta.copy(), theta.copy(), 0),
         ValueError, "step must be >= 1"),
    ]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


_CASES = _core_cases()


@pytest.mark.parametrize("call,exc,msg", [c[1:] for c in _CASES], ids=[c[0] for c in _CASES])
def test_core_rejects_bad_arrays(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_core_accepts_read_only_inputs():
    """Arrays the core only reads may be read-only (Interactions' arrays
    are): same results as writable copies."""
    ip, ix, n = _csr()
    rip, rix = _readonly(ip), _readonly(ix)
    cand = _readonly(np.array([1, 2, 3, 0], dtype=np.int32))
    np.testing.assert_array_equal(_core.sample_uniform(rip, rix, n, 3, 5, 0, 1),
                                  _core.sample_uniform(ip, ix, n, 3, 5, 0, 1))
    for a, b in zip(_core.sample_triplets(rip, rix, n, cand, 50, 5, 0, 1),
                    _core.sample_triplets(ip, ix, n, cand.copy(), 50, 5, 0, 1)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_core.item_counts(rip, rix, n), [2, 1, 1, 1])
    scores = _readonly(np.arange(12, dtype=np.float32).reshape(3, 4))
    items, _, _ = _core.topk_rows(scores, (rip, rix, n), _readonly(np.array([0, 1, 2], np.int32)), 2, 1)
    np.testing.assert_array_equal(items, [[3, 1], [3, 2], [2, 1]])
    order, part = _core.temporal_split(_readonly(np.array([2, 1, 2], np.int64)),
                                       _readonly(np.array([5, 5, 4], np.int64)), 0, 1, 0)
    np.testing.assert_array_equal(order, [1, 2, 0])
    np.testing.assert_array_equal(part, [2, 0, 2])


# ---------------------------------------------------------------------------
# Inputs are never modified
# ---------------------------------------------------------------------------

def _frames_for_mutation(small):
    """A frame with a shuffled non-default index, string ids, tz-aware
    datetimes and categorical items: the inputs most tempting to convert in
    place."""
    r = small["ratings"].sample(frac=1.0, random_state=0)
    r.index = r.index * 3 + 1
    odd = r.assign(user_id="u" + r["user_id"].astype(str),
                   movie_id=pd.Categorical(r["movie_id"]),
                   timestamp=pd.to_datetime(r["timestamp"], unit="s", utc=True).dt.tz_convert("Europe/Paris"))
    return [r, odd, r.assign(rating=r["rating"].astype(np.float32))]


def _snapshot(frame):
    return frame.copy(deep=True), {c: frame[c].to_numpy(copy=True) for c in frame.columns}


def _assert_same(frame, snap):
    copy, cols = snap
    pd.testing.assert_frame_equal(frame, copy)
    for c, values in cols.items():
        np.testing.assert_array_equal(frame[c].to_numpy(), values)


def test_public_calls_do_not_modify_frames(small):
    for ratings in _frames_for_mutation(small):
        snap = _snapshot(ratings)
        train, val, test = recmf.temporal_split(ratings)
        _assert_same(ratings, snap)
        snaps = [_snapshot(f) for f in (train, test)]
        data = recmf.Interactions.from_frame(train)
        recmf.Interactions.from_frame(train, seen="rated")
        pop = recmf.Popularity().fit(train)
        users = test["user_id"].unique()
        users_copy = users.copy()
        pop.recommend(users, k=3)
        pop.recommend(list(users), k=3, unknown="popular")
        data.user_index(users)
        catalog = ratings["movie_id"].drop_duplicates()
        cat_snap = catalog.copy()
        cov = users[:10]
        popularity = pop.popular_items(data.n_items)
        pop_snap = popularity.copy()
        recmf.evaluate(pop, test, k=5, coverage_users=cov, catalog=catalog, item_popularity=popularity)
        lists = {u: list(r) for u, r in zip(users, pop.recommend(users, k=4))}
        lists_copy = {u: list(r) for u, r in lists.items()}
        recmf.evaluate(lists, test, k=3, coverage_users=cov, catalog=catalog, item_popularity=popularity)
        _assert_same(train, snaps[0])
        _assert_same(test, snaps[1])
        _assert_same(ratings, snap)
        np.testing.assert_array_equal(users, users_copy)
        pd.testing.assert_series_equal(catalog, cat_snap)
        pd.testing.assert_series_equal(popularity, pop_snap)
        assert lists == lists_copy


def test_core_calls_do_not_modify_arrays():
    rng = np.random.default_rng(0)
    ip, ix, n = _csr()
    inputs = {
        "user": rng.integers(0, 5, 50).astype(np.int64),
        "time": rng.integers(0, 3, 50).astype(np.int64),
        "rows": rng.integers(0, 4, 30).astype(np.int32),
        "cols": rng.integers(0, 6, 30).astype(np.int32),
        "scores": np.where(rng.random((5, 4)) < 0.2, np.nan, rng.random((5, 4))).astype(np.float32),
        "seen_rows": np.array([0, -1, 2, 1, 0], dtype=np.int32),
        "indptr": ip, "indices": ix, "cand": np.array([3, 1, 2], dtype=np.int32),
        "counts": rng.integers(0, 3, 9).astype(np.int64),
    }
    copies = {k: v.copy() for k, v in inputs.items()}
    d = inputs
    _core.temporal_split(d["user"], d["time"], 1, 2, 1)
    _core.factorize(d["user"])
    _core.build_csr(d["rows"], d["cols"], 4, 6)
    _core.sample_uniform(d["indptr"], d["indices"], n, 3, 0, 0, 2)
    _core.sample_triplets(d["indptr"], d["indices"], n, d["cand"], 20, 0, 0, 2)
    _core.topk_rows(d["scores"], (d["indptr"], d["indices"], n), d["seen_rows"], 3, 2)
    _core.topk_ranked(d["cand"], (d["indptr"], d["indices"], n), d["seen_rows"][:3].clip(0), 2)
    _core.popularity_order(d["counts"])
    _core.item_counts(d["indptr"], d["indices"], n)
    for k, v in inputs.items():
        np.testing.assert_array_equal(v, copies[k], err_msg=k)      # NaN == NaN here


# ---------------------------------------------------------------------------
# Leaks
# ---------------------------------------------------------------------------

def test_core_calls_keep_reference_counts():
    """No reference leaked on inputs, and outputs owned only by the caller."""
    ip, ix, n = _csr()
    user = np.array([3, 1, 3, 2], dtype=np.int64)
    cand = np.array([1, 2, 3], dtype=np.int32)
    scores = np.zeros((3, 4), dtype=np.float32)
    seen = (ip, ix, n)
    before = [sys.getrefcount(a) for a in (ip, ix, user, cand, scores)]
    for _ in range(50):
        out = [_core.temporal_split(user, user, 0, 1, 0), _core.factorize(user),
               (_core.sample_uniform(ip, ix, n, 2, 0, 0, 1),),
               _core.sample_triplets(ip, ix, n, cand, 10, 0, 0, 1),
               _core.topk_rows(scores, seen, np.array([0, 1, 2], np.int32), 2, 1),
               _core.topk_ranked(cand, seen, np.array([0, 2], np.int32), 2)]
    assert [sys.getrefcount(a) for a in (ip, ix, user, cand, scores)] == before
    for result in out:
        for arr in result:
            # referenced by the tuple/list, the loop variable and getrefcount
            assert sys.getrefcount(arr) == 3


def test_repeated_public_calls_do_not_leak():
    """~200 calls of temporal_split / Interactions.from_frame / evaluate on
    small data: traced Python memory (NumPy arrays included, so an output
    array the C glue forgets to release) stays flat.  A leak of one
    input-sized array per call would add ~1 MB; pandas' and NumPy's own
    caches warm up first and then add a few KB at most.  Each round builds
    its frame afresh from arrays so pandas' copy-on-write bookkeeping on a
    long-lived frame is not mistaken for a leak."""
    from recmf.datasets import synthetic_ratings
    ratings, _, movies = synthetic_ratings(n_users=15, n_items=100, ratings_per_user=(20, 60), seed=1)
    columns = {c: ratings[c].to_numpy() for c in ratings.columns}
    catalog = movies["movie_id"].to_numpy()

    def once():
        train, _, test = recmf.temporal_split(pd.DataFrame(columns))
        data = recmf.Interactions.from_frame(train)
        recmf.evaluate(recmf.Popularity().fit(data), test, k=10, catalog=catalog)

    for _ in range(30):            # warm caches and lazy imports, untraced
        once()
    tracemalloc.start()
    try:
        for _ in range(10):        # warm again, traced
            once()
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(70):        # 210 public calls
            once()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 150_000, f"traced memory grew by {grown} bytes over 70 rounds"


@pytest.mark.skipif(bool(os.environ.get("RECMF_SANITIZER")),
                    reason="ASan keeps freed memory in quarantine, so RSS is no leak measure")
def test_repeated_core_calls_do_not_leak():
    """200 rounds of the core's split, factorize, CSR, sampling and top-K
    on 20,000-row inputs: the process RSS (which sees the core's malloc'd
    scratch as well as NumPy outputs) stays flat.  Leaking one output or
    scratch array per call would add 30 MB or more."""
    psutil = pytest.importorskip("psutil")
    rng = np.random.default_rng(0)
    n = 20_000
    user = rng.integers(0, 500, n).astype(np.int64)
    time = rng.integers(0, 50, n).astype(np.int64)
    rows = rng.integers(0, 500, n).astype(np.int32)
    cols = rng.integers(0, 800, n).astype(np.int32)
    indptr, indices = _core.build_csr(rows, cols, 500, 800)
    scores = rng.random((100, 800)).astype(np.float32)
    seen_rows = np.arange(100, dtype=np.int32)
    cand = np.arange(300, dtype=np.int32)

    def once():
        _core.temporal_split(user, time, 1, 5, 5)
        _core.factorize(user)
        _core.build_csr(rows, cols, 500, 800)
        _core.sample_uniform(indptr, indices, 800, 2, 0, 0, 1)
        _core.sample_triplets(indptr, indices, 800, cand, 5_000, 0, 0, 1)
        _core.topk_rows(scores, (indptr, indices, 800), seen_rows, 10, 1)
        _core.popularity_order(_core.item_counts(indptr, indices, 800))

    for _ in range(10):
        once()
    gc.collect()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    for _ in range(200):
        once()
    gc.collect()
    grown = proc.memory_info().rss - rss0
    assert grown < 8_000_000, f"RSS grew by {grown} bytes over 200 rounds"
