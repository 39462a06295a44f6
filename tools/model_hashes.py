"""Fixed-seed fingerprints of every model's weights and results.

    python tools/model_hashes.py [DATA_DIR] > before.txt   # on one commit
    python tools/model_hashes.py [DATA_DIR] > after.txt    # on another
    diff before.txt after.txt                               # a refactor changes no result

Fits every model on ML-100K (``DATA_DIR`` defaults to
``$RECMF_DATA/ml-100k``) with seed 0 and two threads, positives
``rating >= 4`` of all ratings: Popularity, NeuralMF and BPRMF (2 epochs,
dense and lazy Adam), ALS (3 iterations, CG and Cholesky), EASE (with and
without a recency half-life), ItemTransition (first order and a window of
3) and a Blend of EASE and ItemTransition.  For each it prints the SHA-256
of every learned array and of what each of its C entry points returns:
``recommend(all users, k=10)`` (ids and scores), the same without
excluding seen items, ``score`` of fixed pairs, and, where the model has
them, whole score rows, fold-in recommendations from a history frame and
``similar_items``.

Same machine, same seed and thread count -> the same lines.  Popularity's
first four lines depend on nothing but the data (integer counts and a
defined tie order), so ``tests/test_recorded_results.py`` asserts them; the
learned models' depend on the CPU (OpenBLAS picks its sgemm kernel by CPU,
recmf's kernels are compiled for AVX2 and baseline x86-64 and picked at run
time, and both change float rounding), so they are compared before/after on
one machine only.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

N_THREADS = 2

#: the learned arrays of each kind (attributes of the fitted model)
LEARNED = {
    "popularity": ("counts_", "order_"),
    "neuralmf": ("theta_",),
    "bprmf": ("theta_",),
    "als": ("theta_",),
    "ease": ("B_",),
    "transition": ("trans_indptr_", "trans_indices_", "trans_weights_", "probs_", "history_items_"),
    "blend": (),
}


def sha(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def fitted_models(folder, n_threads=N_THREADS):
    """(data, name, fitted model) for every model on ML-100K; Popularity first."""
    import recmf
    ratings, _, _ = recmf.load_movielens(folder)
    data = recmf.Interactions.from_frame(ratings, threshold=4)
    yield data, "popularity", recmf.Popularity().fit(data)
    for adam in ("dense", "lazy"):
        tag = "" if adam == "dense" else "_lazy"
        yield data, "neuralmf" + tag, recmf.NeuralMF(epochs=2, seed=0, adam=adam,
                                                      n_threads=n_threads).fit(data)
        yield data, "bprmf" + tag, recmf.BPRMF(epochs=2, seed=0, adam=adam, n_threads=n_threads).fit(data)
    for solver in ("cg", "cholesky"):
        tag = "" if solver == "cg" else "_cholesky"
        yield data, "als" + tag, recmf.ALS(iterations=3, solver=solver, seed=0,
                                           n_threads=n_threads).fit(data)
    ease = recmf.EASE(l2=250.0, n_threads=n_threads).fit(data)
    yield data, "ease", ease
    yield data, "ease_recency", ease.with_params(half_life=3.5)
    trans = recmf.ItemTransition(half_life=1.0, n_threads=n_threads).fit(ratings)
    yield data, "transition", trans
    yield data, "transition_w3", recmf.ItemTransition(half_life=2.0, window=3,
                                                      n_threads=n_threads).fit(ratings)
    blend = recmf.Blend([ease, trans], weights=[0.6, 0.4], n_threads=n_threads).fit(data)
    yield data, "blend", blend


def model_lines(data, name, model):
    """``name.array sha256`` lines: the learned arrays and ``recommend``."""
    learned = LEARNED[model.kind]
    lines = [f"{name}.{key.rstrip('_')} {sha(getattr(model, key))}" for key in learned]
    ids, scores = model.recommend(data.user_ids, k=10, return_scores=True)
    lines += [f"{name}.recommend_ids {sha(ids)}", f"{name}.recommend_scores {sha(scores)}"]
    return lines


def probe_lines(data, name, model, ratings):
    """Lines for the model's other entry points (those it has)."""
    rng = np.random.default_rng(0)
    lines = []
    ids, scores = model.recommend(data.user_ids, k=10, exclude_seen=False, return_scores=True)
    lines += [f"{name}.recommend_all_ids {sha(ids)}", f"{name}.recommend_all_scores {sha(scores)}"]
    u = rng.choice(data.user_ids, 5000)
    i = rng.choice(data.item_ids, 5000)
    lines.append(f"{name}.score {sha(model.score(u, i))}")
    try:
        rows = model._score_all(np.arange(0, data.n_users, 7, dtype=np.int32))
        lines.append(f"{name}.score_all {sha(rows)}")
    except NotImplementedError:
        pass
    # Fold-in: the first 60 users' ratings as a history, plus a new user.
    users = np.unique(ratings["user_id"])[:60]
    hist = ratings[ratings["user_id"].isin(users)]
    new = hist[hist["user_id"] == users[0]].assign(user_id=10 ** 9)
    import pandas as pd
    hist = pd.concat([hist, new], ignore_index=True)
    try:
        ids, scores = model.recommend(np.append(users, 10 ** 9), k=10, history=hist, return_scores=True)
        lines += [f"{name}.history_ids {sha(ids)}", f"{name}.history_scores {sha(scores)}"]
    except NotImplementedError:
        pass
    try:
        ids, scores = model.similar_items(data.item_ids[:200], k=10, return_scores=True)
        lines += [f"{name}.similar_ids {sha(ids)}", f"{name}.similar_scores {sha(scores)}"]
    except NotImplementedError:
        pass
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(os.environ.get("RECMF_DATA", "/work/shared/data")) / "ml-100k"
    import recmf
    ratings = recmf.load_movielens(folder)[0]
    for data, name, model in fitted_models(folder):
        lines = model_lines(data, name, model) + probe_lines(data, name, model, ratings)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
