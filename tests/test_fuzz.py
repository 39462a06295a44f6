"""Bounded fuzz tests of the readers and of every ``recmf._core`` entry point
(issue 20, the parser kind).

The readers: 84,000 randomly mutated ratings files once gave no crash and no
hang, but two library exceptions leaked -- ``zlib.error`` from a corrupt
gzip, ``_csv.Error`` from a bare CR in the first line -- instead of a
ValueError naming the file.  Here mutated ratings files (every compression
the reader knows) and mutated MovieLens folders must give a frame or a
ValueError that names the file, and nothing else.

The core: each entry point is called with valid arguments built for a small
random problem, then with one argument mutated (dtype, length, layout,
read-only, values out of range, sizes negative or absurd, wrong types).  A
call may return or raise TypeError, ValueError (SamplingError is one),
OverflowError or MemoryError; anything else -- a crash above all, and under
``tools/sanitize.sh`` any out-of-bounds access -- fails.  Every callable of
``_core`` must have a builder here: a new entry point is fuzzed from its
first commit.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recmf
from recmf import _core

#: examples per core entry point; RECMF_FUZZ_EXAMPLES=5000 for a long campaign
EXAMPLES = int(os.environ.get("RECMF_FUZZ_EXAMPLES", "60"))
#: The suite draws the same examples on every run (a CI run must not pass or
#: fail by luck); a campaign (RECMF_FUZZ_EXAMPLES set) draws fresh ones.
DERANDOMIZE = "RECMF_FUZZ_EXAMPLES" not in os.environ
FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=DERANDOMIZE,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- readers -------------------------------------------------------------------

def _ratings_bytes(rng, sep, header):
    n = int(rng.integers(1, 30))
    rows = [sep.join(str(int(x)) for x in (rng.integers(1, 50), rng.integers(1, 80), rng.integers(1, 6),
                                           rng.integers(0, 10 ** 9))) for _ in range(n)]
    lines = ([sep.join(["userId", "movieId", "rating", "timestamp"])] if header else []) + rows
    return ("\n".join(lines) + "\n").encode()


def _compress(data, how):
    if how == "gzip":
        return gzip.compress(data)
    if how == "bz2":
        return bz2.compress(data)
    if how == "xz":
        return lzma.compress(data)
    if how == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("ratings.csv", data)
        return buf.getvalue()
    return data


_INSERTS = [b"\r", b"\n", b"\r\n", b"\x00", b'"', b",", b"::", b"\t", b" ", b"\xff", b"\xef\xbb\xbf",
            b"\xff\xfe", b"-", b"1e999", b"nan", b"99999999999999999999999"]


@st.composite
def mutations(draw):
    """A list of (position fraction, kind, payload) edits of a byte string."""
    return draw(st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["flip", "insert", "delete", "truncate"]),
                                   st.integers(0, 255), st.sampled_from(_INSERTS)), min_size=1, max_size=4))


def _apply(data, edits):
    b = bytearray(data)
    for frac, kind, byte, payload in edits:
        if not b:
            break
        at = min(int(frac * len(b)), len(b) - 1)
        if kind == "flip":
            b[at] ^= byte or 1
        elif kind == "insert":
            b[at:at] = payload
        elif kind == "delete":
            del b[at:at + 1 + byte % 8]
        else:
            del b[at:]
    return bytes(b)


@FUZZ
@given(seed=st.integers(0, 2 ** 32 - 1), sep=st.sampled_from([",", "::", "\t", ";", "|", " "]),
       header=st.booleans(), compression=st.sampled_from(["none", "gzip", "bz2", "xz", "zip"]),
       before=st.booleans(), edits=mutations(), give_sep=st.booleans())
def test_mutated_ratings_files_read_or_raise_a_value_error_naming_the_file(
        tmp_path, seed, sep, header, compression, before, edits, give_sep):
    """The edits fall on the text (before=True) or on the compressed bytes;
    either way read_ratings gives four columns or a ValueError whose message
    starts with the file's path."""
    rng = np.random.default_rng(seed)
    text = _ratings_bytes(rng, sep, header)
    data = _compress(_apply(text, edits), compression) if before else _apply(_compress(text, compression), edits)
    path = tmp_path / "ratings.fuzz"
    path.write_bytes(data)
    try:
        frame = recmf.read_ratings(path, sep=sep if give_sep else None)
    except ValueError as e:
        assert str(path) in str(e), repr(e)
        return
    assert list(frame.columns) == ["user_id", "movie_id", "rating", "timestamp"]


def test_the_two_reported_leaks_are_value_errors(tmp_path):
    """The field report's two exceptions: a corrupt gzip (zlib.error), a bare
    CR inside a field of the first line (_csv.Error)."""
    text = b"1,10,5,100\n2,20,4,200\n" * 50
    data = bytearray(gzip.compress(text))
    data[len(data) // 2] ^= 0x55                 # a byte flipped in the deflate stream
    path = tmp_path / "ratings.csv.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^{path}: damaged or unsupported gzip data"):
        recmf.read_ratings(path)
    path.write_bytes(gzip.compress(text)[:-9])   # truncated: EOFError inside gzip
    with pytest.raises(ValueError, match=rf"^{path}: damaged or unsupported gzip data"):
        recmf.read_ratings(path)
    cr = tmp_path / "ratings.csv"
    cr.write_bytes(b'1,1"0\r,5,100\n2,20,4,200\n')
    with pytest.raises(ValueError, match=rf"^{cr}"):
        recmf.read_ratings(cr)
    # a lone CR ends the line, as for the parser and pandas
    cr.write_bytes(b"1,10,5,100\r2,20,4,200\n")
    assert recmf.read_ratings(cr)["movie_id"].tolist() == [10, 20]


def _folder(tmp_path, rng):
    folder = tmp_path / "ml"
    folder.mkdir(exist_ok=True)
    (folder / "ratings.dat").write_bytes(_ratings_bytes(rng, "::", False))
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's\n"
                                        "2::Jumanji (1995)::Adventure\n".encode("latin-1"))
    return folder


@settings(max_examples=100, deadline=None, database=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1), name=st.sampled_from(["ratings.dat", "users.dat", "movies.dat"]),
       compression=st.sampled_from(["none", "gzip"]), edits=mutations())
def test_mutated_movielens_folders_load_or_raise_a_value_error_naming_the_file(
        tmp_path, seed, name, compression, edits):
    folder = _folder(tmp_path, np.random.default_rng(seed))
    target = folder / name
    data = _apply(target.read_bytes(), edits)
    target.unlink()
    if compression == "gzip":
        target = folder / (name + ".gz")
        data = gzip.compress(data)
    target.write_bytes(data)
    try:
        ratings, users, movies = recmf.load_movielens(folder)
    except ValueError as e:
        assert str(target) in str(e), repr(e)
        return
    assert len(users.columns) >= 1 and "movie_id" in movies.columns


# -- the C core ----------------------------------------------------------------

NU, NI, D, H = 7, 9, 4, 5


def _csr(rng, n_rows=NU, n_cols=NI):
    """A sound CSR where every row has 1..n_cols-2 items (so negatives exist)."""
    indptr, indices = [0], []
    for _ in range(n_rows):
        k = int(rng.integers(1, n_cols - 1))
        indices += sorted(rng.choice(n_cols, size=k, replace=False).tolist())
        indptr.append(len(indices))
    return np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int32)


def _seq(rng, n_rows=NU, n_items=NI):
    indptr, items = _csr(rng, n_rows, n_items)
    items = items.copy()
    for r in range(n_rows):
        rng.shuffle(items[indptr[r]:indptr[r + 1]])
    return indptr, items


def _ids(rng, n, hi):
    return rng.integers(0, hi, n).astype(np.int32)


def _config(kind):
    """A small config of the core's model table (its fields: _core.model_info)."""
    cfg = {"n_users": NU, "n_items": NI}
    if kind in ("neuralmf", "bprmf"):
        cfg.update(emb_dim=D, lr=0.01, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8, batch_size=8,
                   seed=1, n_threads=2, lazy_adam=0)
    if kind == "neuralmf":
        cfg.update(hidden_dim=H, dropout=0.1, n_neg=2)
    if kind == "ease":
        cfg.update(l2=5.0)
    return cfg


def _theta(rng, kind):
    cfg = _config(kind)
    return cfg, (0.1 * rng.standard_normal(_core.n_params(kind, cfg))).astype(np.float32)


def _b_topk(rng):
    scores = rng.standard_normal((5, NI)).astype(np.float32)
    ip, ix = _csr(rng, 5)
    return [scores, (ip, ix, NI), np.arange(5, dtype=np.int32), 3, 2], {}


def _b_transition(rng):
    ip, items = _seq(rng)
    t_ip, t_ix, w = _core.transition_counts((ip, items, NI), 2, 0.5, 1)
    return (t_ip, t_ix, NI), w.astype(np.float32), (ip, items, NI)


def _b_ease(rng):
    ip, ix = _csr(rng)
    B = np.zeros((NI, NI), np.float32)
    _core.fit("ease", _config("ease"), (ip, ix), B, 1)
    return B, ip, ix


def _b_model(kind):
    def build(rng):
        cfg, theta = _theta(rng, kind)
        ip, ix = _csr(rng)
        return [kind, cfg, theta, _ids(rng, 6, NU), (ip, ix, NI), 3, 2], {}
    return build


def _b_pairs(kind):
    def build(rng):
        cfg, theta = _theta(rng, kind)
        return [kind, cfg, theta, _ids(rng, 10, NU), _ids(rng, 10, NI), 2], {}
    return build


def _b_ease_recommend(rng):
    B, ip, ix = _b_ease(rng)
    return ["ease", _config("ease"), B, _ids(rng, 4, NU), (ip, ix, NI), 3, 2], \
        dict(history=(ip, ix), weights=rng.random(len(ix)).astype(np.float32),
             allowed=rng.integers(0, 2, NI).astype(np.uint8))


def _b_ncf_epoch(rng):
    cfg, theta = _theta(rng, "neuralmf")
    return ["neuralmf", cfg, _csr(rng), 1, theta, np.zeros_like(theta), np.zeros_like(theta), 0], {}


def _b_bpr_epoch(rng):
    cfg, theta = _theta(rng, "bprmf")
    return ["bprmf", cfg, (_ids(rng, 20, NU), _ids(rng, 20, NI), _ids(rng, 20, NI)), 1, theta,
            np.zeros_like(theta), np.zeros_like(theta), 0], {}


def _b_als(rng):
    ip, ix = _csr(rng)
    Y = rng.standard_normal((NI, D)).astype(np.float32)
    X = rng.standard_normal((NU, D)).astype(np.float32)
    return [ip, ix, None, Y, X, 1.0, 2.0, int(rng.integers(0, 2)), 2, 2, True], {}


def _b_metrics(rng):
    recs = rng.integers(0, 20, (4, 3)).astype(np.int64)
    for r in recs:                      # distinct within a list
        r[:] = rng.choice(20, 3, replace=False)
    return [recs, np.array([3, 2, 0, 1], np.int32), np.array([0, 2, 3, 3, 5], np.int64),
            np.array([1, 4, 2, 0, 7], np.int64)], {}


def _b_coverage(rng):
    recs, lens = _b_metrics(rng)[0][:2]
    return [recs, lens, np.arange(0, 20, 2, dtype=np.int64), np.arange(20, dtype=np.int64),
            rng.random(20)], {}


def _b_adam(rng):
    theta = rng.standard_normal(12).astype(np.float32)
    return [theta, rng.standard_normal(12).astype(np.float32), np.zeros(12, np.float32),
            np.zeros(12, np.float32), 1], dict(lr=0.01, n_threads=2)


def _b_fp_probe(rng):
    return [2, rng.random((6, 5)).astype(np.float32), rng.random((5, 4)).astype(np.float32)], {}


def _spd(rng, n=6):
    a = rng.standard_normal((n, n)).astype(np.float32)
    return (a @ a.T + n * np.eye(n)).astype(np.float32)


#: name -> builder(rng) -> (args, kwargs); positions of arguments that size
#: an output explicitly (mutated only to -1, 0, 1 or an impossible size)
BUILDERS = {
    "parse_ratings": (lambda rng: ([b"1,2,5,100\n3,4,3.5,200\n", ",", 0], {}), ()),
    "temporal_split": (lambda rng: ([rng.integers(0, 4, 12).astype(np.int64), rng.integers(0, 9, 12).astype(np.int64),
                                     1, 1, 1], {}), ()),
    "factorize": (lambda rng: ([rng.integers(-5, 5, 10).astype(np.int64)], {}), ()),
    "build_csr": (lambda rng: ([_ids(rng, 10, NU), _ids(rng, 10, NI), NU, NI], {}), (2, 3)),
    "item_counts": (lambda rng: ([*_csr(rng), NI], {}), (2,)),
    "popularity_order": (lambda rng: ([rng.integers(0, 5, NI).astype(np.int64)], {}), ()),
    "sample_uniform": (lambda rng: ([*_csr(rng), NI, 2, 1, 1, 2], {}), (3,)),
    "sample_triplets": (lambda rng: ([*_csr(rng), NI, np.arange(NI, dtype=np.int32), 20, 1, 1, 2], {}), (4,)),
    "transition_counts": (lambda rng: ([(*_seq(rng), NI), 2, 0.5, 2], {}), ()),
    "transition_scores": (lambda rng: (lambda t, p, h: ([t, p, h, _ids(rng, 5, NU), 2.0, 2], {}))(
        *_b_transition(rng)), ()),
    "transition_recommend": (lambda rng: (lambda t, p, h: ([t, p, h, _ids(rng, 5, NU), 2.0, (*_csr(rng), NI), 3, 2],
                                                           {}))(*_b_transition(rng)), ()),
    "topk_rows": (_b_topk, ()),
    "topk_ranked": (lambda rng: ([rng.permutation(NI).astype(np.int32), (*_csr(rng), NI), _ids(rng, 5, NU), 3],
                                 {}), ()),
    "fit": (lambda rng: (["ease", _config("ease"), _csr(rng), np.zeros((NI, NI), np.float32), 2], {}), ()),
    "spotrf_lower": (lambda rng: ([_spd(rng), 2], {}), ()),
    "ease_gram": (lambda rng: ([*_csr(rng), NI, 2], {}), (2,)),
    "ranking_metrics": (_b_metrics, ()),
    "coverage_popularity": (_b_coverage, ()),
    "score_pairs": (_b_pairs("neuralmf"), ()),
    "recommend": (_b_model("bprmf"), ()),
    "recommend_history": (_b_ease_recommend, ()),
    "n_params": (lambda rng: (["neuralmf", _config("neuralmf")], {}), ()),
    "layout": (lambda rng: (["neuralmf", _config("neuralmf")], {}), ()),
    "models": (lambda rng: ([], {}), ()),
    "model_info": (lambda rng: (["bprmf"], {}), ()),
    "train_epoch": (_b_ncf_epoch, ()),
    "train_epoch_triplets": (_b_bpr_epoch, ()),
    "als_solve": (_b_als, ()),
    "build_info": (lambda rng: ([], {}), ()),
    "blas_threads": (lambda rng: ([0], {}), ()),
    "exact_subnormals": (lambda rng: ([None], {}), ()),
    "adam_step": (_b_adam, ()),
    "batch_grad": (lambda rng: (lambda cfg, theta: (["neuralmf", cfg, theta, (
        _ids(rng, 6, NU), _ids(rng, 6, NI), rng.integers(0, 2, 6).astype(np.float32)), 2], {}))(
        *_theta(rng, "neuralmf")), ()),
    "batch_grad_triplets": (lambda rng: (lambda cfg, theta: (["bprmf", cfg, theta, (
        _ids(rng, 6, NU), _ids(rng, 6, NI), _ids(rng, 6, NI)), 2], {}))(*_theta(rng, "bprmf")), ()),
    "epoch_order": (lambda rng: ([10, 1, 1, 2], {}), (0,)),
    "dropout_mask": (lambda rng: ([0.2, 1, 1, 1, 6, H], {}), (4, 5)),
    "score_pairs_mf": (_b_pairs("bprmf"), ()),
    "recommend_neuralmf": (_b_model("neuralmf"), ()),
    "_fp_probe": (_b_fp_probe, ()),
    "_fp_probe_plain": (lambda rng: ([2], {}), ()),
    "_fp_mode": (lambda rng: ([-1], {}), ()),
    "_pacer": (lambda rng: ([0], {}), ()),
    "_pacer_trace": (lambda rng: ([2, rng.random(20), rng.random(20)], {}), ()),
    "_fork_release": (lambda rng: ([True], {}), ()),
    "_interrupt_at": (lambda rng: ([-1], {}), ()),
}


#: training keywords that size the core's own buffers (a NeuralMF epoch
#: holds n_neg negatives per positive): mutated only to -1, 0, 1 or an
#: impossible size, as the size arguments above.  (A size the memory cannot
#: hold makes the core's malloc fail -- MemoryError -- but ASan's allocator
#: aborts instead unless ASAN_OPTIONS=allocator_may_return_null=1.)
SIZE_KWARGS = {"n_neg", "batch_size", "n_users", "n_items", "emb_dim", "hidden_dim", "factors"}


#: builders of a second call of an entry point (another model kind)
VARIANTS = {"recommend_history": "recommend", "train_epoch_triplets": "train_epoch",
            "batch_grad_triplets": "batch_grad", "score_pairs_mf": "score_pairs",
            "recommend_neuralmf": "recommend"}


def _entry(name):
    return VARIANTS.get(name, name)


def _entry_points():
    return sorted(name for name in dir(_core)
                  if callable(getattr(_core, name)) and not isinstance(getattr(_core, name), type)
                  and not name.startswith("__"))


def test_every_core_entry_point_has_a_fuzz_builder():
    missing = sorted(set(_entry_points()) - {_entry(name) for name in BUILDERS})
    assert not missing, f"_core entry points without a fuzz builder in tests/test_fuzz.py: {missing}"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_valid_arguments_are_accepted(name):
    """The builders give calls the core accepts (else the fuzz below would
    only ever test the first check)."""
    assert hasattr(_core, _entry(name)), f"a builder for {name}, which _core does not have"
    args, kwargs = BUILDERS[name][0](np.random.default_rng(0))
    with _restored():
        getattr(_core, _entry(name))(*args, **kwargs)


class _restored:
    """Puts back the process-wide settings some entry points change."""

    def __enter__(self):
        self.state = (_core.blas_threads(), _core.exact_subnormals(), _core._fp_mode())

    def __exit__(self, *exc):
        blas, exact, mode = self.state
        _core.blas_threads(blas)
        _core.exact_subnormals(exact)
        _core._fp_mode(mode)
        _core._pacer(0)
        _core._fork_release(True)
        _core._interrupt_at(0)             # a mutated hook must not raise SIGINT in a later call
        return False


_NUMPY_KINDS = {"i": np.float64, "u": np.float64, "f": np.int64, "b": np.int64}


def _mutate_array(a, how, at, rng):
    if how == "dtype":
        other = np.float32 if a.dtype == np.float64 else np.float64 if a.dtype == np.float32 else \
            _NUMPY_KINDS.get(a.dtype.kind, np.float64)
        return a.astype(other)
    if how == "int32/64":
        return a.astype(np.int32 if a.dtype == np.int64 else np.int64) if a.dtype.kind in "iu" else a
    if how == "short":
        return a[:-1].copy() if a.ndim == 1 else a[:-1].copy()
    if how == "long":
        return np.concatenate([a, a[:1]]) if a.size else np.zeros(1, a.dtype)
    if how == "strided":
        return np.repeat(a, 2, axis=0)[::2]
    if how == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if how == "empty":
        return a[:0].copy()
    if how == "reshape":
        return a.reshape(1, -1) if a.ndim == 1 else a.reshape(-1)
    if how == "unaligned":
        b = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        return b
    b = a.copy()
    if b.size == 0:
        return b
    flat = b.reshape(-1)
    i = at % flat.size
    if b.dtype.kind in "iu":
        info = np.iinfo(b.dtype)
        flat[i] = {"neg": -1 if b.dtype.kind == "i" else info.max, "big": info.max, "min": info.min,
                   "zero": 0}.get(how, flat[i] + 1)
    elif b.dtype.kind == "f":
        flat[i] = {"neg": -1.0, "big": np.inf, "min": -np.inf, "zero": np.nan}.get(how, flat[i] * 1e30)
    return b


_ARRAY_HOWS = ["dtype", "int32/64", "short", "long", "strided", "readonly", "empty", "reshape", "unaligned",
               "neg", "big", "min", "zero", "shift"]


def _mutate(value, how, at, rng, size_arg):
    if how == "none":
        return None
    if how == "type":
        return "x" if not isinstance(value, str) else 3
    if isinstance(value, np.ndarray):
        return _mutate_array(value, _ARRAY_HOWS[at % len(_ARRAY_HOWS)], at, rng)
    if isinstance(value, tuple):
        if not value:
            return (1,)
        i = at % (len(value) + 1)
        if i == len(value):
            return value[:-1]
        return value[:i] + (_mutate(value[i], how, at // 7, rng, False),) + value[i + 1:]
    if isinstance(value, dict):                   # a model's config: one field, or an unknown one
        if not value or at % 11 == 0:
            return {**value, "nope": 1}
        key = sorted(value)[at % len(value)]
        return {**value, key: _mutate(value[key], how, at // 11, rng, key in SIZE_KWARGS)}
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        choices = [-1, 0, 1, 2 ** 40, -(2 ** 40)] if size_arg else \
            [-1, 0, 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 63, value + 1, 10 ** 30]
        return choices[at % len(choices)]
    if isinstance(value, float):
        return [float("nan"), float("inf"), -1.0, 0.0, 1e300][at % 5]
    if isinstance(value, str):
        return ["", "nope", "neuralmf", "bprmf", "als", "::", "\t"][at % 7]
    if isinstance(value, bytes):
        return value[:at % (len(value) + 1)] + bytes([at % 256])
    if value is None:
        return np.zeros(3, np.int32)
    return value


_ALLOWED = (TypeError, ValueError, OverflowError, MemoryError)


@pytest.mark.parametrize("name", ["topk_rows", "topk_ranked", "recommend_history", "transition_recommend"])
@pytest.mark.parametrize("mask", [2 ** 31 - 1, "x", [1, 0, 1], np.ones((3, 3), np.uint8)])
def test_a_candidate_mask_that_is_no_mask_is_refused(name, mask):
    """allowed= of another type or shape is a TypeError/ValueError naming it
    (topk_ranked read a Python int's "size" and crashed: found by the fuzz)."""
    args, kwargs = BUILDERS[name][0](np.random.default_rng(0))
    with pytest.raises((TypeError, ValueError), match="allowed"):
        getattr(_core, _entry(name))(*args, **{**kwargs, "allowed": mask})


@pytest.mark.parametrize("name", sorted(BUILDERS))
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), n_mutations=st.integers(1, 2), data=st.data())
def test_core_entry_points_survive_mutated_arguments(name, seed, n_mutations, data):
    if not hasattr(_core, _entry(name)):
        return
    build, sizes = BUILDERS[name]
    rng = np.random.default_rng(seed)
    args, kwargs = build(rng)
    args = list(args)
    for _ in range(n_mutations):
        if args and data.draw(st.integers(0, 4)):
            pos = data.draw(st.integers(0, len(args) - 1))
            how = data.draw(st.sampled_from(["value", "value", "value", "none", "type"]))
            args[pos] = _mutate(args[pos], how, data.draw(st.integers(0, 10 ** 6)), rng, pos in sizes)
        elif kwargs:
            key = data.draw(st.sampled_from(sorted(kwargs)))
            kwargs[key] = _mutate(kwargs[key], "value", data.draw(st.integers(0, 10 ** 6)), rng,
                                  key in SIZE_KWARGS)
        elif data.draw(st.booleans()):
            args = args[:-1]                          # too few arguments
        else:
            args = args + [0]                         # too many
    with _restored():
        try:
            getattr(_core, _entry(name))(*args, **kwargs)
        except _ALLOWED:
            pass
