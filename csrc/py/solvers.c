/* solvers.c -- the glue of the solver entries that stay outside the model
 * table, openly: ALS's half-sweep (Python alternates them), item
 * transitions (counts of variable size), and EASE's Gram and Cholesky
 * kernels for tests (EASE itself fits through _core.fit). */
#include "py/glue.h"

/* ------------------------------------------------------------------ */
/* EASE's kernels (models/ease.c), for tests                         */
/* ------------------------------------------------------------------ */

/* ease_gram(indptr, indices, n_cols, n_threads) -> upper triangle of X^T X. */
static PyObject *py_ease_gram(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices;
    long long n_cols;
    int n_threads;
    rmf_csr m;
    if (!PyArg_ParseTuple(args, "OOLi", &indptr, &indices, &n_cols, &n_threads) ||
        parse_csr(indptr, indices, n_cols, &m) < 0)
        return NULL;
    PyObject *G = new_array2((npy_intp)n_cols, (npy_intp)n_cols, NPY_FLOAT32);
    if (G == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ease_gram_upper(&m, n_threads, DATA(G, float), &err));
    if (st != RMF_OK) {
        Py_DECREF(G);
        return raise_status(st, &err);
    }
    return G;
}

/* spotrf_lower(A, direct_max) -> info: A (float32 n x n, row-major upper =
 * column-major lower) factorised in place; for tests of the recursion. */
static PyObject *py_spotrf_lower(PyObject *self, PyObject *args)
{
    PyObject *A;
    int direct_max;
    if (!PyArg_ParseTuple(args, "Oi", &A, &direct_max) || check_array(A, "A", NPY_FLOAT32, 2, 1) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)A, 0);
    if (check_square(A, "A", (long long)n, 1) < 0)
        return NULL;
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "A is too large for 32-bit LAPACK");
        return NULL;
    }
    int info;
    Py_BEGIN_ALLOW_THREADS
    info = rmf_spotrf_lower_blocked((int)n, DATA(A, float), (int)n, direct_max);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(info);
}


/* ------------------------------------------------------------------ */
/* ALS's half-sweep (models/als.c)                                   */
/* ------------------------------------------------------------------ */

/* als_solve(indptr, indices, values|None, Y, X, regularization, alpha,
 * solver, cg_steps, n_threads, with_loss) -> loss or None: one half-sweep,
 * X rewritten in place (rows of the CSR x D) against Y (columns of the
 * CSR x D). */
static PyObject *py_als_solve(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *values, *Y, *X;
    int with_loss;
    rmf_als_params p;
    rmf_als_default_params(&p);
    if (!PyArg_ParseTuple(args, "OOOOOffiiip", &indptr, &indices, &values, &Y, &X, &p.regularization,
                          &p.alpha, &p.solver, &p.cg_steps, &p.n_threads, &with_loss))
        return NULL;
    const char *bad = rmf_als_check_params(&p);
    if (bad != NULL) {
        PyErr_SetString(PyExc_ValueError, bad);
        return NULL;
    }
    if (check_array(Y, "Y", NPY_FLOAT32, 2, 0) < 0 || check_array(X, "X", NPY_FLOAT32, 2, 1) < 0)
        return NULL;
    npy_intp *ys = PyArray_DIMS((PyArrayObject *)Y), *xs = PyArray_DIMS((PyArrayObject *)X);
    if (ys[1] != xs[1] || xs[1] < 1 || xs[1] > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "X and Y must have the same number (>= 1) of columns, got %zd and %zd",
                     (Py_ssize_t)xs[1], (Py_ssize_t)ys[1]);
        return NULL;
    }
    rmf_csr m;
    if (parse_csr(indptr, indices, (long long)ys[0], &m) < 0)
        return NULL;
    if (m.n_rows != xs[0]) {
        PyErr_Format(PyExc_ValueError, "X has %zd rows but the matrix has %d", (Py_ssize_t)xs[0], m.n_rows);
        return NULL;
    }
    if (values != Py_None &&
        (check_array(values, "values", NPY_FLOAT32, 1, 0) < 0 || check_len(values, "values", SIZE(indices)) < 0))
        return NULL;
    double loss = 0.0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_als_solve(&p, &m, values == Py_None ? NULL : DATA(values, float), DATA(Y, float),
                                (int32_t)xs[1], DATA(X, float), with_loss ? &loss : NULL, &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    if (!with_loss)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(loss);
}


/* ------------------------------------------------------------------ */
/* Item transitions (models/transition.c)                             */
/* ------------------------------------------------------------------ */

/* hist: (indptr int64, items int32, n_items), each row in time order (not
 * sorted: the core checks it as a sequence, rmf_check_seq). */
static PyObject *py_transition_counts(PyObject *self, PyObject *args)
{
    PyObject *hist, *o[3] = {NULL, NULL, NULL};
    int window, n_threads;
    double gap_decay;
    rmf_seq h;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "Oidi", &hist, &window, &gap_decay, &n_threads) || parse_seq(hist, &h) < 0)
        return NULL;
    rmf_status st;
    RMF_NOGIL(st, rmf_check_seq(&h, &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    int64_t cap = window >= 1 && window <= RMF_TRANSITION_MAX_WINDOW ? rmf_transition_capacity(&h, window) : 0,
            nnz = 0;
    o[0] = new_array1((npy_intp)h.n_items + 1, NPY_INT64);
    o[1] = new_array1(cap, NPY_INT32);
    o[2] = new_array1(cap, NPY_FLOAT64);
    if (!o[0] || !o[1] || !o[2])
        return fail(o, 3);
    CALL(o, 3, rmf_transition_counts(&h, window, gap_decay, n_threads, DATA(o[0], int64_t), DATA(o[1], int32_t),
                                     DATA(o[2], double), &nnz, &err));
    if (shrink(o[1], (npy_intp)nnz) < 0 || shrink(o[2], (npy_intp)nnz) < 0)
        return fail(o, 3);
    return pack(o, 3);
}

/* trans: (indptr, indices, n_items) plus probs float32 of len(indices). */
static int parse_transitions(PyObject *trans, PyObject *probs, rmf_csr *t)
{
    if (parse_csr_tuple(trans, "trans", t) < 0 || check_array(probs, "probs", NPY_FLOAT32, 1, 0) < 0 ||
        check_len(probs, "probs", (npy_intp)t->indptr[t->n_rows]) < 0)
        return -1;
    return 0;
}

static PyObject *py_transition_scores(PyObject *self, PyObject *args)
{
    PyObject *trans, *probs, *hist, *users, *o[1] = {NULL};
    double half_life;
    int n_threads;
    rmf_seq h;
    rmf_csr t;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOOdi", &trans, &probs, &hist, &users, &half_life, &n_threads) ||
        parse_seq(hist, &h) < 0 || parse_transitions(trans, probs, &t) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0)
        return NULL;
    if ((o[0] = new_array2(SIZE(users), h.n_items, NPY_FLOAT32)) == NULL)
        return NULL;
    CALL(o, 1, rmf_transition_scores(&t, DATA(probs, float), &h, DATA(users, int32_t), SIZE(users), half_life,
                                     n_threads, DATA(o[0], float), &err));
    return o[0];
}

static PyObject *py_transition_recommend(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"trans", "probs", "history", "users", "half_life", "seen", "k", "n_threads",
                            "allowed", NULL};
    PyObject *trans, *probs, *hist, *users, *seen, *allowed = Py_None, *o[3] = {NULL, NULL, NULL};
    double half_life;
    int k, n_threads, has_seen;
    const uint8_t *cand;
    rmf_seq h;
    rmf_csr t, m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOdOii|O", names, &trans, &probs, &hist, &users, &half_life,
                                     &seen, &k, &n_threads, &allowed) ||
        parse_seq(hist, &h) < 0 || parse_transitions(trans, probs, &t) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || parse_optional_csr(seen, &m, &has_seen) < 0 ||
        parse_allowed(allowed, h.n_items, &cand) < 0 || new_topk(o, SIZE(users), k > 0 ? k : 0, 1) < 0)
        return NULL;
    CALL(o, 3, rmf_transition_recommend(&t, DATA(probs, float), &h, DATA(users, int32_t), SIZE(users), half_life,
                                        has_seen ? &m : NULL, cand, k, n_threads, DATA(o[0], int32_t),
                                        DATA(o[1], float), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}


PyMethodDef rmf_py_solver_methods[] = {
    VARARGS(spotrf_lower, "spotrf_lower(A, direct_max) -> info: in-place Cholesky, blocks above direct_max split"),
    VARARGS(ease_gram, "ease_gram(indptr, indices, n_cols, n_threads) -> upper triangle of X^T X (float32)"),
    VARARGS(als_solve, "als_solve(indptr, indices, values|None, Y, X, regularization, alpha, solver 0=cg|1=cholesky, "
                       "cg_steps, n_threads, with_loss) -> loss|None: one ALS half-sweep, X rewritten in place"),
    VARARGS(transition_counts, "transition_counts((indptr, items, n_items), window, gap_decay, n_threads) -> (indptr, indices, weights)"),
    VARARGS(transition_scores,
            "transition_scores((indptr, indices, n_items), probs, history, users, half_life, n_threads) -> scores"),
    KWARGS(transition_recommend,
           "transition_recommend(trans, probs, history, users, half_life, seen|None, k, n_threads, allowed=None)"),
    {NULL, NULL, 0, NULL},
};
