"""EASE: the closed-form item-item model of Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data" (WWW 2019), with an optional recency decay of
each user's history at scoring time."""
from __future__ import annotations

from .. import _core
from .._checks import check_number
from .._config import FROM_CONFIG
from ._item_item import ItemItemModel, allocate_square
from .base import check_half_life, check_inputs

__all__ = ["EASE"]


def _check_l2(l2):
    return check_number(l2, "l2", 0, low_open=True)


class EASE(ItemItemModel):
    """EASE (Steck, WWW 2019): item-item weights in closed form.

    ``B = I - P diag(1/diag(P))`` with ``P = (X^T X + l2 I)^-1`` and a zero
    diagonal, X the 0/1 user x item matrix of train positives; a user's
    scores are ``x_u B`` (``B[i, j]``: how much holding item i raises item
    j).  No epochs, no seed: the fit is deterministic up to the float
    rounding of the thread count.

    Recency: with ``half_life`` set, the user's history is weighted at
    scoring time, ``x_ui = 0.5 ** (age_i / half_life)`` where ``age_i`` counts
    the user's positives after item i (0 = the most recent; from the time
    column, ties in input order).  Age counts interactions, not seconds:
    users watch at very different paces (ML-1M users rate dozens of films in
    one sitting), so "the last five things you liked" is comparable across
    users where "the last five days" is not.  ``exp(-age/5)`` is
    ``half_life = 5 ln 2 = 3.47``.  The fit (B) does not depend on it.

    Precision: B is computed in float32 (Gram matrix exact; Cholesky
    ``spotrf``/``spotri`` from recmf's OpenBLAS).  Its error grows with the
    condition number of ``X^T X + l2 I`` (at most ``(largest eigenvalue +
    l2) / l2``): on ML-1M at l2 = 250 (condition 437) B agrees with NumPy's
    float64 inverse to 2e-6 absolute for entries up to 0.34, and the tests
    hold it to ``1e-4 * max|B|``.  Double precision would double the memory
    (3.2 GB at 20k items) for differences far below ranking ties.

    Memory: ``n_items**2`` float32 (50 MB for ML-1M's 3.5k items, 1.6 GB for
    20k); ``fit`` checks this against the memory available and raises
    ``MemoryError`` with the figure rather than swapping.

    Inputs: with ``inputs="rated"`` X holds every item the user rated,
    whatever the rating (the "watched" matrix), and a user is scored from
    all of them (recency by their order among the rated items).  The data
    must keep them: ``Interactions.from_frame(train, seen="rated")``, or a
    frame (``fit`` then builds it so).  Relevance is unchanged: what
    recommendation aims at are the positives to come.

    Parameters
    ----------
    l2 : float > 0
        L2 regularisation (lambda; 100-1000 suits MovieLens).
    half_life : float > 0 or None
        Recency half-life in interactions (None: no decay).
    inputs : {"positives", "rated"}
        What X holds and a user is scored from: the positives, or every
        rated item (needs ``seen="rated"`` data).
    threshold : float
        Positive threshold when ``fit`` is given a DataFrame.
    user_col, item_col, rating_col, time_col : str
        Column names of the frames given to ``fit`` and ``history=``.
    n_threads : int or None
        Threads for the Gram matrix, LAPACK and scoring (None: all cores).

    Attributes
    ----------
    B_ : float32 array (n_items, n_items)

    Raises
    ------
    ValueError
        l2 <= 0 or not finite, half_life <= 0, empty data, half_life set
        on data without a time order, or ``inputs="rated"`` on data built
        with ``seen="positives"``.
    MemoryError
        ``n_items**2`` floats do not fit in the available memory.
    """

    kind = "ease"
    default_grid = {"l2": [100.0, 250.0, 500.0, 1000.0],
                    "half_life": [None, 1.0, 2.0, 3.5, 7.0, 14.0]}
    scoring_params = ("half_life",)

    B_ = None

    def __init__(self, l2=250.0, half_life=None, threshold=FROM_CONFIG, user_col=FROM_CONFIG,
                 item_col=FROM_CONFIG, rating_col=FROM_CONFIG, time_col=FROM_CONFIG,
                 n_threads=None, inputs="positives"):
        super().__init__(n_threads=n_threads)
        self.l2 = l2
        self.half_life = half_life
        self.inputs = inputs
        self.threshold = threshold
        self.user_col, self.item_col, self.rating_col, self.time_col = (
            user_col, item_col, rating_col, time_col)

    @classmethod
    def _test_params(cls):
        return {"l2": 10.0}

    def _check_params(self):
        _check_l2(self.l2)
        check_half_life(self.half_life)
        check_inputs(self.inputs)

    def _fit(self, data, val, callback):
        if data.nnz == 0 or data.n_items == 0:
            raise ValueError(f"data is empty ({data.n_users} users x {data.n_items} items, "
                             f"{data.nnz} positives): EASE needs at least one positive")
        indptr, indices = self._inputs(data)
        self._weights(data)  # fail now, not at recommend time
        B = allocate_square("EASE", data.n_items)
        _core.fit(self.kind, self._config(data), (indptr, indices), B, self.n_threads)
        self.B_, self.data_ = B, data
        return self

    def _config(self, data=None):
        """The core's config (its model table's row "ease")."""
        data = self.data_ if data is None else data
        return {"n_users": data.n_users, "n_items": data.n_items, "l2": self.l2}
