"""A sentinel that is also a valid value (issue 9, field case 03).

The rule (README, "Missing values never look like real ones"): a marker for
"nothing here" is a value outside what it marks, or an error.  -1 is a
valid id (ids may be negative) and, to NumPy and ONNX Gather, a valid index
(the last row); "" is a valid string id.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recmf
import reference as ref


def tiny(users, items):
    return pd.DataFrame({"user_id": users, "movie_id": items, "rating": 5})


# ---------------------------------------------------------------------------
# user_index / item_index
# ---------------------------------------------------------------------------

def test_index_dtype_and_unknown_flag_or_raise():
    data = recmf.Interactions.from_frame(tiny([5, 5, 9], [-1, 3, 3]))
    u = data.user_index([9, 999, 5])
    assert u.dtype == np.int64                      # the ONNX graphs' input type
    assert u.tolist() == [1, -1, 0]
    assert data.item_index([-1, 3]).tolist() == [0, 1]     # item id -1 is item index 0
    with pytest.raises(KeyError, match="unknown user id 999 at position 1"):
        data.user_index([9, 999], unknown="raise")
    with pytest.raises(KeyError, match="unknown item id 7 at position 0"):
        data.item_index([7], unknown="raise")
    with pytest.raises(ValueError, match="unknown must be 'flag' or 'raise'"):
        data.user_index([9], unknown=-1)
    # known ids give indices in [0, n) that map back to the ids
    np.testing.assert_array_equal(data.user_ids[data.user_index([5, 9], unknown="raise")], [5, 9])


# ---------------------------------------------------------------------------
# ONNX: an unknown id never reads another user's row
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls, output", [(recmf.BPRMF, "score"), (recmf.NeuralMF, "logit")])
def test_onnx_out_of_range_index_gives_nan(cls, output, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    train = tiny(np.repeat(np.arange(1, 9), 4), rng.integers(100, 112, 32))
    kw = dict(emb_dim=4, epochs=1, n_threads=1, seed=0)
    if cls is recmf.NeuralMF:
        kw.update(hidden_dim=8, batch_size=64)
    else:
        kw.update(triplets_per_epoch=200)
    model = cls(**kw).fit(train)
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    nu, ni = model.data_.n_users, model.data_.n_items
    # field case 03: the unknown user 999, fed exactly as the mapping gives it
    first, last = model.data_.item_ids[[0, -1]].tolist()
    u = model.data_.user_index([999, 1, 8, 3])
    i = model.data_.item_index([first, first, last, 999])
    out = sess.run([output], {"user_id": u, "item_id": i})[0]
    assert np.isnan(out[0]), "unknown user 999 (-1) was scored"
    assert np.isnan(out[3]), "unknown item 999 (-1) was scored"
    np.testing.assert_allclose(out[1:3], model.score([1, 8], [first, last]), rtol=1e-5, atol=1e-6)
    # every out-of-range index, on either input, is NaN; in-range ones are not
    bad = np.array([-1, -nu, nu, nu + 7, -2 ** 62, 2 ** 62], dtype=np.int64)
    got = sess.run([output], {"user_id": bad, "item_id": np.zeros(len(bad), dtype=np.int64)})[0]
    assert np.isnan(got).all()
    got = sess.run([output], {"user_id": np.zeros(len(bad), dtype=np.int64),
                              "item_id": np.array([-1, ni, 0, ni - 1, -ni, 5], dtype=np.int64)})[0]
    assert np.isnan(got[[0, 1, 4]]).all() and np.isfinite(got[[2, 3, 5]]).all()


# ---------------------------------------------------------------------------
# recommend's pad
# ---------------------------------------------------------------------------

@pytest.fixture
def minus_one_item():
    """Item -1 is the most popular item; user 3 has seen every item but one."""
    train = tiny([1, 2, 3, 3, 3, 4], [-1, -1, -1, 0, 5, 0])
    return recmf.Popularity().fit(train)


def test_pad_never_collides_with_an_item_id(minus_one_item):
    model = minus_one_item
    with pytest.raises(ValueError, match=r"-1 \(the default pad\) is one of this model's item ids"):
        model.recommend([4], k=2)
    recs = model.recommend([4, 3, 77], k=2, pad=-999)
    assert recs.tolist() == [[-1, 5], [-999, -999], [-999, -999]]  # -1 here is the item -1
    with pytest.raises(ValueError, match="pad 5 is an item id"):
        model.recommend([4], k=2, pad=5)
    with pytest.raises(TypeError, match="pad must be an int64 integer"):
        model.recommend([4], k=2, pad=2.5)
    with pytest.raises(TypeError, match="pad must be an int64 integer"):
        model.recommend([4], k=2, pad=None if False else "none")
    # recommend_frame has no padding: item -1 is an ordinary row
    frame = model.recommend_frame([4, 3, 77], k=2)
    assert list(zip(frame["user_id"], frame["movie_id"])) == [(4, -1), (4, 5)]
    # the reference agrees on the lists
    assert ref.popularity_recommend_ref(model_train(model), [4, 3, 77], 2) == [[-1, 5], [], []]


def model_train(model):
    frame = model.data_.to_frame().rename(columns={"item_id": "movie_id"})
    return frame.assign(rating=5)


def test_default_pad_when_minus_one_is_not_an_item():
    model = recmf.Popularity().fit(tiny([1, 2, 2], [10, 10, 11]))
    recs, scores = model.recommend([2, 99], k=2, return_scores=True)
    assert recs.tolist() == [[-1, -1], [-1, -1]]
    assert np.isneginf(scores).all()
    assert model.recommend([1], k=2).tolist() == [[11, -1]]


def test_string_ids_pad_none_and_empty_string_item():
    model = recmf.Popularity().fit(tiny(["u", "u", "v"], ["", "a", ""]))
    recs = model.recommend(["v", "nobody"], k=2)
    assert recs.dtype == object
    assert recs.tolist() == [["a", None], [None, None]]          # "" is an item, None pads
    assert model.recommend(["nobody"], k=1, unknown="popular").tolist() == [[""]]
    with pytest.raises(ValueError, match="pad '' is an item id"):
        model.recommend(["v"], k=2, pad="")
    assert model.recommend(["v"], k=2, pad="-").tolist() == [["a", "-"]]


def test_evaluate_counts_item_minus_one_as_a_hit(minus_one_item):
    """-1 as a real item in lists, dicts and the catalogue is an item, not a
    padding slot."""
    model = minus_one_item
    test = tiny([4, 5], [-1, -1])
    rep = recmf.evaluate(model, test, k=2, catalog=[-1, 0, 5], coverage_users=[4])
    assert rep["recall@2"] == 1.0 and rep["n_users_eval"] == 1      # user 5 is unknown: skipped
    assert rep["coverage@2"] == 2 / 3
    rep = recmf.evaluate({4: [0, -1], 5: [-1]}, test, k=2, catalog=[-1, 0])
    assert rep["n_users_eval"] == 2 and rep["recall@2"] == 1.0
    assert rep["mrr@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert rep["coverage@2"] == 1.0


def test_early_stopping_refuses_a_nan_validation_metric():
    """NaN (no val user could be evaluated) is not "a worse score": BPRMF
    used to stop after `patience` evaluations and keep arbitrary weights."""
    rng = np.random.default_rng(0)
    train = tiny(np.repeat(np.arange(1, 9), 4), rng.integers(100, 112, 32))
    val = tiny([1, 2], [100, 101]).assign(rating=1)          # nothing relevant
    model = recmf.BPRMF(emb_dim=4, epochs=6, eval_every=1, patience=2, triplets_per_epoch=100,
                        n_threads=1, seed=0, verbose=False)
    with pytest.raises(ValueError, match="early stopping watches val_recall, which is NaN"):
        model.fit(train, val=val)
    # without early stopping the NaN is only reported in the history
    model = recmf.BPRMF(emb_dim=4, epochs=2, eval_every=1, patience=None, triplets_per_epoch=100,
                        n_threads=1, seed=0, verbose=False).fit(train, val=val)
    assert model.history["val_recall"].isna().all() and len(model.history) == 2


def test_history_nan_survives_save_and_load(tmp_path):
    """NaN in the training history (epochs not evaluated, or nothing to
    evaluate) came back from .npz as None in an object column."""
    rng = np.random.default_rng(0)
    train = tiny(np.repeat(np.arange(1, 9), 4), rng.integers(100, 112, 32))
    val = tiny([1, 2], [100, 101]).assign(rating=1)
    model = recmf.BPRMF(emb_dim=4, epochs=3, eval_every=2, patience=None, triplets_per_epoch=100,
                        n_threads=1, seed=0, verbose=False).fit(train, val=val)
    model.save(tmp_path / "m.npz")
    again = recmf.load(tmp_path / "m.npz")
    pd.testing.assert_frame_equal(again.history, model.history)
    assert again.history["val_recall"].dtype == np.float64
