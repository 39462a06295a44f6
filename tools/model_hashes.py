"""Fixed-seed fingerprints of every model's weights and recommendations.

    python tools/model_hashes.py [DATA_DIR] > before.txt   # on one commit
    python tools/model_hashes.py [DATA_DIR] > after.txt    # on another
    diff before.txt after.txt                               # a refactor changes no result

Fits Popularity, NeuralMF (2 epochs) and BPRMF (2 epochs) on ML-100K
(``DATA_DIR`` defaults to ``$RECMF_DATA/ml-100k``) with seed 0 and two
threads, positives ``rating >= 4`` of all ratings, and prints the SHA-256 of
every learned array and of ``recommend(all users, k=10)`` (ids and scores).
Same machine, same seed and thread count -> the same lines.  Popularity's
lines depend on nothing but the data (integer counts and a defined tie
order), so ``tests/test_contract.py`` asserts them; the learned models' depend
on the CPU (OpenBLAS picks its sgemm kernel by CPU, recmf's kernels are
compiled for AVX2 and baseline x86-64 and picked at run time, and both change
float rounding), so they are compared before/after on one machine only.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np


def sha(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def fitted_models(folder, n_threads=2):
    """(name, fitted model) for the three seed models on ML-100K."""
    import recmf
    ratings, _, _ = recmf.load_movielens(folder)
    data = recmf.Interactions.from_frame(ratings, threshold=4)
    yield data, "popularity", recmf.Popularity().fit(data)
    yield data, "neuralmf", recmf.NeuralMF(epochs=2, seed=0, n_threads=n_threads).fit(data)
    yield data, "bprmf", recmf.BPRMF(epochs=2, seed=0, n_threads=n_threads).fit(data)


def model_lines(data, name, model):
    """``name.array sha256`` lines for one fitted model."""
    learned = ("theta_",) if hasattr(model, "theta_") else ("counts_", "order_")
    arrays = {key.rstrip("_"): getattr(model, key) for key in learned}
    lines = [f"{name}.{key} {sha(value)}" for key, value in arrays.items()]
    ids, scores = model.recommend(data.user_ids, k=10, return_scores=True)
    lines += [f"{name}.recommend_ids {sha(ids)}", f"{name}.recommend_scores {sha(scores)}"]
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(os.environ.get("RECMF_DATA", "/work/shared/data")) / "ml-100k"
    for data, name, model in fitted_models(folder):
        print("\n".join(model_lines(data, name, model)), flush=True)


if __name__ == "__main__":
    main()
