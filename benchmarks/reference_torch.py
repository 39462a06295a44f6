"""PyTorch reference port of the seed notebook ("Train model (PyTorch)"), for benchmarks.

recmf is timed against two PyTorch anchors (SPEC section 10/11), both implemented here:

``faithful``
    The notebook's code as its users wrote it: ``pd.read_csv(sep="::", engine="python")``,
    the seed's ``temporal_split_per_user``, ``pd.factorize`` + scipy ``csr_matrix``,
    popularity via ``groupby``, per-positive Python-loop negative sampling (seed 42+epoch),
    ``PairDataset`` + ``DataLoader(batch_size=4096, shuffle=True)``, BPRMF with
    ``TripletDatasetPopularHard`` (seed 2000+epoch), and one-user-at-a-time
    ``recommend_nmf`` / ``evaluate_model`` / ``evaluate_all``.

``fast``
    The same maths written well in PyTorch/NumPy: C-engine CSV parsing, a NumPy split,
    vectorised rejection sampling (all draws at once, only rejected ones redrawn, membership
    tested by ``searchsorted`` on sorted ``u * n_items + i`` keys), mini-batches by slicing a
    ``torch.randperm`` instead of a per-item DataLoader, and block-batched scoring
    (score matrix for many users, seen items masked to -inf through the CSR, ``torch.topk``).

Both modes use the same modules (NeuralMF: emb 64, hidden 128, dropout 0.1; BPRMF: dot of
64-dim embeddings), the same losses, ``torch.optim.Adam(lr=1e-3, weight_decay=1e-6)`` and the
metrics of SPEC section 9 (recall/ndcg/mrr/hitrate@K, n_users_eval, coverage@K,
avg_popularity@K).  Each stage is timed with ``time.perf_counter``; peak memory is
``ru_maxrss``.

Deliberate choices (documented because they affect numbers):

* The notebook's numpy sampling seeds (42+epoch for NeuralMF, 2000+epoch for BPRMF) are kept
  for ``--seed 0``; other seeds shift them by ``1000 * seed`` so runs differ seed to seed.
  ``torch.manual_seed(seed)`` is called before building each model, so a model's result does
  not depend on which other models ran before it.
* Early stopping (and the per-epoch monitoring print of NeuralMF) watches ``--early-stop-on``
  (``val`` by default; ``test`` reproduces the notebook).  With ``--eval-every 0`` nothing is
  evaluated during training and BPRMF simply keeps its last epoch.
* Popularity ranking (Popularity recommender and BPRMF's top-2000 negative pool):
  ``--pop-order notebook`` (default, both modes) reproduces the notebook's
  ``groupby().size().sort_values(ascending=False)``, an unstable quicksort whose tie order
  is what SPEC section 10's Popularity figures were computed with (on ML-1M it ranks 1265
  before 1, both with 1612 positives).  ``--pop-order id`` applies SPEC section 4's stated
  rule (lower id first); on ML-1M it changes Popularity ndcg@10/mrr@10 in the 6th decimal
  and swaps 3 of the 33-positive items at the edge of the top-2000 pool.  The quicksort tie
  order depends on numpy's sort kernel (version/CPU), so "notebook" is pinned only as far
  as numpy is.
* ``fast`` scores NeuralMF by splitting the first Linear layer into a user half and an item
  half (its input is a concat), which is the same function evaluated without building the
  (users x items x 128) concat input.

Result (``run()`` return value and ``--json``): ``mode, threads, torch_num_threads, seed,
data, config, sizes, stages, per_epoch, metrics, peak_rss_mb, torch_version, cpu_time_s,
loadavg_1min``.  ``stages`` (seconds): ``load, split, index, popularity``;
``eval_<model>`` (final evaluation); per trained model ``<model>_setup`` (module + optimizer;
the first Adam of a process pays ~1.5 s of lazy torch imports), ``<model>_sampling``,
``<model>_training`` and ``<model>_epoch_eval`` (sums over epochs) and ``<model>_fit``
(the whole epoch loop); ``total``.  ``per_epoch`` has one record per epoch
(``sampling_s, training_s, eval_s, loss`` and, when evaluated, recall/ndcg on the watched
split).  ``--max-eval-users N`` keeps the first N users of every evaluated frame and the
first min(1000, N) coverage users, so its metrics are for timing only.  A user whose
positives cover every candidate negative raises ValueError (the notebook would hang).

Usage::

    python benchmarks/reference_torch.py --data /work/shared/data/ml-1m --mode fast \
        --models popularity,neuralmf,bprmf --nmf-epochs 20 --bpr-epochs 20 --threads 2 \
        --seed 0 --early-stop-on val --json out.json

In-process (``benchmarks`` is not a package; put the folder on ``sys.path``)::

    sys.path.insert(0, "benchmarks")
    from reference_torch import Config, run
    result = run(Config(data="/work/shared/data/ml-1m", mode="fast", nmf_epochs=1))
"""
from __future__ import annotations

import os
import sys


def _argv_threads(argv: list[str]) -> str | None:
    for n, a in enumerate(argv):
        if a == "--threads" and n + 1 < len(argv):
            return argv[n + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


if __name__ == "__main__":
    # OpenMP/MKL/OpenBLAS size their thread pools when numpy/torch are imported, so the
    # thread count has to be in the environment before those imports (run() also calls
    # torch.set_num_threads, which is enough for torch when imported in-process).
    _t = _argv_threads(sys.argv[1:])
    if _t:
        for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[_var] = _t

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

COLS = ["user_id", "movie_id", "rating", "timestamp"]
MODELS = ("popularity", "neuralmf", "bprmf")
# Users scored per block.  NeuralMF materialises (block x n_items x hidden) floats: 4 users
# keep that at ~7 MB on ML-1M; at 32 users (58 MB per block) fresh allocations page-fault
# and memory traffic dominate, and scoring all users gets ~8x slower.
NMF_BLOCK = 4
DOT_BLOCK = 256


# --------------------------------------------------------------------------------------
# Configuration and timing
# --------------------------------------------------------------------------------------
@dataclass
class Config:
    data: str = "/work/shared/data/ml-1m"
    mode: str = "fast"  # "fast" | "faithful"
    models: tuple[str, ...] = MODELS
    nmf_epochs: int = 20
    bpr_epochs: int = 20
    threads: int = 2
    seed: int = 0
    early_stop_on: str = "val"  # "val" | "test"
    eval_every: int = 2  # 0 = no evaluation during training
    max_eval_users: int | None = None  # evaluate only the first N users (timing runs)
    k: int = 10
    threshold: float = 4.0
    n_val: int = 1
    n_test: int = 5
    min_train: int = 5
    batch_size: int = 4096
    emb_dim: int = 64
    hidden_dim: int = 128
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-6
    n_neg: int = 4
    triplets_per_epoch: int = 500_000
    top_n: int = 2000
    patience: int = 3
    n_coverage_users: int = 1000
    pop_order: str = "notebook"  # "notebook" | "id": tie order of the popularity ranking
    verbose: bool = True


class Timer:
    """Accumulates wall-clock seconds per named stage."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds


def _log(cfg: Config, *args) -> None:
    if cfg.verbose:
        print(*args, flush=True)


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------
# Loading (ML-1M / ML-10M "::", ML-100K u.data, ml-latest-small ratings.csv)
# --------------------------------------------------------------------------------------
def _find_ratings(data: Path) -> tuple[Path, str]:
    for name, kind in (("ratings.dat.gz", "dcolon"), ("ratings.dat", "dcolon"),
                       ("u.data", "tab"), ("ratings.csv", "csv")):
        if (data / name).exists():
            return data / name, kind
    raise FileNotFoundError(f"no ratings.dat[.gz], u.data or ratings.csv in {data}")


def _find_movies(data: Path) -> tuple[Path | None, str]:
    for name, kind in (("movies.dat", "dcolon"), ("u.item", "pipe"), ("movies.csv", "csv")):
        if (data / name).exists():
            return data / name, kind
    return None, ""


def _read_csv_ratings(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df.rename(columns={"userId": "user_id", "movieId": "movie_id"})
    return df[COLS]


def load_faithful(data_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load ratings and movies the way notebook users do (python engine for '::')."""
    data = Path(data_dir)
    rpath, kind = _find_ratings(data)
    if kind == "dcolon":
        ratings = pd.read_csv(rpath, sep="::", engine="python", names=COLS)
    elif kind == "tab":
        ratings = pd.read_csv(rpath, sep="\t", names=COLS)
    else:
        ratings = _read_csv_ratings(rpath)
    mpath, mkind = _find_movies(data)
    if mkind == "dcolon":
        movies = pd.read_csv(mpath, sep="::", engine="python", encoding="latin-1",
                             names=["movie_id", "title", "genres"])
    elif mkind == "pipe":
        movies = pd.read_csv(mpath, sep="|", encoding="latin-1", header=None).iloc[:, :2]
        movies.columns = ["movie_id", "title"]
    elif mkind == "csv":
        movies = pd.read_csv(mpath).rename(columns={"movieId": "movie_id"})
    else:
        movies = pd.DataFrame({"movie_id": np.unique(ratings["movie_id"].to_numpy())})
    return ratings, movies


def load_fast(data_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Same frames as load_faithful for the ratings; movies only carry movie_id."""
    data = Path(data_dir)
    rpath, kind = _find_ratings(data)
    if kind == "dcolon":
        # '::' is a regex separator for pandas (python engine, ~30x slower).  No ratings
        # field contains ':', so the C engine on ':' sees empty columns between the values.
        ratings = pd.read_csv(rpath, sep=":", header=None, usecols=[0, 2, 4, 6])
        ratings.columns = COLS
    elif kind == "tab":
        ratings = pd.read_csv(rpath, sep="\t", names=COLS)
    else:
        ratings = _read_csv_ratings(rpath)
    mpath, mkind = _find_movies(data)
    if mkind in ("dcolon", "pipe"):
        # Titles may contain the separator; only the leading id is needed.
        sep = "::" if mkind == "dcolon" else "|"
        with open(mpath, encoding="latin-1") as f:
            ids = [int(line.split(sep, 1)[0]) for line in f if line.strip()]
        movies = pd.DataFrame({"movie_id": ids})
    elif mkind == "csv":
        movies = pd.read_csv(mpath, usecols=["movieId"]).rename(columns={"movieId": "movie_id"})
    else:
        movies = pd.DataFrame({"movie_id": np.unique(ratings["movie_id"].to_numpy())})
    return ratings, movies


# --------------------------------------------------------------------------------------
# Per-user temporal split
# --------------------------------------------------------------------------------------
def temporal_split_per_user(ratings: pd.DataFrame, n_val: int = 1, n_test: int = 1,
                            min_train: int = 5):
    """The seed notebook's split, verbatim in behaviour."""
    r = ratings.sort_values(["user_id", "timestamp"]).copy()
    r["rank"] = r.groupby("user_id").cumcount() + 1
    r["user_cnt"] = r.groupby("user_id")["movie_id"].transform("size")
    eligible = r["user_cnt"] >= (min_train + n_val + n_test)
    test_mask = eligible & (r["rank"] > r["user_cnt"] - n_test)
    val_mask = eligible & (r["rank"] > r["user_cnt"] - (n_test + n_val)) & ~test_mask
    train_mask = ~test_mask & ~val_mask
    train = r.loc[train_mask].drop(columns=["rank", "user_cnt"])
    val = r.loc[val_mask].drop(columns=["rank", "user_cnt"])
    test = r.loc[test_mask].drop(columns=["rank", "user_cnt"])
    return train, val, test


def temporal_split_fast(ratings: pd.DataFrame, n_val: int = 1, n_test: int = 1,
                        min_train: int = 5):
    """Same rows, order and index labels as temporal_split_per_user, in NumPy.

    np.lexsort is stable, like pandas' multi-column sort_values, so equal timestamps keep
    their input order.
    """
    u = ratings["user_id"].to_numpy()
    order = np.lexsort((ratings["timestamp"].to_numpy(), u))
    su = u[order]
    n = len(su)
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, n])
    cnt = np.repeat(counts, counts)
    from_end = cnt - (np.arange(n) - np.repeat(starts, counts))  # n..1 within each user
    eligible = cnt >= (min_train + n_val + n_test)
    test_m = eligible & (from_end <= n_test)
    val_m = eligible & (from_end > n_test) & (from_end <= n_test + n_val)
    train_m = ~(test_m | val_m)
    r = ratings.take(order)
    return r[train_m], r[val_m], r[test_m]


# --------------------------------------------------------------------------------------
# Index / CSR
# --------------------------------------------------------------------------------------
@dataclass
class Index:
    """Dense index of train positives; CSR rows have sorted column indices."""
    user_ids: np.ndarray  # dense user -> original id (ascending)
    item_ids: np.ndarray  # dense item -> original id (ascending)
    pos_u: np.ndarray  # train positives in train-frame order (sampling walks these)
    pos_i: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    keys: np.ndarray  # sorted unique u * n_items + i, for vectorised membership tests
    X_ui: csr_matrix | None = None  # faithful mode keeps the notebook's objects
    user2idx: dict | None = None
    idx2item: dict | None = None
    item2idx: dict | None = None
    train_pos: pd.DataFrame | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def lookup_users(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original user ids -> (dense index, in-index mask)."""
        ids = np.asarray(ids)
        pos = np.searchsorted(self.user_ids, ids)
        pos = np.minimum(pos, max(self.n_users - 1, 0))
        ok = self.user_ids[pos] == ids if self.n_users else np.zeros(len(ids), bool)
        return pos, ok

    def is_positive(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        q = u.astype(np.int64) * self.n_items + i
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q


def _finish_index(pos_u, pos_i, n_users, n_items, **extra) -> Index:
    # sort + adjacent-difference dedupe: np.unique on int64 is ~40x slower here (numpy 2.4).
    keys = np.sort(pos_u.astype(np.int64) * n_items + pos_i)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    indptr = np.searchsorted(keys, np.arange(n_users + 1, dtype=np.int64) * n_items)
    indices = (keys % n_items).astype(np.int64)
    return Index(pos_u=pos_u, pos_i=pos_i, indptr=indptr, indices=indices, keys=keys, **extra)


def build_index_faithful(train_df: pd.DataFrame, threshold: float) -> Index:
    """Notebook cells 11-13: factorize, mapping dicts, scipy CSR."""
    train_tmp = train_df.copy()
    train_tmp["interaction"] = (train_tmp["rating"] >= threshold).astype(np.int8)
    train_pos = train_tmp[train_tmp["interaction"] == 1][["user_id", "movie_id"]].copy()
    u_codes, u_uniques = pd.factorize(train_pos["user_id"], sort=True)
    i_codes, i_uniques = pd.factorize(train_pos["movie_id"], sort=True)
    train_pos["u_idx"] = u_codes.astype(np.int32)
    train_pos["i_idx"] = i_codes.astype(np.int32)
    user2idx = pd.Series(np.arange(len(u_uniques)), index=u_uniques).to_dict()
    idx2item = pd.Series(i_uniques).to_dict()
    item2idx = pd.Series(np.arange(len(i_uniques)), index=i_uniques).to_dict()
    X_ui = csr_matrix(
        (np.ones(len(train_pos), dtype=np.float32),
         (train_pos["u_idx"].to_numpy(), train_pos["i_idx"].to_numpy())),
        shape=(len(u_uniques), len(i_uniques)),
    )
    X_ui.sort_indices()
    return Index(user_ids=np.asarray(u_uniques), item_ids=np.asarray(i_uniques),
                 pos_u=train_pos["u_idx"].to_numpy(), pos_i=train_pos["i_idx"].to_numpy(),
                 indptr=X_ui.indptr.astype(np.int64), indices=X_ui.indices.astype(np.int64),
                 keys=np.repeat(np.arange(X_ui.shape[0], dtype=np.int64),
                                np.diff(X_ui.indptr)) * X_ui.shape[1] + X_ui.indices,
                 X_ui=X_ui, user2idx=user2idx, idx2item=idx2item, item2idx=item2idx,
                 train_pos=train_pos)


def build_index_fast(train_df: pd.DataFrame, threshold: float) -> Index:
    keep = train_df["rating"].to_numpy() >= threshold
    pos_u, user_ids = pd.factorize(train_df["user_id"].to_numpy()[keep], sort=True)
    pos_i, item_ids = pd.factorize(train_df["movie_id"].to_numpy()[keep], sort=True)
    return _finish_index(pos_u.astype(np.int64), pos_i.astype(np.int64),
                         len(user_ids), len(item_ids), user_ids=user_ids, item_ids=item_ids)


# --------------------------------------------------------------------------------------
# Popularity
# --------------------------------------------------------------------------------------
@dataclass
class Popularity:
    counts: dict  # original movie id -> train positive count (avg_popularity@K)
    ranked_idx: np.ndarray  # dense items, most popular first (recommender + BPRMF pool)
    top_pop_iidx: np.ndarray  # BPRMF negative pool: ranked_idx[:top_n]


def _rank_order(counts: pd.Series, pop_order: str) -> pd.Index:
    """Ids of a count Series (indexed by ascending id) ordered most popular first.

    "notebook" is the notebook's ``sort_values(ascending=False)``: an unstable quicksort, so
    equal counts come out in an order set by numpy's sort kernel (on ML-1M it puts 1265
    before 1, both 1612; SPEC section 10's Popularity figures are only reproduced with this
    order).  "id" is SPEC section 4's rule: equal counts, lower id first.
    """
    if pop_order == "notebook":
        return counts.sort_values(ascending=False).index
    if pop_order == "id":
        return counts.sort_values(ascending=False, kind="stable").index
    raise ValueError(f"pop_order must be 'notebook' or 'id', got {pop_order!r}")


def popularity_faithful(train_df: pd.DataFrame, index: Index, cfg: Config) -> Popularity:
    train_pos = train_df[train_df["rating"] >= cfg.threshold]
    item_popularity = train_pos.groupby("movie_id").size()
    ranked_ids = _rank_order(item_popularity, cfg.pop_order)
    # Notebook cell 26.
    top_pop_movie_ids = ranked_ids[:cfg.top_n].tolist()
    top_pop_iidx = np.array([index.item2idx[m] for m in top_pop_movie_ids if m in index.item2idx],
                            dtype=np.int64)
    ranked_idx = np.array([index.item2idx[m] for m in ranked_ids], dtype=np.int64)
    return Popularity(counts=item_popularity.to_dict(), ranked_idx=ranked_idx,
                      top_pop_iidx=top_pop_iidx)


def popularity_fast(index: Index, cfg: Config) -> Popularity:
    # Duplicated (user, item) rows would count twice, exactly like groupby().size().
    cnt = np.bincount(index.pos_i, minlength=index.n_items)
    # Dense order == ascending id order, so a positional Series sorts exactly like the
    # notebook's groupby Series and the tie order (hence the BPRMF pool) is identical.
    ranked_idx = _rank_order(pd.Series(cnt), cfg.pop_order).to_numpy()
    return Popularity(counts=dict(zip(index.item_ids.tolist(), cnt.tolist())),
                      ranked_idx=ranked_idx, top_pop_iidx=ranked_idx[:cfg.top_n].copy())


def check_samplable(index: Index, candidates: np.ndarray | None) -> None:
    """Rejection sampling never ends for a user whose positives cover every candidate.

    SPEC section 5 asks for a clear error rather than a hang (the notebook would hang).
    """
    if candidates is None:
        deg = np.diff(index.indptr)
        bad = np.flatnonzero(deg >= index.n_items)
    else:
        in_pool = np.isin(index.indices, candidates)
        rows = np.repeat(np.arange(index.n_users), np.diff(index.indptr))
        hits = np.bincount(rows[in_pool], minlength=index.n_users)
        bad = np.flatnonzero(hits >= len(np.unique(candidates)))
    if bad.size:
        raise ValueError(
            f"{bad.size} user(s) have every candidate negative item as a positive "
            f"(e.g. user id {index.user_ids[bad[0]]}); negative sampling cannot proceed")


# --------------------------------------------------------------------------------------
# Negative sampling
# --------------------------------------------------------------------------------------
def build_train_pairs_with_negatives(train_pos: pd.DataFrame, X_ui, n_items: int,
                                     n_neg: int = 4, seed: int = 42):
    """The seed notebook's per-positive Python loop (cell 16)."""
    rng = np.random.default_rng(seed)
    pos_u = train_pos["u_idx"].to_numpy()
    pos_i = train_pos["i_idx"].to_numpy()
    n_pos = len(pos_u)
    users = [pos_u]
    items = [pos_i]
    labels = [np.ones(n_pos, dtype=np.float32)]
    neg_users = np.repeat(pos_u, n_neg)
    neg_items = np.empty(n_pos * n_neg, dtype=np.int64)
    idx = 0
    for u in pos_u:
        liked = set(X_ui.getrow(u).indices)
        for _ in range(n_neg):
            j = int(rng.integers(0, n_items))
            while j in liked:
                j = int(rng.integers(0, n_items))
            neg_items[idx] = j
            idx += 1
    users.append(neg_users)
    items.append(neg_items)
    labels.append(np.zeros(len(neg_users), dtype=np.float32))
    users = np.concatenate(users)
    items = np.concatenate(items)
    labels = np.concatenate(labels)
    perm = rng.permutation(len(users))
    return users[perm], items[perm], labels[perm]


class TripletDatasetPopularHard(Dataset):
    """The seed notebook's BPRMF dataset (cell 24): sampling happens in the constructor."""

    def __init__(self, train_pos, X_ui, top_pop_iidx, n_triplets, seed=42):
        rng = np.random.default_rng(seed)
        pos = train_pos[["u_idx", "i_idx"]].to_numpy()
        idx = rng.integers(0, len(pos), size=n_triplets)
        u = pos[idx, 0].astype(np.int64)
        i_pos = pos[idx, 1].astype(np.int64)
        i_neg = np.empty(n_triplets, dtype=np.int64)
        for t in range(n_triplets):
            liked = set(X_ui.getrow(u[t]).indices)
            j = int(top_pop_iidx[int(rng.integers(0, len(top_pop_iidx)))])
            while j in liked:
                j = int(top_pop_iidx[int(rng.integers(0, len(top_pop_iidx)))])
            i_neg[t] = j
        self.u = torch.tensor(u, dtype=torch.long)
        self.i_pos = torch.tensor(i_pos, dtype=torch.long)
        self.i_neg = torch.tensor(i_neg, dtype=torch.long)

    def __len__(self):
        return len(self.u)

    def __getitem__(self, idx):
        return self.u[idx], self.i_pos[idx], self.i_neg[idx]


def _redraw_rejected(index: Index, u: np.ndarray, j: np.ndarray,
                     draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """Redraw j where (u, j) is a positive until none is; only rejected slots are touched."""
    bad = np.flatnonzero(index.is_positive(u, j))
    while bad.size:
        j[bad] = draw(bad.size)
        bad = bad[index.is_positive(u[bad], j[bad])]
    return j


def sample_uniform_fast(index: Index, n_neg: int, rng: np.random.Generator):
    """(users, items, labels): every positive plus n_neg uniform negatives; not shuffled
    (the training loop permutes)."""
    n_pos = len(index.pos_u)
    neg_u = np.repeat(index.pos_u, n_neg)
    neg_i = rng.integers(0, index.n_items, size=n_pos * n_neg)
    neg_i = _redraw_rejected(index, neg_u, neg_i,
                             lambda m: rng.integers(0, index.n_items, size=m))
    users = np.concatenate([index.pos_u, neg_u])
    items = np.concatenate([index.pos_i, neg_i])
    labels = np.zeros(len(users), dtype=np.float32)
    labels[:n_pos] = 1.0
    return users, items, labels


def sample_popular_fast(index: Index, pool: np.ndarray, n_triplets: int,
                        rng: np.random.Generator):
    """(u, i_pos, i_neg): positives drawn with replacement, j uniform over the pool."""
    t = rng.integers(0, len(index.pos_u), size=n_triplets)
    u = index.pos_u[t]
    i = index.pos_i[t]
    j = pool[rng.integers(0, len(pool), size=n_triplets)]
    j = _redraw_rejected(index, u, j, lambda m: pool[rng.integers(0, len(pool), size=m)])
    return u, i, j


# --------------------------------------------------------------------------------------
# Models (notebook cells 17, 18, 25)
# --------------------------------------------------------------------------------------
class PairDataset(Dataset):
    def __init__(self, users, items, labels):
        self.users = torch.tensor(users, dtype=torch.long)
        self.items = torch.tensor(items, dtype=torch.long)
        self.labels = torch.tensor(labels, dtype=torch.float32)

    def __len__(self):
        return len(self.users)

    def __getitem__(self, idx):
        return self.users[idx], self.items[idx], self.labels[idx]


class NeuralMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, emb_dim: int = 64, hidden_dim: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, emb_dim)
        self.item_emb = nn.Embedding(n_items, emb_dim)
        self.mlp = nn.Sequential(
            nn.Linear(emb_dim * 2, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, 1),
        )
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, u, i):
        x = torch.cat([self.user_emb(u), self.item_emb(i)], dim=1)
        return self.mlp(x).squeeze(1)


class BPRMF(nn.Module):
    def __init__(self, n_users, n_items, emb_dim=64):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, emb_dim)
        self.item_emb = nn.Embedding(n_items, emb_dim)
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, u, i):
        return (self.user_emb(u) * self.item_emb(i)).sum(dim=1)


# --------------------------------------------------------------------------------------
# Recommendation
# --------------------------------------------------------------------------------------
def make_recommend_nmf(index: Index, device: str = "cpu"):
    """The notebook's recommend_nmf (cell 19), one user per call; also used for BPRMF."""
    X_ui, user2idx, idx2item = index.X_ui, index.user2idx, index.idx2item

    @torch.no_grad()
    def recommend_nmf(model, user_id: int, k: int = 10):
        if user_id not in user2idx:
            return []
        uidx = user2idx[user_id]
        model.eval()
        model.to(device)
        n_items = X_ui.shape[1]
        item_idx = torch.arange(n_items, dtype=torch.long, device=device)
        user_idx = torch.full((n_items,), uidx, dtype=torch.long, device=device)
        bs = 20000
        scores = []
        for start in range(0, n_items, bs):
            end = min(start + bs, n_items)
            scores.append(model(user_idx[start:end], item_idx[start:end]).detach().cpu().numpy())
        scores = np.concatenate(scores)
        seen = set(X_ui.getrow(uidx).indices)
        if seen:
            scores[list(seen)] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return [idx2item[int(i)] for i in top]

    return recommend_nmf


def make_recommend_popular(index: Index, pop: Popularity):
    """Per-user popularity recommender: walk the ranking, skip the user's train positives."""
    ranked_ids = index.item_ids[pop.ranked_idx].tolist()
    seen_by_user: dict = {}

    def recommend(user_id, k=10):
        if user_id not in index.user2idx:
            return []
        seen = seen_by_user.get(user_id)
        if seen is None:
            u = index.user2idx[user_id]
            seen = set(index.item_ids[index.X_ui.getrow(u).indices].tolist())
            seen_by_user[user_id] = seen
        out = []
        for m in ranked_ids:
            if m not in seen:
                out.append(m)
                if len(out) == k:
                    break
        return out

    return recommend


def nmf_block_scorer(model: NeuralMF) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores (users x all items) for NeuralMF in eval mode.

    Linear(concat(u, i)) = W_u u + W_i i + b, so the first layer is applied once per user
    and once per item; a (user, item) score is then add + ReLU + dot with the last layer.
    """
    lin1, lin2 = model.mlp[0], model.mlp[3]
    d = model.user_emb.embedding_dim
    with torch.no_grad():
        uh = model.user_emb.weight @ lin1.weight[:, :d].T + lin1.bias
        ih = model.item_emb.weight @ lin1.weight[:, d:].T
        w2, b2 = lin2.weight[0].contiguous(), lin2.bias

    def score(uidx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = uh[uidx].unsqueeze(1) + ih.unsqueeze(0)
            h.relu_()
            return torch.matmul(h, w2) + b2

    return score


def bpr_block_scorer(model: BPRMF) -> Callable[[torch.Tensor], torch.Tensor]:
    with torch.no_grad():
        U, V = model.user_emb.weight.detach(), model.item_emb.weight.detach()

    def score(uidx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return U[uidx] @ V.T

    return score


def popularity_block_scorer(index: Index, pop: Popularity):
    # -rank as a float: unique and exact in float32, so topk keeps the ranking's tie order.
    s = torch.empty(index.n_items, dtype=torch.float32)
    s[torch.tensor(pop.ranked_idx)] = -torch.arange(index.n_items, dtype=torch.float32)

    def score(uidx: torch.Tensor) -> torch.Tensor:
        return s.unsqueeze(0).expand(len(uidx), -1).clone()

    return score


def topk_unseen(score_fn, index: Index, uidx: np.ndarray, k: int, block: int) -> np.ndarray:
    """Top-k dense item indices per user with train positives removed; -1 pads short rows."""
    out = np.full((len(uidx), k), -1, dtype=np.int64)
    kk = min(k, index.n_items)
    deg = np.diff(index.indptr)
    for s in range(0, len(uidx), block):
        ub = uidx[s:s + block]
        sc = score_fn(torch.from_numpy(ub))
        starts, lens = index.indptr[ub], deg[ub]
        total = int(lens.sum())
        if total:
            # Flat CSR positions of every seen item of the block's users, without a loop.
            rows = np.repeat(np.arange(len(ub)), lens)
            flat = np.arange(total) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
            sc[torch.from_numpy(rows), torch.from_numpy(index.indices[flat])] = -math.inf
        val, ix = torch.topk(sc, kk, dim=1)
        ix[val == -math.inf] = -1
        out[s:s + len(ub), :kk] = ix.numpy()
    return out


def batched_recommender(score_fn, index: Index, user_ids: np.ndarray, k: int,
                        block: int) -> Callable:
    """Computes every requested user's list in blocks, then serves them from a dict so the
    shared metric code (which asks one user at a time) stays identical across modes."""
    user_ids = np.unique(np.asarray(user_ids))
    uidx, ok = index.lookup_users(user_ids)
    recs = {}
    if ok.any():
        top = topk_unseen(score_fn, index, uidx[ok], k, block)
        ids = index.item_ids[np.maximum(top, 0)]
        for uid, row, t in zip(user_ids[ok].tolist(), ids.tolist(), top):
            recs[uid] = [m for m, x in zip(row, t) if x >= 0]
    return lambda user_id, k=k: recs.get(user_id, [])[:k]


# --------------------------------------------------------------------------------------
# Metrics (notebook cell 15 and SPEC section 9)
# --------------------------------------------------------------------------------------
def ndcg_at_k(recommended, relevant, k=10):
    rel = set(relevant)
    dcg = 0.0
    for i, item in enumerate(recommended[:k], start=1):
        if item in rel:
            dcg += 1.0 / math.log2(i + 1)
    ideal_hits = min(len(rel), k)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, ideal_hits + 1))
    return 0.0 if idcg == 0 else dcg / idcg


def evaluate_model(recommend_fn, test_df, k=10, threshold=4):
    """Notebook's per-epoch monitor: (recall@k, ndcg@k); recommend_fn(user_id, k)."""
    test_pos = test_df[test_df["rating"] >= threshold]
    recalls, ndcgs = [], []
    for user_id, g in test_pos.groupby("user_id"):
        relevant = g["movie_id"].tolist()
        recs = recommend_fn(user_id, k=k)
        if not recs:
            continue
        recalls.append(len(set(recs) & set(relevant)) / len(relevant))
        ndcgs.append(ndcg_at_k(recs, relevant, k=k))
    if not recalls:
        return 0.0, 0.0
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def evaluate_all(recommend_fn, test_df, users_for_coverage, all_items, item_popularity,
                 k=10, threshold=4) -> dict:
    """SPEC section 9 (the notebook's metrics.evaluate_all); recommend_fn(user_id, k)."""
    test_pos = test_df[test_df["rating"] >= threshold]
    recalls, ndcgs, mrrs, hits = [], [], [], []
    for user_id, g in test_pos.groupby("user_id"):
        relevant = set(g["movie_id"].tolist())
        recs = list(recommend_fn(user_id, k))[:k]
        if not recs:
            continue
        recalls.append(len(set(recs) & relevant) / len(relevant))
        ndcgs.append(ndcg_at_k(recs, relevant, k=k))
        first = next((p for p, m in enumerate(recs, start=1) if m in relevant), None)
        mrrs.append(0.0 if first is None else 1.0 / first)
        hits.append(0.0 if first is None else 1.0)
    covered: set = set()
    pops = []
    for user_id in users_for_coverage:
        recs = list(recommend_fn(user_id, k))[:k]
        covered.update(recs)
        pops.extend(item_popularity.get(m, 0) for m in recs)
    n_catalog = len(set(np.asarray(all_items).tolist()))

    def mean(x):
        return float(np.mean(x)) if x else 0.0

    return {
        f"recall@{k}": mean(recalls),
        f"ndcg@{k}": mean(ndcgs),
        f"mrr@{k}": mean(mrrs),
        f"hitrate@{k}": mean(hits),
        "n_users_eval": len(recalls),
        f"coverage@{k}": len(covered) / n_catalog if n_catalog else 0.0,
        f"avg_popularity@{k}": mean(pops),
    }


def limit_users(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None:
        return frame
    keep = frame["user_id"].unique()[:n]
    return frame[frame["user_id"].isin(keep)]


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
def _sampling_seed(base: int, epoch: int, seed: int) -> int:
    return base + epoch + 1000 * seed


def _make_adam(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _epoch_batches_fast(tensors: tuple[torch.Tensor, ...], batch_size: int):
    """Shuffled mini-batches by slicing one permutation (what DataLoader(shuffle=True) yields,
    without collating 4096 single-item fetches per batch)."""
    perm = torch.randperm(len(tensors[0]))
    for s in range(0, len(perm), batch_size):
        b = perm[s:s + batch_size]
        yield tuple(t[b] for t in tensors)


def train_model(kind: str, model: nn.Module, opt: torch.optim.Optimizer, index: Index,
                pop: Popularity, watch_df, cfg: Config, timer: Timer,
                per_epoch: list) -> nn.Module:
    """Epoch loop shared by both models and both modes; only the pieces differ."""
    faithful = cfg.mode == "faithful"
    epochs = cfg.nmf_epochs if kind == "neuralmf" else cfg.bpr_epochs
    criterion = nn.BCEWithLogitsLoss()
    early_stop = kind == "bprmf"
    best, best_state, bad = -1.0, None, 0
    eval_df = limit_users(watch_df, cfg.max_eval_users)
    eval_users = eval_df.loc[eval_df["rating"] >= cfg.threshold, "user_id"].unique()
    recommend_nmf = make_recommend_nmf(index) if faithful else None
    scorer = nmf_block_scorer if kind == "neuralmf" else bpr_block_scorer
    block = NMF_BLOCK if kind == "neuralmf" else DOT_BLOCK

    for epoch in range(1, epochs + 1):
        # ---- sampling
        t0 = time.perf_counter()
        if kind == "neuralmf":
            sseed = _sampling_seed(42, epoch, cfg.seed)
            if faithful:
                users, items, labels = build_train_pairs_with_negatives(
                    index.train_pos, index.X_ui, index.n_items, n_neg=cfg.n_neg, seed=sseed)
            else:
                users, items, labels = sample_uniform_fast(
                    index, cfg.n_neg, np.random.default_rng(sseed))
        else:
            sseed = _sampling_seed(2000, epoch, cfg.seed)
            if faithful:
                ds = TripletDatasetPopularHard(index.train_pos, index.X_ui, pop.top_pop_iidx,
                                               cfg.triplets_per_epoch, seed=sseed)
            else:
                u, i, j = sample_popular_fast(index, pop.top_pop_iidx, cfg.triplets_per_epoch,
                                              np.random.default_rng(sseed))
        t_sample = time.perf_counter() - t0

        # ---- SGD
        t0 = time.perf_counter()
        model.train()
        total_loss, n_seen = 0.0, 0
        if kind == "neuralmf":
            if faithful:
                ds = PairDataset(users, items, labels)
                batches = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
            else:
                batches = _epoch_batches_fast(
                    (torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(labels)),
                    cfg.batch_size)
            for bu, bi, by in batches:
                opt.zero_grad()
                loss = criterion(model(bu, bi), by)
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(bu)
                n_seen += len(bu)
        else:
            if faithful:
                batches = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
            else:
                batches = _epoch_batches_fast(
                    (torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(j)),
                    cfg.batch_size)
            for bu, bp, bn in batches:
                opt.zero_grad()
                loss = -nn.functional.logsigmoid(model(bu, bp) - model(bu, bn)).mean()
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(bu)
                n_seen += len(bu)
        t_train = time.perf_counter() - t0

        # ---- monitoring / early stopping
        rec = {"model": kind, "epoch": epoch, "sampling_s": t_sample, "training_s": t_train,
               "loss": total_loss / max(n_seen, 1), "eval_s": None}
        stop = False
        if cfg.eval_every and epoch % cfg.eval_every == 0:
            t0 = time.perf_counter()
            if faithful:
                fn = lambda uid, k=cfg.k: recommend_nmf(model, uid, k=k)  # noqa: E731
            else:
                model.eval()
                fn = batched_recommender(scorer(model), index, eval_users, cfg.k, block)
            r, n = evaluate_model(fn, eval_df, k=cfg.k, threshold=cfg.threshold)
            rec.update({"eval_s": time.perf_counter() - t0, f"recall@{cfg.k}": r,
                        f"ndcg@{cfg.k}": n, "eval_split": cfg.early_stop_on})
            if early_stop:
                if r > best:
                    best, bad = r, 0
                    best_state = {kk: v.detach().cpu().clone()
                                  for kk, v in model.state_dict().items()}
                    rec["best"] = True
                else:
                    bad += 1
                stop = bad >= cfg.patience
        timer.add(f"{kind}_sampling", t_sample)
        timer.add(f"{kind}_training", t_train)
        if rec["eval_s"] is not None:
            timer.add(f"{kind}_epoch_eval", rec["eval_s"])
        per_epoch.append(rec)
        msg = (f"  {kind} epoch {epoch}/{epochs} loss={rec['loss']:.4f} "
               f"sample={t_sample:.2f}s sgd={t_train:.2f}s")
        if rec["eval_s"] is not None:
            msg += (f" | {cfg.early_stop_on} recall@{cfg.k}={rec[f'recall@{cfg.k}']:.4f} "
                    f"ndcg@{cfg.k}={rec[f'ndcg@{cfg.k}']:.4f} ({rec['eval_s']:.2f}s)")
        _log(cfg, msg)
        if stop:
            break

    if early_stop and best_state is not None:
        model.load_state_dict(best_state)
        best_epoch = max(r["epoch"] for r in per_epoch if r["model"] == kind and r.get("best"))
        _log(cfg, f"  {kind}: restored best epoch {best_epoch} "
                  f"({cfg.early_stop_on} recall@{cfg.k}={best:.4f})")
    return model


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------
def run(cfg: Config | dict) -> dict:
    """Run the workflow; returns the JSON-serialisable result described in the module doc."""
    if isinstance(cfg, dict):
        cfg = Config(**cfg)
    if cfg.mode not in ("fast", "faithful"):
        raise ValueError(f"mode must be 'fast' or 'faithful', got {cfg.mode!r}")
    if cfg.early_stop_on not in ("val", "test"):
        raise ValueError("early_stop_on must be 'val' or 'test'")
    unknown = set(cfg.models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    faithful = cfg.mode == "faithful"
    torch.set_num_threads(cfg.threads)
    np.random.seed(cfg.seed)
    timer = Timer()
    per_epoch: list = []
    metrics: dict = {}
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    load_start = os.getloadavg()[0]

    with timer("load"):
        ratings, movies = (load_faithful if faithful else load_fast)(cfg.data)
    with timer("split"):
        split = temporal_split_per_user if faithful else temporal_split_fast
        train_df, val_df, test_df = split(ratings, n_val=cfg.n_val, n_test=cfg.n_test,
                                          min_train=cfg.min_train)
    with timer("index"):
        index = (build_index_faithful if faithful else build_index_fast)(train_df, cfg.threshold)
    with timer("popularity"):
        pop = (popularity_faithful(train_df, index, cfg) if faithful
               else popularity_fast(index, cfg))
    _log(cfg, f"[{cfg.mode}] {cfg.data}: ratings {len(ratings):,}; train {len(train_df):,} "
              f"val {len(val_df):,} test {len(test_df):,}; index {index.n_users:,} users x "
              f"{index.n_items:,} items, {len(index.keys):,} positives")

    watch_df = val_df if cfg.early_stop_on == "val" else test_df
    final_df = limit_users(test_df, cfg.max_eval_users)
    n_cov = cfg.n_coverage_users if cfg.max_eval_users is None else min(
        cfg.n_coverage_users, cfg.max_eval_users)
    coverage_users = test_df["user_id"].unique()[:n_cov]
    catalog = movies["movie_id"].unique()
    final_users = np.union1d(
        final_df.loc[final_df["rating"] >= cfg.threshold, "user_id"].unique(), coverage_users)

    def final_eval(name: str, recommend_fn_or_scorer, block: int = 0) -> None:
        with timer(f"eval_{name}"):
            if faithful:
                fn = recommend_fn_or_scorer
            else:
                fn = batched_recommender(recommend_fn_or_scorer, index, final_users, cfg.k, block)
            m = evaluate_all(fn, final_df, coverage_users, catalog, pop.counts, k=cfg.k,
                             threshold=cfg.threshold)
        metrics[name] = m
        _log(cfg, f"  {name}: " + " ".join(
            f"{kk}={v:.7g}" if isinstance(v, float) else f"{kk}={v}" for kk, v in m.items())
             + f"  ({timer.stages[f'eval_{name}']:.2f}s)")

    if "popularity" in cfg.models:
        final_eval("popularity", make_recommend_popular(index, pop) if faithful
                   else popularity_block_scorer(index, pop), block=DOT_BLOCK)

    if "neuralmf" in cfg.models:
        check_samplable(index, None)
        torch.manual_seed(cfg.seed)
        # The first optimizer built in a process pays ~1.5 s of lazy torch imports; it is
        # kept apart so per-epoch figures stay clean (it still counts in "total").
        with timer("neuralmf_setup"):
            nmf = NeuralMF(index.n_users, index.n_items, cfg.emb_dim, cfg.hidden_dim, cfg.dropout)
            opt = _make_adam(nmf, cfg)
        with timer("neuralmf_fit"):
            train_model("neuralmf", nmf, opt, index, pop, watch_df, cfg, timer, per_epoch)
        nmf.eval()
        if faithful:
            rec = make_recommend_nmf(index)
            final_eval("neuralmf", lambda uid, k=cfg.k: rec(nmf, uid, k=k))
        else:
            final_eval("neuralmf", nmf_block_scorer(nmf), block=NMF_BLOCK)

    if "bprmf" in cfg.models:
        check_samplable(index, pop.top_pop_iidx)
        torch.manual_seed(cfg.seed)
        with timer("bprmf_setup"):
            bpr = BPRMF(index.n_users, index.n_items, cfg.emb_dim)
            opt = _make_adam(bpr, cfg)
        with timer("bprmf_fit"):
            train_model("bprmf", bpr, opt, index, pop, watch_df, cfg, timer, per_epoch)
        bpr.eval()
        if faithful:
            rec = make_recommend_nmf(index)
            final_eval("bprmf", lambda uid, k=cfg.k: rec(bpr, uid, k=k))
        else:
            final_eval("bprmf", bpr_block_scorer(bpr), block=DOT_BLOCK)

    timer.add("total", time.perf_counter() - t_start)
    cpu_s = time.process_time() - cpu_start
    cfg_d = asdict(cfg)
    cfg_d["models"] = list(cfg.models)
    return {
        "mode": cfg.mode,
        "threads": cfg.threads,
        "torch_num_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "data": cfg.data,
        "config": cfg_d,
        "sizes": {"ratings": len(ratings), "train": len(train_df), "val": len(val_df),
                  "test": len(test_df), "n_users": index.n_users, "n_items": index.n_items,
                  "n_positives": int(len(index.keys))},
        "stages": timer.stages,
        "per_epoch": per_epoch,
        "metrics": metrics,
        "peak_rss_mb": peak_rss_mb(),
        "torch_version": torch.__version__,
        # Wall times are only comparable on an otherwise idle machine; these two tell
        # whether it was (cpu_time/total close to the thread count, 1-min load near it).
        "cpu_time_s": cpu_s,
        "env": {v: os.environ.get(v) for v in
                ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "loadavg_1min": {"start": load_start, "end": os.getloadavg()[0]},
    }


def summarize(result: dict) -> str:
    st = result["stages"]
    lines = [f"== reference_torch [{result['mode']}] threads={result['torch_num_threads']} "
             f"seed={result['seed']} torch {result['torch_version']} ==", "stages (s):"]
    for name, sec in st.items():
        lines.append(f"  {name:<22s}{sec:10.3f}")
    for kind in ("neuralmf", "bprmf"):
        eps = [r for r in result["per_epoch"] if r["model"] == kind]
        if eps:
            ev = [r["eval_s"] for r in eps if r["eval_s"] is not None]
            lines.append(
                f"{kind}: {len(eps)} epochs, per epoch sampling "
                f"{np.mean([r['sampling_s'] for r in eps]):.2f}s, SGD "
                f"{np.mean([r['training_s'] for r in eps]):.2f}s"
                + (f", eval {np.mean(ev):.2f}s" if ev else ""))
    if result["metrics"]:
        keys = list(next(iter(result["metrics"].values())).keys())
        lines.append("metrics:")
        lines.append("  " + f"{'model':<12s}" + "".join(f"{kk:>19s}" for kk in keys))
        for name, m in result["metrics"].items():
            lines.append("  " + f"{name:<12s}" + "".join(
                f"{v:19.7f}" if isinstance(v, float) else f"{v:19d}" for v in m.values()))
    load = result["loadavg_1min"]
    lines.append(f"peak RSS: {result['peak_rss_mb']:.1f} MB; process CPU time "
                 f"{result['cpu_time_s']:.1f}s; 1-min load avg {load['start']:.2f} -> "
                 f"{load['end']:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[Config, str | None]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=Config.data,
                   help="folder with ratings.dat[.gz], u.data or ratings.csv")
    p.add_argument("--mode", choices=["fast", "faithful"], default="fast")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated subset of popularity,neuralmf,bprmf")
    p.add_argument("--nmf-epochs", type=int, default=Config.nmf_epochs)
    p.add_argument("--bpr-epochs", type=int, default=Config.bpr_epochs)
    p.add_argument("--threads", type=int, default=Config.threads)
    p.add_argument("--seed", type=int, default=Config.seed)
    p.add_argument("--early-stop-on", choices=["val", "test"], default="val",
                   help="split watched by per-epoch evaluation and BPRMF early stopping")
    p.add_argument("--eval-every", type=int, default=Config.eval_every,
                   help="evaluate every N epochs (0: never; BPRMF then keeps its last epoch)")
    p.add_argument("--max-eval-users", type=int, default=None,
                   help="evaluate only the first N users of each frame and the first "
                        "min(1000, N) coverage users (timing runs)")
    p.add_argument("--pop-order", choices=["notebook", "id"], default=Config.pop_order,
                   help="tie order of the popularity ranking (see _rank_order)")
    p.add_argument("--triplets-per-epoch", type=int, default=Config.triplets_per_epoch)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--quiet", action="store_true", help="no per-epoch log lines")
    a = p.parse_args(argv)
    cfg = Config(data=a.data, mode=a.mode,
                 models=tuple(m.strip() for m in a.models.split(",") if m.strip()),
                 nmf_epochs=a.nmf_epochs, bpr_epochs=a.bpr_epochs, threads=a.threads,
                 seed=a.seed, early_stop_on=a.early_stop_on, eval_every=a.eval_every,
                 max_eval_users=a.max_eval_users, triplets_per_epoch=a.triplets_per_epoch,
                 pop_order=a.pop_order,
                 verbose=not a.quiet)
    return cfg, a.json


def main(argv: list[str] | None = None) -> int:
    cfg, json_path = parse_args(argv)
    result = run(cfg)
    print(summarize(result))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
