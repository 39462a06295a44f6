"""Ids keep the type the model was trained with at every boundary (issue 9,
field case 04): the CLI, save/load (.npz), pickle, ONNX index mapping,
recommend_frame and evaluate; for int, negative int, > 2^31 and string ids,
numeric-looking and empty strings included.  Integer and string ids never
match each other: a mix is a TypeError, not "unknown user"."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf._checks import PANDAS_HASHES_NUL
import reference as ref

KINDS = {
    "int": [1, 2, 3, 4],
    "negative": [-7, -1, 0, 5],
    "beyond_2^31": [2 ** 31 + 1, 2 ** 40, 2 ** 53 + 1, 2 ** 62],
    "string": ["007", "42", "", "x"],
}


def frame_of(ids):
    """4 users x 4 items with distinct popularities, in the ids' type."""
    u = [0, 0, 0, 1, 1, 2, 3, 3]
    i = [1, 2, 3, 2, 3, 3, 0, 3]
    dtype = object if isinstance(ids[0], str) else np.int64
    return pd.DataFrame({"user_id": np.array([ids[x] for x in u], dtype=dtype),
                         "movie_id": np.array([ids[x] for x in i], dtype=dtype), "rating": 5})


def _run_cli(*args):
    # test_cli's runner: the child imports the recmf under test (installed,
    # or an in-place build), not the source folder of a plain checkout
    from test_cli import cli
    return cli(*args)


@pytest.fixture(params=list(KINDS))
def kind(request):
    ids = KINDS[request.param]
    return ids, recmf.Popularity().fit(frame_of(ids))


def assert_same_ids(a, b):
    assert a.dtype == b.dtype
    assert a.tolist() == b.tolist()
    assert [type(x) for x in a.tolist()] == [type(x) for x in b.tolist()]


def test_save_load_and_pickle_round_trip(kind, tmp_path):
    ids, model = kind
    path = tmp_path / "m.npz"
    model.save(path)
    for other in (recmf.load(path), pickle.loads(pickle.dumps(model))):
        assert_same_ids(other.data_.user_ids, model.data_.user_ids)
        assert_same_ids(other.data_.item_ids, model.data_.item_ids)
        pd.testing.assert_frame_equal(other.recommend_frame(ids, k=2), model.recommend_frame(ids, k=2))
    assert sorted(model.data_.user_ids.tolist(), key=str) == sorted(ids, key=str)


def test_recommend_frame_keeps_the_id_type(kind):
    ids, model = kind
    frame = model.recommend_frame(ids, k=2)
    want = ref.popularity_recommend_ref(frame_of(ids), ids, 2)
    got = [frame.loc[frame["user_id"] == u, "movie_id"].tolist() for u in ids]
    assert got == want
    assert all(type(x) is type(ids[0]) for x in frame["user_id"].tolist() + frame["movie_id"].tolist())


def test_evaluate_keeps_the_id_type(kind):
    ids, model = kind
    test = frame_of(ids).iloc[[0, 3, 6]].assign(movie_id=lambda f: [ids[0], ids[1], ids[2]])
    rep = recmf.evaluate(model, test, k=2)
    lists = dict(zip(ids, ref.popularity_recommend_ref(frame_of(ids), ids, 2)))
    want = ref.metrics_ref(lists, test, k=2, coverage_users=pd.unique(test["user_id"]),
                           catalog=model.data_.item_ids.tolist(), item_popularity=model.popular_items(4))
    for key in ("recall@2", "ndcg@2", "mrr@2", "coverage@2", "avg_popularity@2"):
        assert rep[key] == pytest.approx(want[key], rel=1e-12), key
    assert rep["n_users_eval"] == want["n_users_eval"] == 3


def test_onnx_index_mapping_keeps_the_id_type(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    ids, _ = kind
    model = recmf.BPRMF(emb_dim=4, epochs=1, triplets_per_epoch=100, n_threads=1, seed=0).fit(frame_of(ids))
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    users = [ids[3], ids[0], ids[2]]
    items = [ids[3], ids[2], ids[1]]
    out = sess.run(["score"], {"user_id": model.data_.user_index(users),
                               "item_id": model.data_.item_index(items)})[0]
    np.testing.assert_allclose(out, model.score(users, items), rtol=1e-5, atol=1e-7)


def test_cli_recommend_keeps_the_id_type(kind, tmp_path):
    """Field case 04 for every id kind: the CLI gives what recommend_frame gives."""
    ids, model = kind
    path = tmp_path / "m.npz"
    model.save(path)
    r = _run_cli("recommend", "--model", str(path), "--users", *map(str, ids), "--k", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    want = json.loads(model.recommend_frame(ids, k=2).to_json(orient="records"))
    assert json.loads(r.stdout) == want
    assert all(type(row["user_id"]) is type(ids[0]) for row in want)


def test_case04_numeric_looking_strings_stay_strings(tmp_path):
    train = pd.DataFrame({"user_id": ["007", "007", "42", "42", "x"],
                          "movie_id": ["a", "b", "b", "c", "a"], "rating": 5})
    model = recmf.Popularity().fit(train)
    path = tmp_path / "pop.npz"
    model.save(path)
    r = _run_cli("recommend", "--model", str(path), "--users", "007", "42", "--k", "1", "--json")
    assert r.returncode == 0, r.stderr
    got = sorted((g["user_id"], g["movie_id"]) for g in json.loads(r.stdout))
    assert got == [("007", "c"), ("42", "a")]
    # "7" is not "007": nobody known -> an error, not an empty success
    r = _run_cli("recommend", "--model", str(path), "--users", "7", "42.0", "--k", "1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("recmf: error: no recommendations: every requested user is unknown")


def test_cli_errors_and_partial_results(tmp_path):
    model = recmf.Popularity().fit(frame_of(KINDS["negative"]))
    path = tmp_path / "m.npz"
    model.save(path)
    r = _run_cli("recommend", "--model", str(path), "--users", "abc", "--k", "1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("recmf: error: user id 'abc' is not an integer, and this model's user ids "
                        "are integers\n")
    r = _run_cli("recommend", "--model", str(path), "--users", "99", "--k", "1")
    assert r.returncode == 2 and "every requested user is unknown" in r.stderr
    # some unknown: results for the others, the unknown ones named on stderr
    r = _run_cli("recommend", "--model", str(path), "--users", "-7", "99", "--k", "1", "--json")
    assert r.returncode == 0
    assert [row["user_id"] for row in json.loads(r.stdout)] == [-7]
    assert "unknown users (no recommendations): 99" in r.stderr
    # a user with nothing left to recommend is known, not unknown
    full = pd.DataFrame({"user_id": [-3, -3, 4], "movie_id": [-1, 0, 0], "rating": 5})
    recmf.Popularity().fit(full).save(path)
    r = _run_cli("recommend", "--model", str(path), "--users", "-3", "--k", "1")
    assert r.returncode == 2 and "has no item left to recommend" in r.stderr


def test_mixed_id_kinds_raise_instead_of_unknown():
    ints = recmf.Popularity().fit(frame_of(KINDS["int"]))
    strs = recmf.Popularity().fit(frame_of(KINDS["string"]))
    with pytest.raises(TypeError, match="user_ids are non-integer .* the model's user ids are integer"):
        ints.recommend(["1", "2"], k=1)
    with pytest.raises(TypeError, match="user_ids are integer .* the model's user ids are non-integer"):
        strs.recommend_frame([7, 42], k=1)
    with pytest.raises(TypeError, match="item_ids are non-integer"):
        ints.score([1], ["2"])
    with pytest.raises(TypeError, match="user_ids are integer"):
        strs.data_.user_index([7])
    # an empty query has no kind: an empty answer
    assert ints.recommend([], k=1).shape == (0, 1)
    assert strs.recommend_frame([], k=1).empty


def test_string_id_with_trailing_nul_is_not_silently_changed(tmp_path):
    frame = pd.DataFrame({"user_id": ["a\0", "a"], "movie_id": ["i", "j"], "rating": 5})
    if not PANDAS_HASHES_NUL:        # pandas < 3.1 would merge "a\0" and "a": refused
        with pytest.raises(ValueError, match=r"user_id'\] holds an id with a NUL character \('a\\x00'\)"):
            recmf.Popularity().fit(frame)
        return
    model = recmf.Popularity().fit(frame)
    with pytest.raises(ValueError, match=r"user id 'a\\x00' ends with a NUL character"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    again = pickle.loads(pickle.dumps(model))
    assert again.data_.user_ids.tolist() == ["a", "a\0"]


@pytest.mark.parametrize("ids", list(KINDS.values()), ids=list(KINDS))
@pytest.mark.parametrize("make", [
    lambda: recmf.NeuralMF(emb_dim=4, hidden_dim=4, epochs=1, n_threads=1, verbose=False),
    lambda: recmf.BPRMF(emb_dim=4, epochs=1, negatives="uniform", triplets_per_epoch=50, n_threads=1,
                        verbose=False),
    lambda: recmf.BPRMF(emb_dim=4, epochs=1, top_n=2, triplets_per_epoch=50, n_threads=1,
                        verbose=False),
], ids=["neuralmf", "bprmf-uniform", "bprmf-popular"])
def test_sampling_error_names_the_original_user_id(ids, make):
    """The core reports a dense index; the error names the user's own id
    (the user at the highest dense index holds every item)."""
    full = sorted(ids, key=lambda x: (str(type(x)), x))[-1]
    others = [x for x in ids if x != full]
    train = pd.DataFrame({"user_id": np.array([full] * 3 + others[:2], dtype=object),
                          "movie_id": np.array([ids[0], ids[1], ids[2], ids[0], ids[1]], dtype=object),
                          "rating": 5})
    if not isinstance(full, str):
        train = train.astype({"user_id": np.int64, "movie_id": np.int64})
    model = make()
    with pytest.raises(recmf.SamplingError) as info:
        model.fit(train)
    e = info.value
    assert isinstance(e, ValueError)
    assert e.user_id == full and type(e.user_id) is type(full)
    # the failed fit left the model unfitted; the index is the one fit built
    assert recmf.Interactions.from_frame(train).user_ids[e.user_index] == full
    assert model.data_ is None
    assert str(e).startswith(f"user {full!r} has every one of the ")
    assert "user index" not in str(e)


def test_core_sampling_error_carries_the_dense_index():
    from recmf import _core
    indptr = np.array([0, 1, 3, 4], dtype=np.int64)
    indices = np.array([0, 0, 1, 1], dtype=np.int32)
    with pytest.raises(recmf.SamplingError, match="user index 1 ") as info:
        _core.sample_uniform(indptr, indices, 2, 1, 0, 0, 1)
    assert info.value.user_index == 1
    with pytest.raises(recmf.SamplingError, match="user index 1 ") as info:
        _core.sample_triplets(indptr, indices, 2, np.array([1, 0], dtype=np.int32), 5, 0, 0, 1)
    assert info.value.user_index == 1


@pytest.mark.parametrize("ids", [["a\0b", "a\0c", "a"], ["", "\0", "x"]])
def test_ids_that_differ_after_a_nul_are_never_merged(ids):
    # pandas before 3.1 hashes strings only up to their first NUL, so its
    # factorize and Index lookups merge these ids: recmf refuses them there,
    # and keeps them apart where pandas does.
    frame = pd.DataFrame({"user_id": ids * 2, "movie_id": ids[::-1] * 2, "rating": 5})
    if not PANDAS_HASHES_NUL:
        for call in (lambda: recmf.Interactions.from_frame(frame),
                     lambda: recmf.Popularity().fit(frame.assign(user_id=range(6))).recommend(ids, k=1),
                     lambda: recmf.temporal_split(frame.assign(timestamp=range(6)), 0, 1, 0)):
            with pytest.raises(ValueError, match="NUL character"):
                call()
        return
    data = recmf.Interactions.from_frame(frame)
    assert data.n_users == 3 and data.n_items == 3
    assert sorted(data.user_ids.tolist()) == sorted(ids)
    assert data.user_index(ids).tolist() == [data.user_ids.tolist().index(u) for u in ids]
