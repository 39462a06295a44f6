"""ItemTransition: a first-order Markov chain over each user's positives in
time order, scored from the user's recent history (csrc/models/transition.c)."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._checks import check_number
from .._config import FROM_CONFIG
from ..data import Interactions
from .base import Recommender, check_half_life, check_inputs, check_rated_inputs, rows_in_time_order

__all__ = ["ItemTransition"]


def _check_window(window, gap_decay):
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an integer, got {type(window).__name__}")
    if not 1 <= window <= _core.TRANSITION_MAX_WINDOW:
        raise ValueError(f"window must be in [1, {_core.TRANSITION_MAX_WINDOW}], got {window}")
    return int(window), check_number(gap_decay, "gap_decay", 0, 1, low_open=True)


class ItemTransition(Recommender):
    """Item transitions ("what comes next"), scored from the user's most
    recent positives.

    Each user's train positives are put in time order (``time_col``; ties
    keep their input order, as in :func:`recmf.temporal_split`).  ``C[i, j]``
    counts how often item j directly follows item i in a user's sequence
    (``window=1``, a first-order Markov chain); with ``window=m``, item j
    coming g <= m places after i adds ``gap_decay ** (g - 1)`` instead (a
    skip-gram of the sequence: the next few items, the nearest counting
    most).  ``T = C`` with each row divided by its sum (rows without
    successors stay 0).  A user with positives ``i`` at age ``a`` (the
    number of the user's later positives: 0 = most recent) scores::

        score(j) = sum_i w(a_i) T[i, j],   w(a) = 2^(-a / half_life)

    ``half_life=None`` weighs every positive 1.  Age counts interactions,
    not time: ML-style logs are written in sessions, and a count does not
    depend on how often the user comes back.  A Markov chain of this kind
    is the "MC" half of FPMC (Rendle, Freudenthaler & Schmidt-Thieme,
    "Factorizing personalized Markov chains for next-basket
    recommendation", WWW 2010), here without factorisation.

    On ML-1M's temporal split (``temporal_split(ratings, 1, 5, 5)``,
    threshold 4, chosen on val), ``window=3`` beats the first-order chain
    on validation (recall@10 0.2517 vs 0.2341 alone at half_life 1) and, in
    a blend with recency-EASE, on test (0.141-0.143 vs 0.133-0.136).

    With ``inputs="rated"`` the sequences are every item the user rated,
    whatever the rating (what they watched, in order), for counting and for
    scoring; the data must keep them (``Interactions.from_frame(train,
    seen="rated")``, or a frame: ``fit`` then builds it so).

    Parameters
    ----------
    half_life : float > 0 or None (default 1.0)
        Recency decay in interactions: a positive ``half_life`` steps older
        counts half as much.  Scoring only: changing it needs no refit.
    window : int in [1, 64] (default 1)
        How many following items each positive links to (1: the next one).
    gap_decay : float in (0, 1] (default 0.5)
        Weight factor per extra step of distance within the window.
    inputs : {"positives", "rated"}
        What the sequences hold: the positives, or every rated item.
    threshold : float
        Positive threshold when ``fit`` is given a frame.
    user_col, item_col, rating_col, time_col : str
        Column names of the frame.
    n_threads : int or None
        Threads for counting and scoring (default: all cores).  Results do
        not depend on it.

    Attributes
    ----------
    trans_indptr_, trans_indices_, trans_weights_ : int64 (n_items + 1,),
        int32 (nnz_T,), float64 (nnz_T,)
        C as a CSR by dense item index, sorted columns (whole counts when
        ``window=1``)
        (:meth:`transition_matrix` gives it as scipy).
    probs_ : float32 (nnz_T,)
        T, the row-normalised values of the same structure.
    history_items_ : int32
        Each user's inputs oldest first (``data_.sequences(inputs)``).

    Raises
    ------
    ValueError
        ``fit`` on an :class:`~recmf.Interactions` (it has no order): pass
        the frame, with its time column.
    """

    kind = "transition"

    def __init__(self, half_life=1.0, window=1, gap_decay=0.5, threshold=FROM_CONFIG,
                 user_col=FROM_CONFIG, item_col=FROM_CONFIG, rating_col=FROM_CONFIG,
                 time_col=FROM_CONFIG, n_threads=None, inputs="positives"):
        super().__init__(n_threads=n_threads)
        self.half_life, self.window, self.gap_decay, self.inputs = half_life, window, gap_decay, inputs
        self.threshold = threshold
        self.user_col, self.item_col, self.rating_col, self.time_col = user_col, item_col, rating_col, time_col

    def _check_params(self):
        check_half_life(self.half_life)
        _check_window(self.window, self.gap_decay)
        check_inputs(self.inputs)

    #: the grid recmf.select searches by default
    default_grid = {"window": [1, 3], "half_life": [0.5, 1.0, 2.0, 4.0, None]}
    #: only scoring changes with these: recmf.select shares one fit
    scoring_params = ("half_life",)

    @classmethod
    def _test_params(cls):
        return {"half_life": 2.0}

    def fit(self, data, val=None):
        """Count the transitions of ``data``.

        Parameters
        ----------
        data : DataFrame or Interactions
            Train interactions with user, item, rating and time columns (a
            frame without ``time_col`` is taken in its row order), or
            Interactions that know each positive's place in its user's
            history (``positions``).
        val : ignored
            Accepted for the common ``fit(data, val)`` signature.
        """
        self._validate()
        resolved = self._resolve_columns()
        data, time_col = rows_in_time_order(data, resolved)
        columns = {c: resolved[c] for c in ("user_col", "item_col", "rating_col")}
        interactions = data if isinstance(data, Interactions) else self._as_interactions(
            data, resolved["threshold"], dict(columns, time_col=time_col))
        check_rated_inputs(interactions, self.inputs, "ItemTransition")
        order = interactions.positions if self.inputs == "positives" else interactions.seen_positions
        if order is None:
            raise ValueError("ItemTransition needs the order of each user's inputs: fit it on the "
                             f"train DataFrame (with its {time_col!r} column) or on Interactions "
                             "built from it with time_col")
        self.data_, self.columns_ = interactions, resolved
        self.history_items_ = interactions.sequences(self.inputs).items
        self._count()
        return self

    def _count(self):
        d = self.data_
        indptr, indices, weights = _core.transition_counts(self._history(), self.window, self.gap_decay,
                                                          self.n_threads)
        self.trans_indptr_, self.trans_indices_, self.trans_weights_ = indptr, indices, weights
        rows = np.repeat(np.arange(d.n_items), np.diff(indptr))
        totals = np.bincount(rows, weights=weights, minlength=d.n_items)[rows]
        self.probs_ = (weights / np.where(totals > 0, totals, 1)).astype(np.float32)

    def _history(self):
        return (self.data_.input_csr(self.inputs)[0], self.history_items_, self.data_.n_items)

    def _trans(self):
        return (self.trans_indptr_, self.trans_indices_, self.data_.n_items)

    def _decay(self):
        half_life = check_half_life(self.half_life)
        return math.inf if half_life is None else half_life

    def transition_matrix(self, normalise=True):
        """T (row-normalised) or C (the weights) as a ``scipy.sparse.csr_matrix``
        n_items x n_items, by dense item index."""
        from scipy.sparse import csr_matrix
        self._check_fitted()
        values = self.probs_ if normalise else self.trans_weights_
        n = self.data_.n_items
        return csr_matrix((values, self.trans_indices_, self.trans_indptr_), shape=(n, n))

    # -- scoring ------------------------------------------------------------
    def _score_all(self, uidx):
        return _core.transition_scores(self._trans(), self.probs_, self._history(),
                                       np.ascontiguousarray(uidx, dtype=np.int32), self._decay(),
                                       self.n_threads)

    def _score_index(self, uidx, iidx):
        return self._score_pairs_from_rows(uidx, iidx)

    def _recommend_index(self, uidx, k, exclude_seen, mask=None):
        seen = self.data_.seen_csr() if exclude_seen else None
        return _core.transition_recommend(self._trans(), self.probs_, self._history(), uidx,
                                          self._decay(), seen, k, self.n_threads, allowed=mask)

    # -- persistence --------------------------------------------------------
    def _arrays(self):
        return {"trans_indptr": self.trans_indptr_, "trans_indices": self.trans_indices_,
                "trans_weights": self.trans_weights_, "history_items": self.history_items_}

    def _set_arrays(self, arrays):
        self.history_items_ = np.ascontiguousarray(arrays["history_items"], dtype=np.int32)
        check_rated_inputs(self.data_, self.inputs, "ItemTransition")
        if len(self.history_items_) != self.data_.input_csr(self.inputs)[0][-1]:
            raise ValueError("history_items does not match the interactions")
        self._count()
        if not (np.array_equal(self.trans_indptr_, arrays["trans_indptr"])
                and np.array_equal(self.trans_indices_, arrays["trans_indices"])
                and np.array_equal(self.trans_weights_, arrays["trans_weights"])):
            raise ValueError("the saved transition counts do not match the saved histories")
