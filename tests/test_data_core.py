"""The data core against the plain NumPy/pandas references (tests/reference.py)
and SPEC's recorded figures: loading, temporal split, index/CSR, popularity,
metrics, negative sampling, top-K, and ids of every shape.

Tests taking ``both`` or ``bundle`` run on ML-1M (skipped when absent) and on
recmf.datasets.synthetic_ratings, so the suite checks something everywhere.
"""
from __future__ import annotations

import bz2
import codecs
import datetime
import gzip
import lzma
import math
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recmf
from recmf import _core

import reference as ref
from conftest import (HAVE_LATEST, HAVE_ML1M, LATEST_DIR, ML100K_DIR, ML1M_DIR, needs_latest,
                      needs_ml100k)

METRICS = ("recall@{k}", "ndcg@{k}", "mrr@{k}", "hitrate@{k}", "coverage@{k}",
           "avg_popularity@{k}")


def assert_reports_equal(got, want, k=10, tol=1e-12):
    assert got["n_users_eval"] == want["n_users_eval"]
    assert got["n_users_skipped"] == want["n_users_skipped"]
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


# File-format variants people's ratings files have (issue 9, case 02): each is
# read by recmf.read_ratings from a file named without a telling extension
# and compared with pandas.read_csv told the separator, header, encoding and
# compression of the same bytes.

RATING_HEADER = ["userId", "movieId", "rating", "timestamp"]
FORMAT_SEPS = ["::", "\t", ",", ";", "|", " "]
COMPRESSIONS = {None: lambda b: b, "gzip": gzip.compress, "bz2": bz2.compress,
                "xz": lzma.compress, "zip": None}


def ratings_file_bytes(frame, sep=",", header=False, quoted=False, eol="\n", blank="none",
                       final_eol=True, encoding="utf-8"):
    """A ratings file holding ``frame`` (user, item, rating, timestamp) as
    people's files hold it.  ``blank``: where blank lines go ("none",
    "leading", "middle", "spaces" (a line of blanks), "trailing")."""
    def field(v):
        return f'"{v}"' if quoted else str(v)
    lines = [sep.join(field(v) for v in row) for row in frame.itertuples(index=False)]
    if header:
        lines.insert(0, sep.join(field(c) for c in RATING_HEADER))
    if blank == "leading":
        lines[:0] = ["", ""]
    elif blank == "middle":
        lines.insert(len(lines) // 2, "")
    elif blank == "spaces":
        lines.insert(len(lines) // 2, "   ")
    elif blank == "trailing":
        lines += ["", ""]
    text = eol.join(lines) + (eol if final_eol else "")
    return text.encode(encoding)


def write_compressed(path, raw, compression):
    if compression == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("ratings.csv", raw)
    else:
        path.write_bytes(COMPRESSIONS[compression](raw))
    return path


def read_ratings_pandas_ref(path, sep, header, encoding, compression):
    """pandas' reading of a ratings file, in read_ratings' dtypes (ratings
    int64 when all whole)."""
    enc = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "utf-16": "utf-16"}[encoding]
    expect = pd.read_csv(path, sep=sep, header=0 if header else None, encoding=enc,
                         engine="python" if len(sep) > 1 else "c", compression=compression)
    expect.columns = ref.RATING_COLUMNS
    r = expect["rating"].to_numpy(np.float64)
    expect["rating"] = r.astype(np.int64) if np.all(np.floor(r) == r) else r
    return expect


def _format_frame(n=7, half=False, seed=3):
    rng = np.random.default_rng(seed)
    r = rng.integers(1, 11, n) / 2 if half else rng.integers(1, 6, n)
    return pd.DataFrame({"user_id": rng.integers(-3, 10**12, n), "movie_id": rng.integers(0, 99, n),
                         "rating": r, "timestamp": rng.integers(0, 2**40, n)})


def check_read_ratings_variant(tmp_path, frame, guess=True, **fmt):
    compression = fmt.pop("compression", None)
    raw = ratings_file_bytes(frame, **fmt)
    path = write_compressed(tmp_path / "ratings.dat", raw, compression)
    expect = read_ratings_pandas_ref(path, fmt.get("sep", ","), fmt.get("header", False),
                                     fmt.get("encoding", "utf-8"), compression)
    assert len(expect) == len(frame)          # the variant itself is well formed
    got = recmf.read_ratings(path) if guess else \
        recmf.read_ratings(path, sep=fmt.get("sep", ","), header=fmt.get("header", False))
    pd.testing.assert_frame_equal(got, expect)


def test_read_ratings_bom_headerless(tmp_path):
    """Field case 02: a UTF-8 byte-order mark before a headerless CSV is not
    a header; all three rows are read (pandas: encoding="utf-8-sig")."""
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"\xef\xbb\xbf1,10,5,100\n1,11,4,101\n2,10,3,102\n")
    got = recmf.read_ratings(path)
    expect = pd.read_csv(path, header=None, encoding="utf-8-sig", names=ref.RATING_COLUMNS)
    pd.testing.assert_frame_equal(got, expect)
    assert got["user_id"].tolist() == [1, 1, 2]
    # a BOM before a header: the header is still recognised and dropped
    path.write_bytes(b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,10,5,100\n")
    assert recmf.read_ratings(path)["movie_id"].tolist() == [10]


@pytest.mark.parametrize("sep", FORMAT_SEPS, ids=repr)
@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("variant", [
    {}, {"encoding": "utf-8-sig"}, {"encoding": "utf-16"}, {"eol": "\r\n"}, {"eol": "\r"},
    {"final_eol": False}, {"blank": "leading"}, {"blank": "middle"}, {"blank": "spaces"},
    {"blank": "trailing"}, {"quoted": True}, {"compression": "gzip"}, {"compression": "bz2"},
    {"compression": "xz"}, {"compression": "zip"},
    {"encoding": "utf-8-sig", "eol": "\r\n", "blank": "leading", "compression": "gzip"},
], ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) or "plain")
def test_read_ratings_format_variants(tmp_path, sep, header, variant):
    """Every variant, with separator and header guessed, equals pandas'
    reading of the same bytes; and with them given, too."""
    if variant.get("quoted") and len(sep) > 1:
        pytest.skip("pandas does not unquote fields split by a regex separator")
    if variant.get("blank") == "spaces" and sep == " ":
        pytest.skip("a line of blanks is a row of empty fields when blanks separate")
    frame = _format_frame(half=sep in (",", "\t"))
    check_read_ratings_variant(tmp_path, frame, sep=sep, header=header, **variant)
    check_read_ratings_variant(tmp_path, frame, guess=False, sep=sep, header=header, **variant)


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(-2**62, 2**62), st.integers(0, 2**40),
                               st.sampled_from([1, 2, 3, 4, 5, 0.5, 3.5, 4.5]),
                               st.integers(-2**40, 2**62)), min_size=1, max_size=12),
       sep=st.sampled_from(FORMAT_SEPS), header=st.booleans(), quoted=st.booleans(),
       eol=st.sampled_from(["\n", "\r\n", "\r"]), final_eol=st.booleans(),
       blank=st.sampled_from(["none", "leading", "middle", "spaces", "trailing"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
       compression=st.sampled_from(list(COMPRESSIONS)))
def test_read_ratings_random_variants(tmp_path, rows, sep, header, quoted, eol, final_eol, blank,
                                      encoding, compression):
    """Random combinations of the variants above, guessed, equal pandas."""
    if (quoted and len(sep) > 1) or (blank == "spaces" and sep == " "):
        return      # pandas' own reading differs there (see the parametrized test)
    frame = pd.DataFrame(rows, columns=ref.RATING_COLUMNS)
    check_read_ratings_variant(tmp_path, frame, sep=sep, header=header, quoted=quoted, eol=eol,
                               final_eol=final_eol, blank=blank, encoding=encoding,
                               compression=compression)


def test_read_ratings_header_guess(tmp_path):
    """A first line is a header only when none of its fields is a number: a
    data line in quotes, with blanks or signs is data; a malformed data line
    is reported, not dropped as a header."""
    path = tmp_path / "r.csv"
    for first, n in [('"1","10","5","100"', 2), (" 1 , 10 , 5 , 100", 2), ("-1,+10,5,100", 2),
                     ("1,10,4.5,1000", 2), ('"user","item","r","t"', 1), ("u;i;r;t", 1)]:
        sep = ";" if ";" in first else ","
        path.write_text(first + "\n" + sep.join(["2", "20", "3", "200"]) + "\n")
        got = recmf.read_ratings(path)
        assert len(got) == n, first
        assert got["user_id"].iloc[-1] == 2
    path.write_text("x,10,5,100\n2,20,3,200\n")
    with pytest.raises(ValueError, match=r"r\.csv: line 1: .*user id"):
        recmf.read_ratings(path)


def test_read_ratings_errors_stay_clear(tmp_path):
    """What pandas does not read as four integers/numbers is an error naming
    the line, also in quoted or blank-padded files."""
    path = tmp_path / "r.csv"
    for body, line in [(b'"1","10","5","100"\n"1","x","4","101"\n', 2),
                       (b"1, 10, 5, 100\n1, 10, 5, 100, 7\n", 2),
                       (b'1,10,5,100\n"2,20",5,100\n', 2),
                       (b"1,10,5,100\n1,10,5,1e3\n", 2),     # pandas: a float timestamp
                       (b"1;10;3,5;100\n", 1)]:           # decimal comma
        path.write_bytes(body)
        with pytest.raises(ValueError, match=rf"r\.csv: line {line}:"):
            recmf.read_ratings(path)
    path.write_bytes(zstd_magic := b"\x28\xb5\x2f\xfd" + b"\0" * 8)
    with pytest.raises(ValueError, match="zstd"):
        recmf.read_ratings(path)
    assert zstd_magic


def test_load_movielens_encodings_and_compression(tmp_path, synthetic_frames):
    """The small files of each layout: Latin-1 titles, UTF-8 with and without
    a byte-order mark, gzip'd copies, headers in ratings files that have
    none -- all equal pandas told the encoding."""
    ratings, _, movies = synthetic_frames
    ratings = ratings.iloc[:500].reset_index(drop=True)
    movies = movies.iloc[:50].assign(title=movies["title"].iloc[:50] + " (Am\u00e9lie, 2001)",
                                      genres="Drama")
    dat_movies = "".join(f"{m}::{t}::{g}\n" for m, t, g in movies[["movie_id", "title", "genres"]]
                         .itertuples(index=False))
    dat_ratings = "".join(f"{a}::{b}::{c}::{t}\n" for a, b, c, t in ratings.itertuples(index=False))
    for name, movies_bytes, ratings_bytes, files in [
        ("latin1", dat_movies.encode("latin-1"), dat_ratings.encode(), ("movies.dat", "ratings.dat")),
        ("utf8-bom", codecs.BOM_UTF8 + dat_movies.encode(), codecs.BOM_UTF8 + dat_ratings.encode(),
         ("movies.dat", "ratings.dat")),
        ("gz", gzip.compress(dat_movies.encode("latin-1")), gzip.compress(
            ("UserID::MovieID::Rating::Timestamp\n" + dat_ratings).encode()),
         ("movies.dat.gz", "ratings.dat.gz")),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / files[0]).write_bytes(movies_bytes)
        (d / files[1]).write_bytes(ratings_bytes)
        r, _, m = recmf.load_movielens(d)
        pd.testing.assert_frame_equal(r, ratings, obj=name)
        assert m["title"].tolist() == movies["title"].tolist(), name
        assert m["movie_id"].dtype == np.int64, name

    # ml-latest: movies.csv in UTF-8 with a BOM (Excel), ratings.csv without a header
    d = tmp_path / "latest"
    d.mkdir()
    movies_csv = movies.rename(columns={"movie_id": "movieId"})[["movieId", "title", "genres"]]
    (d / "movies.csv").write_bytes(codecs.BOM_UTF8 + movies_csv.to_csv(index=False).encode())
    (d / "ratings.csv").write_text(ratings.to_csv(index=False, header=False))
    r, _, m = recmf.load_movielens(d)
    pd.testing.assert_frame_equal(r, ratings)
    expect = pd.read_csv(d / "movies.csv", encoding="utf-8-sig").rename(columns={"movieId": "movie_id"})
    pd.testing.assert_frame_equal(m, expect)

    # ML-100K: u.item titles in Latin-1, u.user with a BOM, u.data with a header
    d = tmp_path / "ml100k"
    d.mkdir()
    (d / "u.data").write_text("user\titem\trating\ttime\n" + ratings.to_csv(sep="\t", index=False,
                                                                          header=False))
    items = "".join(f"{m}|{t}|01-Jan-2001||http://x|0|1\n" for m, t in
                    movies[["movie_id", "title"]].itertuples(index=False))
    (d / "u.item").write_bytes(items.encode("latin-1"))
    (d / "u.user").write_bytes(codecs.BOM_UTF8 + b"1|24|M|technician|85711\n2|53|F|other|94043\n")
    r, u, m = recmf.load_movielens(d)
    pd.testing.assert_frame_equal(r, ratings)
    assert m["title"].tolist() == movies["title"].tolist()
    expect = pd.read_csv(d / "u.user", sep="|", header=None, encoding="utf-8-sig",
                         names=["user_id", "age", "gender", "occupation", "zip"])
    pd.testing.assert_frame_equal(u, expect)


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


# Times of every dtype users pass (issue 9, case 06): the split must put the
# rows in the order pandas' sort gives, ties included -- never the order of a
# conversion that wrapped or rounded.

# Out of datetime64[ns]'s range (1677-09-21 .. 2262-04-11) on both sides, a
# "no end date" sentinel, ties, and a sub-second difference.
OUT_OF_NS = ["2020-01-01", "9999-12-31", "2021-01-01", "2020-01-01",
             "1600-01-01", "2020-01-01", "2021-01-01", "2262-04-12",
             "2020-06-01 00:00:00.5", "2020-06-01", "1677-09-20", "2020-06-01 00:00:00.5"]
IN_NS = ["2020-01-01", "2039-12-31", "2021-01-01", "2020-01-01",
         "1970-01-01", "2020-01-01", "2021-01-01", "2262-04-10",
         "2020-06-01 00:00:00.5", "2020-06-01", "1969-12-31 23:59:59", "2020-06-01 00:00:00.5"]


def _time_variants():
    """(name, make) pairs: make() -> the time column of 12 rows."""
    # NumPy parses dates beyond datetime64[ns] on every pandas (pandas 2's
    # to_datetime refuses them)
    out_ = pd.Series(np.array(OUT_OF_NS, dtype="datetime64[us]"))
    in_ = pd.Series(pd.to_datetime(IN_NS, format="ISO8601"))
    ints = pd.Series([5, -3, 5, 10**15, 2**62, -2**62, 7, 7, 0, 1, -1, 5], dtype=np.int64)
    floats = pd.Series([1.5, 1.25, -0.0, 0.0, 1e30, -7.5, 2.0, 1.5, np.inf, -np.inf, 3.0, 1.25])
    v = [
        ("datetime64[us]-out-of-ns", lambda: out_),
        ("datetime64[s]-out-of-ns", lambda: out_.dt.floor("s").dt.as_unit("s")),
        ("datetime64[ms]-out-of-ns", lambda: out_.dt.as_unit("ms")),
        ("datetime64[ns]", lambda: in_.dt.as_unit("ns")),
        # a fixed offset: pandas 2's pytz zones have no offset for 1600
        ("tz-aware-us-out-of-ns", lambda: out_.dt.tz_localize(datetime.timezone(datetime.timedelta(hours=1)))),
        ("tz-aware-ns-mixed-dst", lambda: in_.dt.tz_localize("America/New_York")),
        ("object-datetimes", lambda: pd.Series(list(out_.dt.to_pydatetime()), dtype=object)),
        ("object-aware-timestamps-several-tz", lambda: pd.Series(
            [t.tz_localize("UTC").tz_convert(z) for t, z in zip(in_, ["Asia/Tokyo", "UTC", "America/Lima"] * 4)],
            dtype=object)),
        ("object-dates", lambda: pd.Series([t.date() for t in out_], dtype=object)),
        ("int64", lambda: ints),
        ("Int64", lambda: ints.astype("Int64")),
        ("uint64-beyond-2^63", lambda: pd.Series([2**64 - 1, 3, 2**63, 2**63 - 1, 0, 3, 2**64 - 1,
                                                   5, 2**63 + 1, 1, 0, 9], dtype=np.uint64)),
        ("float64-fractions", lambda: floats),
        ("Float64", lambda: floats.astype("Float64")),
        ("float32", lambda: floats.astype(np.float32)),
        ("timedelta64", lambda: pd.Series(pd.to_timedelta(ints.clip(-10**9, 10**9), unit="us"))),
        ("categorical-of-datetimes", lambda: out_.astype("category")),
    ]
    try:
        import pyarrow as pa
    except ImportError:
        return v
    v += [
        ("pyarrow-timestamp[us]-out-of-ns", lambda: out_.astype(pd.ArrowDtype(pa.timestamp("us")))),
        ("pyarrow-timestamp[ms,tz]", lambda: out_.dt.tz_localize(datetime.timezone(datetime.timedelta(hours=5.5)))
         .astype(pd.ArrowDtype(pa.timestamp("ms", tz="+05:30")))),
        ("pyarrow-date32", lambda: pd.Series([t.date() for t in out_]).astype(pd.ArrowDtype(pa.date32()))),
        ("pyarrow-int64", lambda: ints.astype(pd.ArrowDtype(pa.int64()))),
        # (not -0.0: pandas' own multi-column sort fails on it in pyarrow doubles)
        ("pyarrow-double", lambda: floats.where(floats != 0, 0.5).astype(pd.ArrowDtype(pa.float64()))),
    ]
    return v


_TIME_VARIANTS = _time_variants()


@pytest.mark.parametrize("make", [m for _, m in _TIME_VARIANTS], ids=[n for n, _ in _TIME_VARIANTS])
def test_split_time_column_dtypes(make):
    """The split equals pandas' stable sort by (user, time) for the time
    column as the user holds it; its order is not the input order."""
    times = make()
    frame = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], "movie_id": range(12),
                          "rating": 5, "timestamp": times})
    frame.index = frame.index * 3 + 1
    assert frame["timestamp"].dtype == times.dtype
    for n_val, n_test, min_train in [(1, 1, 1), (0, 2, 0), (1, 2, 1)]:
        got = recmf.temporal_split(frame, n_val=n_val, n_test=n_test, min_train=min_train)
        want = ref.temporal_split_ref(frame, n_val, n_test, min_train)
        for g, w in zip(got, want):
            pd.testing.assert_frame_equal(g, w)
    order = pd.concat(recmf.temporal_split(frame, 0, 0, 0))
    assert not order.index.equals(frame.index)


def test_split_out_of_ns_range_field_case():
    """Field case 06: 9999-12-31 and 1600-01-01 in a datetime64[us] column
    (what pandas 3 parses) stay in chronological order; the last rows are
    items 11 and 22."""
    ratings = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2, 2], "movie_id": [10, 11, 12, 20, 21, 22], "rating": 5,
        "timestamp": np.array(["2020-01-01", "9999-12-31", "2021-01-01",
                               "1600-01-01", "2020-01-01", "2021-01-01"], dtype="datetime64[us]")})
    _, _, test = recmf.temporal_split(ratings, n_val=0, n_test=1, min_train=1)
    assert sorted(test["movie_id"]) == [11, 22]
    want = ratings.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id").tail(1)
    pd.testing.assert_frame_equal(test, want)


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


# Users and items outside the index (issue 9, case 07).  The rule: the index
# holds users and items with a train positive; a user outside it (no train
# positive, or not in train) is "unknown" -- an empty list, or the popular
# items with unknown="popular" -- and under seen="rated" is never recommended
# an item they rated, whatever its rating.

def _below_threshold_frames():
    """Field case 07's train plus: user 8 rated only item 15, which nobody
    rated >= 4 (an item outside the index); user 7 appears only in test;
    item 16 appears only in test."""
    train = pd.DataFrame({
        "user_id":  [1, 1, 1, 2, 2, 3, 3, 4, 9, 9, 8, 1],
        "movie_id": [10, 11, 12, 10, 11, 10, 13, 14, 10, 11, 15, 15],
        "rating":   [5, 5, 5, 5, 4, 5, 4, 5, 2, 1, 3, 2]})
    test = pd.DataFrame({"user_id": [9, 9, 8, 7, 1, 2], "movie_id": [12, 13, 10, 10, 16, 13],
                         "rating": [5, 4, 5, 5, 5, 2]})
    return train, test


def test_user_without_positives_seen_rated_field_case():
    """Field case 07: user 9 rated items 10 and 11 (2 and 1 stars) and has no
    positive.  With seen="rated" the popularity fallback gives the two most
    popular items they did not rate, [12, 13], not [10, 11]; evaluate counts
    user 9 as skipped by default and evaluates them with unknown="popular"."""
    train, _ = _below_threshold_frames()
    train = train.iloc[:10]
    data = recmf.Interactions.from_frame(train, threshold=4, seen="rated")
    model = recmf.Popularity().fit(data)
    assert 9 not in data.user_ids.tolist() and data.unindexed_user_ids.tolist() == [9]
    assert model.recommend([9], k=2, unknown="popular").tolist() == [[12, 13]]
    assert model.recommend([9], k=2).tolist() == [[-1, -1]]
    one = pd.DataFrame({"user_id": [9], "movie_id": [12], "rating": [5]})
    rep = recmf.evaluate(model, one, k=2)
    assert (rep["n_users_eval"], rep["n_users_skipped"]) == (0, 1)
    rep = recmf.evaluate(model, one, k=2, unknown="popular")
    assert (rep["n_users_eval"], rep["n_users_skipped"], rep["recall@2"]) == (1, 0, 1.0)
    # the notebook's rule (seen="positives") has nothing to exclude for user 9
    pos = recmf.Popularity().fit(recmf.Interactions.from_frame(train, threshold=4))
    assert pos.recommend([9], k=2, unknown="popular").tolist() == [[10, 11]]


@pytest.mark.parametrize("seen", ["positives", "rated"])
@pytest.mark.parametrize("unknown", ["empty", "popular"])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_users_outside_the_index_equal_ref(seen, unknown, exclude_seen):
    """Every user -- indexed, rated only below threshold, rated only an item
    outside the index, absent from train -- gets the reference's list, and
    evaluate counts and skips users as metrics_ref does."""
    train, test = _below_threshold_frames()
    data = recmf.Interactions.from_frame(train, seen=seen)
    model = recmf.Popularity().fit(data)
    users = [1, 2, 3, 4, 9, 8, 7, 10**9]
    got = rows_as_lists(model.recommend(users, k=3, unknown=unknown, exclude_seen=exclude_seen))
    want = ref.popularity_recommend_ref(train, users, 3, seen=seen if exclude_seen else None,
                                        unknown=unknown)
    assert got == want
    if exclude_seen:
        rated = ref.rated_sets(train) if seen == "rated" else ref.train_positive_sets(train)
        for u, row in zip(users, got):
            assert not set(row) & rated.get(u, set()), u
        report = recmf.evaluate(model, test, k=3, unknown=unknown, catalog=[10, 11, 12, 13, 14, 15, 16])
        expect = ref.metrics_ref(dict(zip(users, want)), test, k=3, coverage_users=[9, 8, 7, 1, 2],
                                 catalog=[10, 11, 12, 13, 14, 15, 16], item_popularity=ref.popularity_ref(train))
        assert_reports_equal(report, expect, k=3)
        assert report["n_users_skipped"] == (3 if unknown == "empty" else 0)


@pytest.mark.parametrize("ids", ["int", "str"])
def test_unindexed_users_survive_save_load_pickle(ids, tmp_path):
    """The rated items of users outside the index survive save/load and
    pickling (integer and string ids)."""
    train, _ = _below_threshold_frames()
    if ids == "str":
        train = train.assign(user_id="u" + train["user_id"].astype(str))
    data = recmf.Interactions.from_frame(train, seen="rated")
    model = recmf.Popularity().fit(data)
    users = list(data.unindexed_user_ids) + list(data.user_ids)
    want = model.recommend(users, k=3, unknown="popular")
    model.save(tmp_path / "m.npz")
    for clone in (recmf.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model))):
        assert clone.data_ == data
        np.testing.assert_array_equal(clone.recommend(users, k=3, unknown="popular"), want)


@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_learned_models_never_recommend_rated_items(kind, synthetic_frames):
    """seen="rated" with NeuralMF/BPRMF: no user -- indexed or not, even one
    whose ratings are all below threshold -- gets an item they rated."""
    ratings = synthetic_frames[0].iloc[:6000]
    low = ratings["user_id"].isin(ratings["user_id"].unique()[:5])
    train = ratings.assign(rating=ratings["rating"].where(~low, 1))       # 5 users without positives
    data = recmf.Interactions.from_frame(train, seen="rated")
    assert len(data.unindexed_user_ids) == 5
    cls = recmf.NeuralMF if kind == "neuralmf" else recmf.BPRMF
    extra = {} if kind == "neuralmf" else {"triplets_per_epoch": 5000, "top_n": 50}
    model = cls(emb_dim=8, epochs=1, seed=0, n_threads=1, **extra).fit(data)
    users = train["user_id"].unique()
    recs = model.recommend(users, k=10, unknown="popular")
    rated = ref.rated_sets(train)
    for u, row in zip(users, recs):
        assert not set(row.tolist()) & rated[u], u


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

def tied_scores(rng, shape, high, specials):
    """float32 integers in [-high, high] (few values: many ties), then
    special values by share of the cells: ``specials`` lists (share, value)
    for consecutive slices of one uniform draw per cell."""
    scores = rng.integers(-high, high + 1, size=shape).astype(np.float32)
    u = rng.random(shape)
    lo = 0.0
    for share, value in specials:
        scores[(u >= lo) & (u < lo + share)] = value
        lo += share
    return scores


@pytest.mark.parametrize("k", [1, 3, 7, 25])
def test_topk_rows_equals_ref(k):
    rng = np.random.default_rng(k)
    n_rows, n_cols = 40, 17
    # few distinct values: many ties; plus NaN and infinities
    scores = tied_scores(rng, (n_rows, n_cols), 3, [(0.08, np.nan), (0.04, -np.inf), (0.02, np.inf)])
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


@pytest.mark.parametrize("k", [1, 10, 40])
def test_topk_rows_wide_rows_equal_ref(k):
    # Rows much wider than the selector's 32-column blocks, which it skips
    # once its heap is full and no score in the block beats the worst
    # kept: ties at the root's score, signed zeros, NaN roots (rows mostly
    # NaN), infinities and seen items on both sides of block edges.
    rng = np.random.default_rng(100 + k)
    n_rows, n_cols = 30, 333
    scores = tied_scores(rng, (n_rows, n_cols), 4,
                         [(0.05, np.nan), (0.03, -np.inf), (0.01, np.inf), (0.06, -0.0)])
    scores[2, :] = np.nan
    scores[2, [0, 40, 300]] = [1.0, -0.0, 0.0]           # NaN root after 3 numbers
    scores[3, :] = 0.0
    scores[3, 1::2] = -0.0                               # one long tie of zeros
    scores[4] = np.linspace(-1, 1, n_cols)[::-1]         # best first: every block skipped
    scores[5] = np.linspace(-1, 1, n_cols)               # best last: no block skipped
    seen_sets = [sorted(rng.choice(n_cols, size=rng.integers(0, 120), replace=False).tolist())
                 for _ in range(n_rows)]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(x) for x in seen_sets])
    indices = np.array([c for x in seen_sets for c in x], dtype=np.int32)
    rows = np.arange(n_rows, dtype=np.int32)
    for seen, lists in [((indptr, indices, n_cols), seen_sets), (None, None)]:
        items, vals, lens = _core.topk_rows(scores, seen, rows if seen else None, k, 2)
        ei, es, el = ref.pad_topk(*ref.topk_ref(scores, lists, k), k)
        np.testing.assert_array_equal(items, ei)
        np.testing.assert_array_equal(vals, es)
        np.testing.assert_array_equal(lens, el)


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


# ---------------------------------------------------------------------------
# Memory layouts at the boundary (issue 9, case 08): whatever pandas and NumPy
# hold -- unaligned, strided, reversed, big-endian, read-only, extension
# dtypes -- gives the result of a plain copy; only recmf._core demands
# contiguous aligned native arrays, and no message names its internal arrays.
# ---------------------------------------------------------------------------

def _unaligned(a):
    """A read-only view one byte off alignment, as np.frombuffer gives for a
    pickle-5 buffer at an odd offset."""
    return np.frombuffer(b"\0" + a.tobytes(), dtype=a.dtype, offset=1)


def _unaligned_writable(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype)
    view[:] = a
    return view


def _read_only(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def _column_of_block(a):
    block = np.zeros((len(a), 3), a.dtype)
    block[:, 1] = a
    return block[:, 1]


LAYOUTS = {
    "unaligned-readonly": _unaligned,
    "unaligned": _unaligned_writable,
    "negative-stride": lambda a: a[::-1].copy()[::-1],
    "strided": _column_of_block,
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "read-only": _read_only,
    "Int64": lambda a: pd.array(a, dtype="Int64" if a.dtype.kind == "i" else "Float64"),
    "category": lambda a: pd.Categorical(a),
    "pyarrow": lambda a: pd.array(a, dtype="int64[pyarrow]" if a.dtype.kind == "i" else "double[pyarrow]"),
}


def _layout_frames(layout, n=600, seed=0):
    g = np.random.default_rng(seed)
    cols = {"user_id": g.integers(1, 40, n), "movie_id": g.integers(1, 70, n),
            "rating": g.integers(1, 6, n), "timestamp": g.integers(0, 10**6, n)}
    plain = pd.DataFrame(cols)
    if layout == "pyarrow":
        pytest.importorskip("pyarrow")
    odd = pd.DataFrame({k: LAYOUTS[layout](v) for k, v in cols.items()}, copy=False)
    return plain, odd, cols


def _same_frame(got, want):
    np.testing.assert_array_equal(got.index, want.index)
    pd.testing.assert_frame_equal(got.astype(want.dtypes.to_dict()), want)


def test_unaligned_columns_field_case():
    """Field case 08: int64 columns one byte off alignment split, index and
    evaluate as their aligned copy (temporal_split used to raise 'user must
    be C-contiguous and aligned')."""
    plain, odd, _ = _layout_frames("unaligned")
    assert not odd["user_id"].to_numpy().flags.aligned
    for g, w in zip(recmf.temporal_split(odd), recmf.temporal_split(plain)):
        pd.testing.assert_frame_equal(g, w)
    d1, d2 = recmf.Interactions.from_frame(plain), recmf.Interactions.from_frame(odd)
    assert d1 == d2
    pop = recmf.Popularity().fit(d1)
    assert recmf.evaluate(pop, odd, k=5) == recmf.evaluate(pop, plain, k=5)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_frame_entry_points_take_any_layout(layout):
    """temporal_split, Interactions.from_frame (both seen rules),
    Popularity.fit on a frame and evaluate, on columns of every layout,
    equal the plain copy; the input is not modified."""
    plain, odd, _ = _layout_frames(layout)
    before = {c: (odd[c].dtype, odd[c].to_numpy(copy=True)) for c in odd.columns}
    for g, w in zip(recmf.temporal_split(odd, n_val=1, n_test=3, min_train=2),
                    recmf.temporal_split(plain, n_val=1, n_test=3, min_train=2)):
        _same_frame(g, w)
    for seen in ("positives", "rated"):
        assert recmf.Interactions.from_frame(odd, seen=seen) == \
            recmf.Interactions.from_frame(plain, seen=seen)
    pop = recmf.Popularity().fit(odd)
    np.testing.assert_array_equal(pop.order_, recmf.Popularity().fit(plain).order_)
    users = plain["user_id"].unique()
    assert recmf.evaluate(pop, odd, k=5, coverage_users=users[:10]) == \
        recmf.evaluate(pop, plain, k=5, coverage_users=users[:10])
    for c, (dtype, values) in before.items():
        assert odd[c].dtype == dtype
        np.testing.assert_array_equal(odd[c].to_numpy(), values)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_id_arrays_take_any_layout(layout):
    """recommend, recommend_frame, score, user_index and evaluate's
    coverage_users/catalog with id arrays of every layout equal plain ones."""
    plain, _, _ = _layout_frames("read-only")
    if layout == "pyarrow":
        pytest.importorskip("pyarrow")
    model = recmf.Popularity().fit(plain)
    data = model.data_
    users = np.concatenate([data.user_ids[::2], [10**9]])          # one unknown user
    u_pairs = np.repeat(data.user_ids[:4], 3)
    i_pairs = np.tile(data.item_ids[:3], 4)
    odd = LAYOUTS[layout]
    np.testing.assert_array_equal(model.recommend(odd(users), k=4, unknown="popular"),
                                  model.recommend(users, k=4, unknown="popular"))
    pd.testing.assert_frame_equal(model.recommend_frame(odd(users), k=4), model.recommend_frame(users, k=4))
    np.testing.assert_array_equal(model.score(odd(u_pairs), odd(i_pairs)), model.score(u_pairs, i_pairs))
    np.testing.assert_array_equal(data.user_index(odd(users)), data.user_index(users))
    catalog = np.arange(1, 80)
    assert recmf.evaluate(model, plain, k=5, coverage_users=odd(users), catalog=odd(catalog)) == \
        recmf.evaluate(model, plain, k=5, coverage_users=users, catalog=catalog)


@pytest.mark.parametrize("dtype", ["object", "str", "string[python]", "string[pyarrow]", "category"])
def test_string_id_dtypes_give_the_same_results(dtype):
    """String ids held as object, pandas' str/string dtypes (python or
    pyarrow storage) or categoricals split, index and evaluate alike."""
    if "pyarrow" in dtype:
        pytest.importorskip("pyarrow")
    plain, _, _ = _layout_frames("read-only", seed=2)
    base = plain.assign(user_id="u" + plain["user_id"].astype(str),
                        movie_id="m" + plain["movie_id"].astype(str))
    base = base.astype({"user_id": object, "movie_id": object})
    other = base.astype({"user_id": dtype, "movie_id": dtype})
    for g, w in zip(recmf.temporal_split(other), recmf.temporal_split(base)):
        np.testing.assert_array_equal(g.index, w.index)
    assert recmf.Interactions.from_frame(other) == recmf.Interactions.from_frame(base)
    pop = recmf.Popularity().fit(base)
    assert recmf.evaluate(pop, other, k=5) == recmf.evaluate(pop, base, k=5)
    users = other["user_id"].iloc[:20]
    np.testing.assert_array_equal(pop.recommend(users, k=3), pop.recommend(base["user_id"].iloc[:20], k=3))


def test_interactions_from_arrays_of_any_layout():
    """An Interactions built from arrays in odd layouts (e.g. a CSR read back
    by another tool) works with the core and leaves the caller's arrays
    writable."""
    plain = recmf.Interactions.from_frame(_layout_frames("read-only")[0])
    for name, odd in LAYOUTS.items():
        if name in ("Int64", "category", "pyarrow"):
            continue
        arrays = [odd(np.asarray(a)) for a in (plain.indptr, plain.indices, plain.user_ids, plain.item_ids,
                                               plain.positions)]
        writable = [a.flags.writeable for a in arrays]
        data = recmf.Interactions(*arrays[:4], positions=arrays[4])
        assert data == plain, name
        assert recmf.Interactions(*arrays[:4]) != plain      # the same matrix without the order
        np.testing.assert_array_equal(data.popularity(), plain.popularity())
        np.testing.assert_array_equal(recmf.Popularity().fit(data).recommend(plain.user_ids, k=5),
                                      recmf.Popularity().fit(plain).recommend(plain.user_ids, k=5))
        assert [a.flags.writeable for a in arrays] == writable, name
