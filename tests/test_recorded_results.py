"""Recorded fingerprints of fixed-seed results (tools/model_hashes.py on
ML-100K), so a refactor that changes a result fails here.

Only CPU-independent results are recorded: Popularity's counts, order and
recommendations are integer counts with a defined tie order.  NeuralMF and
BPRMF are compared before/after a change on one machine by running
``tools/model_hashes.py`` (see its docstring), not here: NeuralMF's weights
go through OpenBLAS's sgemm (kernel picked by CPU) and recmf's AVX2/baseline
kernel clones (picked at run time); BPRMF's through glibc's exp/log1p
(FMA and non-FMA variants picked by CPU) and its recommendations through
sgemm -- each can move the last bits of a float, and so every hash.
"""
import sys

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
