"""Arguments that size memory (issue 20, the resource kind): k, batch
sizes, counts, dimensions, thread counts, grid resolutions.  None may make
recmf allocate (or spawn) in proportion to a silly value: where the meaning
is clear the value is clamped (k beyond the catalogue in evaluate, a batch
larger than the epoch, more threads than can help), otherwise it is refused
with a MemoryError or ValueError naming the argument, before anything is
allocated -- never a crash, an out-of-memory kill or swapping.
"""
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import recmf
from recmf import _core

BIG = 10 ** 9


@pytest.fixture(scope="module")
def small():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=60, n_items=80, seed=9)
    train, val, test = recmf.temporal_split(ratings)
    return dict(train=train, test=test, data=recmf.Interactions.from_frame(train))


def _peak_mb(fn):
    """Peak of the memory Python and NumPy allocate while fn runs (MB)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def test_evaluate_with_a_silly_k_allocates_nothing_in_proportion(small):
    """evaluate allows k beyond the catalogue (lists are then shorter): it
    used to pad every list to k columns (k = 10^9: 8 GB per user)."""
    pop = recmf.Popularity().fit(small["data"])
    n_items = small["data"].n_items
    lists = {u: [int(i) for i in pop.recommend([u], k=5)[0]] for u in small["test"]["user_id"].unique()}
    for model in (pop, lists, lambda user, k: lists.get(user, [])):
        kwargs = {} if model is pop else {"catalog": small["data"].item_ids}
        peak = _peak_mb(lambda: recmf.evaluate(model, small["test"], k=BIG, **kwargs))
        assert peak < 50, f"{peak:.0f} MB for k = 10^9"
        big = recmf.evaluate(model, small["test"], k=BIG, **kwargs)
        # the lists are at most n_items long, so k = 10^9 and k = n_items + the
        # most relevant items of any user give the same figures (NDCG's ideal
        # list is min(relevant, k) long)
        k = n_items + int(small["test"].groupby("user_id").size().max())
        same = recmf.evaluate(model, small["test"], k=k, **kwargs)
        assert [big[key.replace(f"@{k}", f"@{BIG}")] for key in same] == pytest.approx(list(same.values()),
                                                                                    nan_ok=True)


def test_coverage_multiset_rows_with_a_silly_k():
    from recmf.metrics import _multiset_rows   # what recmf.dask.evaluate reduces coverage with
    ids, lens = _multiset_rows(np.array([1, 2, 3], dtype=np.int64), np.array([2, 1, 1]), BIG)
    assert ids.shape == (2, 2) and lens.tolist() == [2, 2]
    assert sorted(ids[0, :lens[0]].tolist() + ids[1, :lens[1]].tolist()) == [1, 1, 2, 3]
    assert all(len(set(r[:n])) == n for r, n in zip(ids, lens))


@pytest.mark.parametrize("make, name", [
    (lambda: recmf.NeuralMF(emb_dim=4, hidden_dim=4, n_neg=BIG, epochs=1), r"n_neg=1000000000"),
    (lambda: recmf.NeuralMF(emb_dim=4, hidden_dim=BIG, epochs=1), r"hidden_dim=1000000000"),
    (lambda: recmf.BPRMF(emb_dim=BIG, epochs=1), r"emb_dim=1000000000"),
    (lambda: recmf.BPRMF(emb_dim=4, triplets_per_epoch=10 ** 13, epochs=1), r"triplets_per_epoch=10,000,000,000,000"),
    (lambda: recmf.ALS(factors=BIG, iterations=1), r"factors=1000000000"),
])
def test_sizes_beyond_the_memory_are_refused_naming_the_argument(make, name, small):
    model = make()
    peak = {}

    def fit():
        with pytest.raises(MemoryError, match=rf"needs [\d,.]+ GiB \(.*{name}.*\), but only [\d,.]+ GiB is "
                                              r"available; lower"):
            model.fit(small["data"])
    peak["mb"] = _peak_mb(fit)
    assert peak["mb"] < 50
    assert model.data_ is None                  # and the model is left unfitted


def test_the_memory_check_uses_what_is_available(small, monkeypatch):
    monkeypatch.setattr(recmf._checks, "available_bytes", lambda: 10 ** 4)
    with pytest.raises(MemoryError, match=r"EASE on 80 items needs 0\.00 GiB"):
        recmf.EASE().fit(small["data"])
    with pytest.raises(MemoryError, match="BPRMF on 60 users x 80 items"):
        recmf.BPRMF(emb_dim=8, triplets_per_epoch=10 ** 4).fit(small["data"])
    monkeypatch.setattr(recmf._checks, "available_bytes", lambda: None)     # unknown: no check
    recmf.BPRMF(emb_dim=8, triplets_per_epoch=10 ** 4, epochs=1).fit(small["data"])


def test_a_batch_larger_than_the_epoch_is_one_batch(small):
    """batch_size beyond the epoch's pairs is clamped to them in the core:
    the same weights as batch_size = the number of pairs, no bigger buffers."""
    data = small["data"]
    n_pairs = data.nnz * (1 + 4)
    a = recmf.NeuralMF(emb_dim=8, hidden_dim=8, epochs=1, batch_size=2 ** 31 - 1, seed=1, n_threads=1).fit(data)
    b = recmf.NeuralMF(emb_dim=8, hidden_dim=8, epochs=1, batch_size=n_pairs, seed=1, n_threads=1).fit(data)
    np.testing.assert_array_equal(a.theta_, b.theta_)
    t = 5000
    a = recmf.BPRMF(emb_dim=8, epochs=1, batch_size=2 ** 31 - 1, triplets_per_epoch=t, seed=1, n_threads=1).fit(data)
    b = recmf.BPRMF(emb_dim=8, epochs=1, batch_size=t, triplets_per_epoch=t, seed=1, n_threads=1).fit(data)
    np.testing.assert_array_equal(a.theta_, b.theta_)


_THREADS = textwrap.dedent("""
    import numpy as np, recmf
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=60, n_items=80, seed=9)
    data = recmf.Interactions.from_frame(ratings)
    users = data.user_ids
    for make in (lambda n: recmf.BPRMF(emb_dim=8, epochs=1, triplets_per_epoch=2000, seed=1, n_threads=n),
                 lambda n: recmf.NeuralMF(emb_dim=8, hidden_dim=8, epochs=1, seed=1, n_threads=n),
                 lambda n: recmf.ALS(factors=4, iterations=2, n_threads=n),
                 lambda n: recmf.EASE(l2=10.0, n_threads=n),
                 lambda n: recmf.ItemTransition(n_threads=n)):
        silly = make(100_000).fit(ratings)
        plain = make(2).fit(ratings)
        for a, b in zip(silly._arrays().values(), plain._arrays().values()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(silly.recommend(users, k=5), plain.recommend(users, k=5))
    print("OK")
""")


def test_a_silly_thread_count_runs_on_a_bounded_team(tmp_path):
    """n_threads=100000 crashed the process (OpenMP keeps a team's
    bookkeeping on the caller's stack); the core caps a team at max(256,
    cores), and results do not depend on the team.  In a child process: a
    crash must fail this test, not the suite."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(recmf.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", _THREADS], env=env, capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")


def test_weight_grid_is_built_in_steps_of_its_size():
    """The grid was filtered out of (steps + 1) ** n tuples: 20 models meant
    5^20 = 9.5e13 steps (a hang); now C(steps + n - 1, n - 1) of them, and
    a grid beyond MAX_GRID is refused."""
    import itertools
    for n, steps in ((1, 4), (2, 10), (2, 3), (3, 4), (4, 3)):
        want = [tuple(k / steps for k in ks) for ks in itertools.product(range(steps + 1), repeat=n)
                if sum(ks) == steps]
        assert recmf.Blend.weight_grid(n, steps) == want
    twenty = recmf.Blend.weight_grid(20)
    assert len(twenty) == 8855 and all(sum(w) == pytest.approx(1.0) for w in twenty)
    with pytest.raises(ValueError, match=r"50 models at 4 steps has 292,825 weight vectors"):
        recmf.Blend.weight_grid(50)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        recmf.Blend.weight_grid(2, 0)


def test_core_outputs_beyond_the_memory_are_refused_before_allocation():
    """The glue's outputs sized by an argument (k, n_items): zeroed pages
    cost nothing until the core fills them, so a silly size used to be
    allocated and then filled until the process was killed."""
    scores = np.zeros((5, 9), np.float32)
    with pytest.raises(MemoryError, match=r"an output of 40\.00 GiB \(5 x 2147483647\) does not fit"):
        _core.topk_rows(scores, None, np.zeros(5, np.int32), 2 ** 31 - 1, 1)
    items = np.array([1, 2, 3], np.int32)
    with pytest.raises(MemoryError, match="does not fit"):
        _core.transition_counts((np.array([0, 3], np.int64), items, 2 ** 31 - 1), 1, 0.5, 1)
