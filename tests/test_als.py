"""Implicit ALS (csrc/als.c, recmf.ALS), fold-in and similar items for the
factor models (ALS, BPRMF): the C kernel against the float64 NumPy
references of tests/reference.py, the model's wiring, determinism, ONNX,
persistence and bad input.

Tolerances.  The kernel forms Y^T Y in float32 (sgemm) and keeps factors in
float32; the references are float64.
- Exact (Cholesky) solves: the system is solved in double, so the error is
  the float32 rounding of Y^T Y, Y and the result, amplified by the
  system's condition number (< 100 for these well-regularised random
  problems): |X - X_ref| <= 1e-5 max|X_ref|.
- CG: three float32 CG steps against the same three steps in float64 from
  the same start; float32 rounding of the residuals grows with each step:
  1e-4 max|X_ref|.
- Objective (loss): a sum of many float32 products, relative 1e-5.
"""
import pickle

import numpy as np
import pandas as pd
import pytest

import recmf
import reference as ref
from recmf import _core

CG, CHOLESKY = 0, 1


def random_problem(n_rows=40, n_cols=25, D=6, density=0.25, seed=0, empty_row=3):
    rng = np.random.default_rng(seed)
    M = rng.random((n_rows, n_cols)) < density
    if empty_row is not None:
        M[empty_row] = False
    indptr = np.concatenate([[0], np.cumsum(M.sum(1))]).astype(np.int64)
    indices = np.nonzero(M)[1].astype(np.int32)
    Y = (rng.standard_normal((n_cols, D)) * 0.5).astype(np.float32)
    X0 = (rng.standard_normal((n_rows, D)) * 0.5).astype(np.float32)
    return indptr, indices, Y, X0


def solve(indptr, indices, Y, X, reg, alpha, solver, steps=3, threads=1, values=None, loss=True):
    return _core.als_solve(indptr, indices, values, Y, X, reg, alpha, solver, steps, threads, loss)


from test_models import small  # noqa: E402,F401 - the shared synthetic fixture


# -- the kernel: one half-sweep ----------------------------------------------

@pytest.mark.parametrize("reg, alpha", [(0.1, 3.0), (1.0, 0.0), (0.01, 20.0)])
def test_exact_half_sweep_matches_numpy_solve(reg, alpha):
    indptr, indices, Y, X0 = random_problem()
    R = ref.dense_from_csr(indptr, indices, Y.shape[0])
    X = X0.copy()
    loss = solve(indptr, indices, Y, X, reg, alpha, CHOLESKY)
    X_ref = ref.als_exact_half_ref(R, Y, reg, alpha)
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-5 * np.abs(X_ref).max())
    assert not X[3].any()                       # a row without entries: x = 0
    assert loss == pytest.approx(ref.als_objective_ref(R, X, Y, reg, alpha), rel=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_cg_half_sweep_matches_numpy_cg(steps):
    indptr, indices, Y, X0 = random_problem(seed=1)
    R = ref.dense_from_csr(indptr, indices, Y.shape[0])
    X = X0.copy()
    loss = solve(indptr, indices, Y, X, 0.2, 4.0, CG, steps)
    X_ref = ref.als_cg_half_ref(R, Y, X0, 0.2, 4.0, steps)
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-4 * np.abs(X_ref).max())
    assert loss == pytest.approx(ref.als_objective_ref(R, X, Y, 0.2, 4.0), rel=1e-5)


def test_cg_converges_to_the_exact_solution_and_keeps_it():
    indptr, indices, Y, X0 = random_problem(seed=2)
    X_exact = X0.copy()
    solve(indptr, indices, Y, X_exact, 0.2, 4.0, CHOLESKY)
    X = X0.copy()
    solve(indptr, indices, Y, X, 0.2, 4.0, CG, steps=Y.shape[1])  # D steps: exact in exact arithmetic
    np.testing.assert_allclose(X, X_exact, rtol=0, atol=1e-4 * np.abs(X_exact).max())
    # started at the solution, CG stays there
    X2 = X_exact.copy()
    solve(indptr, indices, Y, X2, 0.2, 4.0, CG)
    np.testing.assert_allclose(X2, X_exact, rtol=0, atol=1e-5 * np.abs(X_exact).max())


def test_values_scale_the_confidence():
    indptr, indices, Y, X0 = random_problem(seed=4)
    values = np.random.default_rng(0).uniform(0.5, 3.0, len(indices)).astype(np.float32)
    R = ref.dense_from_csr(indptr, indices, Y.shape[0], values)
    X = X0.copy()
    solve(indptr, indices, Y, X, 0.3, 2.0, CHOLESKY, values=values)
    X_ref = ref.als_exact_half_ref(R, Y, 0.3, 2.0)
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-5 * np.abs(X_ref).max())


@pytest.mark.parametrize("solver", [CG, CHOLESKY])
def test_half_sweep_does_not_depend_on_threads(solver):
    # Y^T Y is one single-threaded sgemm and every row is solved by one
    # thread in a fixed order: bit-identical factors and loss for any count.
    indptr, indices, Y, X0 = random_problem(n_rows=300, seed=5)
    out = []
    for threads in (1, 2, 3):
        X = X0.copy()
        loss = solve(indptr, indices, Y, X, 0.1, 3.0, solver, threads=threads)
        out.append((X, loss))
    for X, loss in out[1:]:
        np.testing.assert_array_equal(X, out[0][0])
        assert loss == out[0][1]


def test_kernel_bad_inputs():
    indptr, indices, Y, X0 = random_problem()
    X = X0.copy()
    with pytest.raises(ValueError, match="regularization"):
        solve(indptr, indices, Y, X, -1.0, 1.0, CG)
    with pytest.raises(ValueError, match="regularization"):
        solve(indptr, indices, Y, X, float("nan"), 1.0, CG)
    with pytest.raises(ValueError, match="alpha"):
        solve(indptr, indices, Y, X, 0.1, -1.0, CG)
    with pytest.raises(ValueError, match="cg_steps"):
        solve(indptr, indices, Y, X, 0.1, 1.0, CG, steps=0)
    with pytest.raises(ValueError, match="solver"):
        solve(indptr, indices, Y, X, 0.1, 1.0, 7)
    bad = np.ones(len(indices), np.float32)
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"values\[5\]"):
        solve(indptr, indices, Y, X, 0.1, 1.0, CG, values=bad)
    with pytest.raises(ValueError, match="same number"):
        solve(indptr, indices, Y, np.zeros((len(indptr) - 1, 3), np.float32), 0.1, 1.0, CG)
    with pytest.raises(ValueError, match="rows"):
        solve(indptr, indices, Y, X[:-1].copy(), 0.1, 1.0, CG)
    with pytest.raises(ValueError, match="writable"):
        Xr = X0.copy()
        Xr.flags.writeable = False
        solve(indptr, indices, Y, Xr, 0.1, 1.0, CG)
    # no regularization and two items in D = 6 dimensions: Y^T C Y is singular
    with pytest.raises(ValueError, match="row 1: .*not positive definite"):
        two = (np.array([0, 0, 1], np.int64), np.array([1], np.int32))
        solve(*two, Y[:2].copy(), np.zeros((2, Y.shape[1]), np.float32), 0.0, 1.0, CHOLESKY)


# -- the model ---------------------------------------------------------------

def initial_factors(data, factors, seed):
    """ALS.fit's starting point (documented: N(0, 0.01^2) from default_rng(seed))."""
    nu, ni = data.n_users, data.n_items
    theta = (np.random.default_rng(seed).standard_normal((nu + ni) * factors) * 0.01).astype(np.float32)
    return theta[:nu * factors].reshape(nu, factors), theta[nu * factors:].reshape(ni, factors)


def test_one_iteration_is_a_user_half_then_an_item_half(small):
    data, f = small["data"], 8
    model = recmf.ALS(factors=f, regularization=0.3, alpha=5.0, iterations=1, solver="cholesky",
                      seed=4, n_threads=2).fit(data)
    _, Y0 = initial_factors(data, f, 4)
    R = ref.dense_from_csr(data.indptr, data.indices, data.n_items)
    X1 = ref.als_exact_half_ref(R, Y0, 0.3, 5.0)
    np.testing.assert_allclose(model.user_factors_, X1, rtol=0, atol=1e-5 * np.abs(X1).max())
    # the item half solves against the user factors the model holds
    Y1 = ref.als_exact_half_ref(R.T, model.user_factors_, 0.3, 5.0)
    np.testing.assert_allclose(model.item_factors_, Y1, rtol=0, atol=1e-5 * np.abs(Y1).max())
    loss = ref.als_objective_ref(R, model.user_factors_, model.item_factors_, 0.3, 5.0)
    total_confidence = data.n_users * data.n_items + 5.0 * data.nnz
    assert model.history["loss"].iloc[0] == pytest.approx(loss / total_confidence, rel=1e-5)


def test_cg_iteration_matches_numpy_cg(small):
    data, f = small["data"], 8
    model = recmf.ALS(factors=f, regularization=0.3, alpha=5.0, iterations=1, cg_steps=3,
                      seed=4, n_threads=1).fit(data)
    X0, Y0 = initial_factors(data, f, 4)
    R = ref.dense_from_csr(data.indptr, data.indices, data.n_items)
    X1 = ref.als_cg_half_ref(R, Y0, X0, 0.3, 5.0, 3)
    np.testing.assert_allclose(model.user_factors_, X1, rtol=0, atol=1e-4 * np.abs(X1).max())


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_loss_decreases(small, solver):
    model = recmf.ALS(factors=16, regularization=0.1, alpha=4.0, iterations=8, solver=solver,
                      seed=0, n_threads=2).fit(small["data"])
    loss = model.history["loss"].to_numpy()
    assert len(loss) == 8 and np.isfinite(loss).all()
    # Exact ALS never increases the objective; CG from the previous factors
    # does not either in practice (3 steps of a descent method per row).
    assert (np.diff(loss) <= 1e-7 * loss[0]).all(), loss
    assert loss[-1] < 0.9 * loss[0]
    assert list(model.history.columns[:4]) == ["epoch", "loss", "n_pairs", "seconds"]


def test_deterministic_for_seed_and_threads(small):
    fit = lambda seed, threads: recmf.ALS(factors=8, iterations=3, seed=seed,  # noqa: E731
                                          n_threads=threads).fit(small["data"]).theta_
    a, b = fit(1, 2), fit(1, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fit(2, 2))
    np.testing.assert_array_equal(fit(1, 1), a)      # nor on the thread count


def test_recommend_and_score_are_the_dot_product(small):
    data = small["data"]
    model = recmf.ALS(factors=8, iterations=3, seed=0, n_threads=2).fit(data)
    S = model.user_factors_.astype(np.float64) @ model.item_factors_.T
    users = data.user_ids[:20]
    seen = ref.csr_row_sets(data.seen_indptr, data.seen_indices)
    items, scores = model.recommend(users, k=5, return_scores=True)
    exp_items, exp_scores = ref.topk_ref(S[:20], [seen[u] for u in range(20)], 5)
    np.testing.assert_array_equal(items, data.item_ids[exp_items])
    np.testing.assert_allclose(scores, exp_scores, rtol=1e-5, atol=1e-6)
    got = model.score(data.user_ids[[0, 1, 2]], data.item_ids[[5, 6, 7]])
    np.testing.assert_allclose(got, S[[0, 1, 2], [5, 6, 7]], rtol=1e-5, atol=1e-7)


def test_validation_history_and_early_stopping(small):
    model = recmf.ALS(factors=8, iterations=6, eval_every=2, patience=1, seed=0,
                      n_threads=2).fit(small["data"], val=small["val"])
    evaluated = model.history.dropna(subset=["val_recall"])
    assert list(evaluated["epoch"])[:1] == [2]
    assert model.best_epoch_ == int(evaluated.loc[evaluated["val_recall"].idxmax(), "epoch"])


# -- fold-in and similar items (ALS and BPRMF) -------------------------------

@pytest.fixture(scope="module", params=["als", "bprmf"])
def factor_model(request, small):
    if request.param == "als":
        return recmf.ALS(factors=8, regularization=0.5, alpha=4.0, iterations=4, seed=0,
                         n_threads=2).fit(small["data"])
    return recmf.BPRMF(emb_dim=8, epochs=2, triplets_per_epoch=20_000, seed=0,
                       n_threads=2).fit(small["data"])


def _fold_params(model):
    return model._fold_in_params()


def test_fold_in_of_a_training_user_solves_its_row(factor_model, small):
    model, train, data = factor_model, small["train"], small["data"]
    user = data.user_ids[7]
    history = train[train["user_id"] == user]
    reg, alpha = _fold_params(model)
    Y = model._item_factors()
    R = ref.dense_from_csr(data.indptr, data.indices, data.n_items)[7:8]
    x_ref = ref.als_exact_half_ref(R, Y, reg, alpha)[0]
    ids, X = model.fold_in(history)
    assert ids.tolist() == [user]
    np.testing.assert_allclose(X[0], x_ref, rtol=0, atol=1e-5 * np.abs(x_ref).max())
    # and recommend(history=) ranks items by x . y, the history's positives removed
    items, scores = model.recommend([user], k=10, history=history, return_scores=True)
    s = Y.astype(np.float64) @ x_ref
    seen = set(data.indices[data.indptr[7]:data.indptr[8]].tolist())
    exp_items, exp_scores = ref.topk_ref(s[None, :], [seen], 10)
    np.testing.assert_allclose(scores, exp_scores, rtol=1e-4, atol=1e-6)
    assert set(items[0]) == set(data.item_ids[exp_items[0]])   # ties may swap neighbours


def test_fold_in_new_users_and_mixed_requests(factor_model, small):
    model, train, data = factor_model, small["train"], small["data"]
    src = train[train["user_id"] == data.user_ids[3]]
    history = pd.concat([src.assign(user_id=10_001),
                         pd.DataFrame({"user_id": [10_002], "movie_id": [-5], "rating": [5],
                                       "timestamp": [0]})])        # only an unknown item
    users = [10_001, data.user_ids[0], 10_002, 99_999]
    recs = model.recommend(users, k=5, history=history)
    folded = model.recommend([10_001], k=5, history=history)
    np.testing.assert_array_equal(recs[0], folded[0])
    np.testing.assert_array_equal(recs[1], model.recommend([data.user_ids[0]], k=5)[0])
    assert (recs[2] == -1).all() and (recs[3] == -1).all()   # nothing usable: as unknown users
    assert not set(recs[0]) & set(src["movie_id"][src["rating"] >= 4])
    pop = model.recommend(users, k=5, history=history, unknown="popular")
    assert (pop[2] >= 0).all()
    frame = model.recommend_frame([10_001], k=5, history=history)
    assert frame["movie_id"].tolist() == recs[0].tolist()


def test_similar_items_are_cosine_neighbours(factor_model, small):
    model, data = factor_model, small["data"]
    q = np.array([0, 5, 17, 5])
    items, sims = model.similar_items(data.item_ids[q], k=6, return_scores=True)
    exp_items, exp_sims = ref.cosine_topk_ref(model._item_factors(), q, 6)
    np.testing.assert_allclose(sims, exp_sims, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(items, data.item_ids[exp_items])
    assert not (items == data.item_ids[q][:, None]).any()
    with pytest.raises(KeyError, match="-123"):
        model.similar_items([data.item_ids[0], -123])
    with pytest.raises(ValueError, match="k="):
        model.similar_items(data.item_ids[:1], k=data.n_items)


def test_neuralmf_cannot_fold_in(small):
    model = recmf.NeuralMF(emb_dim=4, hidden_dim=8, epochs=1, seed=0, n_threads=1).fit(small["data"])
    with pytest.raises(NotImplementedError, match="NeuralMF"):
        model.recommend([1], k=3, history=small["train"].head(20))


# -- persistence, ONNX, bad input --------------------------------------------

def test_save_load_and_pickle_round_trip(small, tmp_path):
    model = recmf.ALS(factors=8, iterations=2, seed=0, n_threads=1).fit(small["data"])
    users = small["data"].user_ids[:10]
    path = tmp_path / "als.npz"
    model.save(path)
    for other in (recmf.load(path), pickle.loads(pickle.dumps(model))):
        assert isinstance(other, recmf.ALS) and other.get_params() == model.get_params()
        np.testing.assert_array_equal(other.theta_, model.theta_)
        np.testing.assert_array_equal(other.recommend(users, k=5), model.recommend(users, k=5))
        np.testing.assert_array_equal(other.similar_items(small["data"].item_ids[:3], k=4),
                                      model.similar_items(small["data"].item_ids[:3], k=4))
        assert other.history["loss"].tolist() == pytest.approx(model.history["loss"].tolist())


def test_onnx_output_equals_score(small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    data = small["data"]
    model = recmf.ALS(factors=8, iterations=2, seed=0, n_threads=1).fit(data)
    path = tmp_path / "als.onnx"
    model.to_onnx(path)
    rng = np.random.default_rng(0)
    u = rng.integers(0, data.n_users, 50)
    i = rng.integers(0, data.n_items, 50)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"user_id": u.astype(np.int64), "item_id": i.astype(np.int64)})
    expected = model.score(data.user_ids[u], data.item_ids[i])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(factors=0), ValueError, "factors"),
    (dict(factors=-3), ValueError, "factors"),
    (dict(factors=2.5), TypeError, "factors"),
    (dict(regularization=-0.1), ValueError, "regularization"),
    (dict(regularization=float("nan")), ValueError, "regularization"),
    (dict(regularization="1"), TypeError, "regularization"),
    (dict(alpha=-1), ValueError, "alpha"),
    (dict(alpha=float("inf")), ValueError, "alpha"),
    (dict(iterations=-1), ValueError, "iterations"),
    (dict(solver="lu"), ValueError, "solver"),
    (dict(cg_steps=0), ValueError, "cg_steps"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_hyperparameters(small, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        recmf.ALS(**kwargs).fit(small["data"])


def test_unfitted_and_bad_history(small):
    with pytest.raises(recmf.NotFittedError):
        recmf.ALS().recommend([1], k=3)
    model = recmf.ALS(factors=4, iterations=1, n_threads=1).fit(small["data"])
    # history= is read by Interactions.from_frame (base class): its messages
    with pytest.raises(ValueError, match="missing column.*rating"):
        model.recommend([1], k=3, history=small["train"][["user_id", "movie_id"]])
    bad = small["train"].head(5).assign(rating=np.nan)
    with pytest.raises(ValueError, match="rating"):
        model.recommend([1], k=3, history=bad)
    with pytest.raises(TypeError, match="DataFrame"):
        model.recommend([1], k=3, history=[1, 2, 3])


@pytest.mark.skipif(not __import__("conftest").HAVE_ML100K, reason="needs ML-100K")
def test_cli_run_als_matches_the_api(tmp_path):
    import json

    from conftest import ML100K_DIR
    from test_cli import cli
    saved = tmp_path / "als.npz"
    res = cli("run", "--data", str(ML100K_DIR), "--model", "als", "--factors", "16", "--iterations", "3",
              "--alpha", "2", "--threads", "1", "--json", "--quiet", "--save", str(saved), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    ratings, _, movies = recmf.load_movielens(ML100K_DIR)
    train, val, test = recmf.temporal_split(ratings)
    model = recmf.ALS(factors=16, iterations=3, alpha=2.0, n_threads=1).fit(train)
    want = recmf.evaluate(model, test, catalog=movies["movie_id"].unique())
    for key, value in want.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    np.testing.assert_array_equal(recmf.load(saved).theta_, model.theta_)
    bad = cli("run", "--data", str(ML100K_DIR), "--model", "als", "--factors", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "factors must be >= 1" in bad.stderr


def test_ml1m_defaults_beat_the_implicit_target(ml1m):
    # Issue 11: ALS chosen on val >= 0.078 recall@10 on test (implicit 0.7.3's
    # ALS chosen on val: 0.0781 / ndcg 0.0542).  The defaults are the best of
    # ALS.default_grid on this split's val (recorded: test 0.0848 / 0.0587 at
    # seed 0); the lower bounds leave room for other seeds and CPUs' rounding.
    d = ml1m
    model = recmf.ALS(seed=0, n_threads=2, eval_every=None).fit(d.data)
    report = recmf.evaluate(model, d.test, k=10, catalog=d.movies["movie_id"].unique())
    assert report["recall@10"] >= 0.080 and report["ndcg@10"] >= 0.055, report
    assert report["n_users_eval"] == 5553
    assert model.history["loss"].is_monotonic_decreasing
