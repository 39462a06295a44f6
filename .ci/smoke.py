"""Smoke test of an installed recmf wheel (run by .ci/run for each Python it
has, from outside the checkout): recmf imports, runs on the OpenBLAS and
OpenMP runtime bundled in recmf.libs/, and a tiny workflow gives defined
results.  Exits non-zero (AssertionError) on any failure."""
import os
import sys

import numpy as np
import pandas as pd

import recmf

here = os.path.dirname(os.path.abspath(recmf.__file__))
libs = os.path.realpath(os.path.join(here, os.pardir, "recmf.libs"))
info = recmf.build_info()
print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}, pandas {pd.__version__}, recmf {recmf.__version__}")
for key in ("blas_config", "blas_library", "openmp_library", "blas_on_openmp"):
    print(f"  {key}: {info[key]}")

# the wheel's own libraries, not another package's or the system's
assert os.path.dirname(info["blas_library"]) == libs, info["blas_library"]
assert info["openmp"] and os.path.dirname(info["openmp_library"]) == libs, info["openmp_library"]
assert info["blas_on_openmp"]
assert "scipy_openblas32" not in sys.modules

ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=300, n_items=400, seed=0)
train, val, test = recmf.temporal_split(ratings, n_val=1, n_test=2, min_train=3)
data = recmf.Interactions.from_frame(train, threshold=4)
users = test["user_id"].unique()

# Popularity against pandas: the items with the most users with a positive
# (a repeated pair counts once), ties to the lower id
pop = recmf.Popularity().fit(data)
counts = train[train["rating"] >= 4].drop_duplicates(["user_id", "movie_id"]).groupby("movie_id").size()
expected = counts.reset_index(name="n").sort_values(["n", "movie_id"], ascending=[False, True])
first = pop.recommend([users[0]], k=5, exclude_seen=False)[0].tolist()
assert first == expected["movie_id"].head(5).tolist(), (first, expected.head(5))

# the same seed gives the same model on one thread and on two
for kind, params in [(recmf.BPRMF, dict(emb_dim=8, epochs=3)),
                     (recmf.NeuralMF, dict(emb_dim=8, hidden_dim=16, epochs=2))]:
    a = kind(seed=1, n_threads=1, **params).fit(data)
    b = kind(seed=1, n_threads=2, **params).fit(data)
    assert np.array_equal(a.recommend(users, k=10), b.recommend(users, k=10)), kind.__name__
    report = recmf.evaluate(b, test, k=10)
    assert 0.0 <= report["recall@10"] <= 1.0 and report["n_users_eval"] > 0, report
    print(f"  {kind.__name__}: recall@10 {report['recall@10']:.4f} over {report['n_users_eval']} users")
print("smoke test passed")
