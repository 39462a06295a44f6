"""Property tests (hypothesis) of the data core on random small inputs:
split == the pandas reference and a partition of the input, CSR rows sorted
and distinct and equal to the positives, negative sampling never returns a
positive, is uniform, and fails cleanly (SamplingError) instead of hanging.
"""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recmf
from recmf import _core

import reference as ref

# Modest example counts keep the file well under 30 s; no deadline (tests do
# not time things) and no example database written into the repository.
PROPS = settings(max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

ID_OFFSETS = st.sampled_from([0, -(2**35), 2**40, 10**15])


@st.composite
def rating_frames(draw, min_size=1, max_size=80):
    """Random ratings: few users, items and timestamps, so equal (user,
    time) pairs and duplicated (user, item) pairs are common; ids may be
    negative or beyond 2^31; the index is shuffled and non-contiguous."""
    rows = draw(st.lists(st.tuples(st.integers(-2, 6),      # user
                                   st.integers(0, 9),       # item
                                   st.integers(1, 5),       # rating
                                   st.integers(0, 4)),      # timestamp
                         min_size=min_size, max_size=max_size))
    u_off, i_off = draw(ID_OFFSETS), draw(ID_OFFSETS)
    perm = draw(st.permutations(range(len(rows))))
    u, i, r, t = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return pd.DataFrame({"user_id": u * 7 + u_off, "movie_id": i * 3 + i_off, "rating": r,
                         "timestamp": t * 1000 + 978_300_000},
                        index=np.array(perm, dtype=np.int64) * 5 + 11)


@st.composite
def csr_sets(draw, max_users=8, max_items=12, allow_full=True):
    """(n_items, list of sorted positive sets per user), every user with at
    least one positive."""
    n_items = draw(st.integers(1, max_items))
    n_users = draw(st.integers(1, max_users))
    rows = []
    for _ in range(n_users):
        row = draw(st.sets(st.integers(0, n_items - 1), min_size=1,
                           max_size=n_items if allow_full else max(n_items - 1, 1)))
        rows.append(sorted(row))
    return n_items, rows


def to_csr(rows):
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.array([c for r in rows for c in r], dtype=np.int32)
    return indptr, indices


def run_guarded(fn, timeout=60.0):
    """Run ``fn`` in a thread and fail if it has not returned after
    ``timeout`` seconds.  Not a speed test: the bound is ~1000x the expected
    time and only turns a hang (an endless rejection loop) into a failure
    instead of a stuck test run.  Returns ("ok", value) or ("raised", exc)."""
    box = {}

    def target():
        try:
            box["result"] = ("ok", fn())
        except BaseException as e:   # noqa: BLE001 - handed back to the test
            box["result"] = ("raised", e)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), "the call did not return: it hangs"
    return box["result"]


# ---------------------------------------------------------------------------
# Split
# ---------------------------------------------------------------------------

@PROPS
@given(frame=rating_frames(), n_val=st.integers(0, 3), n_test=st.integers(0, 3),
       min_train=st.integers(0, 4))
def test_split_equals_reference_and_partitions(frame, n_val, n_test, min_train):
    before = frame.copy()
    parts = recmf.temporal_split(frame, n_val=n_val, n_test=n_test, min_train=min_train)
    want = ref.temporal_split_ref(frame, n_val, n_test, min_train)
    for g, w in zip(parts, want):
        pd.testing.assert_frame_equal(g, w)
    # exact partition of the input rows
    idx = np.concatenate([p.index.to_numpy() for p in parts])
    assert len(idx) == len(frame) and len(np.unique(idx)) == len(frame)
    assert set(idx.tolist()) == set(frame.index.tolist())
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), frame.sort_index())
    # per user: val/test sizes exactly n_val/n_test when eligible, else empty,
    # and nothing in val/test is earlier than train
    train, val, test = parts
    for u, n_rows in frame.groupby("user_id").size().items():
        eligible = n_rows >= min_train + n_val + n_test
        assert (val["user_id"] == u).sum() == (n_val if eligible else 0)
        assert (test["user_id"] == u).sum() == (n_test if eligible else 0)
        if eligible and n_test and (train["user_id"] == u).any():
            assert train.loc[train["user_id"] == u, "timestamp"].max() <= \
                test.loc[test["user_id"] == u, "timestamp"].min()
    pd.testing.assert_frame_equal(frame, before)            # input untouched


@PROPS
@given(frame=rating_frames(), unit=st.sampled_from(["s", "ms", "us", "ns"]),
       tz=st.sampled_from([None, "UTC", "Asia/Kolkata", "America/New_York"]),
       scale=st.sampled_from([1, 86_400 * 365 * 2000, -86_400 * 365 * 400]))
def test_split_datetime_of_any_unit_equals_reference(frame, unit, tz, scale):
    """Datetimes of every unit and zone, also thousands of years from 1970
    (beyond datetime64[ns]'s 1677..2262, within the years 1..9999 pandas can
    localize), split as pandas sorts them."""
    if unit == "ns":
        scale = 1 if abs(scale) > 1 else scale
    seconds = (frame["timestamp"].to_numpy() - 978_300_000) // 1000 * scale + 978_300_000
    times = pd.Series(seconds.astype(f"datetime64[s]").astype(f"datetime64[{unit}]"), index=frame.index)
    if tz is not None:
        times = times.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
        if times.isna().any():
            return
    frame = frame.assign(timestamp=times)
    for g, w in zip(recmf.temporal_split(frame, n_val=1, n_test=1, min_train=1),
                    ref.temporal_split_ref(frame, 1, 1, 1)):
        pd.testing.assert_frame_equal(g, w)


# ---------------------------------------------------------------------------
# Factorize
# ---------------------------------------------------------------------------

I64 = np.iinfo(np.int64)


@st.composite
def id_arrays(draw):
    """int64 ids whose span is tiny, about the table path's limit (4 per id,
    at least 2^16) or huge, so both the lookup-table and the sorting
    factorizer run, with both signs and the int64 extremes."""
    n = draw(st.integers(1, 60))
    kind = draw(st.sampled_from(["tiny", "near_limit", "huge", "extremes"]))
    if kind == "tiny":
        vals = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    elif kind == "near_limit":
        span = draw(st.sampled_from([2**16 - 1, 2**16, 2**16 + 1]))
        lo = draw(st.integers(-(2**40), 2**40))
        vals = [lo, lo + span - 1] + draw(st.lists(st.integers(lo, lo + span - 1), max_size=n))
    elif kind == "huge":
        vals = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
    else:
        vals = [int(I64.min), int(I64.max)] + draw(st.lists(st.sampled_from(
            [int(I64.min), int(I64.max), 0, -1, 1]), max_size=n))
    return np.array(vals, dtype=np.int64)


@PROPS
@given(user=id_arrays(), data=st.data())
def test_split_order_equals_stable_lexsort(user, data):
    # The core sorts by (user, time) through one packed 64-bit key when the
    # two spans and the row number fit, and by two radix sorts otherwise;
    # spans here range from tiny to the int64 extremes, so both run.
    time = data.draw(st.sampled_from([
        np.zeros(len(user), dtype=np.int64),
        np.arange(len(user), dtype=np.int64)[::-1] % 3,
        np.array(data.draw(st.lists(st.integers(int(I64.min), int(I64.max)),
                                    min_size=len(user), max_size=len(user))), dtype=np.int64)]))
    order, part = _core.temporal_split(user, time, 1, 1, 1)
    np.testing.assert_array_equal(order, np.lexsort((time, user)))


@PROPS
@given(ids=id_arrays())
def test_factorize_equals_numpy_unique(ids):
    codes, uniques = _core.factorize(ids)
    want_uniques, want_codes = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(uniques, want_uniques)
    np.testing.assert_array_equal(codes, want_codes.astype(np.int32))
    assert codes.dtype == np.int32


# ---------------------------------------------------------------------------
# CSR
# ---------------------------------------------------------------------------

@PROPS
@given(frame=rating_frames(), threshold=st.sampled_from([1, 3, 4, 5, 4.5]))
def test_csr_rows_sorted_distinct_and_equal_positives(frame, threshold):
    positives = frame[frame["rating"] >= threshold]
    if positives.empty:
        with pytest.raises(ValueError, match="no positive"):
            recmf.Interactions.from_frame(frame, threshold=threshold)
        return
    data = recmf.Interactions.from_frame(frame, threshold=threshold)
    assert data.indptr[0] == 0 and data.indptr[-1] == data.nnz
    for u in range(data.n_users):
        row = data.indices[data.indptr[u]:data.indptr[u + 1]]
        assert len(row) > 0                               # only users with positives
        assert np.all(np.diff(row) > 0)                   # sorted and distinct
        assert row.min() >= 0 and row.max() < data.n_items
    pairs = set(zip(positives["user_id"].tolist(), positives["movie_id"].tolist()))
    got = data.to_frame()
    got_pairs = list(zip(got["user_id"].tolist(), got["item_id"].tolist()))
    assert len(got_pairs) == len(set(got_pairs)) and set(got_pairs) == pairs
    assert data.n_duplicates == len(positives) - len(pairs)
    ix = ref.index_ref(frame, threshold=threshold)
    np.testing.assert_array_equal(data.indptr, ix["indptr"])
    np.testing.assert_array_equal(data.indices, ix["indices"])
    np.testing.assert_array_equal(data.user_ids, ix["user_ids"])
    np.testing.assert_array_equal(data.item_ids, ix["item_ids"])


# ---------------------------------------------------------------------------
# Uniform negatives
# ---------------------------------------------------------------------------

@PROPS
@given(csr=csr_sets(), n_neg=st.integers(1, 6), seed=st.integers(0, 2**64 - 1),
       epoch=st.integers(0, 50))
def test_uniform_never_returns_a_positive(csr, n_neg, seed, epoch):
    n_items, rows = csr
    indptr, indices = to_csr(rows)
    saturated = [u for u, r in enumerate(rows) if len(r) == n_items]
    if saturated:
        # a user holding every item: a clear error naming the user, no hang
        kind, value = run_guarded(lambda: _core.sample_uniform(indptr, indices, n_items, n_neg,
                                                               seed, epoch, 1))
        assert kind == "raised" and isinstance(value, recmf.SamplingError), value
        assert f"user index {saturated[0]}" in str(value)
        return
    neg = _core.sample_uniform(indptr, indices, n_items, n_neg, seed, epoch, 2)
    assert ref.uniform_negatives_check(indptr, indices, neg, n_neg, n_items)


# With a fixed seed the sampler's output is fixed, so this chi-square test
# is deterministic: it either always passes or always fails (no flakiness).
# A correct sampler passes a p > 1e-3 test for all but 0.1% of seeds.
@pytest.mark.parametrize("seed", [0, 1])
def test_uniform_is_uniform_over_allowed_items(seed):
    stats = pytest.importorskip("scipy.stats")
    n_items, n_neg = 50, 400
    rng = np.random.default_rng(99)
    rows = [sorted(rng.choice(n_items, size=m, replace=False).tolist()) for m in (1, 5, 20, 45, 49)]
    indptr, indices = to_csr(rows)
    neg = _core.sample_uniform(indptr, indices, n_items, n_neg, seed, 0, 2)
    for u, row in enumerate(rows):
        draws = neg[indptr[u] * n_neg:indptr[u + 1] * n_neg]
        allowed = np.setdiff1d(np.arange(n_items), row)
        counts = np.bincount(draws, minlength=n_items)
        assert counts[row].sum() == 0
        if len(allowed) > 1:
            assert stats.chisquare(counts[allowed]).pvalue > 1e-3, (u, counts[allowed])
        else:
            assert counts[allowed].sum() == len(draws)     # the only allowed item
    # positions r of the same positive are not copies of each other
    assert (neg.reshape(-1, n_neg) != neg.reshape(-1, n_neg)[:, :1]).any()


@pytest.mark.parametrize("n_items", [1, 2, 300])
def test_uniform_saturated_user_raises_quickly(n_items):
    """A user with every item (here user 1 of 3) gives SamplingError, never
    an endless redraw loop."""
    rows = [[], list(range(n_items)), [n_items - 1] if n_items > 1 else []]
    indptr, indices = to_csr(rows)
    kind, value = run_guarded(lambda: _core.sample_uniform(indptr, indices, n_items, 4, 0, 0, 2))
    assert kind == "raised" and isinstance(value, recmf.SamplingError), value
    assert isinstance(value, ValueError)                     # SamplingError is a ValueError
    assert "user index 1" in str(value)


# ---------------------------------------------------------------------------
# Popular-hard triplets
# ---------------------------------------------------------------------------

@PROPS
@given(csr=csr_sets(), data=st.data(), seed=st.integers(0, 2**32))
def test_triplets_valid_or_sampling_error(csr, data, seed):
    n_items, rows = csr
    indptr, indices = to_csr(rows)
    cand = data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=2 * n_items))
    cand = np.array(cand, dtype=np.int32)
    n = data.draw(st.integers(0, 300))
    covered = [u for u, r in enumerate(rows) if set(cand.tolist()) <= set(r)]
    kind, value = run_guarded(lambda: _core.sample_triplets(indptr, indices, n_items, cand, n,
                                                            seed, 0, 2))
    if covered:
        assert kind == "raised" and isinstance(value, recmf.SamplingError), value
        assert "candidate" in str(value)
        return
    assert kind == "ok", value
    u, i, j = value
    assert len(u) == len(i) == len(j) == n
    assert ref.triplets_check(indptr, indices, u, i, j, cand)


@PROPS
@given(csr=csr_sets(allow_full=False), data=st.data())
def test_triplets_candidates_all_positive_for_a_user_raise(csr, data):
    """Make one user's positives cover every candidate: SamplingError, even
    if that user is never drawn, never a hang."""
    n_items, rows = csr
    victim = data.draw(st.integers(0, len(rows) - 1))
    cand = np.array(data.draw(st.lists(st.sampled_from(rows[victim]), min_size=1, max_size=10)),
                    dtype=np.int32)
    indptr, indices = to_csr(rows)
    kind, value = run_guarded(lambda: _core.sample_triplets(indptr, indices, n_items, cand, 1000,
                                                            0, 0, 1))
    assert kind == "raised" and isinstance(value, recmf.SamplingError), value
    assert "raise top_n" in str(value)
