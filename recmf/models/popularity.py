"""The popularity baseline (SPEC section 4)."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._candidates import exclusions
from .._checks import check_positive_int
from .._config import FROM_CONFIG
from .base import Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Recommend the most popular items a user has not seen.

    popularity(i) = number of train positives of item i (``fit`` counts
    them and ignores ``val`` and ``callback``: there are no epochs); ties go
    to the lower item id.  No personalisation: the reference point every learned model
    must beat.

    Parameters
    ----------
    threshold : float
        Positive threshold when ``fit`` is given a DataFrame.
    user_col, item_col, rating_col : str
        Column names when ``fit`` is given a DataFrame.
    """

    kind = "popularity"

    def __init__(self, threshold=FROM_CONFIG, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                 rating_col=FROM_CONFIG):
        self.threshold = threshold
        self.user_col, self.item_col, self.rating_col = user_col, item_col, rating_col

    def _fit(self, data, val, callback):
        self.counts_ = data.popularity()
        self.order_ = _core.popularity_order(self.counts_)
        return self

    def popular_items(self, k=10):
        """The k most popular original item ids with their counts, as a
        Series named ``popularity`` indexed by item id (the index named like
        the training frame's item column, ``item_col``, as
        :func:`recmf.dask.popularity` names it)."""
        import pandas as pd
        self._check_fitted()
        k = check_positive_int(k, "k")
        top = self.order_[:k]
        return pd.Series(self.counts_[top], index=pd.Index(self.data_.item_ids[top],
                                                           name=self._columns()["item_col"]),
                         name="popularity")

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        seen, rows = exclusions(self.data_.seen_csr() if exclude_seen else None, uidx, mask)
        items, lens = _core.topk_ranked(self.order_, seen, rows, k)
        scores = np.where(items >= 0, self.counts_[np.maximum(items, 0)], -np.inf).astype(np.float32)
        return items, scores, lens

    def _score_index(self, uidx, iidx):
        return self.counts_[iidx].astype(np.float32)

    def _popular_order(self):
        return self.order_

    def _arrays(self):
        return {}

    def _set_arrays(self, arrays):
        self._fit(self.data_, None, None)   # nothing saved: recounted from the data
