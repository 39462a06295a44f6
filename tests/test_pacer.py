"""The team-size pacer of the training loops (csrc/runtime/threads.c, issue 8 part 3).

When another program keeps a core busy, a batch can run faster on one
thread than on the full team.  NeuralMF and BPRMF measure batch by batch and
pick; these tests check the choice on given costs (no timing here: the
costs are inputs) and that the choice never changes results: the weights
must be bit-identical whatever team each batch ran on.
"""
import numpy as np
import pytest

import recmf
from recmf import _core


def trace(one, full, nt=2):
    return _core._pacer_trace(nt, np.asarray(one, dtype=np.float64), np.asarray(full, dtype=np.float64))


def test_full_team_kept_when_it_is_faster():
    # Idle machine: the team takes 1.0, one thread 1.7 (NeuralMF on 2 cores).
    sizes = trace(np.full(1000, 1.7), np.full(1000, 1.0))
    assert sizes[0] == 2, "the first batch starts the team"
    assert set(np.unique(sizes)) <= {1, 2}
    # Probes of one thread are rare: their cost stays within ~2% of a run.
    assert (sizes == 1).mean() <= 0.03


def test_one_thread_taken_when_it_is_faster():
    # A neighbour busy on a core: the team takes 2.0, one thread 1.0.
    sizes = trace(np.full(1000, 1.0), np.full(1000, 2.0))
    assert (sizes[10:] == 2).mean() <= 0.03
    assert (sizes[:10] == 1).any(), "one thread is tried early"


def test_pacer_follows_a_neighbour_that_comes_and_goes():
    n = 1200
    one = np.full(n, 1.7)
    full = np.r_[np.full(400, 1.0), np.full(400, 3.0), np.full(400, 1.0)]
    sizes = trace(one, full)
    # The neighbour arrives at 400: the team's own batches show it (an
    # alarm), and a probe a few batches later moves to one thread.
    first_one = 400 + int(np.argmax(sizes[400:] == 1))
    assert first_one <= 412
    assert (sizes[420:800] == 1).mean() >= 0.95
    # It leaves at 800: found by a probe within the longest gap (256).
    back = 800 + int(np.argmax(sizes[800:] == 2))
    assert back <= 800 + 260
    assert (sizes[1100:] == 2).mean() >= 0.95


def test_one_slow_batch_does_not_stick():
    # One batch of the full team that happens to be very slow (the machine
    # hiccuped) moves nothing: the size in use is judged by the median of
    # its last five batches.
    one = np.full(600, 1.7)
    full = np.full(600, 1.0)
    full[100] = 50.0
    sizes = trace(one, full)
    assert (sizes == 1).sum() <= 15  # the probes only: the median ignores one batch
    assert (sizes[200:] == 2).mean() >= 0.97


def test_close_sizes_do_not_flip_back_and_forth():
    # One thread within 5% of the team, both noisy: a switch needs a 10%
    # gain, so the pacer stays with the team it started on.
    rng = np.random.default_rng(0)
    full = 1.0 + 0.05 * rng.standard_normal(2000)
    one = 1.05 + 0.05 * rng.standard_normal(2000)
    sizes = trace(one, full)
    assert (sizes == 1).mean() <= 0.03


def test_one_logical_thread_is_never_paced():
    sizes = trace(np.full(50, 0.1), np.full(50, 9.0), nt=1)
    assert (sizes == 1).all()


def test_trace_rejects_mismatched_costs():
    with pytest.raises(ValueError, match="cost_full"):
        trace(np.ones(5), np.ones(4))


@pytest.fixture(scope="module")
def data():
    # Large enough that a batch of 4096 pairs has ~1,000 distinct users and
    # items: where OpenBLAS's one- and two-thread drivers round a sum over
    # them differently (before the fixed parts of models/neuralmf.c's weight_grads,
    # n_threads 1 and 2 gave different NeuralMF weights on this data).
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=1500, n_items=1000, seed=5)
    train, _, _ = recmf.temporal_split(ratings)
    return recmf.Interactions.from_frame(train)


@pytest.fixture
def forced():
    """Sets the pacer's test mode for one test and puts it back."""
    yield lambda mode: _core._pacer(mode)
    _core._pacer(0)


CASES = [
    (recmf.NeuralMF, dict(emb_dim=16, hidden_dim=32, batch_size=1024)),
    (recmf.NeuralMF, dict(emb_dim=16, hidden_dim=32, batch_size=1024, adam="lazy")),
    (recmf.NeuralMF, dict(batch_size=4096)),  # the seed's shape: ~1,000 distinct rows per side
    (recmf.BPRMF, dict(emb_dim=16, batch_size=2048, triplets_per_epoch=50_000)),
]


@pytest.mark.parametrize("kind,params", CASES, ids=["nmf", "nmf-lazy", "nmf-seed-shape", "bpr"])
def test_weights_do_not_depend_on_threads_or_team(kind, params, data, forced):
    def fit(n_threads, mode):
        forced(mode)
        model = kind(epochs=2, seed=3, n_threads=n_threads, **params).fit(data)
        forced(0)
        return model

    ref = fit(1, 0)
    assert (ref.history["threads"] == 1.0).all()
    for n_threads, mode in [(2, 0), (3, 0), (2, 1), (2, 2)]:
        model = fit(n_threads, mode)
        np.testing.assert_array_equal(model.theta_, ref.theta_,
                                      err_msg=f"n_threads={n_threads}, pacer mode {mode}")
        np.testing.assert_array_equal(model.history["loss"], ref.history["loss"])
        threads = model.history["threads"].to_numpy()
        assert ((threads >= 1.0) & (threads <= n_threads)).all()
        if mode == 1:
            assert (threads == 1.0).all()
        if mode == 2:
            # alternate batches: the mean is half way (within one batch)
            n_batches = -(-int(model.history["n_pairs"].iloc[0]) // params["batch_size"])
            assert abs(threads[0] - (1 + n_threads) / 2) <= (n_threads - 1) / n_batches + 1e-9
