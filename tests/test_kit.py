"""The model kit of the C core (csrc/models/model.h, train/, nn/): the one
table of models, configs parsed by each model's field table, layouts as
named blocks (pinned here against the layouts tests/reference.py documents),
and the one training loop for a triplets source, replayed in NumPy with the
Adam routing of table blocks (dense through slots, lazy on touched rows).
NeuralMF's pairs source is replayed in tests/test_models.py."""
import os
import sys

import numpy as np
import pytest

from recmf import _core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402


def test_the_table_lists_each_model_once_with_its_source():
    kinds = _core.models()
    assert len(kinds) == len(set(kinds)) and {"neuralmf", "bprmf", "als", "ease"} <= set(kinds)
    info = {k: _core.model_info(k) for k in kinds}
    assert info["neuralmf"]["source"] == "pairs" and info["neuralmf"]["minibatch"]
    assert info["bprmf"]["source"] == "triplets" and info["bprmf"]["minibatch"]
    assert info["ease"]["source"] == "matrix" and not info["ease"]["minibatch"]
    assert not info["als"]["minibatch"]
    for kind, facts in info.items():
        names = [f[0] for f in facts["fields"]]
        assert names[:2] == ["n_users", "n_items"] and len(names) == len(set(names)), kind
        assert all(help_ for *_, help_ in facts["fields"]), kind        # every field has help
        assert ("lr" in names) == facts["minibatch"], kind             # the loop's fields


def test_defaults_are_the_decimals_written():
    fields = {name: (kind, default) for name, kind, default, _ in _core.model_info("neuralmf")["fields"]}
    assert fields["lr"] == ("f", 0.001) and fields["eps"] == ("f", 1e-08)
    assert fields["beta2"] == ("f", 0.999) and fields["dropout"] == ("f", 0.1)
    assert fields["batch_size"] == ("i", 4096) and fields["seed"] == ("u", 0)
    assert fields["emb_dim"] == ("i", 64) and fields["hidden_dim"] == ("i", 128)


@pytest.mark.parametrize("kind, own, want", [
    ("neuralmf", dict(emb_dim=3, hidden_dim=5),
     [("user_emb", (4, 3), "table", "normal", 0.01), ("item_emb", (6, 3), "table", "normal", 0.01),
      ("W1", (5, 6), "dense", "uniform", 6.0), ("b1", (5,), "dense", "uniform", 6.0),
      ("w2", (5,), "dense", "uniform", 5.0), ("b2", (1,), "dense", "uniform", 5.0)]),
    ("bprmf", dict(emb_dim=3),
     [("user_emb", (4, 3), "table", "normal", 0.01), ("item_emb", (6, 3), "table", "normal", 0.01)]),
    ("als", dict(factors=3),
     [("user_factors", (4, 3), "table", "normal", 0.01), ("item_factors", (6, 3), "table", "normal", 0.01)]),
    ("ease", dict(l2=10.0), [("B", (6, 6), "dense", "zero", 0.0)]),
])
def test_layouts_are_the_documented_ones(kind, own, want):
    # The order and shapes tests/reference.py (and SPEC) document: NeuralMF
    # [user_emb | item_emb | W1 (H, 2D) | b1 | w2 | b2], PyTorch's inits.
    n_params, blocks = _core.layout(kind, dict(n_users=4, n_items=6, **own))
    assert [(name, shape, role, init, arg) for name, _, shape, role, init, arg in blocks] == want
    if kind == "neuralmf":
        assert n_params == ref.ncf_n_params(4, 6, 3, 5)
    elif kind in ("bprmf", "als"):
        assert n_params == ref.mf_n_params(4, 6, 3)


def test_configs_are_parsed_by_the_field_table():
    base = dict(n_users=4, n_items=6)
    with pytest.raises(TypeError, match="unknown parameter 'emb_dims' of neuralmf"):
        _core.n_params("neuralmf", dict(base, emb_dims=3))
    with pytest.raises(TypeError, match="unknown parameter 'lr' of ease"):   # not a mini-batch model
        _core.n_params("ease", dict(base, lr=0.1))
    with pytest.raises(ValueError, match="hidden_dim is out of range"):
        _core.n_params("neuralmf", dict(base, hidden_dim=2 ** 40))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        _core.n_params("neuralmf", dict(base, dropout=1.0))
    with pytest.raises(ValueError, match="n_items must be >= 1, got 0"):
        _core.n_params("bprmf", dict(base, n_items=0))
    with pytest.raises(ValueError, match="factors must be >= 1, got 0"):
        _core.n_params("als", dict(base, factors=0))
    with pytest.raises(ValueError, match="l2 must be a finite number > 0"):
        _core.n_params("ease", dict(base, l2=float("nan")))
    with pytest.raises(TypeError, match="config must be a dict"):
        _core.n_params("bprmf", [("n_users", 4)])
    with pytest.raises(ValueError, match="n_users must be >= 1, got 0"):
        _core.n_params("bprmf", None)          # the defaults alone have no data sizes


def test_models_without_a_path_say_so():
    cfg = dict(n_users=2, n_items=3, emb_dim=2)
    theta = np.zeros(10, np.float32)
    users = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="bprmf scores its own users only, not a history"):
        _core.recommend("bprmf", cfg, theta, users, None, 1, 1, history=(np.array([0, 1], np.int64),
                                                                         np.array([2], np.int32)))
    with pytest.raises(ValueError, match="bprmf has no solver in the core"):
        _core.fit("bprmf", cfg, (users, users, users), theta, 1)
    with pytest.raises(ValueError, match="ease is not trained by batches"):
        _core.train_epoch("ease", dict(n_users=2, n_items=3), (np.array([0, 1, 1], np.int64),
                                                              np.array([0], np.int32)), 1,
                          np.zeros(9, np.float32), np.zeros(9, np.float32), np.zeros(9, np.float32), 0)


@pytest.mark.parametrize("n_threads,lazy,batch_size", [(1, 0, 10 ** 6), (2, 0, 10 ** 6), (2, 0, 37),
                                                      (2, 1, 37), (3, 1, 37)])
def test_triplets_epoch_equals_numpy_replay(n_threads, lazy, batch_size):
    # BPRMF through the one loop: the given triplets in the epoch's order,
    # the mean-loss gradient per batch, Adam on every row (dense: untouched
    # rows still decay and move) or on the touched rows only (lazy).
    nu, ni, D, seed, epoch = 40, 70, 4, 3, 2
    rng = np.random.default_rng(6)
    n = 200
    u, i, j = (rng.integers(0, m, n).astype(np.int32) for m in (nu, ni, ni))
    theta = (rng.standard_normal((nu + ni) * D) * 0.3).astype(np.float32)
    t = theta.astype(np.float64)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    hyper = dict(lr=1e-2, weight_decay=1e-2)
    cfg = dict(n_users=nu, n_items=ni, emb_dim=D, batch_size=batch_size, seed=seed, n_threads=n_threads,
               lazy_adam=lazy, **hyper)
    loss, n_done, step, interrupted, _ = _core.train_epoch("bprmf", cfg, (u, i, j), epoch, theta, m, v, 0)
    perm = _core.epoch_order(n, seed, epoch, 1)
    n_batches = -(-n // batch_size)
    assert n_done == n and step == n_batches and not interrupted
    mm, vv, total, some_row_skipped = np.zeros(len(t)), np.zeros(len(t)), 0.0, False
    for b in range(n_batches):
        q = perm[b * batch_size:(b + 1) * batch_size]
        batch_loss, g = ref.bpr_loss_grad_ref(t, nu, ni, D, u[q], i[q], j[q])
        total += batch_loss * len(q)
        t_new, m_new, v_new = ref.adam_step_ref(t, g, mm, vv, b + 1, **hyper)
        if lazy:
            rows = np.zeros((nu + ni, D), dtype=bool)
            rows[np.unique(u[q])] = True
            rows[nu + np.unique(np.concatenate([i[q], j[q]]))] = True
            stepped = rows.ravel()
            some_row_skipped |= not stepped.all()
            t_new, m_new, v_new = (np.where(stepped, new, old) for new, old in
                                   ((t_new, t), (m_new, mm), (v_new, vv)))
        t, mm, vv = t_new, m_new, v_new
    assert some_row_skipped or not lazy       # lazy really differs from dense here
    assert loss == pytest.approx(total / n, rel=1e-5)
    np.testing.assert_allclose(m, mm, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(theta, t, rtol=0, atol=2e-6)


def test_batch_grad_scatters_table_rows_and_leaves_the_rest_zero():
    nu, ni, D, n = 7, 9, 3, 40
    rng = np.random.default_rng(2)
    u = rng.integers(0, 3, n).astype(np.int32)              # users 3.. untouched
    i, j = (rng.integers(0, 4, n).astype(np.int32) for _ in range(2))
    theta = rng.standard_normal((nu + ni) * D).astype(np.float32)
    loss, grad = _core.batch_grad("bprmf", dict(n_users=nu, n_items=ni, emb_dim=D), theta, (u, i, j), 2)
    g = grad.reshape(nu + ni, D)
    assert (g[3:nu] == 0).all() and (g[nu + 4:] == 0).all()
    loss_ref, grad_ref = ref.bpr_loss_grad_ref(theta.astype(np.float64), nu, ni, D, u, i, j)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-6)
