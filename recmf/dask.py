"""recmf on Dask: split, popularity, recommend and evaluate past one machine.

The model stays small enough to train on one node; the raw log, scoring
every user and evaluation are what outgrow it.  These functions take
``dask.dataframe`` frames with the same column arguments as the pandas API
and give the same results as the single-machine functions:

=====================================  ==========================================
``temporal_split(ddf, ...)``           ``recmf.temporal_split`` (same rows, same order)
``popularity(ddf, threshold)``         ``Popularity().fit(...).popular_items``
``Interactions.from_dask(ddf, ...)``   ``Interactions.from_frame`` on the client
``recommend(model, users, k)``         ``model.recommend_frame`` (a Dask frame)
``evaluate(model, test_ddf, k, ...)``  ``recmf.evaluate`` (the same report)
=====================================  ==========================================

They run on whatever scheduler Dask uses: a ``distributed.Client``
(``LocalCluster`` or ``Client("tcp://scheduler:8786")``) or Dask's local
threads.  Needs the ``dask`` extra: ``pip install "recmf[dask]"``.
"""
from __future__ import annotations

import copy
import math
import pickle
import threading
import weakref

import numpy as np
import pandas as pd

try:
    import cloudpickle
    import dask
    import dask.dataframe as dd
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError('recmf.dask needs Dask: pip install "recmf[dask]" '
                      "(dask[dataframe], distributed, pyarrow)") from e

from . import _core
from . import metrics as _metrics
from ._checks import as_id_array, check_positive_int, check_threshold, id_column
from ._config import FROM_CONFIG, resolve_columns
from .data import Interactions
from .split import _check_count

__all__ = ["temporal_split", "popularity", "interactions_from_dask", "recommend", "evaluate"]

# Columns recmf adds to partitions for a moment; never in what users get.
_ORDER = "__recmf_order__"
_PART = "__recmf_part__"


# ---------------------------------------------------------------------------
# checks and plumbing
# ---------------------------------------------------------------------------

def _check_ddf(ddf, name, columns):
    if not isinstance(ddf, dd.DataFrame):
        from ._tables import type_name
        raise TypeError(f"{name} must be a dask.dataframe.DataFrame, got {type_name(ddf)} "
                        "(use the functions in recmf itself for pandas frames and Arrow tables)")
    missing = [c for c in columns if c is not None and c not in ddf.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {list(ddf.columns)}. "
                         "Pass user_col=/item_col=/rating_col=/time_col= to name yours.")


def _check_threshold(threshold, rating_col):
    if rating_col is not None:
        check_threshold(threshold)


def _client(client):
    """The distributed client to use: ``client``, else the default one, else
    None (Dask's local scheduler)."""
    if client is not None:
        return client
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def _on_workers(model, n_threads, client):
    """A copy of ``model`` computing on ``n_threads`` threads, sent once to
    every worker (a Future the tasks resolve), or the copy itself when there
    is no distributed client.

    One thread per task by default: a worker runs as many tasks at once as
    it has threads, so recmf's own threads would oversubscribe the cores.
    """
    if n_threads is not None:
        n_threads = check_positive_int(n_threads, "n_threads")
        if hasattr(model, "n_threads"):
            model = copy.copy(model)
            model.n_threads = n_threads
    client = _client(client)
    if client is None:
        return model
    # In a list: scatter() would spread a Mapping model's items instead.
    return client.scatter([model], broadcast=True, hash=False)[0]


_LOCAL_LOCK = threading.Lock()
_LOCAL = {}     # "of": weak reference to the model received, "copy": its aligned copy


def _unaligned(obj):
    objs = [obj, getattr(obj, "data_", None)]
    return any(isinstance(v, np.ndarray) and not v.flags.aligned
               for o in objs if o is not None and hasattr(o, "__dict__") for v in vars(o).values())


def _local(model):
    """The worker's usable copy of a model it received.

    distributed hands NumPy arrays over as views of its receive buffers,
    which need not be aligned, and recmf's core refuses unaligned arrays
    (issue 9, case 8).  An in-band pickle round trip gives fresh aligned
    arrays; it is done once per worker and model, not per task, and the
    copy goes when the worker drops the model.
    """
    if not _unaligned(model):
        return model
    with _LOCAL_LOCK:
        held = _LOCAL.get("of")
        if held is None or held() is not model:
            # cloudpickle (Dask's) also copies models whose class came by value.
            fresh = pickle.loads(cloudpickle.dumps(model, protocol=5))
            try:
                _LOCAL["of"] = weakref.ref(model, lambda _: _LOCAL.clear())
            except TypeError:  # not weakly referable: no caching
                return fresh
            _LOCAL["copy"] = fresh
        return _LOCAL["copy"]


def _n_chunks(n, client, per_chunk=50_000):
    """Partitions for ``n`` users: enough to keep every worker thread busy
    (and to lose little when a worker dies), at most ``per_chunk`` users each."""
    threads = 1
    client = _client(client)
    if client is not None:
        threads = max(1, sum(client.nthreads().values()))
    return max(1, min(n, max(2 * threads, math.ceil(n / per_chunk))))


def _as_user_series(users, npartitions, client, name="users"):
    if isinstance(users, dd.DataFrame):
        raise TypeError(f"{name} must be a Series or an array of user ids, got a DataFrame "
                        "(pass one column, e.g. ddf['user_id'].unique())")
    if isinstance(users, dd.Index):
        users = users.to_series()
    if isinstance(users, dd.Series):
        return users if npartitions is None else users.repartition(npartitions=npartitions)
    ids = as_id_array(users, name)[0]
    n = npartitions or _n_chunks(len(ids), client)
    return dd.from_pandas(pd.Series(ids, name="user"), npartitions=max(1, min(n, len(ids) or 1)),
                          sort=False)


# ---------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------

def _with_order(part, partition_info=None):
    """Each row's place in the whole frame: (partition, row) packed in int64,
    so ties in time keep their input order after the shuffle."""
    number = partition_info["number"] if partition_info else 0
    return part.assign(**{_ORDER: (np.int64(number) << 40) + np.arange(len(part), dtype=np.int64)})


def _split_partition(part, n_val, n_test, min_train, user_col, time_col):
    from .split import temporal_split as split
    if len(part) == 0:
        return part.drop(columns=_ORDER).assign(**{_PART: np.int8(0)})
    # The shuffle gathers a user's rows from many partitions in no set
    # order; put them back in input order, then split as recmf does (its
    # stable sort by (user, time) then keeps ties in input order).
    part = part.take(np.argsort(part[_ORDER].to_numpy(), kind="stable")).drop(columns=_ORDER)
    # Shuffled columns can be unaligned views of Arrow buffers, which the
    # core refuses (issue 9, case 8): a deep copy owns fresh aligned arrays.
    part = part.copy(deep=True)
    pieces = split(part, n_val, n_test, min_train, user_col=user_col, time_col=time_col)
    return pd.concat([p.assign(**{_PART: np.int8(code)}) for code, p in enumerate(pieces)])


def temporal_split(ddf, n_val=1, n_test=5, min_train=5, *, user_col=FROM_CONFIG,
                   time_col=FROM_CONFIG, npartitions=None):
    """Per-user temporal split of a Dask frame: :func:`recmf.temporal_split`
    on a cluster.

    The frame is shuffled by user into ranges of user ids (Dask's
    ``sort_values``: one pass to find the ranges, one shuffle), so each
    partition holds whole users, then every partition is split by recmf's C
    split.  Rows with equal timestamps keep their order in ``ddf``
    (partition by partition), as the single-machine split keeps the input
    order.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        One row per interaction; every column is carried through.
    n_val, n_test, min_train : int >= 0
        As in :func:`recmf.temporal_split`.
    user_col, time_col : str
        Column names.  Timestamps may be integers or datetimes.
    npartitions : int, optional
        Partitions after the shuffle (default: those of ``ddf``).

    Returns
    -------
    train, val, test : dask.dataframe.DataFrame
        Lazy frames sharing one shuffle: compute or persist them together
        (``dask.persist(train, val, test)``), else each pays for it.
        Computed, each equals ``recmf.temporal_split(ddf.compute(), ...)``'s
        frame row for row and in the same ``(user, time)`` order, index
        included (string columns may come back as Dask's string dtype).

    Raises
    ------
    TypeError, ValueError
        ``ddf`` is not a Dask frame, lacks a column, or a count is not an
        integer >= 0 (checked here, before anything runs).
    """
    n_val = _check_count(n_val, "n_val")
    n_test = _check_count(n_test, "n_test")
    min_train = _check_count(min_train, "min_train")
    # Settings are read here, on the client: workers have their own.
    c = resolve_columns(user_col=user_col, time_col=time_col)
    user_col, time_col = c["user_col"], c["time_col"]
    _check_ddf(ddf, "ddf", [user_col, time_col])
    if _ORDER in ddf.columns or _PART in ddf.columns:
        raise ValueError(f"ddf has a column named {_ORDER!r} or {_PART!r}, which recmf uses")
    keyed = ddf.map_partitions(_with_order, meta=ddf._meta.assign(**{_ORDER: np.int64(0)}))
    shuffled = keyed.sort_values(user_col, npartitions=npartitions)
    meta = ddf._meta.assign(**{_PART: np.int8(0)})
    parts = shuffled.map_partitions(_split_partition, n_val, n_test, min_train, user_col, time_col,
                                    meta=meta)
    return tuple(parts[parts[_PART] == code].drop(columns=_PART) for code in (0, 1, 2))


# ---------------------------------------------------------------------------
# positives: popularity and Interactions
# ---------------------------------------------------------------------------

def _positives(ddf, threshold, user_col, item_col, rating_col, keep_rating=False, time_col=None):
    """The positive rows (every row with ``keep_rating``) of the user,
    item (, rating) and, when ``ddf`` has it, time columns, in ``ddf``'s
    row order."""
    _check_ddf(ddf, "ddf", [user_col, item_col, rating_col])
    _check_threshold(threshold, rating_col)
    rows = ddf if rating_col is None or keep_rating else ddf[ddf[rating_col] >= threshold]
    cols = [user_col, item_col] + ([rating_col] if keep_rating and rating_col is not None else [])
    if time_col is not None and time_col in ddf.columns and time_col not in cols:
        cols.append(time_col)
    return rows[cols]


def popularity(ddf, threshold=FROM_CONFIG, *, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
               rating_col=FROM_CONFIG):
    """Positives per item, counted on the cluster.

    popularity(i) = number of distinct users with a positive (``rating >=
    threshold``) on item i: a (user, item) pair repeated in the log counts
    once, as in :class:`recmf.Interactions`.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        Interactions (typically the train split).
    threshold : float
        Positive threshold; with ``rating_col=None`` every row is positive.
    user_col, item_col, rating_col : str
        Column names.

    Returns
    -------
    pandas.Series
        int64 counts indexed by item id (named ``item_col``), most popular
        first, ties to the lower id: the order and counts of
        ``recmf.Popularity().fit(...).popular_items(n_items)``.

    Raises
    ------
    TypeError, ValueError
        Not a Dask frame, a missing column, a threshold that is not finite.
    """
    c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col)
    threshold, user_col, item_col, rating_col = c["threshold"], c["user_col"], c["item_col"], c["rating_col"]
    pos = _positives(ddf, threshold, user_col, item_col, rating_col)
    counts = pos.drop_duplicates()[item_col].value_counts().compute()
    counts = counts.sort_index()
    # recmf's own tie rule (count descending, lower id first) on ascending ids.
    order = _core.popularity_order(np.ascontiguousarray(counts.to_numpy(), dtype=np.int64))
    out = counts.iloc[order].astype(np.int64)
    out.index.name = item_col
    return out.rename("popularity")


def _default_max_bytes():
    try:
        import psutil
        return psutil.virtual_memory().available // 2
    except ImportError:  # pragma: no cover - distributed depends on psutil
        return 4 << 30


def interactions_from_dask(ddf, threshold=FROM_CONFIG, *, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                           rating_col=FROM_CONFIG, seen="positives", time_col=FROM_CONFIG,
                           max_bytes=None):
    """:class:`recmf.Interactions` of a Dask frame's positives, built on the
    client: see :meth:`recmf.Interactions.from_dask` (which calls this)."""
    c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col,
                        time_col=time_col)
    threshold, user_col, item_col, rating_col, time_col = (
        c["threshold"], c["user_col"], c["item_col"], c["rating_col"], c["time_col"])
    if seen not in ("positives", "rated"):
        raise ValueError(f"seen must be 'positives' or 'rated', got {seen!r}")
    rated = seen == "rated"
    # The time column comes along, in the frame's row order (partition by
    # partition, as ddf.compute() has them), so each user's positives get
    # the positions from_frame gives: ties keep their input order.
    rows = _positives(ddf, threshold, user_col, item_col, rating_col, keep_rating=rated, time_col=time_col)
    has_time = time_col is not None and time_col in rows.columns
    # Filter on the cluster and keep the result there, measure it, and only
    # then bring it over: a log that does not fit the client fails here with
    # its size, not in the middle of a transfer.
    rows = rows.map_partitions(lambda p: p.reset_index(drop=True)).persist()
    n_rows, nbytes = dask.compute(rows.map_partitions(len).sum(),
                                  rows.memory_usage(deep=True, index=True).sum())
    n_rows, nbytes = int(n_rows), int(nbytes)
    limit = _default_max_bytes() if max_bytes is None else int(max_bytes)
    what = "rated rows" if rated else "positive rows"
    if nbytes > limit:
        raise MemoryError(
            f"gathering the {n_rows:,} {what} of ddf to the client needs {nbytes / 2**20:,.1f} MiB "
            f"(more again to index them), over max_bytes={limit / 2**20:,.1f} MiB. Train on a "
            "sample of users, raise max_bytes, or use a client machine with more memory.")
    if n_rows == 0:
        raise ValueError(f"ddf has no {what}" + ("" if rated else f" ({rating_col} >= {threshold})"))
    frame = rows.compute()
    times = time_col if has_time else None
    if rated:
        return Interactions.from_frame(frame, threshold, user_col=user_col, item_col=item_col,
                                       rating_col=rating_col, seen="rated", time_col=times)
    return Interactions.from_frame(frame, threshold, user_col=user_col, item_col=item_col,
                                   rating_col=None, time_col=times)


# ---------------------------------------------------------------------------
# recommend
# ---------------------------------------------------------------------------

def _recommend_partition(users, model, k, exclude_seen, unknown, user_col, item_col, items,
                         exclude_items, history=None):
    return _local(model).recommend_frame(users.to_numpy(), k, exclude_seen=exclude_seen, unknown=unknown,
                                         user_col=user_col, item_col=item_col, history=history,
                                         items=items, exclude_items=exclude_items)


def _shared(obj, client):
    """``obj`` sent once for every task: scattered to every worker with a
    distributed client, else one delayed object in the graph (a pandas
    frame passed to map_partitions as is would be split and aligned)."""
    client = _client(client)
    if client is None:
        return dask.delayed(obj, pure=False)
    return client.scatter([obj], broadcast=True, hash=False)[0]


def recommend(model, users, k=10, *, exclude_seen=True, unknown="empty", user_col=None,
              item_col=None, history=None, n_threads=1, npartitions=None, client=None, items=None,
              exclude_items=None):
    """Top-``k`` recommendations for many users, computed on the cluster.

    Parameters
    ----------
    model : fitted recmf model
        Sent to every worker once (``client.scatter(..., broadcast=True)``),
        not once per task.
    users : dask Series or Index, or array-like
        Original user ids (e.g. ``test["user_id"].unique()``).  An array is
        cut into ``npartitions`` pieces.
    k, exclude_seen, unknown, history, items, exclude_items :
        As in :meth:`recmf.Recommender.recommend_frame` (a ``history``
        frame is checked here and sent to every worker once; the candidate
        lists are checked here and sent with every task).
    user_col, item_col : str, optional
        Output column names (default: the model's training columns).
    n_threads : int or None
        recmf threads per task (default 1: a worker already runs one task
        per thread).  None keeps the model's own setting.
    npartitions : int, optional
        Partitions of the result (default: those of a Dask ``users``, else
        enough for two tasks per worker thread, at most 50,000 users each).
    client : distributed.Client, optional
        Default: the current client, else Dask's local scheduler.

    Returns
    -------
    dask.dataframe.DataFrame
        Long format ``user, rank (1-based), item, score``, as
        ``model.recommend_frame`` gives on one machine, partition by
        partition in the order of ``users``.

    Raises
    ------
    NotFittedError, ValueError, TypeError
        An unfitted model, ``k`` larger than the catalogue, a bad
        ``unknown``: checked on the client before anything is sent.
    """
    if not hasattr(model, "recommend_frame"):
        raise TypeError(f"model must be a fitted recmf model, got {type(model).__name__}")
    model._check_fitted()
    if items is not None:
        items = as_id_array(items, "items")[0]
    if exclude_items is not None:
        exclude_items = as_id_array(exclude_items, "exclude_items")[0]
    empty = model.recommend_frame(np.zeros(0, dtype=model.data_.user_ids.dtype), k,
                                  exclude_seen=exclude_seen, unknown=unknown,
                                  user_col=user_col, item_col=item_col, history=history,
                                  items=items, exclude_items=exclude_items)
    series = _as_user_series(users, npartitions, client)
    remote = _on_workers(model, n_threads, client)
    extra = () if history is None else (_shared(history, client),)
    return series.map_partitions(_recommend_partition, remote, k, exclude_seen, unknown,
                                 user_col, item_col, items, exclude_items, *extra, meta=empty)


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------

def _first_users(part, user_col):
    """The first 1,000 distinct users of a partition, in order (evaluate's
    default coverage users are the first 1,000 of the whole frame)."""
    if len(part) == 0:
        return np.zeros(0, dtype=object)
    return pd.unique(id_column(part, user_col, "test_ddf")[0])[:1000]


def _ranking_sums(part, model, k, options, per_user=False):
    """metrics.ranking_sums of one partition holding whole users; with
    ``per_user``, also evaluate's per-user rows, each with the place of its
    user's first relevant row in the whole frame (column ``_ORDER``)."""
    if len(part) == 0:
        return ({}, None) if per_user else {}
    order = part[_ORDER].to_numpy()
    part = part.drop(columns=_ORDER)
    out = _metrics.ranking_sums(_local(model), part, k, per_user=per_user, **options)
    if not per_user:
        return out
    sums, per = out
    # evaluate's per-user rows are the users with a relevant row, in the
    # order of their first one: that row's place in the whole frame sorts
    # the partitions' rows into the single-machine order.
    relevant = _metrics.relevant_rows(part, options["threshold"], options["rating_col"])
    users = id_column(part, options["user_col"], "test_ddf")[0][relevant]
    first = pd.Series(order[relevant]).groupby(users, sort=False).min()
    per[_ORDER] = first.reindex(per[options["user_col"]].to_numpy()).to_numpy()
    return sums, per


def _recommended_counts(users, model, k, unknown):
    """metrics.recommended_counts of a partition of the coverage users, as
    a frame (item, count)."""
    counts = _metrics.recommended_counts(_local(model), users.to_numpy(), k, unknown=unknown)
    return pd.DataFrame({"item": counts.index.to_numpy(), "count": counts.to_numpy(np.int64)})


def evaluate(model, test_ddf, k=10, *, coverage_users=None, catalog=None, threshold=FROM_CONFIG,
             item_popularity=None, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
             rating_col=FROM_CONFIG, per_user=False, unknown="empty", n_threads=1, shuffle=True,
             client=None):
    """:func:`recmf.evaluate` of a Dask test frame: the same report.

    Every partition (holding whole users) returns the additive part of
    recmf.evaluate (:func:`recmf.metrics.ranking_sums`: per-metric sums and
    user counts); the coverage users' top-``k`` lists are scored on the
    cluster too and return how often each item was recommended
    (:func:`recmf.metrics.recommended_counts`).  The client adds them up and
    finishes with the same rules as recmf.evaluate
    (:func:`recmf.metrics.coverage_popularity`, :func:`recmf.metrics.combine`).

    Parameters
    ----------
    model : fitted recmf model, Mapping or callable
        As in :func:`recmf.evaluate`; it must pickle (sent to each worker
        once).
    test_ddf : dask.dataframe.DataFrame
        Held-out rows with user, item and rating columns.
    k, coverage_users, catalog, threshold, item_popularity, user_col, item_col, rating_col, per_user, unknown :
        As in :func:`recmf.evaluate` (the per-user frame comes back to the
        client, one row per evaluated user, in the single-machine order).  The default coverage users, the first
        1,000 distinct users of ``test_ddf``, are taken in partition order
        (the order of ``test_ddf.compute()``; for the test frame of
        :func:`temporal_split` that is the single-machine split's order).
    n_threads : int or None
        recmf threads per task (default 1).
    shuffle : bool
        Shuffle ``test_ddf`` by user first (default).  Pass False only when
        every user's rows are in one partition already (e.g. the test frame
        of :func:`temporal_split`); otherwise users are counted twice.
    client : distributed.Client, optional

    Returns
    -------
    dict (and a pandas DataFrame when ``per_user``)
        The keys and values of ``recmf.evaluate(model, test_ddf.compute(),
        ...)``: counts, coverage and popularity exactly, the metric means up
        to the last bits of a floating-point sum taken in another order;
        the per-user frame exactly.

    Raises
    ------
    TypeError, ValueError
        As :func:`recmf.evaluate`, for a Dask frame (raised from the first
        task that meets the fault).
    """
    k = check_positive_int(k, "k")
    c = resolve_columns(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col)
    threshold, user_col, item_col, rating_col = c["threshold"], c["user_col"], c["item_col"], c["rating_col"]
    _check_ddf(test_ddf, "test_ddf", [user_col, item_col, rating_col])
    if _ORDER in test_ddf.columns:
        raise ValueError(f"test_ddf has a column named {_ORDER!r}, which recmf uses")
    if catalog is not None:
        catalog = as_id_array(catalog, "catalog")[0]
    if coverage_users is not None:
        coverage_users = pd.unique(as_id_array(coverage_users, "coverage_users")[0])
        if len(coverage_users) == 0:
            raise ValueError("coverage_users is empty")
    remote = _on_workers(model, n_threads, client)
    options = dict(threshold=threshold, user_col=user_col, item_col=item_col, rating_col=rating_col,
                   unknown=unknown, catalog=catalog, item_popularity=item_popularity, _name="test_ddf")

    # Each row's place in the frame travels with it through the shuffle
    # (the per-user frame is put back in the single-machine order by it).
    keyed = test_ddf.map_partitions(_with_order, meta=test_ddf._meta.assign(**{_ORDER: np.int64(0)}))
    by_user = keyed.shuffle(on=user_col) if shuffle else keyed
    # Delayed, not map_partitions: a partition's sums are a dict.
    ranking = dask.delayed(_ranking_sums, pure=False)
    partials = [ranking(part, remote, k, options, bool(per_user)) for part in by_user.to_delayed()]
    if coverage_users is None:
        firsts = [dask.delayed(_first_users)(part, user_col) for part in test_ddf.to_delayed()]
        partials, firsts = dask.compute(partials, firsts)
        firsts = np.concatenate([np.asarray(f, dtype=object) for f in firsts])
        coverage_users = pd.unique(as_id_array(firsts, "test users")[0])[:1000]
    else:
        (partials,) = dask.compute(partials)
    frames = None
    if per_user:
        frames = [p[1] for p in partials if p[1] is not None]
        partials = [p[0] for p in partials]
    sums = {}
    for p in partials:
        for key, value in p.items():
            sums.setdefault(key, []).append(value)
    sums = {key: math.fsum(v) if key.startswith("sum_") else sum(v) for key, v in sums.items()}

    series = _as_user_series(coverage_users, None, client, "coverage_users")
    cmeta = pd.DataFrame({"item": pd.Series([], dtype=object), "count": np.zeros(0, np.int64)})
    counts = series.map_partitions(_recommended_counts, remote, k, unknown, meta=cmeta).compute()
    counts = counts.groupby("item", sort=True)["count"].sum()
    if len(counts):
        counts.index = as_id_array(counts.index.to_numpy(), "recommended items")[0]
    fitted = model if getattr(model, "data_", None) is not None else None
    coverage = _metrics.coverage_popularity(counts, k, catalog=catalog, item_popularity=item_popularity,
                                            model=fitted)
    report = _metrics.combine(sums, coverage, k)
    if not per_user:
        return report
    if not frames:
        raise ValueError("test_ddf is empty")
    per = pd.concat(frames, ignore_index=True).sort_values(_ORDER, kind="stable")
    return report, per.drop(columns=_ORDER).reset_index(drop=True)
