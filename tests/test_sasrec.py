"""SASRec (csrc/models/sasrec.c, recmf/models/sasrec.py) against NumPy references.

The whole forward against ``seq_kernels.forward_reference`` (float64 NumPy); the batch
gradient against central differences of the NumPy loss; dropout's regenerated masks and the
sampled loss against differences of the C loss itself; bit-identical weights on any thread
count; a planted next-item task it must learn; the sequences it reads against pandas.
"""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import recmf
import seq_kernels as K
from recmf import _core


def windows_of(rng, n_items, lens):
    return [list(rng.integers(0, n_items, n)) for n in lens]


# ---------------------------------------------------------------------------
# forward and gradient against NumPy
# ---------------------------------------------------------------------------

def test_whole_forward_matches_numpy():
    # every item's score after each sequence's last item, through the core's model table:
    # h (the whole forward, every block) dotted with the item table
    cfg = K.config(30, emb_dim=8, n_heads=2, n_blocks=2, max_len=6)
    theta = K.init_theta(cfg, seed=1)
    rng = np.random.default_rng(0)
    seqs = windows_of(rng, 30, [1, 4, 6, 9, 3])
    indptr, items = K.sequences(seqs)
    E = K.views(theta, cfg)["item_emb"].astype(np.float64)
    u = np.repeat(np.arange(len(seqs), dtype=np.int32), 30)
    i = np.tile(np.arange(30, dtype=np.int32), len(seqs))
    got = _core.score_pairs("sasrec", {**cfg, "n_users": len(seqs)}, theta, u, i, 2,
                            history=(indptr, items)).reshape(len(seqs), 30)
    for r, s in enumerate(seqs):
        h = K.forward_reference(theta, cfg, np.asarray(s[-6:]))[-1]    # the last max_len items
        np.testing.assert_allclose(got[r], h @ E.T, atol=3e-6, rtol=1e-5)


@pytest.mark.parametrize("n_blocks,n_heads,scale_emb", [(0, 1, 0), (1, 1, 1), (2, 2, 0), (3, 4, 0)])
def test_batch_gradient_matches_finite_differences_of_numpy_loss(n_blocks, n_heads, scale_emb):
    cfg = K.config(25, emb_dim=8, n_heads=n_heads, n_blocks=n_blocks, max_len=7, scale_emb=scale_emb)
    theta = K.init_theta(cfg, seed=2)
    rng = np.random.default_rng(3)
    wins = windows_of(rng, 25, [2, 5, 8, 8, 3])
    loss, g = K.batch_grad(theta, cfg, wins)
    assert loss == pytest.approx(K.loss_reference(theta, cfg, wins), rel=1e-6)
    # a few entries of every parameter block
    _, blocks = _core.layout("sasrec", cfg)
    idx = np.concatenate([off + rng.choice(int(np.prod(s)), min(3, int(np.prod(s))), replace=False)
                          for _, off, s, *_ in blocks if np.prod(s)])
    num = []
    for i in idx:
        tp, tm = theta.astype(np.float64), theta.astype(np.float64)
        tp[i] += 1e-5    # float64 reference: a small step crosses few ReLU kinks
        tm[i] -= 1e-5
        num.append((K.loss_reference(tp.astype(np.float64), cfg, wins) -
                    K.loss_reference(tm.astype(np.float64), cfg, wins)) / 2e-5)
    np.testing.assert_allclose(g[idx], num, atol=2e-5, rtol=2e-3)
    # full softmax: every item row has a gradient; positions no token uses have none
    v = K.views(g, cfg)
    assert v["item_emb"].any(1).all()
    assert not v["pos_emb"][max(len(w) - 1 for w in wins):].any()


def c_loss_differences(theta, cfg, wins, idx, eps=1e-3, **batch):
    """Central differences of the core's batch loss (float32 arithmetic), for paths whose
    randomness lives in the core (dropout masks, negatives) and is the same for the same
    (seed, epoch, batch)."""
    out = []
    for i in idx:
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        out.append((K.batch_grad(tp, cfg, wins, **batch)[0] -
                    K.batch_grad(tm, cfg, wins, **batch)[0]) / (2 * eps))
    return np.array(out)


@pytest.mark.parametrize("loss", [0, 1])
def test_dropout_masks_regenerated_in_backward_give_the_gradient(loss):
    # With dropout on, the backward draws every mask again from its counter: if it drew a
    # different one, the gradient would not be the derivative of the forward's loss.
    cfg = K.config(40, emb_dim=16, n_heads=2, n_blocks=2, max_len=8, dropout=0.3, seed=11,
                   loss=loss, n_negatives=15)
    theta = K.init_theta(cfg, seed=6)
    rng = np.random.default_rng(7)
    wins = windows_of(rng, 40, [9, 9, 5, 7])
    l1, g = K.batch_grad(theta, cfg, wins, epoch=2, index=5)
    l2, _ = K.batch_grad(theta, cfg, wins, epoch=2, index=5, n_threads=1)
    assert l1 == l2                                    # same masks for the same batch
    assert K.batch_grad(theta, cfg, wins, epoch=2, index=6)[0] != l1
    assert K.batch_grad(theta, cfg, wins)[0] != l1     # no epoch: no dropout
    big = np.argsort(-np.abs(g))[:12]                  # well above float32 noise
    _, blocks = _core.layout("sasrec", cfg)
    # and the largest entry of every block with a gradient (attention, feed-forward, norms)
    some = [off + int(np.argmax(np.abs(g[off:off + int(np.prod(s))]))) for _, off, s, *_ in blocks
            if np.prod(s) and np.abs(g[off:off + int(np.prod(s))]).max() > 1e-3]
    idx = np.unique(np.concatenate([big, some]))
    # eps small enough that few ReLUs flip inside [-eps, eps]; float32 noise ~1e-3
    num = c_loss_differences(theta, cfg, wins, idx, epoch=2, index=5)
    np.testing.assert_allclose(g[idx], num, rtol=0.03, atol=2e-3)


def test_sampled_loss_masks_the_users_own_items():
    # every item is in the window: every negative is masked, only the target is left,
    # so the loss is exactly 0
    cfg = K.config(4, emb_dim=8, n_heads=1, n_blocks=1, max_len=8, loss=1, n_negatives=7)
    theta = K.init_theta(cfg, seed=1)
    loss, g = K.batch_grad(theta, cfg, [[0, 1, 2, 3, 0, 1]], epoch=0)
    assert loss == 0.0 and not g.any()


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    ratings, _, movies = recmf.datasets.synthetic_ratings(n_users=150, n_items=120, seed=5)
    train, val, test = recmf.temporal_split(ratings)
    return dict(train=train, val=val, test=test)


def fit(frame, **kw):
    params = dict(n_blocks=1, emb_dim=16, max_len=20, epochs=2, batch_size=16, seed=3, n_threads=2)
    params.update(kw)
    return recmf.SASRec(**params).fit(frame)


def test_sequences_are_each_users_positives_in_time_order(small):
    train = small["train"]
    model = fit(train, epochs=1)
    indptr, items = model.sequences_
    data = model.data_
    order = train.reset_index(drop=True).sort_values(["user_id", "timestamp"], kind="stable")
    pos = order[order["rating"] >= 4]
    for u in range(0, data.n_users, 7):
        uid = data.user_ids[u]
        want = pos.loc[pos["user_id"] == uid, "movie_id"].drop_duplicates(keep="last").to_numpy()
        got = data.item_ids[items[indptr[u]:indptr[u + 1]]]
        np.testing.assert_array_equal(got, want)


def test_rated_inputs_read_every_rating_in_time_order(small):
    train = small["train"]
    model = fit(train, epochs=1, inputs="rated")
    indptr, items = model.sequences_
    data = model.data_
    known = train[train["movie_id"].isin(data.item_ids)]
    order = known.reset_index(drop=True).sort_values(["user_id", "timestamp"], kind="stable")
    for u in range(0, data.n_users, 5):
        uid = data.user_ids[u]
        want = order.loc[order["user_id"] == uid, "movie_id"].to_numpy()
        np.testing.assert_array_equal(data.item_ids[items[indptr[u]:indptr[u + 1]]], want)
    assert len(items) > data.nnz          # low ratings are inputs too
    with pytest.raises(ValueError, match="inputs='rated' needs every rating"):
        recmf.SASRec(inputs="rated", epochs=1).fit(recmf.Interactions.from_frame(train))


def test_same_weights_on_any_thread_count(small):
    # parts fixed by the data, each on one thread with one-thread BLAS, added in order
    thetas = [fit(small["train"], n_threads=t, dropout=0.2, epochs=2).theta_ for t in (1, 2, 3)]
    for t in thetas[1:]:
        np.testing.assert_array_equal(t, thetas[0])
    sampled = [fit(small["train"], n_threads=t, loss="sampled", n_negatives=30).theta_
               for t in (1, 3)]
    np.testing.assert_array_equal(sampled[0], sampled[1])


@pytest.mark.parametrize("mode", [1, 2])
def test_same_weights_whatever_team_the_pacer_picks(small, mode):
    ref = fit(small["train"], n_threads=2).theta_
    _core._pacer(mode)
    try:
        got = fit(small["train"], n_threads=2).theta_
    finally:
        _core._pacer(0)
    np.testing.assert_array_equal(got, ref)


def planted(n_users=300, n_items=40, length=12, seed=0):
    """Each user walks a cycle of the items (item i is followed by i + 1 mod n_items) from a
    random start: the next item is a function of the last one."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = rng.integers(n_items)
        for t in range(length):
            rows.append((u, (start + t) % n_items, 5, t))
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])


@pytest.mark.parametrize("loss", ["softmax", "sampled"])
def test_learns_a_planted_next_item_task(loss):
    frame = planted()
    model = recmf.SASRec(n_blocks=1, emb_dim=16, max_len=16, epochs=30, batch_size=32, lr=1e-2,
                         dropout=0.1, loss=loss, n_negatives=10, seed=1, n_threads=2).fit(frame)
    # a new user's history: the next item is the one after its last
    hist = pd.DataFrame({"user_id": 999, "movie_id": [7, 8, 9, 10], "rating": 5,
                         "timestamp": range(4)})
    top = model.recommend([999], k=1, history=hist)
    assert top[0, 0] == 11
    # and every training user's next item comes first (their own items aside: the sampled
    # loss never uses a user's items as that user's negatives)
    last = frame.groupby("user_id")["movie_id"].last()
    recs = model.recommend(last.index, k=1)[:, 0]
    assert (recs == (last.to_numpy() + 1) % 40).mean() > 0.95
    assert model.history["loss"].iloc[-1] < model.history["loss"].iloc[0] / 3


def test_order_matters_on_the_planted_task():
    # the shuffle control: the same items in a random order per user carry no next-item signal
    frame = planted(seed=1)
    rng = np.random.default_rng(2)
    shuffled = frame.copy()
    shuffled["timestamp"] = rng.permutation(len(frame))
    kw = dict(n_blocks=1, emb_dim=16, max_len=16, epochs=20, batch_size=32, lr=1e-2, seed=1,
              n_threads=2)
    last = frame.groupby("user_id")["movie_id"].last()
    want = (last.to_numpy() + 1) % 40
    hits = {}
    for name, f in (("ordered", frame), ("shuffled", shuffled)):
        m = recmf.SASRec(**kw).fit(f)
        hist = f.assign(timestamp=frame["timestamp"])       # score from the true order
        recs = m.recommend(last.index, k=1, exclude_seen=False, history=hist)[:, 0]
        hits[name] = (recs == want).mean()
    assert hits["ordered"] > 0.9 and hits["shuffled"] < 0.3


def test_history_early_stopping_and_callback(small):
    seen = []

    def cb(model, row):
        seen.append(row["epoch"])
        return row["epoch"] < 3
    model = recmf.SASRec(n_blocks=1, emb_dim=16, max_len=20, epochs=6, batch_size=16, seed=3,
                         n_threads=2).fit(small["train"], val=small["val"], callback=cb)
    assert seen == [1, 2, 3]
    h = model.history
    assert list(h["epoch"]) == [1, 2, 3]
    assert {"loss", "n_pairs", "seconds", "threads", "val_recall"} <= set(h.columns)
    assert (h["n_pairs"] > 0).all() and h["loss"].is_monotonic_decreasing
    es = recmf.SASRec(n_blocks=1, emb_dim=16, max_len=20, epochs=30, batch_size=16, lr=5e-2,
                      seed=3, n_threads=2, patience=2).fit(small["train"], val=small["val"])
    assert len(es.history) < 30 or es.best_epoch_ <= 30
    best = es.history["val_recall"].idxmax()
    assert es.best_epoch_ == es.history["epoch"][best]


def test_score_recommend_and_fold_in_agree(small):
    model = fit(small["train"])
    users = small["test"]["user_id"].unique()[:20]
    ids, scores = model.recommend(users, k=5, return_scores=True)
    flat_u = np.repeat(users, 5)
    np.testing.assert_allclose(model.score(flat_u, ids.ravel()).reshape(-1, 5), scores, rtol=1e-5,
                               atol=1e-5)
    # a new user whose history is a known user's training rows gets that user's list
    u = users[0]
    rows = small["train"][small["train"]["user_id"] == u].assign(user_id=10 ** 6)
    folded = model.recommend([10 ** 6], k=5, history=rows)
    np.testing.assert_array_equal(folded, ids[:1])


def test_save_load_and_pickle_keep_recommendations(small, tmp_path):
    model = fit(small["train"], inputs="rated")
    users = small["test"]["user_id"].unique()
    want = model.recommend(users, k=10)
    model.save(tmp_path / "s.npz")
    loaded = recmf.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.recommend(users, k=10), want)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).recommend(users, k=10), want)


@pytest.mark.parametrize("kw,match", [
    (dict(n_heads=3), "n_heads .3. must divide emb_dim .64."),
    (dict(dropout=1.0), "dropout must be a number in"),
    (dict(loss="bce"), "loss must be 'softmax' or 'sampled'"),
    (dict(inputs="all"), "inputs must be 'positives' or 'rated'"),
    (dict(max_len=0), "max_len"),
    (dict(n_negatives=0), "n_negatives"),
    (dict(betas=(0.9, 1.0)), "betas"),
    (dict(lr=-1.0), "lr must be a finite number > 0"),
])
def test_bad_hyperparameters_are_named(small, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        recmf.SASRec(**kw).fit(small["train"])


def test_core_rejects_bad_configs_and_histories():
    cfg = K.config(10, emb_dim=8, n_heads=3)
    with pytest.raises(ValueError, match="n_heads must be >= 1 and divide emb_dim"):
        _core.layout("sasrec", cfg)
    with pytest.raises(ValueError, match="max_len must be in"):
        _core.layout("sasrec", K.config(10, emb_dim=8, max_len=0))
    cfg = K.config(5, emb_dim=8, n_blocks=1, max_len=4, n_users=2)
    theta = K.init_theta(cfg)
    u, i = np.array([0, 1], np.int32), np.array([1, 2], np.int32)
    with pytest.raises(ValueError, match="sasrec scores from a history"):
        _core.score_pairs("sasrec", cfg, theta, u, i, 1)
    with pytest.raises(ValueError):     # item 7 is not one of the 5
        _core.score_pairs("sasrec", cfg, theta, u, i, 1,
                          history=(np.array([0, 2, 3]), np.array([1, 7, 0], np.int32)))
    with pytest.raises(ValueError, match="u"):
        _core.score_pairs("sasrec", cfg, theta, np.array([0, 2], np.int32), i, 1,
                          history=(np.array([0, 2, 3]), np.array([1, 4, 0], np.int32)))


# ---------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------

def left_padded(seqs, width):
    out = np.full((len(seqs), width), -1, dtype=np.int64)
    for k, s in enumerate(seqs):
        s = np.asarray(s)[-width:] if width else []
        out[k, width - len(s):] = s
    return out


@pytest.mark.parametrize("scale_emb,n_blocks", [(False, 2), (True, 1)])
def test_onnx_scores_every_item_as_the_model_and_the_numpy_forward(small, tmp_path, scale_emb, n_blocks):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = fit(small["train"], scale_emb=scale_emb, n_blocks=n_blocks, max_len=8, n_heads=2)
    path = tmp_path / "sasrec.onnx"
    model.to_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    indptr, items = model.sequences_
    n_items = model.data_.n_items
    lens = np.diff(indptr)
    # users with longer and shorter histories than max_len (the graph keeps the last max_len)
    users = [int(np.argmax(lens)), int(np.argmin(np.where(lens > 0, lens, 10 ** 9))), 3, 40]
    seqs = [items[indptr[u]:indptr[u + 1]] for u in users]
    out = sess.run(["scores"], {"item_seq": left_padded(seqs, model.max_len)})[0]
    assert out.shape == (len(users), n_items) and out.dtype == np.float32
    for k, u in enumerate(users):
        want = model._score_index(np.full(n_items, u, np.int32), np.arange(n_items, dtype=np.int32))
        np.testing.assert_allclose(out[k], want, rtol=1e-4, atol=1e-4)
    # a new sequence, shorter than max_len, in a narrower input: the NumPy forward's last row
    new = [int(i) for i in items[indptr[5]:indptr[5] + 3]][::-1]
    cfg = dict(model._config(), scale_emb=int(scale_emb))
    h = K.forward_reference(model.theta_, cfg, np.array(new))[-1]
    got = sess.run(["scores"], {"item_seq": left_padded([new], 5)})[0][0]
    np.testing.assert_allclose(got, model.item_emb_.astype(np.float64) @ h, rtol=1e-4, atol=1e-4)
    # out-of-range indices are left out; a row with none in range is flagged NaN
    mixed = left_padded([new], 5)
    mixed[0, 0] = n_items                                       # a bad index where padding was
    np.testing.assert_allclose(sess.run(["scores"], {"item_seq": mixed})[0][0], got, rtol=1e-5, atol=1e-6)
    empty = sess.run(["scores"], {"item_seq": np.array([[-1, -1, n_items + 7]], np.int64)})[0]
    assert np.isnan(empty).all()


def test_onnx_of_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        recmf.SASRec().to_onnx(tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()
