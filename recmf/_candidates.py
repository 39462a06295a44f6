"""Candidate lists: ``items=`` (only these may be recommended) and
``exclude_items=`` (never these) as one mask over a model's items.

The mask is applied inside the C top-k, so a list stays ``k`` long while
enough candidates remain (filtering ``k`` results afterwards would leave it
short).  The core's top-k already skips each user's seen items, given as
rows of a CSR matrix; until its entry points take the mask themselves,
:func:`exclusions` folds the masked-out items into those rows, a block of
users at a time, which gives the same lists.
"""
from __future__ import annotations

import numpy as np

__all__ = ["candidate_mask", "exclusions", "block_size"]


def candidate_mask(data, items=None, exclude_items=None):
    """A uint8 array over ``data``'s items (1 = may be recommended), or
    None when neither list is given.

    Ids the model does not know are ignored in both lists (an allow-list
    from a stock table may name items that had no positive in training);
    ids of the other kind (strings for a model of integer ids) raise
    ``TypeError``.

    Raises
    ------
    ValueError
        ``items`` names no item the model knows: every list would be empty.
    """
    if items is None and exclude_items is None:
        return None
    mask = np.ones(data.n_items, dtype=np.uint8)
    if items is not None:
        codes = data._item_codes(_listed(items, "items"))
        known = codes[codes >= 0]
        if len(known) == 0:
            raise ValueError(f"items= names no item this model knows ({len(codes)} id(s) given): "
                             "every list would be empty")
        mask[:] = 0
        mask[known] = 1
    if exclude_items is not None:
        codes = data._item_codes(_listed(exclude_items, "exclude_items"))
        mask[codes[codes >= 0]] = 0
    return mask


def _listed(ids, name):
    """Ids as recmf's id arrays take them (any iterable; see
    :func:`recmf._checks.as_id_array`), refusing a bare string."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of item ids, got the single string {ids!r}; "
                        f"pass [{ids!r}]")
    from ._checks import as_id_array
    return as_id_array(ids, name)[0]


def block_size(n_items):
    """Users per block when a mask is folded into the seen rows: a dense
    (block x n_items) byte matrix stays ~16 MB."""
    return max(1, (1 << 24) // max(int(n_items), 1))


def exclusions(seen, rows, mask, n_rows=None):
    """Seen rows with the masked-out items added, for the core's top-k.

    Parameters
    ----------
    seen : (indptr, indices, n_items) or None
        The CSR of items to skip (None: none).
    rows : int32 array (m,)
        The seen row of each user of the call; -1: no seen row.
    mask : uint8 array (n_items,) or None
    n_rows : int, optional
        None: the result has one row per entry of ``rows`` and the rows to
        pass are ``arange(m)``.  An int: the result keeps the numbering of
        ``seen`` (``n_rows`` rows, those not in ``rows`` empty), for core
        entry points whose seen rows are the users themselves; ``rows``
        must then be >= 0.

    Returns
    -------
    (seen, rows) : the CSR to pass (n_items columns, each row sorted) and
    the seen rows to pass with it.  ``mask`` None: ``seen`` and ``rows``
    unchanged.
    """
    if mask is None:
        return seen, rows
    rows = np.asarray(rows, dtype=np.int32)
    n_items = len(mask)
    local = n_rows is None
    keys = np.arange(len(rows), dtype=np.int32) if local else np.unique(rows)
    block = np.zeros((len(keys), n_items), dtype=bool)
    block[:, mask == 0] = True
    source = rows if local else keys
    if seen is not None:
        indptr, indices = seen[0], seen[1]
        has = source >= 0
        r = np.flatnonzero(has)
        starts, ends = indptr[source[has]], indptr[source[has] + 1]
        lens = (ends - starts).astype(np.int64)
        if lens.sum():
            q = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
            block[np.repeat(r, lens), indices[q]] = True
    rr, cc = np.nonzero(block)
    counts = np.bincount(rr, minlength=len(keys))
    if local:
        indptr = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return (indptr, cc.astype(np.int32), n_items), keys
    per_row = np.zeros(int(n_rows), dtype=np.int64)
    per_row[keys] = counts
    indptr = np.zeros(int(n_rows) + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    return (indptr, cc.astype(np.int32), n_items), rows
