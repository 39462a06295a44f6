"""Recorded fingerprints of fixed-seed results (tools/model_hashes.py on
ML-100K), so a refactor that changes a result fails here.

Only CPU-independent results are recorded.  Popularity's counts, order and
recommendations are integer counts with a defined tie order.  For NeuralMF
and BPRMF, everything that feeds training except float arithmetic: the
epochs' negatives, triplets and example orders (integer draws keyed by the
seed), the dropout masks (0 or 1/(1-p), one IEEE division) -- recorded --,
and properties that hold on any CPU: the initial weights are numpy draws in
the core's block order, and the trained weights and lists are bit-identical
whatever the thread count.  The trained weights themselves are compared
before/after a change on one machine by running ``tools/model_hashes.py``
(see its docstring), not here: NeuralMF's weights go through OpenBLAS's
sgemm (kernel picked by CPU) and recmf's AVX2/baseline kernel clones (picked
at run time); BPRMF's through glibc's exp/log1p (FMA and non-FMA variants
picked by CPU) and its recommendations through sgemm -- each can move the
last bits of a float, and so every hash.
"""
import sys

import numpy as np
import pytest
from conftest import ML100K_DIR, REPO, needs_ml100k

sys.path.insert(0, str(REPO / "tools"))
import model_hashes  # noqa: E402

RECORDED = """
popularity.counts ccb791c38e49e2c47618f7623f1e23e7c1a2026769bde7baba515d02102f62f7
popularity.order e97416278db32b804f9bdbb2ea59c0fc669e78874533f08cd6033ad0fbeb9551
popularity.recommend_ids 9b12a69af9f286c109d754989e07355646ee9dade0decd889c8853b824f08a0a
popularity.recommend_scores 0fe2167865ec37456f2dfee8f7746ebdeaf3dc6637c1eaa503f280cb96dff120
""".split("\n")[1:-1]


@needs_ml100k
def test_popularity_on_ml100k_matches_recorded_hashes():
    data, name, model = next(model_hashes.fitted_models(ML100K_DIR))
    assert name == "popularity"
    assert model_hashes.model_lines(data, name, model) == RECORDED


def test_hash_sees_dtype_shape_and_values():
    import numpy as np
    a = np.arange(6, dtype=np.int64)
    assert len({model_hashes.sha(a), model_hashes.sha(a.reshape(2, 3)), model_hashes.sha(a.astype(np.int32)),
                model_hashes.sha(a + 1)}) == 4
    assert model_hashes.sha(a) == model_hashes.sha(a.copy())


TRAINING_INPUTS = """
neuralmf.negatives1 e11a573a79ba07d61e8ea56d1f7f80322d4cd3e278bd422eaae08624f8547ea3
neuralmf.order1 a17f09ac5a946066a74396c9faa39b5532bbd31fce9a8794fb6b7d086c93dc13
bprmf.triplets1 15a56f57b105a5b49431b3f890d3d864d46998155b0e2f1c313efb526d9fb7bc
bprmf.order1 1bab09765705e158ab765cf3d0c1bbc9f675d901cab12fac9fc81dee152375c5
neuralmf.negatives2 670a944417c7762b49235246ab86c2b92e5c95638e8f475d9fcd2c68236e4093
neuralmf.order2 6d97f4b6f564435a3e41f0339614cafe1f8d27a3a66f7f056ca443bb06996b8c
bprmf.triplets2 30857c294e75049b4b87810b33ba2eecae8983af48a73fd23d5d138853d21bc8
bprmf.order2 ee3f9b52d52f73ed53d3e05bf13edf954d2ebd0e39b3fd4a5ca93e8f49ea9e95
neuralmf.dropout_e1_b0 0fcf0eafb16c329e5b3ee9234ee512a2ec4da9cf03552a9b78ab750cb5fcfca4
""".split("\n")[1:-1]


@pytest.fixture(scope="module")
def ml100k():
    import recmf
    ratings, _, _ = recmf.load_movielens(ML100K_DIR)
    return recmf.Interactions.from_frame(ratings, threshold=4)


@needs_ml100k
def test_neuralmf_and_bprmf_training_inputs_match_recorded_hashes(ml100k):
    # What the seed draws for the default NeuralMF and BPRMF on ML-100K (2
    # epochs, as tools/model_hashes.py trains them): the same on any CPU.
    import recmf
    from recmf import _core
    data, sha, lines = ml100k, model_hashes.sha, []
    cand = recmf.BPRMF(seed=0)
    cand.data_ = data
    for epoch in (1, 2):
        neg = _core.sample_uniform(data.indptr, data.indices, data.n_items, 4, 0, epoch, 2)
        lines.append(f"neuralmf.negatives{epoch} {sha(neg)}")
        lines.append(f"neuralmf.order{epoch} {sha(_core.epoch_order(data.nnz * 5, 0, epoch, 2))}")
        u, i, j = _core.sample_triplets(data.indptr, data.indices, data.n_items, cand.candidates(), 500_000,
                                        0, epoch, 2)
        lines.append(f"bprmf.triplets{epoch} {sha(np.stack([u, i, j]))}")
        lines.append(f"bprmf.order{epoch} {sha(_core.epoch_order(500_000, 0, epoch, 2))}")
    lines.append(f"neuralmf.dropout_e1_b0 {sha(_core.dropout_mask(0.1, 0, 1, 0, 4096, 128))}")
    assert lines == TRAINING_INPUTS


@needs_ml100k
@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_neuralmf_and_bprmf_fingerprints_hold_on_any_cpu(kind, ml100k):
    # The initial weights are numpy draws in the core's block order
    # (N(0, 0.01^2) tables, PyTorch's Linear U(+-1/sqrt(fan_in))), and two
    # epochs give bit-identical weights and lists on 1 and 2 threads.
    import recmf
    cls = recmf.available_models()[kind]
    model = cls(seed=0)
    model.data_ = ml100k
    model._init_weights()
    rng = np.random.default_rng(0)
    for name, offset, shape, role, init, arg in model._layout()[1]:
        size = int(np.prod(shape))
        if init == "normal":
            want = (rng.standard_normal(size) * arg).astype(np.float32)
        else:
            bound = 1.0 / np.sqrt(arg)
            want = rng.uniform(-bound, bound, size=size).astype(np.float32)
        np.testing.assert_array_equal(getattr(model, name + "_").ravel(), want, err_msg=name)
    one, two = (cls(epochs=2, seed=0, n_threads=n).fit(ml100k) for n in (1, 2))
    assert one.theta_.tobytes() == two.theta_.tobytes()
    np.testing.assert_array_equal(one.recommend(ml100k.user_ids, k=10), two.recommend(ml100k.user_ids, k=10))
