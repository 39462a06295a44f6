"""Synthetic MovieLens-shaped data: a small dataset for machines without
MovieLens (tests, the command line's default, quick experiments), and a fast
vectorized mode for ML-20M-shaped logs to rehearse scale, with a writer to
partitioned Parquet."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import check_positive_int, check_seed

__all__ = ["synthetic_ratings", "write_parquet", "ML20M_SHAPE"]

#: The shape of MovieLens-20M: ``synthetic_ratings(**ML20M_SHAPE, fast=True)``.
ML20M_SHAPE = {"n_users": 138_493, "n_items": 26_744, "n_ratings": 20_000_263,
               "ratings_per_user": (20, 9_254)}


def synthetic_ratings(n_users=300, n_items=400, n_factors=8, ratings_per_user=(20, 120), seed=0, *,
                      fast=False, n_ratings=None):
    """Ratings with a taste structure and a long-tail popularity, so models
    have something to learn and metrics are non-trivial.

    Parameters
    ----------
    n_users, n_items : int
    n_factors : int
        Dimensions of the tastes (small mode) or number of genres (fast).
    ratings_per_user : (lo, hi)
        Bounds on each user's number of ratings.
    seed : int
        The same seed (and arguments) give the same frames.
    fast : bool
        False (default): the small mode, a loop over users drawing from a
        low-rank model (its output never changes; for up to ~10^4 users).
        True: a vectorized generator for millions of rows -- ML-20M's
        shape, ``synthetic_ratings(**ML20M_SHAPE, fast=True)``, takes
        seconds: users with a long-tailed activity (lognormal, within
        ``ratings_per_user``), items with a long-tailed popularity in
        ``n_factors`` genres, tastes concentrated on a few genres, distinct
        (user, item) pairs, and many timestamps shared within a user's
        sessions.  Rows grouped by user, as MovieLens ships them.
    n_ratings : int, optional
        Fast mode only: the exact number of rows (default: each user's
        count drawn within ``ratings_per_user``).

    Returns
    -------
    ratings, users, movies : DataFrame
        Shaped like :func:`recmf.load_movielens`'s: ``user_id, movie_id,
        rating (1-5), timestamp`` with sparse ids (users 1.., movies 10, 20,
        ...), ties in timestamps included.  Small mode: int64 columns; fast
        mode: int32 ids, int8 ratings and int64 timestamps (a third of the
        memory at 20M rows).

    Raises
    ------
    ValueError, TypeError
        Bad counts or bounds, or ``n_ratings`` that the bounds cannot hold.
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items", minimum=2)
    n_factors = check_positive_int(n_factors, "n_factors")
    lo, hi = ratings_per_user
    if not 1 <= lo <= hi:
        raise ValueError(f"ratings_per_user must be (lo, hi) with 1 <= lo <= hi, got {ratings_per_user}")
    if fast:
        return _fast_ratings(n_users, n_items, n_factors, int(lo), int(min(hi, n_items)),
                             check_seed(seed), n_ratings)
    if n_ratings is not None:
        raise ValueError("n_ratings needs fast=True (the small mode draws each user's count)")
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


def _user_counts(rng, n_users, lo, hi, n_ratings):
    """Ratings per user: lognormal activity in [lo, hi], summing to
    ``n_ratings`` exactly when given."""
    weight = rng.lognormal(0.0, 1.2, n_users)
    if n_ratings is None:
        mean_extra = (hi - lo) * 0.1
        counts = lo + np.minimum(np.floor(weight / weight.mean() * mean_extra), hi - lo)
        return counts.astype(np.int64)
    n_ratings = check_positive_int(n_ratings, "n_ratings")
    if not lo * n_users <= n_ratings <= hi * n_users:
        raise ValueError(f"n_ratings={n_ratings} is outside what {n_users} users with "
                         f"{lo}..{hi} ratings each can hold ({lo * n_users}..{hi * n_users})")
    counts = lo + rng.multinomial(n_ratings - lo * n_users, weight / weight.sum())
    # Users drawn past hi hand their surplus to the others, by weight.
    while (over := counts > hi).any():
        surplus = int((counts[over] - hi).sum())
        counts[over] = hi
        room = np.where(counts < hi, weight, 0.0)
        counts += rng.multinomial(surplus, room / room.sum())
    return counts


def _fast_ratings(n_users, n_items, n_genres, lo, hi, seed, n_ratings):
    rng = np.random.default_rng(seed)
    counts = _user_counts(rng, n_users, lo, hi, n_ratings)
    total = int(counts.sum())

    # Items: a genre each, a long-tailed popularity (shifted Zipf, as
    # MovieLens: flat at the head, a long thin tail), a quality.
    genre = rng.integers(0, n_genres, n_items)
    popularity = rng.permutation(1.0 / (np.arange(n_items) + 100.0) ** 1.2)
    quality = rng.normal(0.0, 0.45, n_items)
    by_genre = np.lexsort((np.arange(n_items), genre))          # items grouped by genre
    g_start = np.searchsorted(genre[by_genre], np.arange(n_genres + 1))
    # One cumulative table over all genres: genre g's CDF lives in (g, g + 1].
    cdf = np.empty(n_items)
    for g in range(n_genres):
        seg = popularity[by_genre[g_start[g]:g_start[g + 1]]]
        cdf[g_start[g]:g_start[g + 1]] = g + np.cumsum(seg) / seg.sum() if len(seg) else g
    g_has = g_start[1:] > g_start[:-1]

    # Tastes: a few favourite genres per user; user u's CDF in (u, u + 1].
    pref = rng.dirichlet(np.full(n_genres, 0.3), n_users) * g_has
    pref /= pref.sum(axis=1, keepdims=True)
    pref_cdf = (np.cumsum(pref, axis=1) + np.arange(n_users)[:, None]).ravel()
    bias = rng.normal(0.0, 0.35, n_users)

    def draw_in(g):
        pos = np.searchsorted(cdf, g + rng.random(len(g)) * (1 - 1e-12))
        return by_genre[np.clip(pos, g_start[g], g_start[g + 1] - 1)]

    def draw(users):
        u_g = np.searchsorted(pref_cdf, users + rng.random(len(users)) * (1 - 1e-12))
        return draw_in(np.minimum(u_g - users * n_genres, n_genres - 1))

    # Distinct (user, item) pairs: draw, keep the distinct keys (sorted:
    # user, then item, as ML-20M's file), draw again what each user lacks.
    # Heavy users exhaust the popular items, so after a few rounds their
    # missing items are drawn uniformly instead.
    # First draw: each user's count split over genres by their tastes, so
    # rows come grouped by (user, genre) without a search per row.
    per_genre = rng.multinomial(counts, pref).ravel()
    users = np.repeat(np.repeat(np.arange(n_users, dtype=np.int64), n_genres), per_genre)
    g = np.repeat(np.tile(np.arange(n_genres), n_users), per_genre)
    keys = np.sort(users * n_items + draw_in(g))
    del g
    for round_ in range(200):
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        lack = counts - np.bincount(keys // n_items, minlength=n_users)
        if not lack.any():
            break
        users = np.repeat(np.arange(n_users, dtype=np.int64), lack)
        more = draw(users) if round_ < 4 else rng.integers(0, n_items, len(users))
        # Two sorted runs: the stable sort (timsort) merges them in one pass.
        keys = np.sort(np.concatenate([keys, np.sort(users * n_items + more)]), kind="stable")
    else:  # pragma: no cover - needs a user holding nearly every item
        raise RuntimeError("could not draw distinct items; lower ratings_per_user's upper bound")
    users, items = np.divmod(keys, n_items)
    del keys

    g = genre[items]
    taste = np.log(pref[users, g] * n_genres + 1e-3)
    score = quality[items] + bias[users] + 0.25 * taste + rng.normal(0.0, 0.85, total)
    stars = np.clip(np.rint(3.35 + score), 1, 5).astype(np.int8)

    # Time: each user is active over a span (hours to years) between 1995
    # and 2015, in sessions; ratings of a session share its second often.
    span = np.minimum(rng.lognormal(13.0, 2.5, n_users), 6e8)
    start = 789_652_009 + rng.random(n_users) * (1_427_784_002 - 789_652_009 - span)
    n_sessions = np.maximum(1, counts // 8)
    session = np.floor(rng.random(total) * n_sessions[users])
    times = (start[users] + session * (span / n_sessions)[users]
             + rng.integers(0, 4, total) * 20).astype(np.int64)

    ratings = pd.DataFrame({"user_id": (users + 1).astype(np.int32),
                            "movie_id": ((items + 1) * 10).astype(np.int32),
                            "rating": stars, "timestamp": times})
    users_frame = pd.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int32)})
    movies = pd.DataFrame({"movie_id": ((np.arange(n_items) + 1) * 10).astype(np.int32),
                           "title": [f"Movie {k + 1}" for k in range(n_items)],
                           "genres": [f"Genre {k + 1}" for k in genre]})
    return ratings, users_frame, movies


def write_parquet(ratings, path, n_files=16, *, sort_by=None):
    """Write a ratings frame as a folder of Parquet files (one row block
    each), the layout a data lake holds and ``dask.dataframe.read_parquet``
    reads as one partition per file.

    Parameters
    ----------
    ratings : DataFrame
    path : str or Path
        Folder to create (must not exist or be empty).
    n_files : int
        Number of files (row blocks of equal size, the last smaller).
    sort_by : str or list of str, optional
        Columns to order the rows by first (stable), e.g. ``"timestamp"``
        for a log in arrival order, where every user spans many files.

    Returns
    -------
    list of Path
        The files written, ``part-00000.parquet`` ...

    Raises
    ------
    ImportError
        Without pyarrow (``pip install "recmf[dask]"``).
    ValueError
        ``path`` exists and holds files.
    """
    from pathlib import Path
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError('write_parquet needs pyarrow: pip install "recmf[dask]"') from e
    n_files = check_positive_int(n_files, "n_files")
    folder = Path(path)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"path {str(folder)!r} exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    if sort_by is not None:
        ratings = ratings.sort_values(sort_by, kind="stable")
    bounds = np.linspace(0, len(ratings), n_files + 1).astype(np.int64)
    files = []
    for n in range(n_files):
        out = folder / f"part-{n:05d}.parquet"
        ratings.iloc[bounds[n]:bounds[n + 1]].to_parquet(out, index=False)
        files.append(out)
    return files
