"""Data-core benchmark: recmf against the seed notebook's pandas/scipy/Python
code on MovieLens-1M, side by side in one run (SPEC section 11).

Stages: load, per-user temporal split, index + CSR, popularity, one epoch
of uniform negatives (4 per positive) and one epoch of popular-hard
triplets (500,000), the samplers with 1 and 2 threads.  Before anything
is timed the results of both sides are checked to agree (split row sets,
CSR, popularity counts, validity of every sampled negative); a benchmark of
wrong results is worthless, so a mismatch stops the run.

The notebook's negative samplers are Python loops (~80 us per positive):
they are timed on a random subset of positives/triplets (50,000 by default)
and scaled linearly to a full epoch; the output says so.

Usage::

    python benchmarks/data_core.py [ML1M_DIR] [--repeats 3] [--slow-repeats 2]
                                   [--subset 50000] [--threads 1,2]
                                   [--json out.json] [--markdown table.md] [--profile]

``ML1M_DIR`` defaults to ``$RECMF_DATA/ml-1m``, else ``../shared/data/ml-1m``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (also puts the repository on sys.path)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402

import recmf  # noqa: E402
from recmf import _core  # noqa: E402

COLS = ["user_id", "movie_id", "rating", "timestamp"]
N_NEG = 4
N_TRIPLETS = 500_000
TOP_N = 2000
SEED = 42          # the notebook's default seed for both samplers

# ML-1M figures of SPEC.md sections 2-4, checked when the data is ML-1M.
ML1M_SPLIT = (963_969, 6_040, 30_200)
ML1M_INDEX = (6_038, 3_525, 554_070)
ML1M_TOP5 = [(2858, 2766), (260, 2557), (1196, 2461), (1198, 2213), (2028, 2194)]


# ===========================================================================
# The reference: the seed notebook's code, as its users wrote it
# (../shared/seed/000_809a2c316f16ecda.txt, cells 4, 9-13, 16, 24, 26).
# Only torch.tensor conversions are left out of the samplers.
# ===========================================================================

def ref_load_python(folder):
    """How notebook users read ML-1M: pandas' python engine (the C engine
    does not take the two-character separator)."""
    r = C.find_file(folder, "ratings.dat", "ratings.dat.gz")
    ratings = pd.read_csv(r, sep="::", engine="python", header=None, names=COLS, encoding="latin-1")
    users = pd.read_csv(Path(folder) / "users.dat", sep="::", engine="python", header=None,
                        names=["user_id", "gender", "age", "occupation", "zip"], encoding="latin-1")
    movies = pd.read_csv(Path(folder) / "movies.dat", sep="::", engine="python", header=None,
                         names=["movie_id", "title", "genres"], encoding="latin-1")
    return ratings, users, movies


def ref_ratings_python(path):
    return pd.read_csv(path, sep="::", engine="python", header=None, names=COLS, encoding="latin-1")


def ref_ratings_c_engine(path):
    """pandas' fastest option without extra packages: split on ':' with the
    C engine and keep every other field ("1::2" gives "1", "", "2")."""
    r = pd.read_csv(path, sep=":", engine="c", header=None, usecols=[0, 2, 4, 6])
    r.columns = COLS
    return r


def temporal_split_per_user(ratings, n_val=1, n_test=1, min_train=5):
    """The seed's split (cell 4), verbatim."""
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


def split_numpy_lean(ratings, n_val=1, n_test=5, min_train=5):
    """A lean NumPy split (stable lexsort + vectorised ranks): not the
    notebook's code; shown to tell how much of the gap is pandas overhead."""
    u = ratings["user_id"].to_numpy()
    t = ratings["timestamp"].to_numpy()
    order = np.lexsort((t, u))
    us = u[order]
    starts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
    counts = np.diff(np.r_[starts, len(us)])
    cnt = np.repeat(counts, counts)
    rank = np.arange(len(us)) - np.repeat(starts, counts) + 1
    elig = cnt >= min_train + n_val + n_test
    part = np.zeros(len(us), dtype=np.int8)
    part[elig & (rank > cnt - n_test - n_val)] = 1
    part[elig & (rank > cnt - n_test)] = 2
    return tuple(ratings.take(order[part == p]) for p in (0, 1, 2))


def seed_index(train_df):
    """Cells 11-13: positives, pd.factorize, scipy CSR (the four id dicts of
    cell 13 are left out: recmf keeps the mappings as arrays)."""
    train_tmp = train_df.copy()
    train_tmp["interaction"] = (train_tmp["rating"] >= 4).astype(np.int8)
    train_pos = train_tmp[train_tmp["interaction"] == 1][["user_id", "movie_id"]].copy()
    u_codes, u_uniques = pd.factorize(train_pos["user_id"], sort=True)
    i_codes, i_uniques = pd.factorize(train_pos["movie_id"], sort=True)
    train_pos["u_idx"] = u_codes.astype(np.int32)
    train_pos["i_idx"] = i_codes.astype(np.int32)
    X_ui = csr_matrix(
        (np.ones(len(train_pos), dtype=np.float32),
         (train_pos["u_idx"].to_numpy(), train_pos["i_idx"].to_numpy())),
        shape=(len(u_uniques), len(i_uniques)),
    )
    return train_pos, X_ui, u_uniques, i_uniques


def lean_index(train_df):
    """The same with no DataFrame copies: NumPy mask, factorize, csr_matrix."""
    keep = train_df["rating"].to_numpy() >= 4
    u_codes, u_uniques = pd.factorize(train_df["user_id"].to_numpy()[keep], sort=True)
    i_codes, i_uniques = pd.factorize(train_df["movie_id"].to_numpy()[keep], sort=True)
    X = csr_matrix((np.ones(len(u_codes), dtype=np.float32), (u_codes, i_codes)),
                   shape=(len(u_uniques), len(i_uniques)))
    return X, u_uniques, i_uniques


def seed_id_dicts(u_uniques, i_uniques):
    """Cell 13's four dicts, timed apart."""
    user2idx = pd.Series(np.arange(len(u_uniques)), index=u_uniques).to_dict()
    idx2user = pd.Series(u_uniques).to_dict()
    idx2item = pd.Series(i_uniques).to_dict()
    item2idx = pd.Series(np.arange(len(i_uniques)), index=i_uniques).to_dict()
    return user2idx, idx2user, idx2item, item2idx


def seed_popularity(train_pos):
    """Cell 10."""
    return train_pos.groupby("movie_id").size().sort_values(ascending=False)


def seed_uniform_negatives_loop(pos_u, X_ui, n_items, n_neg=4, seed=42):
    """The per-positive loop of build_train_pairs_with_negatives (cell 16)."""
    rng = np.random.default_rng(seed)
    neg_items = np.empty(len(pos_u) * n_neg, dtype=np.int64)
    idx = 0
    for u in pos_u:
        liked = set(X_ui.getrow(u).indices)
        for _ in range(n_neg):
            j = int(rng.integers(0, n_items))
            while j in liked:
                j = int(rng.integers(0, n_items))
            neg_items[idx] = j
            idx += 1
    return neg_items


def seed_uniform_tail(pos_u, pos_i, neg_items, n_neg=4, seed=42):
    """The vectorised rest of build_train_pairs_with_negatives: labels,
    concatenation and the shuffle of ~2.8M pairs."""
    rng = np.random.default_rng(seed)
    n_pos = len(pos_u)
    users = np.concatenate([pos_u, np.repeat(pos_u, n_neg)])
    items = np.concatenate([pos_i, neg_items])
    labels = np.concatenate([np.ones(n_pos, dtype=np.float32), np.zeros(n_pos * n_neg, dtype=np.float32)])
    perm = rng.permutation(len(users))
    return users[perm], items[perm], labels[perm]


def seed_triplets_loop(pos, X_ui, top_pop_iidx, n_triplets, seed=42):
    """TripletDatasetPopularHard.__init__ (cell 24) without torch.tensor."""
    rng = np.random.default_rng(seed)
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
    return u, i_pos, i_neg


# ===========================================================================
# Agreement checks (run before timing; any failure stops the benchmark)
# ===========================================================================

class Mismatch(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def check_same_frame(a, b, what):
    check(len(a) == len(b), f"{what}: {len(a)} rows vs {len(b)}")
    check(np.array_equal(a.index.to_numpy(), b.index.to_numpy()), f"{what}: different rows/order")
    for c in COLS:
        check(np.array_equal(a[c].to_numpy(), b[c].to_numpy()), f"{what}: column {c} differs")


def positive_mask(indptr, indices, n_rows, n_cols):
    dense = np.zeros((n_rows, n_cols), dtype=bool)
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    dense[rows, indices] = True
    return dense


# ===========================================================================
# Timing helpers
# ===========================================================================

class T:
    """A timing: best wall-clock and best CPU seconds over the repeats."""

    def __init__(self, wall, cpu):
        self.wall, self.cpu = wall, cpu

    def scaled(self, f):
        return T(self.wall * f, self.cpu * f)


def tm(fn, repeats, cpu="thread"):
    """``(T, result)``: single-threaded code is charged its thread's CPU
    time, multi-threaded code (``cpu="process"``) every thread's."""
    wall, c, res = C.best_of(fn, repeats, cpu=cpu)
    return T(wall, c), res


# ===========================================================================
# Breakdowns of recmf's own time (where it goes inside a stage)
# ===========================================================================

def split_breakdown(ratings, repeats):
    """temporal_split = input checks + C sort/assign + three DataFrame.take."""
    from recmf._checks import id_column, time_column
    out = {}
    out["checks (id/time columns)"], (users, times) = tm(
        lambda: (id_column(ratings, "user_id", "ratings")[0], time_column(ratings, "timestamp", "ratings")),
        repeats)
    out["_core.temporal_split (C radix sort + parts)"], (order, part) = tm(
        lambda: _core.temporal_split(users, times, 1, 5, 5), repeats)
    out["masks order[part == p]"], idx = tm(lambda: [order[part == p] for p in (0, 1, 2)], repeats)
    out["ratings.take x3"], _ = tm(lambda: [ratings.take(i) for i in idx], repeats)
    out["(for scale: numpy take of the 4 columns x3)"], _ = tm(
        lambda: [[ratings[c].to_numpy()[i] for c in COLS] for i in idx], repeats)
    out["(for scale: np.argsort(timestamp, kind='stable'))"], _ = tm(
        lambda: np.argsort(times, kind="stable"), repeats)
    out["total recmf.temporal_split"], _ = tm(
        lambda: recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5), repeats)
    return out


def index_breakdown(train, repeats):
    from recmf._checks import id_column, numeric_column
    from recmf.data import _factorize
    out = {}
    out["checks + id columns"], (users, items) = tm(
        lambda: (id_column(train, "user_id", "frame")[0], id_column(train, "movie_id", "frame")[0]), repeats)
    out["rating >= 4 mask"], pos = tm(lambda: numeric_column(train, "rating", "frame") >= 4, repeats)
    out["users[pos], items[pos] (boolean copies)"], (up, ip) = tm(lambda: (users[pos], items[pos]), repeats)
    out["_core.factorize users"], (uc, uid) = tm(lambda: _factorize(up), repeats)
    out["_core.factorize items"], (ic, iid) = tm(lambda: _factorize(ip), repeats)
    out["_core.build_csr"], _ = tm(lambda: _core.build_csr(uc, ic, len(uid), len(iid)), repeats)
    out["(for scale: pd.factorize users + items, sort=True)"], _ = tm(
        lambda: (pd.factorize(up, sort=True), pd.factorize(ip, sort=True)), repeats)
    out["(for scale: scipy csr_matrix from the codes)"], _ = tm(
        lambda: csr_matrix((np.ones(len(uc), dtype=np.float32), (uc, ic)), shape=(len(uid), len(iid))),
        repeats)
    out["total Interactions.from_frame"], _ = tm(
        lambda: recmf.Interactions.from_frame(train, threshold=4), repeats)
    return out


def cprofile_top(fn, n=12):
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(n)
    return s.getvalue()


# ===========================================================================
# main
# ===========================================================================

COLUMNS = [("stage", "stage", None),
           ("recmf_s", "recmf s", C.fmt_seconds), ("reference_s", "reference s", C.fmt_seconds),
           ("ratio", "ratio", C.fmt_ratio),
           ("recmf_cpu_s", "recmf cpu s", C.fmt_seconds), ("reference_cpu_s", "ref cpu s", C.fmt_seconds),
           ("cpu_ratio", "cpu ratio", C.fmt_ratio),
           ("target", "target", None), ("met", "met", None), ("reference", "reference", None)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", default=None, help="ML-1M folder (default $RECMF_DATA/ml-1m "
                    "or ../shared/data/ml-1m)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for every timing (default 3)")
    ap.add_argument("--slow-repeats", type=int, default=2,
                    help="best of N for the notebook's Python sampling loops (default 2)")
    ap.add_argument("--subset", type=int, default=50_000,
                    help="positives / triplets the Python loops are timed on (default 50,000)")
    ap.add_argument("--threads", default="1,2", help="thread counts for the samplers (default 1,2)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    ap.add_argument("--profile", action="store_true",
                    help="also print cProfile top functions of recmf's split and index stages")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    folder = Path(args.path) if args.path else C.default_data_dir("ml-1m")
    if not folder.is_dir():
        sys.exit(f"ML-1M folder not found: {folder} (pass a path or set RECMF_DATA)")
    rfile = C.find_file(folder, "ratings.dat", "ratings.dat.gz")
    R = args.repeats
    t_start = time.time()
    load_before = C.load_average()

    info = C.machine_info()
    print("data_core benchmark: recmf vs the seed notebook's pandas/scipy/Python code")
    print(f"  data          {folder}")
    C.print_machine(info)
    print(f"  repeats       best of {R} (Python sampling loops: best of {args.slow_repeats})")
    print(f"  load average  {load_before}")
    print()
    rows, notes, verified = [], [], []

    def row(stage, rec, ref, reference, target=None, scaled=False, **extra):
        ratio = ref.wall / rec.wall if rec.wall and ref.wall else None
        cpu_ratio = ref.cpu / rec.cpu if rec.cpu and ref.cpu else None
        met = None
        if target is not None and ratio is not None:
            met = "yes" if ratio >= target else "NO"
            if cpu_ratio is not None and (cpu_ratio >= target) != (ratio >= target):
                met += f" (cpu: {'yes' if cpu_ratio >= target else 'NO'})"
        r = dict(stage=stage, recmf_s=rec.wall, reference_s=ref.wall, ratio=ratio,
                 recmf_cpu_s=rec.cpu, reference_cpu_s=ref.cpu, cpu_ratio=cpu_ratio,
                 target=None if target is None else f">= {target}x", met=met,
                 reference=reference + (" (scaled)" if scaled else ""), scaled=scaled, **extra)
        rows.append(r)
        print(f"  {stage:40s} recmf {C.fmt_seconds(rec.wall):>8s} s  ref {C.fmt_seconds(ref.wall):>8s} s"
              f"{'*' if scaled else ' '} {C.fmt_ratio(ratio):>7s}   (cpu {C.fmt_seconds(rec.cpu)} vs "
              f"{C.fmt_seconds(ref.cpu)}: {C.fmt_ratio(cpu_ratio)})", flush=True)
        return r

    # -- load -----------------------------------------------------------------
    print("[load] checking that recmf and pandas read the same ratings ...", flush=True)
    r_rec = recmf.read_ratings(rfile)
    r_py = ref_ratings_python(rfile)
    r_c = ref_ratings_c_engine(rfile)
    for name, ref in (("python engine", r_py), ("C engine sep=':'", r_c)):
        for c in COLS:
            check(np.array_equal(r_rec[c].to_numpy(), ref[c].to_numpy()),
                  f"load: column {c} differs from pandas {name}")
    verified.append(f"ratings identical to pandas python engine and C engine ({len(r_rec):,} rows)")
    ratings = r_rec
    del r_py, r_c
    t_rec, _ = tm(lambda: recmf.read_ratings(rfile), R)
    t_py, _ = tm(lambda: ref_ratings_python(rfile), R)
    t_c, _ = tm(lambda: ref_ratings_c_engine(rfile), R)
    row("load ratings", t_rec, t_py, "pd.read_csv(sep='::', engine='python')")
    row("load ratings (vs pandas C engine)", t_rec, t_c, "pd.read_csv(sep=':', engine='c', usecols)")
    t_rec3, _ = tm(lambda: recmf.load_movielens(folder), R)
    t_py3, _ = tm(lambda: ref_load_python(folder), R)
    row("load_movielens (3 files)", t_rec3, t_py3, "3x pd.read_csv(engine='python')")

    # -- split ----------------------------------------------------------------
    print("[split] checking row sets ...", flush=True)
    tr, va, te = recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)
    rtr, rva, rte = temporal_split_per_user(ratings, n_val=1, n_test=5, min_train=5)
    for name, a, b in (("train", tr, rtr), ("val", va, rva), ("test", te, rte)):
        check_same_frame(a, b, f"split {name}")
    sizes = (len(tr), len(va), len(te))
    is_ml1m = len(ratings) == 1_000_209
    if is_ml1m:
        check(sizes == ML1M_SPLIT, f"split sizes {sizes} != SPEC {ML1M_SPLIT}")
    verified.append(f"split: train/val/test {sizes} identical rows and order to the seed's split"
                    + (" (= SPEC figures)" if is_ml1m else ""))
    lean = split_numpy_lean(ratings)
    for name, a, b in zip(("train", "val", "test"), lean, (tr, va, te)):
        check_same_frame(a, b, f"lean split {name}")
    t_rec, _ = tm(lambda: recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5), R)
    t_ref, _ = tm(lambda: temporal_split_per_user(ratings, n_val=1, n_test=5, min_train=5), R)
    t_lean, _ = tm(lambda: split_numpy_lean(ratings), R)
    row("split", t_rec, t_ref, "seed temporal_split_per_user", target=10)
    row("split (vs lean NumPy lexsort)", t_rec, t_lean, "np.lexsort + take (not the seed's)")
    train = tr

    # -- index / CSR ------------------------------------------------------------
    print("[index/CSR] checking the CSR ...", flush=True)
    data = recmf.Interactions.from_frame(train, threshold=4)
    train_pos, X_ui, u_uniques, i_uniques = seed_index(rtr)
    check(X_ui.has_sorted_indices, "scipy CSR not in canonical form")
    check(data.shape == X_ui.shape, f"CSR shape {data.shape} vs {X_ui.shape}")
    check(np.array_equal(data.indptr, X_ui.indptr), "CSR indptr differs")
    check(np.array_equal(data.indices, X_ui.indices), "CSR indices differ")
    check(np.array_equal(data.user_ids, np.asarray(u_uniques)), "user ids differ")
    check(np.array_equal(data.item_ids, np.asarray(i_uniques)), "item ids differ")
    if is_ml1m:
        check((data.n_users, data.n_items, data.nnz) == ML1M_INDEX,
              f"index {(data.n_users, data.n_items, data.nnz)} != SPEC {ML1M_INDEX}")
    lx, _, _ = lean_index(train)
    check(np.array_equal(lx.indptr, data.indptr) and np.array_equal(lx.indices, data.indices),
          "lean CSR differs")
    verified.append(f"CSR {data.n_users} x {data.n_items}, {data.nnz:,} positives: indptr, indices and "
                    "id mappings identical to pd.factorize + csr_matrix")
    t_rec, _ = tm(lambda: recmf.Interactions.from_frame(train, threshold=4), R)
    t_ref, _ = tm(lambda: seed_index(rtr), R)
    t_lean, _ = tm(lambda: lean_index(train), R)
    t_dicts, (_, _, _, item2idx) = tm(lambda: seed_id_dicts(u_uniques, i_uniques), R)
    row("index + CSR", t_rec, t_ref, "seed: copy, filter, pd.factorize x2, csr_matrix", target=10)
    row("index + CSR (vs lean pandas/scipy)", t_rec, t_lean, "numpy mask, pd.factorize x2, csr_matrix")
    notes.append(f"the seed's four id dicts (cell 13) take another {C.fmt_seconds(t_dicts.wall)} s, "
                 "not counted in 'index + CSR'")

    # -- popularity -------------------------------------------------------------
    print("[popularity] checking counts ...", flush=True)
    pop = recmf.Popularity().fit(data)
    ref_pop = seed_popularity(train_pos)
    rec_counts = pd.Series(pop.counts_, index=data.item_ids)
    check(rec_counts.sort_index().equals(ref_pop.sort_index().astype(rec_counts.dtype)),
          "popularity counts differ")
    check(np.array_equal(pop.counts_[pop.order_], ref_pop.to_numpy()), "popularity order (counts) differs")
    top5 = list(zip(data.item_ids[pop.order_[:5]].tolist(), pop.counts_[pop.order_[:5]].tolist()))
    if is_ml1m:
        check(top5 == ML1M_TOP5, f"top 5 {top5} != SPEC {ML1M_TOP5}")
    verified.append(f"popularity: counts of all {data.n_items} items equal groupby().size(); top 5 {top5}")
    t_rec, _ = tm(lambda: recmf.Popularity().fit(data), R)
    t_ref, _ = tm(lambda: seed_popularity(train_pos), R)
    row("popularity (counts + ranking)", t_rec, t_ref, "groupby('movie_id').size().sort_values()")

    # -- uniform negatives --------------------------------------------------------
    n_items = data.n_items
    nnz = data.nnz
    dense_pos = positive_mask(data.indptr, data.indices, data.n_users, n_items)
    pos_u = train_pos["u_idx"].to_numpy()
    pos_i = train_pos["i_idx"].to_numpy()
    subset = min(args.subset, len(pos_u))
    pick = np.sort(np.random.default_rng(0).choice(len(pos_u), size=subset, replace=False))
    print(f"[uniform negatives] {nnz:,} positives x {N_NEG} = {nnz * N_NEG:,} draws; checking ...", flush=True)
    rows_of = np.repeat(np.arange(data.n_users), np.diff(data.indptr))
    outs = {}
    for th in threads:
        neg = _core.sample_uniform(data.indptr, data.indices, n_items, N_NEG, 0, 0, th)
        check(neg.shape == (nnz * N_NEG,), f"sample_uniform returned {neg.shape}")
        check(neg.min() >= 0 and neg.max() < n_items, "sample_uniform: item out of range")
        check(not dense_pos[np.repeat(rows_of, N_NEG), neg].any(), "sample_uniform drew a positive")
        outs[th] = neg
    check(all(np.array_equal(outs[threads[0]], o) for o in outs.values()),
          "sample_uniform differs between thread counts")
    counts = np.bincount(outs[threads[0]], minlength=n_items)
    ref_neg_sub = seed_uniform_negatives_loop(pos_u[pick], X_ui, n_items, N_NEG, SEED)
    check(not dense_pos[np.repeat(pos_u[pick], N_NEG), ref_neg_sub].any(), "seed loop drew a positive")
    verified.append(f"uniform negatives: {nnz * N_NEG:,} draws in range, none a positive of its user, "
                    f"identical for threads {threads}; per-item counts {counts.min()}..{counts.max()} "
                    f"(mean {counts.mean():.0f}); the seed loop's draws also valid")
    t_loop, _ = tm(lambda: seed_uniform_negatives_loop(pos_u[pick], X_ui, n_items, N_NEG, SEED),
                   args.slow_repeats)
    scale = len(pos_u) / subset
    t_ref = t_loop.scaled(scale)
    notes.append(f"uniform negatives reference: the seed's per-positive loop timed on {subset:,} random "
                 f"positives of {len(pos_u):,} ({t_loop.wall:.2f} s) and scaled x{scale:.2f}")
    full_neg = np.resize(ref_neg_sub, len(pos_u) * N_NEG).astype(np.int64)
    t_tail, _ = tm(lambda: seed_uniform_tail(pos_u, pos_i, full_neg, N_NEG, SEED), R)
    notes.append(f"the seed's vectorised tail (labels, concatenate, shuffle of {len(pos_u) * (N_NEG + 1):,} "
                 f"pairs: {C.fmt_seconds(t_tail.wall)} s) is left out of both sides: recmf shuffles inside "
                 "its training epoch")
    for th in threads:
        t_rec, _ = tm(lambda: _core.sample_uniform(data.indptr, data.indices, n_items, N_NEG, 0, 0, th), R,
                      cpu="process")
        row(f"uniform negatives x{N_NEG} ({th} thread{'s' if th > 1 else ''})", t_rec, t_ref,
            "seed build_train_pairs_with_negatives loop", target=100, scaled=True, threads=th)

    # -- popular-hard triplets ---------------------------------------------------
    print(f"[popular-hard triplets] {N_TRIPLETS:,} from the top {TOP_N}; checking ...", flush=True)
    cand = np.ascontiguousarray(pop.order_[:TOP_N], dtype=np.int32)
    # The seed's candidates: item_popularity.index[:2000] through item2idx.
    top_pop_iidx = np.array([item2idx[m] for m in ref_pop.index[:TOP_N].tolist() if m in item2idx],
                            dtype=np.int64)
    check(np.array_equal(np.sort(pop.counts_[cand]), np.sort(ref_pop.to_numpy()[:TOP_N])),
          "top-2000 candidate counts differ from the seed's")
    cand_mask = np.zeros(n_items, dtype=bool)
    cand_mask[cand] = True
    outs = {}
    for th in threads:
        u, i, j = _core.sample_triplets(data.indptr, data.indices, n_items, cand, N_TRIPLETS, 0, 0, th)
        check(len(u) == N_TRIPLETS, "sample_triplets: wrong length")
        check(dense_pos[u, i].all(), "sample_triplets: (u, i) not a positive")
        check(cand_mask[j].all(), "sample_triplets: j not a candidate")
        check(not dense_pos[u, j].any(), "sample_triplets: j is a positive of u")
        outs[th] = (u, i, j)
    check(all(all(np.array_equal(a, b) for a, b in zip(outs[threads[0]], o)) for o in outs.values()),
          "sample_triplets differs between thread counts")
    pos = train_pos[["u_idx", "i_idx"]].to_numpy()
    tsub = min(args.subset, N_TRIPLETS)
    ru, ri, rj = seed_triplets_loop(pos, X_ui, top_pop_iidx, tsub, SEED)
    check(dense_pos[ru, ri].all() and not dense_pos[ru, rj].any(), "seed triplets invalid")
    verified.append(f"triplets: {N_TRIPLETS:,} with (u, i) a positive, j a top-{TOP_N} candidate and not a "
                    f"positive of u, identical for threads {threads}")
    t_loop, _ = tm(lambda: seed_triplets_loop(pos, X_ui, top_pop_iidx, tsub, SEED), args.slow_repeats)
    scale = N_TRIPLETS / tsub
    t_ref = t_loop.scaled(scale)
    notes.append(f"triplets reference: TripletDatasetPopularHard's loop timed on {tsub:,} triplets "
                 f"({t_loop.wall:.2f} s) and scaled x{scale:.0f}; its torch.tensor conversions left out")
    for th in threads:
        t_rec, _ = tm(lambda: _core.sample_triplets(data.indptr, data.indices, n_items, cand, N_TRIPLETS,
                                                    0, 0, th), R, cpu="process")
        row(f"popular-hard triplets 500k ({th} thread{'s' if th > 1 else ''})", t_rec, t_ref,
            "seed TripletDatasetPopularHard loop", target=100, scaled=True, threads=th)

    # -- where recmf's time goes ---------------------------------------------------
    breakdowns = {}
    try:
        breakdowns["recmf.temporal_split"] = split_breakdown(ratings, R)
        breakdowns["Interactions.from_frame"] = index_breakdown(train, R)
    except Exception as e:  # noqa: BLE001 - internals may move; the table stands without this
        notes.append(f"breakdown unavailable: {e!r}")
    load_after = C.load_average()

    # -- report ---------------------------------------------------------------------
    print()
    print(C.format_table(rows, COLUMNS))
    print("\nratio = reference / recmf, wall clock, best of the repeats; cpu = CPU seconds (the calling "
          "thread's for single-threaded code, all threads' for the samplers).\n(scaled): a Python loop "
          "timed on a subset and scaled linearly to the full epoch.")
    n_cpu = info.get("usable_cpus") or info.get("logical_cpus") or 1
    if load_before and load_after and max(load_before[0], load_after[0]) > n_cpu:
        msg = (f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {n_cpu} CPUs: other work "
               "shared the machine, wall-clock figures are noisy; the cpu columns are the steadier ones")
        notes.append(msg)
    print("\nVerified before timing:")
    for v in verified:
        print(f"  - {v}")
    print("Notes:")
    for n in notes:
        print(f"  - {n}")
    if breakdowns:
        print(f"\nWhere recmf's time goes (best of {R}; wall / cpu ms):")
        for name, parts in breakdowns.items():
            print(f"  {name}:")
            for k, v in parts.items():
                print(f"    {k:52s} {v.wall * 1e3:8.2f} / {v.cpu * 1e3:8.2f}")
    if args.profile:
        print("\ncProfile, recmf.temporal_split (tottime):")
        print(cprofile_top(lambda: recmf.temporal_split(ratings, n_val=1, n_test=5, min_train=5)))
        print("cProfile, Interactions.from_frame (tottime):")
        print(cprofile_top(lambda: recmf.Interactions.from_frame(train, threshold=4)))
    missed = [r["stage"] for r in rows if r["met"] and r["met"].startswith("NO")]
    print("\nTargets: " + ("all met" if not missed else "MISSED: " + ", ".join(missed)))
    print(f"({time.time() - t_start:.0f} s)")
    if args.markdown:
        Path(args.markdown).write_text(C.markdown_table(rows, COLUMNS) + "\n")
    if args.json:
        C.write_json(args.json, {
            "benchmark": "data_core", "data": str(folder), "machine": info, "repeats": R,
            "slow_repeats": args.slow_repeats, "subset": args.subset, "load_average": [load_before, load_after],
            "rows": rows, "verified": verified, "notes": notes,
            "breakdown_ms": {k: {kk: {"wall": vv.wall * 1e3, "cpu": vv.cpu * 1e3} for kk, vv in v.items()}
                             for k, v in breakdowns.items()},
            "targets_missed": missed})
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        sys.exit(f"RESULTS DISAGREE, nothing timed past this point: {e}")
