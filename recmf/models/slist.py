"""SLIST: the closed-form sequence model of Choi et al. (WWW 2021) on each
user's items in time order (csrc/models/slist.c)."""
from __future__ import annotations

import math
import numbers

from .. import _core
from .._checks import check_number
from .._config import FROM_CONFIG
from ._item_item import ItemItemModel, allocate_square
from .base import _frame_columns, check_half_life, check_inputs, rows_in_time_order

__all__ = ["SLIST"]

#: what window=None (the whole sequence) becomes in the core
_WHOLE = 2 ** 31 - 1


def _check_window(window):
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise TypeError(f"window must be an integer or None (the whole sequence), got "
                        f"{type(window).__name__}")
    if not 1 <= window < _WHOLE:
        raise ValueError(f"window must be >= 1 (or None: the whole sequence), got {window}")
    return int(window)


class SLIST(ItemItemModel):
    """SLIST (Choi, Kim, Lee, Shim & Lee, "Session-aware Linear
    Item-Similarity/Transition Model for session-based recommendation",
    WWW 2021; the authors' code is github.com/jin530/SLIST): item-item
    weights from one linear solve that learns both what goes together and
    what comes next.

    Each user's training items in time order form one session (ties in
    input order, as :func:`recmf.temporal_split`).  X holds one row per user
    (their items, weight 1).  For every place t of a session but the last,
    S_t holds the items up to t and T_t the items after it, each weighted
    ``r ** distance`` with ``r = exp(-1 / position_decay)`` (the item at t
    and the one right after it weigh 1) and cut to ``window`` items on each
    side.  Then, in closed form::

        B = P (alpha X^T X + (1 - alpha) S^T T),
        P = (alpha X^T X + (1 - alpha) S^T S + l2 I)^-1,

    the minimiser of ``alpha ||X - X B||^2 + (1 - alpha) ||T - S B||^2 +
    l2 ||B||^2``: alpha = 1 is SLIS (EASE without its zero diagonal), alpha
    = 0 SLIT (pure "what follows").  A user is scored ``s_u B``, ``s_u[i] =
    0.5 ** (age_i / half_life)``, age = how many of the user's inputs came
    after item i (0: the latest), so the last few items say most.  Seen
    items are removed at recommendation as for every model (B has no zero
    diagonal: with ``exclude_seen=False`` a user's own items score high).

    The core sums ``X^T X``, ``S^T S`` and ``S^T T`` directly from each
    user's sequence (S and T are never built: every weight within a window
    has a closed form) and solves with the float32 Cholesky EASE uses.

    Inputs: ``inputs="rated"`` reads every item the user rated, whatever
    the rating ("what they watched"), in time order; the data must keep
    them (``Interactions.from_frame(train, seen="rated")``, or a frame:
    ``fit`` then builds it so) and recommendation then never repeats a
    rated item.  Relevance is unchanged (the positives to come).  On
    ML-1M's seed split this is the "watched" protocol of the README.

    The defaults are what a validation shaped like the test chose on
    ML-1M's seed split under both protocols (``benchmarks/slist.py``: test
    recall@10 0.1584 reading the positives, 0.1887 reading every rated item).

    Parameters
    ----------
    alpha : float in [0, 1]
        Weight of the similarity term (X) against the transition term (S, T).
    l2 : float > 0
        Ridge on B.
    position_decay : float > 0 or None
        Distance (in places) over which S and T's weights fall by e; None:
        every place in the window weighs 1.
    window : int >= 1 or None
        Items S and T hold on each side of a place (None: the whole session).
    half_life : float > 0 or None
        Recency half-life of the scoring history, in items (None: every
        item weighs 1).  Scoring only: changing it needs no refit.
    inputs : {"positives", "rated"}
        What the sessions and the scoring history hold.
    threshold : float
        Positive threshold when ``fit`` is given a frame.
    user_col, item_col, rating_col, time_col : str
        Column names of the frames given to ``fit`` and ``history=``.
    n_threads : int or None
        Threads for the sums, LAPACK/BLAS and scoring (None: all cores).
        The sums do not depend on it; the solve up to BLAS rounding.

    Attributes
    ----------
    B_ : float32 array (n_items, n_items)

    Raises
    ------
    ValueError
        A parameter out of range (named), data without a time order, empty
        data, ``inputs="rated"`` on ``seen="positives"`` data, or an l2 too
        small for float32.
    MemoryError
        The fit needs two ``n_items**2`` float32 matrices (B and the
        factor, 100 MB at ML-1M's 3.5k items, 5.7 GiB at 26.7k) and says so,
        with the figure, before allocating more than is available.

    Notes
    -----
    Differences from the authors' code, which works on short anonymous
    sessions: sessions here are whole user histories, so rows are not
    L1-normalised nor weighted by session time; S and T are cut to
    ``window`` items; scoring decays by ``half_life`` (their
    ``predict_weight`` is ``exp(-age / w)``: ``half_life = w ln 2``).
    """

    kind = "slist"
    #: what recmf.select tries by default (18 fits, 54 settings): benchmarks/slist.py's grid
    default_grid = {"alpha": [0.05, 0.2], "l2": [100.0, 300.0, 1000.0], "position_decay": [4.0, 8.0, 16.0],
                    "window": [10], "half_life": [3.0, 4.0, 6.0]}
    scoring_params = ("half_life",)

    B_ = None

    def __init__(self, alpha=0.2, l2=300.0, position_decay=8.0, window=10, half_life=4.0,
                 inputs="positives", threshold=FROM_CONFIG, user_col=FROM_CONFIG, item_col=FROM_CONFIG,
                 rating_col=FROM_CONFIG, time_col=FROM_CONFIG, n_threads=None):
        super().__init__(n_threads=n_threads)
        self.alpha, self.l2, self.position_decay, self.window = alpha, l2, position_decay, window
        self.half_life, self.inputs = half_life, inputs
        self.threshold = threshold
        self.user_col, self.item_col, self.rating_col, self.time_col = (
            user_col, item_col, rating_col, time_col)

    @classmethod
    def _test_params(cls):
        return {"l2": 5.0, "half_life": 2.0}

    def fit(self, data, val=None, callback=None):
        """Solve for ``B_`` on ``data``.

        Parameters
        ----------
        data : DataFrame, Arrow table or Interactions
            Train interactions with user, item, rating and time columns (a
            frame without the time column, or ``time_col=None``, is taken
            in its row order), or
            Interactions that know each user's order (built with a time
            column; ``seen="rated"`` for ``inputs="rated"``).
        val, callback : ignored
            Accepted for the common signature: the fit is one solve.

        Returns
        -------
        self
        """
        self._validate()
        resolved = self._resolve_columns()
        data, time_col = rows_in_time_order(data, resolved)
        if time_col != resolved["time_col"]:       # time_col=None: the rows' order is the time order
            data = self._as_interactions(data, resolved["threshold"],
                                         dict(_frame_columns(resolved), time_col=time_col))
        return super().fit(data, val, callback)

    def _knobs(self):
        """The hyperparameters as the core takes them (validated)."""
        return dict(alpha=check_number(self.alpha, "alpha", 0, 1),
                    l2=check_number(self.l2, "l2", 0, low_open=True),
                    position_decay=check_number(self.position_decay, "position_decay", 0, low_open=True,
                                                none=True),
                    window=_check_window(self.window))

    def _config(self, data=None):
        """The core's config (its model table's row "slist")."""
        data = self.data_ if data is None else data
        knobs = self._knobs()
        return {"n_users": data.n_users, "n_items": data.n_items, "alpha": knobs["alpha"], "l2": knobs["l2"],
                "position_decay": math.inf if knobs["position_decay"] is None else knobs["position_decay"],
                "window": _WHOLE if knobs["window"] is None else knobs["window"]}

    def _check_params(self):
        self._knobs()
        check_half_life(self.half_life)
        check_inputs(self.inputs)

    def _fit(self, data, val, callback):
        self._inputs(data)
        indptr, items = data.sequences(self.inputs)
        if len(items) == 0 or data.n_items == 0:
            raise ValueError(f"data is empty ({data.n_users} users x {data.n_items} items): SLIST needs "
                             "at least one item in a sequence")
        self._weights(data)  # fail now, not at recommend time
        B = allocate_square("SLIST", data.n_items, scratch=1)    # and the factor the core allocates
        _core.fit(self.kind, self._config(data), (indptr, items), B, self.n_threads)
        self.B_, self.data_ = B, data
        return self
