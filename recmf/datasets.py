"""A small synthetic MovieLens-shaped dataset, for machines without
MovieLens (tests, the command line's default, quick experiments)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import check_positive_int, check_seed

__all__ = ["synthetic_ratings"]


def synthetic_ratings(n_users=300, n_items=400, n_factors=8, ratings_per_user=(20, 120), seed=0):
    """Ratings with a low-rank taste structure and a long-tail popularity,
    so models have something to learn and metrics are non-trivial.

    Returns ``(ratings, users, movies)`` frames shaped like
    :func:`recmf.load_movielens`'s: ``user_id, movie_id, rating (1-5 int),
    timestamp`` with sparse ids (users 1.., movies 10, 20, ...), ties in
    timestamps included.
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items", minimum=2)
    lo, hi = ratings_per_user
    if not 1 <= lo <= hi:
        raise ValueError(f"ratings_per_user must be (lo, hi) with 1 <= lo <= hi, got {ratings_per_user}")
    rng = np.random.default_rng(check_seed(seed))
    user_f = rng.normal(size=(n_users, n_factors))
    item_f = rng.normal(size=(n_items, n_factors))
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = rng.permutation(popularity)
    rows = []
    for u in range(n_users):
        n = int(min(rng.integers(lo, hi + 1), n_items))
        affinity = user_f[u] @ item_f.T / np.sqrt(n_factors)
        weight = popularity * np.exp(affinity)
        items = rng.choice(n_items, size=n, replace=False, p=weight / weight.sum())
        score = affinity[items] + rng.normal(scale=0.5, size=n)
        stars = np.clip(np.round(3.2 + 1.1 * score), 1, 5).astype(np.int64)
        # Coarse clock so some rows share a timestamp, as in MovieLens.
        times = 978_300_000 + np.sort(rng.integers(0, 5_000, size=n)) * 60
        rows.append(pd.DataFrame({"user_id": u + 1, "movie_id": (items + 1) * 10,
                                  "rating": stars, "timestamp": times}))
    ratings = pd.concat(rows, ignore_index=True)
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1)})
    movies = pd.DataFrame({"movie_id": (np.arange(n_items) + 1) * 10,
                           "title": [f"Movie {k + 1}" for k in range(n_items)]})
    return ratings, users, movies
