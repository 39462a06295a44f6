"""Fold-in edge cases (issue 20, field case 10): ``recommend(...,
history=frame)`` for every registered model.

The documented rule: the users of ``user_ids`` that appear in the history
(in any row) are scored from it instead of their training rows; a user
whose history holds no positive the model knows counts as unknown -- an
empty row, or the popular items with ``unknown="popular"`` -- never as its
training self.  Errors about the frame name ``history``.  Models that
cannot fold in say so whenever they are given a history.
"""
import numpy as np
import pandas as pd
import pytest

import recmf

from test_contract import MODELS, make  # noqa: E402  (the shared contract's model factory)
FOLDS = [k for k, c in MODELS.items() if c._recommend_history is not recmf.Recommender._recommend_history]
NO_FOLD = [k for k in MODELS if k not in FOLDS]


@pytest.fixture(scope="module")
def case10():
    """Field case 10's data: user 0 is known from training."""
    rng = np.random.default_rng(0)
    n = 1500
    df = pd.DataFrame({"user_id": rng.integers(0, 50, n), "movie_id": rng.integers(0, 60, n),
                       "rating": rng.integers(1, 6, n), "timestamp": np.arange(n)})
    return recmf.Interactions.from_frame(df), df


_FITTED = {}


@pytest.fixture
def fitted(request, case10):
    kind = request.node.callspec.params["kind"]
    if kind not in _FITTED:
        _FITTED[kind] = make(kind, n_threads=1).fit(case10[0])
    return _FITTED[kind]


def test_models_that_fold_in():
    assert {"ease", "als", "bprmf"} <= set(FOLDS)


UNKNOWN_ONLY = pd.DataFrame({"user_id": [0, 0, 1], "movie_id": [1000, 1001, 5], "rating": 5,
                             "timestamp": [1, 2, 3]})
NEGATIVES_ONLY = pd.DataFrame({"user_id": [0, 0], "movie_id": [1, 2], "rating": [1, 2],
                               "timestamp": [1, 2]})


@pytest.mark.parametrize("kind", FOLDS)
@pytest.mark.parametrize("history", [UNKNOWN_ONLY, NEGATIVES_ONLY], ids=["unknown-items", "below-threshold"])
def test_a_listed_user_without_a_known_positive_is_unknown(kind, history, fitted):
    """Field case 10: user 0 (known from training) is listed in history=
    with only items the model does not know, or only ratings below the
    threshold: it is an unknown user, not its training self."""
    got = fitted.recommend([0, 1, 2], k=3, history=history)
    assert (got[0] == -1).all()
    trained = fitted.recommend([0, 1, 2], k=3)
    assert not np.array_equal(trained[0], got[0])
    np.testing.assert_array_equal(got[2], trained[2])                 # 2 is not listed
    if (history["user_id"] == 1).any():                                # 1 holds known item 5
        np.testing.assert_array_equal(got[1], fitted.recommend([1], k=3, history=history[history["user_id"] == 1])[0])
    else:
        np.testing.assert_array_equal(got[1], trained[1])
    # with unknown="popular": the most popular items; user 0's training
    # items are not removed (its training rows were replaced), and its
    # history holds no known positive to remove
    popular = fitted.recommend([0], k=3, history=history, unknown="popular")[0]
    np.testing.assert_array_equal(popular, fitted.recommend([10 ** 9], k=3, unknown="popular")[0])


@pytest.mark.parametrize("kind", [k for k in FOLDS if hasattr(MODELS[k], "fold_in")])
def test_fold_in_of_a_history_without_known_positives_is_empty(kind, fitted):
    for history in (UNKNOWN_ONLY[UNKNOWN_ONLY["user_id"] == 0], NEGATIVES_ONLY):
        users, factors = fitted.fold_in(history)
        assert len(users) == 0 and users.dtype == fitted.data_.user_ids.dtype
        assert factors.shape == (0, fitted._item_factors().shape[1]) and factors.dtype == np.float32


@pytest.mark.parametrize("kind", FOLDS)
def test_an_empty_history_folds_in_nobody(kind, fitted):
    empty = NEGATIVES_ONLY.iloc[:0]
    np.testing.assert_array_equal(fitted.recommend([0, 1, 99], k=3, history=empty),
                                  fitted.recommend([0, 1, 99], k=3))


@pytest.mark.parametrize("kind", FOLDS)
def test_history_errors_name_history(kind, fitted):
    users = [0, 1]
    with pytest.raises(ValueError, match=r"^history is missing column\(s\) \['rating'\]"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.drop(columns="rating"))
    with pytest.raises(ValueError, match=r"^history\['rating'\] has a missing or infinite value at position 1"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.assign(rating=[5.0, np.nan]))
    with pytest.raises(ValueError, match=r"^history\['movie_id'\] has missing values"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.assign(movie_id=[1.0, np.nan]))
    with pytest.raises(TypeError, match=r"^history\['movie_id'\] are non-integer \(e\.g\. string\) ids but "
                                        r"the model's item ids are integer ids"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.assign(movie_id=["1", "2"]))
    with pytest.raises(TypeError, match=r"^history\['user_id'\] are non-integer \(e\.g\. string\) ids but "
                                        r"the model's user ids are integer ids"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.assign(user_id=["0", "0"]))
    with pytest.raises(TypeError, match=r"^history\['timestamp'\] must hold times"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.assign(timestamp=["a", "b"]))
    with pytest.raises(TypeError, match=r"^history must be a pandas DataFrame or a table with the Arrow stream interface .*got numpy.ndarray"):
        fitted.recommend(users, k=3, history=NEGATIVES_ONLY.to_numpy())


def test_recency_without_the_history_time_column_names_it(case10):
    model = recmf.EASE(l2=10.0, half_life=2.0, n_threads=1).fit(case10[0])
    hist = pd.DataFrame({"user_id": [0, 0], "movie_id": [1, 2], "rating": 5})
    with pytest.raises(ValueError, match=r"^half_life=2\.0 weighs each history by recency, so history= "
                                         r"needs the time column 'timestamp'"):
        model.recommend([0], k=3, history=hist)
    # without the decay the order is not needed
    model.with_params(half_life=None).recommend([0], k=3, history=hist)


@pytest.mark.parametrize("kind", NO_FOLD)
def test_models_without_fold_in_refuse_any_history(kind, case10):
    data = case10[0]
    model = make(kind).fit(data) if kind != "transition" else make(kind).fit(case10[1])
    with pytest.raises(NotImplementedError, match="cannot score users from history="):
        model.recommend([0], k=3, history=NEGATIVES_ONLY)
    # also when none of the requested users is listed in it
    with pytest.raises(NotImplementedError, match="cannot score users from history="):
        model.recommend([7], k=3, history=NEGATIVES_ONLY)
    with pytest.raises(NotImplementedError, match="cannot score users from history="):
        model.recommend_frame([7], k=3, history=NEGATIVES_ONLY)
