"""The selection contract (issue 20, field case 15): ``recmf.select`` does
exactly what its docstring promises.

- "A model instance is fitted (in place) as it is configured": every
  instance is fitted after select, also one that shared the fit of the
  candidate before it (same fit, another scoring parameter), and it then
  scores as if fitted on its own;
- "best: the candidate with the highest metric (the first one on a tie, in
  candidate order)": for an instance, that instance itself;
- the table: one row per candidate in the order tried, ``fit_seconds`` 0
  for a shared fit, ``best`` on the first maximum;
- every candidate is built and checked before the first fit.
"""
import numpy as np
import pandas as pd
import pytest

import recmf


@pytest.fixture(scope="module")
def case15():
    rng = np.random.default_rng(0)
    n = 1500
    df = pd.DataFrame({"user_id": rng.integers(0, 50, n), "movie_id": rng.integers(0, 60, n),
                       "rating": rng.integers(1, 6, n), "timestamp": np.arange(n)})
    train, val, test = recmf.temporal_split(df, n_val=1, n_test=2, min_train=3)
    return dict(data=recmf.Interactions.from_frame(train), train=train, val=val, test=test)


def test_instances_sharing_a_fit_are_all_fitted_and_best_is_one_of_them(case15):
    """Field case 15: two EASE instances that differ only in half_life (one
    shared fit): both are fitted after select, best is one of them."""
    data, val = case15["data"], case15["val"]
    a = recmf.EASE(l2=10.0, n_threads=1)
    b = recmf.EASE(l2=10.0, half_life=2.0, n_threads=1)
    best, table = recmf.select([a, b], data, val, progress=False)
    assert best is a or best is b
    assert list(table["model"]) == ["EASE", "EASE"]
    assert table["fit_seconds"].iloc[0] > 0 and table["fit_seconds"].iloc[1] == 0.0
    users = data.user_ids
    for m in (a, b):
        m.recommend(users, k=2)                              # fitted, no NotFittedError
    assert np.shares_memory(b.B_, a.B_) and b.data_ is a.data_  # the one fit, shared
    assert b.half_life == 2.0 and a.half_life is None        # each keeps its own settings
    # b scores exactly as an EASE with its settings fitted on its own
    alone = recmf.EASE(l2=10.0, half_life=2.0, n_threads=1).fit(data)
    np.testing.assert_array_equal(b.recommend(users, k=5), alone.recommend(users, k=5))
    # the table's metrics are those of the instances as they are now
    for row, m in zip(table.itertuples(), (a, b)):
        assert table.loc[row.Index, "recall@10"] == \
            recmf.evaluate(m, val, k=10)["recall@10"]
    assert table["best"].tolist() == [best is a, best is b]


def test_best_is_the_instance_in_a_mixed_list(case15):
    data, val = case15["data"], case15["val"]
    ease = recmf.EASE(l2=10.0, n_threads=1)
    best, table = recmf.select([recmf.Popularity, ease, (recmf.EASE, {"l2": [10.0]})], data, val,
                               progress=False)
    ease_recall = table.loc[1, "recall@10"]
    assert table.loc[2, "recall@10"] == ease_recall            # the same model from the grid
    if table["best"].iloc[1]:
        assert best is ease                                  # first on a tie: the instance
    assert ease.data_ is data


def test_an_instance_fitted_before_is_refitted_on_data(case15):
    other = case15["train"][case15["train"]["user_id"] % 2 == 0]
    m = recmf.EASE(l2=10.0, n_threads=1).fit(other)
    recmf.select([m], case15["data"], case15["val"], progress=False)
    assert m.data_ is case15["data"]


def test_ties_go_to_the_first_candidate(case15):
    data, val = case15["data"], case15["val"]
    a, b = recmf.Popularity(), recmf.Popularity()
    best, table = recmf.select([a, b], data, val, progress=False)
    assert best is a and table["best"].tolist() == [True, False]
    assert b.data_ is data


def test_every_candidate_is_checked_before_the_first_fit(case15, monkeypatch):
    fits = []
    real = recmf.EASE.fit
    monkeypatch.setattr(recmf.EASE, "fit", lambda self, *a, **k: fits.append(1) or real(self, *a, **k))
    data, val = case15["data"], case15["val"]
    bad = recmf.NeuralMF(emb_dim=0)                  # NeuralMF checks its settings at fit
    with pytest.raises(ValueError, match=r"^candidate NeuralMF\(emb_dim=0\): emb_dim must be >= 1"):
        recmf.select([recmf.EASE(l2=10.0), bad], data, val, progress=False)
    with pytest.raises(ValueError, match=r"^candidate EASE\(l2=-1\.0\): l2 must be a finite number > 0"):
        recmf.select((recmf.EASE, {"l2": [10.0, -1.0]}), data, val, progress=False)
    with pytest.raises(TypeError, match=r"^the grid of EASE sets 'lambda', which is not a parameter of EASE"):
        recmf.select((recmf.EASE, {"l2": [10.0], "lambda": [1]}), data, val, progress=False)
    assert fits == []
