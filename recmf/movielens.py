"""Reading MovieLens (and MovieLens-shaped) files into pandas frames.

The ratings file, the slow part of a load, is parsed by the C core in one
pass; users and movies files are small and go through pandas.  GroupLens
forbids redistribution, so recmf ships no data: point it at your own copy,
or call :func:`download_movielens` on a machine with network access.
"""
from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from . import _core

__all__ = ["load_movielens", "read_ratings", "find_movielens", "download_movielens",
           "DATA_ENV"]

#: Environment variable naming a folder that holds ``ml-1m/``, ``ml-100k/``...
DATA_ENV = "RECMF_DATA"

RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]

# Official GroupLens archives and their SHA-256 (as published and pinned by
# other projects); checked before anything is unpacked.
_ARCHIVES = {
    "ml-1m": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
              "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
    "ml-100k": ("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
}


# Magic numbers of the compressions pandas also reads (it infers them from
# the file name; the bytes are what tells, whatever the file is called).
_COMPRESSIONS = ((b"\x1f\x8b", gzip.decompress), (b"BZh", bz2.decompress),
                 (b"\xfd7zXZ\x00", lzma.decompress))


#: What the decompressors and zipfile raise on damaged or unsupported input
#: (a truncated gzip: EOFError; a flipped byte: zlib.error; bzip2: OSError;
#: an encrypted zip member: RuntimeError; a zip method Python lacks:
#: NotImplementedError).
_DECOMPRESS_ERRORS = (zlib.error, EOFError, OSError, lzma.LZMAError, zipfile.BadZipFile,
                      NotImplementedError, RuntimeError, ValueError)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they are gzip, bzip2, xz or a
    one-member zip.  Damaged compressed data is a ValueError naming the
    file (not the decompressor's own exception)."""
    data = path.read_bytes()
    try:
        for (magic, decompress), name in zip(_COMPRESSIONS, ("gzip", "bzip2", "xz")):
            if data.startswith(magic):
                return decompress(data)
        name = "zip"
        if data.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                members = [n for n in z.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise ValueError(f"{path} is a zip archive of {len(members)} files; "
                                     "recmf reads a zip holding exactly one")
                return z.read(members[0])
    except _DECOMPRESS_ERRORS as e:
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: damaged or unsupported {name} data ({type(e).__name__}: {e})") from None
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        raise ValueError(f"{path} is zstd-compressed; decompress it first (zstd -d)")
    return data


def _as_utf8(data: bytes, path: Path) -> bytes:
    """Drop a UTF-8 byte-order mark and re-encode UTF-16/32 text (what Excel's
    "Unicode text" writes) as UTF-8, so the header guess and the parser see
    the first field, not the mark (as pandas does with encoding="utf-8-sig")."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec).encode("utf-8")
            except UnicodeError as e:
                raise ValueError(f"{path}: starts with a {codec.upper()} byte-order mark but is not "
                                 f"{codec.upper()} text ({e})") from None
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):]
    return data


def _read_text(path: Path) -> str:
    """A small metadata file (users, movies, genres) as text: UTF-8 when the
    bytes are valid UTF-8 (a byte-order mark dropped), else Latin-1, the
    encoding of ML-1M's and ML-100K's titles."""
    data = _as_utf8(_read_bytes(path), path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# Separators tried, in this order, when the caller gives none.
_SEPARATORS = ("::", "\t", ",", ";", "|", " ")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _fields(line: str, sep: str):
    """The fields of one line, quotes and surrounding blanks removed."""
    if len(sep) == 1:
        fields = next(csv.reader([line], delimiter=sep), [])
    else:
        fields = line.split(sep)
    return [f.strip().strip('"').strip() for f in fields]


def _first_line(data: bytes):
    """(index, text) of the first line holding more than blanks; (0, "")
    for a blank file.  Lines end at LF, CRLF or a lone CR, as for the
    parser (and pandas): a CR inside what looks like a field ends the line
    there.  Only the first 64 kB are looked at."""
    for n, raw in enumerate(re.split(rb"\r\n|\r|\n", data[:65536])):
        line = raw.decode("latin-1")
        if line.strip():
            return n, line
    return 0, ""


def _guess_sep(line: str, path: Path) -> str:
    present = [s for s in _SEPARATORS if s in line]
    for s in present:
        if len(_fields(line, s)) == 4:
            return s
    if not present:
        raise ValueError(f"cannot tell the separator of {path}: first line {line!r}; pass sep=")
    return present[0]


def read_ratings(path, sep=None, header=None, columns=RATING_COLUMNS) -> pd.DataFrame:
    """Read a ratings file ``user SEP item SEP rating SEP timestamp``.

    The rows are those ``pandas.read_csv`` finds in the same bytes (with the
    separator and header below), parsed in one pass by the C core.
    Understood: gzip, bzip2, xz and one-file zip compression (recognised by
    content, whatever the file name); a UTF-8 byte-order mark and UTF-16/32
    text; LF, CRLF and CR line ends; blank lines anywhere; fields in double
    quotes or with blanks around them.  Lines end at LF, CRLF or a lone CR
    (in any mix, as pandas reads them).

    Parameters
    ----------
    path : str or Path
        The file.
    sep : {"::", "\\t", ",", ";", "|", " "} or None
        Field separator; when None, the first of these that splits the first
        non-blank line into four fields.
    header : bool or None
        Whether the first non-blank line is a header; when None, guessed: it
        is a header when none of its fields is a number (a line that mixes
        numbers and text is a malformed data line, reported as such).
    columns : list of 4 str
        Names of the returned columns.

    Returns
    -------
    DataFrame with int64 ids and timestamps, and float64 ratings (int64 when
    every rating is a whole number, as in ML-1M and ML-100K).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The separator cannot be guessed, or a line is not four numbers (the
        message names the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ratings file not found: {path}")
    data = _as_utf8(_read_bytes(path), path)
    first_n, first = _first_line(data)
    try:
        if sep is None:
            sep = _guess_sep(first, path)
        if header is None:
            header = bool(first.strip()) and not any(_NUMBER.fullmatch(f) for f in _fields(first, sep))
    except csv.Error as e:          # the csv module's own error (not a ValueError)
        raise ValueError(f"{path}: cannot read its first line {first[:80]!r} ({e})") from None
    skip = first_n + 1 if header else 0
    try:
        user, item, rating, ts = _core.parse_ratings(data, sep, skip)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    frame = pd.DataFrame({columns[0]: user, columns[1]: item, columns[2]: rating, columns[3]: ts})
    if len(rating) and np.all(np.floor(rating) == rating) and np.abs(rating).max() < 2 ** 31:
        frame[columns[2]] = rating.astype(np.int64)
    return frame


def _read_double_colon(path: Path, names) -> pd.DataFrame:
    """An ML-1M ``users.dat`` / ``movies.dat`` (fields split by ``::``,
    Latin-1 or UTF-8, no quoting) through pandas' C parser: a two-character
    separator would force the python engine, ~4x slower.  ``\x1f`` (unit
    separator) never occurs in these files."""
    text = _read_text(path)
    if "\x1f" in text:
        return pd.read_csv(io.StringIO(text), sep="::", engine="python", header=None,
                           names=names, quoting=csv.QUOTE_NONE)
    return pd.read_csv(io.StringIO(text.replace("::", "\x1f")), sep="\x1f", header=None,
                       names=names, quoting=csv.QUOTE_NONE, engine="c")


# The ratings file of each layout, in the order load_movielens looks for them.
_RATINGS_FILES = ("ratings.dat", "ratings.dat.gz", "u.data", "u.data.gz", "ratings.csv",
                  "ratings.csv.gz")


def _find(folder: Path, *names):
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def load_movielens(path=None):
    """Load a MovieLens folder as ``(ratings, users, movies)`` DataFrames.

    Understands the ML-1M layout (``ratings.dat`` or ``ratings.dat.gz``,
    ``users.dat``, ``movies.dat``), ML-100K (``u.data``, ``u.user``,
    ``u.item``) and ml-latest-small / ml-latest / ml-25m (``ratings.csv``,
    ``movies.csv``; no users file, so ``users`` holds just the ids).

    Parameters
    ----------
    path : str or Path, optional
        The dataset folder.  When None, :func:`find_movielens` looks for
        ML-1M in ``$RECMF_DATA`` and the usual places.

    Returns
    -------
    ratings : DataFrame ``user_id, movie_id, rating, timestamp``
    users : DataFrame with ``user_id`` first
    movies : DataFrame ``movie_id, title, genres``
    """
    folder = Path(path) if path is not None else find_movielens("ml-1m")
    if folder is None:
        raise FileNotFoundError(
            f"no MovieLens folder given and none found; pass a path or set ${DATA_ENV}")
    if folder.is_file():
        raise FileNotFoundError(f"{folder} is a file: pass the MovieLens folder that holds it, {folder.parent}")
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder not found: {folder}")

    # Each layout's separator is known; whether the ratings file has a header
    # is guessed, so a copy saved with (or without) one loses no row.
    if (r := _find(folder, "ratings.dat", "ratings.dat.gz")) is not None:   # ML-1M / 10M
        ratings = read_ratings(r, sep="::")
        users = movies = None
        if (u := _find(folder, "users.dat", "users.dat.gz")) is not None:
            users = _metadata(u, _read_double_colon, ["user_id", "gender", "age", "occupation", "zip"])
        if (m := _find(folder, "movies.dat", "movies.dat.gz")) is not None:
            movies = _metadata(m, _read_double_colon, ["movie_id", "title", "genres"])
    elif (r := _find(folder, "u.data", "u.data.gz")) is not None:           # ML-100K
        ratings = read_ratings(r, sep="\t")
        users = movies = None
        if (u := _find(folder, "u.user", "u.user.gz")) is not None:
            users = _metadata(u, lambda path: pd.read_csv(
                io.StringIO(_read_text(path)), sep="|", header=None,
                names=["user_id", "age", "gender", "occupation", "zip"]))
        if (m := _find(folder, "u.item", "u.item.gz")) is not None:
            movies = _metadata(m, _read_ml100k_items, folder)
    elif (r := _find(folder, "ratings.csv", "ratings.csv.gz")) is not None:  # ml-latest(-small)
        ratings = read_ratings(r, sep=",")
        users = None
        movies = None
        if (m := _find(folder, "movies.csv", "movies.csv.gz")) is not None:
            movies = _metadata(m, lambda path: pd.read_csv(io.StringIO(_read_text(path))).rename(
                columns={"movieId": "movie_id"}))
    else:
        raise FileNotFoundError(
            f"{folder} holds no ratings.dat(.gz), u.data or ratings.csv: not a MovieLens folder")
    if users is None:
        users = pd.DataFrame({"user_id": np.unique(ratings["user_id"].to_numpy())})
    if movies is None:
        movies = pd.DataFrame({"movie_id": np.unique(ratings["movie_id"].to_numpy())})
    return ratings, users, movies


def _metadata(path: Path, read, *args):
    """``read(path, *args)``: a users or movies file.  What its parser
    raises on a malformed file (pandas' ParserError, a column that is not a
    number, the csv module's Error) is a ValueError naming the file."""
    try:
        return read(path, *args)
    except (ValueError, TypeError, KeyError, IndexError, csv.Error) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable MovieLens file ({type(e).__name__}: {e})") from None


def _read_ml100k_items(path: Path, folder: Path) -> pd.DataFrame:
    """ML-100K's u.item: id|title|date|video date|url|19 genre flags."""
    raw = pd.read_csv(io.StringIO(_read_text(path)), sep="|", header=None)
    genre_names = _ml100k_genres(folder, raw.shape[1] - 5)
    flags = raw.iloc[:, 5:].to_numpy(dtype=bool)
    return pd.DataFrame({
        "movie_id": raw[0].astype(np.int64), "title": raw[1],
        "genres": ["|".join(g for g, f in zip(genre_names, row) if f) for row in flags]})


def _ml100k_genres(folder: Path, n: int):
    g = _find(folder, "u.genre")
    if g is not None:
        names = [line.split("|")[0] for line in _read_text(g).splitlines() if line]
        if len(names) == n:
            return names
    return [f"genre_{k}" for k in range(n)]


def _candidates():
    here = Path(__file__).resolve().parent
    env = os.environ.get(DATA_ENV)
    if env:
        yield Path(env)
    yield Path.cwd() / "data"
    yield Path.cwd().parent / "shared" / "data"
    yield here.parent.parent / "shared" / "data"     # a checkout beside shared/
    yield Path.home() / ".cache" / "recmf"


def find_movielens(name="ml-1m"):
    """Return the first folder ``<root>/<name>`` that holds MovieLens
    ratings, searching ``$RECMF_DATA``, ``./data``, ``../shared/data`` and
    ``~/.cache/recmf`` (where :func:`download_movielens` puts files); None
    when absent."""
    for root in _candidates():
        folder = root / name
        if folder.is_dir() and any((folder / f).is_file() for f in _RATINGS_FILES):
            return folder
    return None


def download_movielens(name="ml-1m", dest=None, url=None, sha256=None):
    """Download a GroupLens archive, check its SHA-256, and unpack it.

    Parameters
    ----------
    name : {"ml-1m", "ml-100k"} (others need url= and sha256=)
    dest : folder to unpack into (default ``~/.cache/recmf``)
    url, sha256 : override the archive location and checksum (a mirror).

    Returns the dataset folder.  Mind the GroupLens licence: research use,
    no redistribution.
    """
    if name not in _ARCHIVES and (url is None or sha256 is None):
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(_ARCHIVES)} (or pass url= and sha256=)")
    default_url, default_sha = _ARCHIVES.get(name, (None, None))
    url = url or default_url
    sha256 = (sha256 or default_sha).lower()
    dest = Path(dest) if dest is not None else Path.home() / ".cache" / "recmf"
    target = dest / name
    if find_movielens(name) == target:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "archive.zip"
        with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as f:
            shutil.copyfileobj(resp, f)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise IOError(f"checksum mismatch for {url}: got {digest}, expected {sha256}")
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        unpacked = Path(tmp) / name
        if not unpacked.is_dir():
            raise IOError(f"{url} did not contain a folder {name}/")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(unpacked), str(target))
    return target
