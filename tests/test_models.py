"""Models: the C kernels against the NumPy references, what only NeuralMF
and BPRMF do (epochs, history, callbacks, early stopping, hyperparameter
checks, ONNX export), bad model files, and the optional PyTorch single-step
check.  The contract every model shares (fit, recommend, score, save/load,
pickling, determinism, bad input) is tests/test_contract.py."""
import os
import sys

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import _core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

D, H = 8, 16


KINDS = {"ncf": "neuralmf", "mf": "bprmf"}


def config(kind, nu, ni, **extra):
    """The core's config of a model of kind "ncf" or "mf" (D, H)."""
    own = dict(emb_dim=D, hidden_dim=H) if kind == "ncf" else dict(emb_dim=D)
    return dict(n_users=nu, n_items=ni, **own, **extra)


def random_theta(kind, nu, ni, seed=0, scale=0.3):
    n = ref.ncf_n_params(nu, ni, D, H) if kind == "ncf" else ref.mf_n_params(nu, ni, D)
    assert n == _core.n_params(KINDS[kind], config(kind, nu, ni))
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def small():
    ratings, _, movies = recmf.datasets.synthetic_ratings(n_users=120, n_items=150, seed=3)
    train, val, test = recmf.temporal_split(ratings)
    return dict(ratings=ratings, movies=movies, train=train, val=val, test=test,
                data=recmf.Interactions.from_frame(train))


# -- kernels vs references ---------------------------------------------------

@pytest.mark.parametrize("with_mask", [False, True])
def test_ncf_batch_gradient_matches_numpy(with_mask):
    nu, ni, n = 13, 17, 300
    rng = np.random.default_rng(1)
    theta = random_theta("ncf", nu, ni)
    # repeated users and items exercise the per-distinct-row aggregation
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    y = rng.integers(0, 2, n).astype(np.float32)
    mask = None
    if with_mask:
        mask = ((rng.random((n, H)) > 0.1) / 0.9).astype(np.float32)
    loss, grad = _core.batch_grad("neuralmf", config("ncf", nu, ni), theta, (u, i, y), 2, mask=mask)
    loss_ref, grad_ref = ref.ncf_loss_grad_ref(theta.astype(np.float64), nu, ni, D, H, u, i, y, mask)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    scale = np.abs(grad_ref).max()
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-5 * scale)


def _epoch_pairs(indptr, indices, n_items, n_neg, seed, epoch):
    """The pairs of a NeuralMF epoch in the core's numbering: the positives
    in CSR order, then negative r of positive q at nnz + q * n_neg + r."""
    neg = _core.sample_uniform(indptr, indices, n_items, n_neg, seed, epoch, 1)
    row_of = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    u = np.concatenate([row_of, np.repeat(row_of, n_neg)])
    i = np.concatenate([indices, neg]).astype(np.int32)
    y = np.concatenate([np.ones(len(indices)), np.zeros(len(neg))]).astype(np.float32)
    return u, i, y


def _lazy_stepped(n_params, nu, ni, u, i):
    """Which parameters a lazy Adam step moves: the embedding rows of the
    batch's users and items, and the whole MLP."""
    stepped = np.ones(n_params, dtype=bool)
    emb = np.zeros((nu + ni, D), dtype=bool)
    emb[np.unique(u)] = True
    emb[nu + np.unique(i)] = True
    stepped[: (nu + ni) * D] = emb.ravel()
    return stepped


@pytest.mark.parametrize("n_threads,lazy,batch_size", [(1, 0, 10**6), (2, 0, 10**6), (2, 1, 10**6),
                                                      (2, 0, 17), (2, 1, 17)])
def test_training_epoch_equals_numpy_replay(n_threads, lazy, batch_size):
    # A whole training epoch through the core -- negatives, pairs, shuffled
    # batches, gradients, Adam -- replayed in NumPy: batch by batch in the
    # epoch's order (_core.epoch_order), the mean-loss gradient of the batch
    # and the Adam formula, on every parameter (dense Adam) or, with
    # lazy_adam, on the rows the batch touched and the MLP.  One batch of
    # every pair checks the step itself; 7 batches also catch state carried
    # wrongly from one batch to the next (gradient rows, row-to-slot maps,
    # the step count).
    nu, ni, n_neg, seed, epoch = 13, 60, 2, 5, 1
    rng = np.random.default_rng(4)
    rows = [np.sort(rng.choice(ni, size=rng.integers(1, 6), replace=False)) for _ in range(nu)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    theta = random_theta("ncf", nu, ni, seed=2)
    t = theta.astype(np.float64)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    hyper = dict(lr=1e-3, weight_decay=1e-2)
    cfg = config("ncf", nu, ni, dropout=0.0, batch_size=batch_size, n_neg=n_neg, seed=seed,
                 n_threads=n_threads, lazy_adam=lazy, **hyper)
    loss, n_done = _core.train_epoch("neuralmf", cfg, (indptr, indices), epoch, theta, m, v, 0)[:2]

    pair_u, pair_i, pair_y = _epoch_pairs(indptr, indices, ni, n_neg, seed, epoch)
    assert n_done == len(pair_u)
    perm = _core.epoch_order(len(pair_u), seed, epoch, 1)
    np.testing.assert_array_equal(np.sort(perm), np.arange(len(pair_u)))
    n_batches = -(-len(perm) // batch_size)
    assert n_batches == 1 or n_batches >= 5
    mm, vv, total, some_row_skipped = np.zeros(len(t)), np.zeros(len(t)), 0.0, False
    for b in range(n_batches):
        q = perm[b * batch_size:(b + 1) * batch_size]
        u, i, y = pair_u[q], pair_i[q], pair_y[q]
        batch_loss, g = ref.ncf_loss_grad_ref(t, nu, ni, D, H, u, i, y, None)
        total += batch_loss * len(q)
        t_new, m_new, v_new = ref.adam_step_ref(t, g, mm, vv, b + 1, **hyper)
        if lazy:
            stepped = _lazy_stepped(len(t), nu, ni, u, i)
            some_row_skipped |= not stepped.all()
            t_new, m_new, v_new = (np.where(stepped, new, old) for new, old in
                                   ((t_new, t), (m_new, mm), (v_new, vv)))
        t, mm, vv = t_new, m_new, v_new
    assert some_row_skipped or not lazy       # lazy really differs from dense here
    assert loss == pytest.approx(total / len(perm), rel=1e-5)
    np.testing.assert_allclose(m, mm, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(theta, t, rtol=0, atol=2e-6)


@pytest.mark.parametrize("p", [0.1, 0.5, 1 - 100.5 / 256, 1e-9])
def test_dropout_mask_distribution(p):
    # The mask training draws: values exactly 0 or 1/(1-p) (PyTorch's
    # scaling), keep rate 1-p -- rounded to 24 bits -- in every column, the
    # same for the same (seed, epoch, batch) and different otherwise.
    # 1 - 100.5/256 puts the keep probability halfway between two byte
    # thresholds, so ties settled wrongly (always kept or always dropped)
    # would move the rate by 1/512, ~8 standard deviations here.
    n, hidden = 32768, 128
    mask = _core.dropout_mask(p, 7, 3, 11, n, hidden)
    scale = np.float32(1.0) / np.float32(1.0 - p)
    assert mask.shape == (n, hidden) and mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) <= {0.0, float(scale)}
    keep = round((1 - p) * 2**24) / 2**24
    kept = mask != 0
    sd = np.sqrt(keep * (1 - keep) / kept.size)
    assert abs(kept.mean() - keep) <= 4 * sd + 1e-12
    col_sd = np.sqrt(keep * (1 - keep) / n)
    assert np.all(np.abs(kept.mean(axis=0) - keep) <= 5 * col_sd + 1e-12)
    np.testing.assert_array_equal(mask, _core.dropout_mask(p, 7, 3, 11, n, hidden))
    if 0 < keep < 1:
        for other in [(8, 3, 11), (7, 4, 11), (7, 3, 12)]:
            assert not np.array_equal(mask, _core.dropout_mask(p, *other, n, hidden))
    # rows do not depend on how many rows are asked for
    np.testing.assert_array_equal(_core.dropout_mask(p, 7, 3, 11, 300, hidden), mask[:300])


def test_bpr_batch_gradient_matches_numpy():
    nu, ni, n = 11, 19, 400
    rng = np.random.default_rng(2)
    theta = random_theta("mf", nu, ni)
    u, i, j = (rng.integers(0, m, n).astype(np.int32) for m in (nu, ni, ni))
    loss, grad = _core.batch_grad("bprmf", config("mf", nu, ni), theta, (u, i, j), 2)
    loss_ref, grad_ref = ref.bpr_loss_grad_ref(theta.astype(np.float64), nu, ni, D, u, i, j)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-5 * np.abs(grad_ref).max())


def test_adam_step_matches_formula():
    rng = np.random.default_rng(3)
    theta = rng.standard_normal(1000).astype(np.float32)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    t64, m64, v64 = theta.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for step in range(1, 6):
        g = rng.standard_normal(1000).astype(np.float32)
        g[::7] = 0.0          # rows absent from a batch still decay and move (dense Adam)
        _core.adam_step(theta, g, m, v, step, lr=1e-2, weight_decay=1e-2)
        t64, m64, v64 = ref.adam_step_ref(t64, g, m64, v64, step, lr=1e-2, weight_decay=1e-2)
    np.testing.assert_allclose(theta, t64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, m64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, v64, rtol=1e-5, atol=1e-9)


def test_training_keywords_are_parsed_by_name():
    # The glue converts each keyword by its row in one table; the core
    # checks the values (one message each).
    def step(**kw):
        theta = np.ones(4, dtype=np.float32)
        _core.adam_step(theta, np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), 1, **kw)
        return theta
    assert step(lr=0.5)[0] == pytest.approx(0.5, abs=1e-6) and step()[0] == pytest.approx(1 - 1e-3, abs=1e-6)
    with pytest.raises(ValueError, match="lr must be > 0"):
        step(lr=-1.0)
    with pytest.raises(ValueError, match="batch_size is out of range"):
        step(batch_size=2**40)
    with pytest.raises(TypeError):
        step(eps="small")
    with pytest.raises(TypeError, match="unknown training parameter 'lrr'"):
        step(lrr=0.1)


@pytest.mark.parametrize("kind", ["ncf", "mf"])
def test_recommend_equals_brute_force(kind):
    nu, ni = 25, 60
    theta = random_theta(kind, nu, ni, seed=4, scale=1.0)
    cfg = config(kind, nu, ni)
    uu, ii = np.meshgrid(np.arange(nu), np.arange(ni), indexing="ij")
    if kind == "ncf":
        scores = ref.ncf_logits_ref(theta.astype(np.float64), nu, ni, D, H, uu.ravel(), ii.ravel())
    else:
        scores = ref.mf_scores_ref(theta.astype(np.float64), nu, ni, D, uu.ravel(), ii.ravel())
    scores = scores.reshape(nu, ni)
    rng = np.random.default_rng(5)
    seen_lists = [np.sort(rng.choice(ni, size=rng.integers(0, ni - 5), replace=False)) for _ in range(nu)]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen_lists])]).astype(np.int64)
    indices = np.concatenate(seen_lists).astype(np.int32)
    users = np.arange(nu, dtype=np.int32)
    items, vals, lens = _core.recommend(KINDS[kind], cfg, theta, users, (indptr, indices, ni), 10, 2)
    want_items, want_scores = ref.topk_ref(scores, seen_lists, 10)
    for r in range(nu):
        assert lens[r] == len(want_items[r])
        np.testing.assert_array_equal(items[r, :lens[r]], want_items[r])
        np.testing.assert_allclose(vals[r, :lens[r]], want_scores[r], rtol=1e-4, atol=1e-5)
    pairs = _core.score_pairs(KINDS[kind], cfg, theta, uu.ravel().astype(np.int32),
                              ii.ravel().astype(np.int32), 2)
    np.testing.assert_allclose(pairs, scores.ravel(), rtol=1e-4, atol=1e-5)


# -- model-specific behaviour (the contract every model keeps is in test_contract.py)

MODELS = recmf.available_models()


def make(kind, **kw):
    cls = MODELS[kind]
    return cls(**{**cls._test_params(), **kw})


def test_load_rejects_bad_files(small, tmp_path):
    model = make("bprmf").fit(small["data"])
    good = tmp_path / "good.npz"
    model.save(good)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="not a readable recmf model"):
        recmf.load(trunc)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(ValueError, match="not a recmf model"):
        recmf.load(foreign)
    import json
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    with pytest.raises(ValueError, match="format 99.*upgrade recmf"):
        recmf.load(newer)
    with pytest.raises(FileNotFoundError):
        recmf.load(tmp_path / "missing.npz")
    # not an archive at all (a script, a pickle, a .npy): no NumPy allow_pickle advice
    script = tmp_path / "file.py"
    script.write_text("print('hello')\n")
    pickled = tmp_path / "model.pkl"
    import pickle
    pickled.write_bytes(pickle.dumps(model))
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    for path in (script, pickled, npy):
        with pytest.raises(ValueError, match=r"is not a recmf model file \(not an \.npz archive") as err:
            recmf.load(path)
        assert "allow_pickle" not in str(err.value) and "pickle.load" not in str(err.value)


@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_history_and_callback(kind, small):
    calls = []

    def stop_after_two(model, row):
        calls.append(row["epoch"])
        return row["epoch"] < 2

    model = make(kind).fit(small["data"], val=small["val"], callback=stop_after_two)
    assert calls == [1, 2]
    hist = model.history
    assert list(hist["epoch"]) == [1, 2]
    assert {"loss", "seconds", "val_recall"} <= set(hist.columns)
    assert hist["loss"].notna().all() and (hist["loss"] > 0).all()
    assert np.isfinite(hist["val_recall"].dropna()).all()


@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_training_reduces_loss_and_beats_random(kind, small):
    model = make(kind, epochs=8).fit(small["data"])
    assert model.history["loss"].iloc[-1] < model.history["loss"].iloc[0]
    rep = recmf.evaluate(model, small["test"], k=10, catalog=small["movies"]["movie_id"])
    rng = np.random.default_rng(0)
    items = model.data_.item_ids
    rand = {u: list(rng.choice(items, 10, replace=False)) for u in small["test"]["user_id"].unique()}
    rep_rand = recmf.evaluate(rand, small["test"], k=10, catalog=small["movies"]["movie_id"],
                              item_popularity=pd.Series(model.data_.popularity(), index=items))
    assert rep["recall@10"] > rep_rand["recall@10"]


@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_bad_hyperparameters_name_the_argument(kind, small):
    bad = {"emb_dim": 0, "batch_size": -1, "lr": -1.0, "adam": "sparse", "epochs": "3"}
    for name, value in bad.items():
        model = make(kind)
        setattr(model, name, value)
        with pytest.raises((ValueError, TypeError), match=name):
            model.fit(small["data"])
    with pytest.raises(recmf.NotFittedError):
        make(kind).recommend([1], k=3)
    with pytest.raises(TypeError, match="Interactions, a pandas DataFrame"):
        make(kind).fit(np.zeros((3, 3)))


def test_early_stopping_restores_best_weights(small):
    seen = []

    def record(model, row):
        seen.append((row["epoch"], row.get("val_recall"), model.theta_.copy()))

    model = recmf.BPRMF(emb_dim=16, epochs=12, eval_every=1, patience=2, seed=1, n_threads=2,
                        triplets_per_epoch=20_000, top_n=100, lr=0.05).fit(
        small["data"], val=small["val"], callback=record)
    recalls = model.history["val_recall"].to_numpy()
    best = int(np.argmax(recalls))   # first maximum: later ties are not improvements
    assert model.best_epoch_ == best + 1
    np.testing.assert_array_equal(model.theta_, seen[best][2])
    assert len(recalls) == len(recalls[: best + 1]) + min(2, len(recalls) - best - 1)


def test_onnx_export_matches_scores(small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    for kind, output in (("neuralmf", "logit"), ("bprmf", "score")):
        model = make(kind).fit(small["data"])
        path = tmp_path / f"{kind}.onnx"
        model.to_onnx(path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        u = rng.integers(0, model.data_.n_users, 500)
        i = rng.integers(0, model.data_.n_items, 500)
        got = sess.run([output], {"user_id": u.astype(np.int64), "item_id": i.astype(np.int64)})[0]
        want = model.score(model.data_.user_ids[u], model.data_.item_ids[i])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_one_step_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional check)")
    nu, ni, n = 20, 30, 256
    theta = random_theta("ncf", nu, ni, seed=9, scale=0.2)
    p = ref.ncf_unpack(theta.astype(np.float64), nu, ni, D, H)
    rng = np.random.default_rng(9)
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    y = rng.integers(0, 2, n).astype(np.float32)
    params = [torch.tensor(p[k], dtype=torch.float32, requires_grad=True)
              for k in ("user_emb", "item_emb", "W1", "b1", "w2", "b2")]
    ue, ie, W1, b1, w2, b2 = params
    x = torch.cat([ue[torch.as_tensor(u, dtype=torch.long)], ie[torch.as_tensor(i, dtype=torch.long)]], 1)
    logit = torch.relu(x @ W1.T + b1) @ w2 + b2
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.as_tensor(y))
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-6)
    loss.backward()
    opt.step()
    torch_grad = np.concatenate([t.grad.numpy().ravel() for t in params])
    want = np.concatenate([t.detach().numpy().ravel() for t in params])
    _, grad = _core.batch_grad("neuralmf", config("ncf", nu, ni), theta, (u, i, y), 1)
    np.testing.assert_allclose(grad, torch_grad, rtol=1e-5, atol=1e-5 * np.abs(torch_grad).max())
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    _core.adam_step(theta, grad, m, v, 1)
    # Adam's first step is lr * g / (|g| + eps): for the few gradients within
    # float32 rounding of zero the direction is noise in both libraries, so
    # the weights agree to 1e-5 absolute (1% of lr), not to the last bit.
    np.testing.assert_allclose(theta, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["neuralmf", "bprmf"])
def test_dense_adam_note_says_when_dense_adam_dominates(kind, small):
    """Dense Adam touches all n_users + n_items rows per step; the note
    (shown in the progress bar) appears exactly when those rows outnumber
    what a batch can touch (3 * batch_size) by more than 8x."""
    data = small["data"]
    rows = data.n_users + data.n_items
    cls = recmf.available_models()[kind]
    base = dict(epochs=1, seed=0, n_threads=1, emb_dim=4)
    if kind == "bprmf":
        base["triplets_per_epoch"] = 200
    small_batch = max(1, rows // (3 * 8) - 1)  # rows > 8 * 3 * batch: dominates
    m = cls(batch_size=small_batch, **base).fit(data)
    note = m.dense_adam_note()
    assert note is not None and f"{rows:,}" in note and "lazy" in note
    assert note in m._progress_desc() and m._progress_desc().startswith(cls.__name__)
    big_batch = rows // (3 * 8) + 1  # rows <= 8 * 3 * batch: no note
    assert cls(batch_size=big_batch, **base).fit(data).dense_adam_note() is None
    assert cls(batch_size=small_batch, adam="lazy", **base).fit(data).dense_adam_note() is None
