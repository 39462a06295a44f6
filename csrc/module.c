/*
 * module.c -- the only file that includes Python.h and NumPy.
 *
 * Each entry point parses its arguments, checks what only the glue can --
 * type, ndim, dtype, contiguity, alignment, writability, lengths: a
 * TypeError/ValueError naming the argument -- allocates its outputs with
 * NumPy, runs the core without the GIL (CALL) and turns a core status into
 * an exception in one place (raise_status).  Values (k, id ranges, CSR
 * soundness, model shapes, hyperparameters) are the core's to check, each
 * with one message.  The Python layer (recmf/) prepares arrays, so these
 * checks are the last line of defence, not the user-facing API.
 *
 * Models are found in one table (MODELS) by the exact kind name their
 * Python class registers under; csrc/README.md says how to add one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL RECMF_ARRAY_API
#include <numpy/arrayobject.h>

#include <stddef.h>
#include <string.h>

#include "recmf.h"

static PyObject *SamplingError; /* recmf.SamplingError, a ValueError */

/* ------------------------------------------------------------------ */
/* Errors and core calls                                              */
/* ------------------------------------------------------------------ */

static PyObject *raise_status(rmf_status st, const rmf_error *err)
{
    if (PyErr_Occurred()) /* e.g. KeyboardInterrupt raised by the stop hook */
        return NULL;
    if (st == RMF_ERR_NOMEM)
        return PyErr_NoMemory();
    const char *msg = err->msg[0] ? err->msg : "recmf core error";
    /* Messages may quote input bytes (a Latin-1 line of a ratings file):
     * decode leniently so the error itself never fails. */
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
    if (text == NULL)
        return NULL;
    if (st == RMF_ERR_SATURATED) {
        /* The core knows only the dense row; recmf/ names the user's
         * original id from the attribute user_index (None: no row). */
        PyObject *exc = PyObject_CallOneArg(SamplingError, text);
        Py_DECREF(text);
        if (exc == NULL)
            return NULL;
        PyObject *row = err->row >= 0 ? PyLong_FromLongLong((long long)err->row) : Py_NewRef(Py_None);
        if (row == NULL || PyObject_SetAttrString(exc, "user_index", row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(exc);
            return NULL;
        }
        Py_DECREF(row);
        PyErr_SetObject(SamplingError, exc);
        Py_DECREF(exc);
        return NULL;
    }
    PyObject *type = st == RMF_ERR_INTERRUPTED ? PyExc_KeyboardInterrupt : PyExc_ValueError;
    PyErr_SetObject(type, text);
    Py_DECREF(text);
    return NULL;
}

/* One RuntimeWarning per process when a forked child's regions run on
 * one thread (threads.c); -1 when the warning was turned into an error. */
static int warn_fork_fallback(void)
{
    if (!rmf_fork_fallback_notice())
        return 0;
    return PyErr_WarnEx(PyExc_RuntimeWarning,
                        "recmf: this process is a fork() child of a process that used recmf's OpenMP "
                        "threads, whose thread pool could not be released before the fork; recmf "
                        "runs its parallel loops on one thread here (results are unchanged). Use "
                        "multiprocessing's 'spawn' or 'forkserver' start method to keep every thread.",
                        1);
}

/* Runs a core call without the GIL; `st` receives its status (a warning
 * turned into an exception makes it an error, raised by raise_status). */
#define RMF_NOGIL(st, call)                                   \
    do {                                                      \
        Py_BEGIN_ALLOW_THREADS                                \
        rmf_work_begin();                                     \
        (st) = (call);                                        \
        rmf_work_end();                                       \
        Py_END_ALLOW_THREADS                                  \
        if ((st) == RMF_OK && warn_fork_fallback() < 0)       \
            (st) = RMF_ERR_VALUE;                             \
    } while (0)

/* Runs a core call writing its message into the function's `err` without
 * the GIL; on failure raises it and returns fail(o, n): the n outputs o[]
 * are released. */
#define CALL(o, n, call)                   \
    do {                                   \
        rmf_status st_;                    \
        RMF_NOGIL(st_, call);              \
        if (st_ != RMF_OK) {               \
            raise_status(st_, &err);       \
            return fail(o, n);             \
        }                                  \
    } while (0)

/* ------------------------------------------------------------------ */
/* Arrays                                                             */
/* ------------------------------------------------------------------ */

/* Borrowed obj must be an ndarray of exactly `type`, `ndim` dimensions
 * (-1: any), C-contiguous and aligned; writable when `writable`. */
static int check_array(PyObject *obj, const char *name, int type, int ndim, int writable)
{
    if (!PyArray_Check(obj))
        return PyErr_Format(PyExc_TypeError, "%s must be a numpy array, got %s", name, Py_TYPE(obj)->tp_name), -1;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type) {
        PyArray_Descr *want = PyArray_DescrFromType(type);
        PyErr_Format(PyExc_TypeError, "%s must have dtype %S, got %S", name, (PyObject *)want,
                     (PyObject *)PyArray_DESCR(a));
        Py_XDECREF(want);
        return -1;
    }
    if (ndim >= 0 && PyArray_NDIM(a) != ndim)
        return PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got %d dimensions", name, ndim,
                            PyArray_NDIM(a)), -1;
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a))
        return PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned", name), -1;
    if (writable && !PyArray_ISWRITEABLE(a))
        return PyErr_Format(PyExc_ValueError, "%s must be writable", name), -1;
    return 0;
}

static int check_len(PyObject *obj, const char *name, npy_intp want)
{
    npy_intp got = PyArray_SIZE((PyArrayObject *)obj);
    if (got != want)
        return PyErr_Format(PyExc_ValueError, "%s must have %zd elements, got %zd", name, (Py_ssize_t)want,
                            (Py_ssize_t)got), -1;
    return 0;
}

#define DATA(obj, type) ((type *)PyArray_DATA((PyArrayObject *)(obj)))
#define SIZE(obj) ((int64_t)PyArray_SIZE((PyArrayObject *)(obj)))

/* New zeroed outputs: n, or n x m. */
static PyObject *new_array2(npy_intp n, npy_intp m, int type)
{
    npy_intp dims[2] = {n, m};
    return PyArray_ZEROS(m < 0 ? 1 : 2, dims, type, 0);
}
#define new_array1(n, type) new_array2((n), -1, (type))

/* Cuts a 1-D output down to its first n entries (the core filled fewer
 * than its capacity). */
static int shrink(PyObject *arr, npy_intp n)
{
    PyArray_Dims shape = {&n, 1};
    PyObject *r = PyArray_Resize((PyArrayObject *)arr, &shape, 0, NPY_CORDER);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Releases the n outputs o[] (some may be NULL); returns NULL. */
static PyObject *fail(PyObject **o, int n)
{
    for (int k = 0; k < n; k++)
        Py_CLEAR(o[k]);
    return NULL;
}

/* A tuple stealing the n new references o[]; released on failure. */
static PyObject *pack(PyObject **o, int n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return fail(o, n);
    for (int k = 0; k < n; k++)
        PyTuple_SET_ITEM(t, k, o[k]);
    return t;
}

/* The (n_rows x k) items, scores and (n_rows) lengths every top-K returns;
 * 0 or -1 with o[] released. */
static int new_topk(PyObject **o, npy_intp n_rows, int k, int with_scores)
{
    o[0] = new_array2(n_rows, k, NPY_INT32);
    o[1] = with_scores ? new_array2(n_rows, k, NPY_FLOAT32) : NULL;
    o[2] = new_array1(n_rows, NPY_INT32);
    if (o[0] && (o[1] || !with_scores) && o[2])
        return 0;
    fail(o, 3);
    return -1;
}

/* A CSR passed as (indptr int64, indices int32, n_cols).  The glue checks
 * the buffers (types, and that indptr stays inside indices); the core
 * checks that the structure is sound (rmf_csr_check). */
static int parse_csr(PyObject *indptr, PyObject *indices, long long n_cols, rmf_csr *out)
{
    if (check_array(indptr, "indptr", NPY_INT64, 1, 0) < 0 ||
        check_array(indices, "indices", NPY_INT32, 1, 0) < 0)
        return -1;
    int64_t n_rows = SIZE(indptr) - 1;
    if (n_rows < 0 || n_rows > INT32_MAX || n_cols < 0 || n_cols > INT32_MAX)
        return PyErr_SetString(PyExc_ValueError, "indptr must have n_rows + 1 entries, n_cols fit in int32"), -1;
    const int64_t *p = DATA(indptr, int64_t);
    if (p[0] != 0 || p[n_rows] != SIZE(indices))
        return PyErr_SetString(PyExc_ValueError, "indptr must start at 0 and end at len(indices)"), -1;
    out->indptr = p;
    out->indices = DATA(indices, int32_t);
    out->n_rows = (int32_t)n_rows;
    out->n_cols = (int32_t)n_cols;
    return 0;
}

/* seen: (indptr, indices, n_cols) or None (*present = 0). */
static int parse_optional_csr(PyObject *seen, rmf_csr *m, int *present)
{
    PyObject *indptr, *indices;
    long long n_cols;
    *present = seen != Py_None;
    if (!*present)
        return 0;
    if (!PyArg_ParseTuple(seen, "OOL", &indptr, &indices, &n_cols))
        return -1;
    return parse_csr(indptr, indices, n_cols, m);
}

/* ------------------------------------------------------------------ */
/* Data core                                                          */
/* ------------------------------------------------------------------ */

static PyObject *py_parse_ratings(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    const char *sep;
    long long skip_header;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "y*sL", &buf, &sep, &skip_header))
        return NULL;
    PyObject *o[4] = {NULL, NULL, NULL, NULL};
    int64_t cap = rmf_count_lines(buf.buf, buf.len), n = 0;
    rmf_status st = RMF_ERR_NOMEM;
    int ok = 1;
    for (int a = 0; a < 4 && ok; a++)
        ok = (o[a] = new_array1(cap, a == 2 ? NPY_FLOAT64 : NPY_INT64)) != NULL;
    if (ok)
        RMF_NOGIL(st, rmf_parse_ratings(buf.buf, buf.len, sep, skip_header, cap, DATA(o[0], int64_t),
                                        DATA(o[1], int64_t), DATA(o[2], double), DATA(o[3], int64_t), &n, &err));
    PyBuffer_Release(&buf);
    if (st != RMF_OK) {
        if (ok) /* else NumPy's error is set */
            raise_status(st, &err);
        return fail(o, 4);
    }
    /* The line count was an upper bound. */
    for (int a = 0; a < 4; a++)
        if (shrink(o[a], n) < 0)
            return fail(o, 4);
    return pack(o, 4);
}

static PyObject *py_temporal_split(PyObject *self, PyObject *args)
{
    PyObject *user, *time, *o[2] = {NULL, NULL};
    long long n_val, n_test, min_train;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOLLL", &user, &time, &n_val, &n_test, &min_train) ||
        check_array(user, "user", NPY_INT64, 1, 0) < 0 || check_array(time, "time", NPY_INT64, 1, 0) < 0 ||
        check_len(time, "time", SIZE(user)) < 0)
        return NULL;
    int64_t n = SIZE(user);
    if (!(o[0] = new_array1(n, NPY_INT64)) || !(o[1] = new_array1(n, NPY_INT8)))
        return fail(o, 2);
    CALL(o, 2, rmf_temporal_split(DATA(user, int64_t), DATA(time, int64_t), n, n_val, n_test, min_train,
                                  DATA(o[0], int64_t), DATA(o[1], int8_t), &err));
    return pack(o, 2);
}

static PyObject *py_factorize(PyObject *self, PyObject *args)
{
    PyObject *ids, *o[2] = {NULL, NULL};
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "O", &ids) || check_array(ids, "ids", NPY_INT64, 1, 0) < 0)
        return NULL;
    int64_t n = SIZE(ids), n_unique = 0;
    if (!(o[0] = new_array1(n, NPY_INT32)) || !(o[1] = new_array1(n, NPY_INT64)))
        return fail(o, 2);
    CALL(o, 2, rmf_factorize(DATA(ids, int64_t), n, DATA(o[0], int32_t), DATA(o[1], int64_t), &n_unique, &err));
    if (shrink(o[1], n_unique) < 0)
        return fail(o, 2);
    return pack(o, 2);
}

static PyObject *py_build_csr(PyObject *self, PyObject *args)
{
    PyObject *rows, *cols, *o[2] = {NULL, NULL};
    int n_rows, n_cols;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOii", &rows, &cols, &n_rows, &n_cols) ||
        check_array(rows, "rows", NPY_INT32, 1, 0) < 0 || check_array(cols, "cols", NPY_INT32, 1, 0) < 0 ||
        check_len(cols, "cols", SIZE(rows)) < 0)
        return NULL;
    int64_t n = SIZE(rows), nnz = 0;
    if (!(o[0] = new_array1((npy_intp)n_rows + 1, NPY_INT64)) || !(o[1] = new_array1(n, NPY_INT32)))
        return fail(o, 2);
    CALL(o, 2, rmf_build_csr(DATA(rows, int32_t), DATA(cols, int32_t), n, n_rows, n_cols, DATA(o[0], int64_t),
                             DATA(o[1], int32_t), &nnz, &err));
    if (shrink(o[1], nnz) < 0)
        return fail(o, 2);
    return pack(o, 2);
}

static PyObject *py_item_counts(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *counts = NULL;
    long long n_cols;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOL", &indptr, &indices, &n_cols) || parse_csr(indptr, indices, n_cols, &m) < 0 ||
        !(counts = new_array1((npy_intp)n_cols, NPY_INT64)))
        return NULL;
    CALL(&counts, 1, rmf_item_counts(&m, DATA(counts, int64_t), &err));
    return counts;
}

static PyObject *py_popularity_order(PyObject *self, PyObject *args)
{
    PyObject *counts, *order = NULL;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "O", &counts) || check_array(counts, "counts", NPY_INT64, 1, 0) < 0)
        return NULL;
    if (SIZE(counts) > INT32_MAX)
        return PyErr_SetString(PyExc_ValueError, "counts has more than 2^31 - 1 items"), NULL;
    if (!(order = new_array1(SIZE(counts), NPY_INT32)))
        return NULL;
    CALL(&order, 1, rmf_popularity_order(DATA(counts, int64_t), (int32_t)SIZE(counts), DATA(order, int32_t),
                                         &err));
    return order;
}

static PyObject *py_sample_uniform(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *out = NULL;
    long long n_cols;
    int n_neg, n_threads;
    unsigned long long seed, epoch;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOLiKKi", &indptr, &indices, &n_cols, &n_neg, &seed, &epoch, &n_threads) ||
        parse_csr(indptr, indices, n_cols, &m) < 0 ||
        !(out = new_array1((npy_intp)(SIZE(indices) * (n_neg > 0 ? n_neg : 0)), NPY_INT32)))
        return NULL;
    CALL(&out, 1, rmf_sample_uniform(&m, n_neg, seed, epoch, n_threads, DATA(out, int32_t), &err));
    return out;
}

static PyObject *py_sample_triplets(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *cand, *o[3] = {NULL, NULL, NULL};
    long long n_cols, n_triplets;
    unsigned long long seed, epoch;
    int n_threads;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOLOLKKi", &indptr, &indices, &n_cols, &cand, &n_triplets, &seed, &epoch,
                          &n_threads) ||
        parse_csr(indptr, indices, n_cols, &m) < 0 || check_array(cand, "candidates", NPY_INT32, 1, 0) < 0)
        return NULL;
    npy_intp n = n_triplets > 0 ? (npy_intp)n_triplets : 0;
    for (int a = 0; a < 3; a++)
        if (!(o[a] = new_array1(n, NPY_INT32)))
            return fail(o, 3);
    CALL(o, 3, rmf_sample_triplets(&m, DATA(cand, int32_t), (int32_t)SIZE(cand), n_triplets, seed, epoch, n_threads,
                                   DATA(o[0], int32_t), DATA(o[1], int32_t), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

static PyObject *py_topk_rows(PyObject *self, PyObject *args)
{
    PyObject *scores, *seen, *seen_rows, *o[3] = {NULL, NULL, NULL};
    int k, n_threads, has_seen;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOii", &scores, &seen, &seen_rows, &k, &n_threads) ||
        check_array(scores, "scores", NPY_FLOAT32, 2, 0) < 0 || parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    npy_intp n_rows = PyArray_DIM((PyArrayObject *)scores, 0), n_cols = PyArray_DIM((PyArrayObject *)scores, 1);
    if (has_seen && (check_array(seen_rows, "seen_rows", NPY_INT32, 1, 0) < 0 ||
                     check_len(seen_rows, "seen_rows", n_rows) < 0))
        return NULL;
    if (new_topk(o, n_rows, k > 0 ? k : 0, 1) < 0)
        return NULL;
    CALL(o, 3, rmf_topk_rows(DATA(scores, float), n_rows, (int32_t)n_cols, has_seen ? &m : NULL,
                             has_seen ? DATA(seen_rows, int32_t) : NULL, k, n_threads, DATA(o[0], int32_t),
                             DATA(o[1], float), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

static PyObject *py_topk_ranked(PyObject *self, PyObject *args)
{
    PyObject *ranking, *seen, *users, *o[3] = {NULL, NULL, NULL};
    int k, has_seen;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOi", &ranking, &seen, &users, &k) ||
        check_array(ranking, "ranking", NPY_INT32, 1, 0) < 0 || check_array(users, "users", NPY_INT32, 1, 0) < 0 ||
        parse_optional_csr(seen, &m, &has_seen) < 0 || new_topk(o, SIZE(users), k > 0 ? k : 0, 0) < 0)
        return NULL;
    CALL(o, 3, rmf_topk_ranked(DATA(ranking, int32_t), (int32_t)SIZE(ranking), has_seen ? &m : NULL,
                               DATA(users, int32_t), SIZE(users), k, DATA(o[0], int32_t), DATA(o[2], int32_t), &err));
    PyObject *items_len[2] = {o[0], o[2]};
    return pack(items_len, 2);
}

/* ================================================================== */
/* EASE (ease.c) -- begin                                              */
/* ================================================================== */

/* B: a writable float32 n_cols x n_cols array. */
static int check_square(PyObject *B, const char *name, long long n, int writable)
{
    if (check_array(B, name, NPY_FLOAT32, 2, writable) < 0)
        return -1;
    npy_intp *d = PyArray_DIMS((PyArrayObject *)B);
    if (d[0] != n || d[1] != n) {
        PyErr_Format(PyExc_ValueError, "%s must be %lld x %lld, got %zd x %zd", name, n, n, (Py_ssize_t)d[0],
                     (Py_ssize_t)d[1]);
        return -1;
    }
    return 0;
}

/* ease_fit(indptr, indices, n_cols, l2, n_threads, B): B filled in place. */
static PyObject *py_ease_fit(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *B;
    long long n_cols;
    float l2;
    int n_threads;
    rmf_csr m;
    if (!PyArg_ParseTuple(args, "OOLfiO", &indptr, &indices, &n_cols, &l2, &n_threads, &B) ||
        parse_csr(indptr, indices, n_cols, &m) < 0 || check_square(B, "B", n_cols, 1) < 0)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ease_fit(&m, l2, n_threads, DATA(B, float), &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    Py_RETURN_NONE;
}

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

/* ease_recommend(B, (indptr, indices, n_cols), weights|None, rows, seen|None,
 * seen_rows|None, k, n_threads) -> (items, scores, len). */
static PyObject *py_ease_recommend(PyObject *self, PyObject *args)
{
    PyObject *B, *hist, *weights, *rows, *seen, *seen_rows;
    int k, n_threads;
    if (!PyArg_ParseTuple(args, "OOOOOOii", &B, &hist, &weights, &rows, &seen, &seen_rows, &k, &n_threads))
        return NULL;
    rmf_csr h, m;
    int has_hist, has_seen;
    if (check_array(B, "B", NPY_FLOAT32, 2, 0) < 0 || parse_optional_csr(hist, &h, &has_hist) < 0)
        return NULL;
    if (!has_hist) {
        PyErr_SetString(PyExc_TypeError, "history must be (indptr, indices, n_cols), not None");
        return NULL;
    }
    /* rows and seen_rows are range-checked by the core (rmf_ease_recommend, rmf_topk_rows). */
    if (check_square(B, "B", h.n_cols, 0) < 0 || check_array(rows, "rows", NPY_INT32, 1, 0) < 0 ||
        parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    if (weights != Py_None && (check_array(weights, "weights", NPY_FLOAT32, 1, 0) < 0 ||
                               check_len(weights, "weights", (npy_intp)h.indptr[h.n_rows]) < 0))
        return NULL;
    int64_t n = SIZE(rows);
    if (has_seen) {
        if (m.n_cols != h.n_cols) {
            PyErr_Format(PyExc_ValueError, "seen has %d columns but B is %d x %d", m.n_cols, h.n_cols, h.n_cols);
            return NULL;
        }
        if (check_array(seen_rows, "seen_rows", NPY_INT32, 1, 0) < 0 || check_len(seen_rows, "seen_rows", n) < 0)
            return NULL;
        const int32_t *sr = DATA(seen_rows, int32_t);
        for (int64_t r = 0; r < n; r++)
            if (sr[r] >= m.n_rows) {
                PyErr_Format(PyExc_ValueError, "seen_rows[%lld] = %d is outside [-1, %d)", (long long)r, sr[r],
                             m.n_rows);
                return NULL;
            }
    }
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be >= 1, got %d", k);
        return NULL;
    }
    PyObject *items = new_array2(n, k, NPY_INT32), *vals = new_array2(n, k, NPY_FLOAT32),
             *len = new_array1(n, NPY_INT32);
    if (!items || !vals || !len)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ease_recommend(DATA(B, float), h.n_cols, &h, weights == Py_None ? NULL : DATA(weights, float),
                                     DATA(rows, int32_t), n, has_seen ? &m : NULL,
                                     has_seen ? DATA(seen_rows, int32_t) : NULL, k, n_threads,
                                     DATA(items, int32_t), DATA(vals, float), DATA(len, int32_t), &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    return Py_BuildValue("NNN", items, vals, len);
fail:
    Py_XDECREF(items);
    Py_XDECREF(vals);
    Py_XDECREF(len);
    return NULL;
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

/* ================================================================== */
/* EASE -- end                                                         */
/* ================================================================== */

/* ================================================================== */
/* SLIST (models/slist.c) -- begin                                     */
/* ================================================================== */

static int parse_seq(PyObject *hist, rmf_seq *h); /* with the transitions, below */

/* slist_fit((indptr, items, n_items), x_weights|None, alpha, l2,
 * position_decay, window, n_threads, B, A): B filled in place, A scratch. */
static PyObject *py_slist_fit(PyObject *self, PyObject *args)
{
    PyObject *hist, *xw, *B, *A;
    rmf_slist_params p;
    int n_threads;
    rmf_seq h;
    if (!PyArg_ParseTuple(args, "OOdddiiOO", &hist, &xw, &p.alpha, &p.l2, &p.position_decay, &p.window,
                          &n_threads, &B, &A))
        return NULL;
    if (parse_seq(hist, &h) < 0 || check_square(B, "B", h.n_items, 1) < 0 ||
        check_square(A, "A", h.n_items, 1) < 0)
        return NULL;
    if (PyArray_DATA((PyArrayObject *)A) == PyArray_DATA((PyArrayObject *)B)) {
        PyErr_SetString(PyExc_ValueError, "A and B must be different arrays");
        return NULL;
    }
    if (xw != Py_None && (check_array(xw, "x_weights", NPY_FLOAT32, 1, 0) < 0 ||
                          check_len(xw, "x_weights", (npy_intp)h.indptr[h.n_users]) < 0))
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_slist_fit(&h, xw == Py_None ? NULL : DATA(xw, float), &p, n_threads, DATA(B, float),
                                DATA(A, float), &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    Py_RETURN_NONE;
}

/* ================================================================== */
/* SLIST -- end                                                        */
/* ================================================================== */

static PyObject *py_ranking_metrics(PyObject *self, PyObject *args)
{
    PyObject *recs, *rec_len, *rel_indptr, *rel_items, *per_user = NULL;
    double means[4];
    int64_t n_eval = 0;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOO", &recs, &rec_len, &rel_indptr, &rel_items) ||
        check_array(recs, "recs", NPY_INT64, 2, 0) < 0 || check_array(rec_len, "rec_len", NPY_INT32, 1, 0) < 0 ||
        check_array(rel_indptr, "rel_indptr", NPY_INT64, 1, 0) < 0 ||
        check_array(rel_items, "rel_items", NPY_INT64, 1, 0) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)recs, 0), k = PyArray_DIM((PyArrayObject *)recs, 1);
    if (check_len(rec_len, "rec_len", n) < 0 || check_len(rel_indptr, "rel_indptr", n + 1) < 0)
        return NULL;
    const int64_t *p = DATA(rel_indptr, int64_t);
    if (p[0] != 0 || p[n] != SIZE(rel_items))
        return PyErr_SetString(PyExc_ValueError, "rel_indptr must start at 0 and end at len(rel_items)"), NULL;
    if (k > INT32_MAX)
        return PyErr_SetString(PyExc_ValueError, "recs must have at most 2^31 - 1 columns"), NULL;
    if (!(per_user = new_array2(n, 4, NPY_FLOAT64)))
        return NULL;
    CALL(&per_user, 1, rmf_ranking_metrics(DATA(recs, int64_t), DATA(rec_len, int32_t), n, (int32_t)k, p,
                                           DATA(rel_items, int64_t), DATA(per_user, double), means, &n_eval, &err));
    return Py_BuildValue("N(dddd)L", per_user, means[0], means[1], means[2], means[3], (long long)n_eval);
}

static PyObject *py_coverage_popularity(PyObject *self, PyObject *args)
{
    PyObject *recs, *rec_len, *catalog, *pop_ids, *pop_values;
    double coverage = 0, avg_pop = 0;
    int64_t n_pairs = 0;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOOO", &recs, &rec_len, &catalog, &pop_ids, &pop_values) ||
        check_array(recs, "recs", NPY_INT64, 2, 0) < 0 || check_array(rec_len, "rec_len", NPY_INT32, 1, 0) < 0 ||
        check_array(catalog, "catalog", NPY_INT64, 1, 0) < 0 ||
        check_array(pop_ids, "pop_ids", NPY_INT64, 1, 0) < 0 ||
        check_array(pop_values, "pop_values", NPY_FLOAT64, 1, 0) < 0 ||
        check_len(rec_len, "rec_len", PyArray_DIM((PyArrayObject *)recs, 0)) < 0 ||
        check_len(pop_values, "pop_values", SIZE(pop_ids)) < 0)
        return NULL;
    if (PyArray_DIM((PyArrayObject *)recs, 1) > INT32_MAX)
        return PyErr_SetString(PyExc_ValueError, "recs must have at most 2^31 - 1 columns"), NULL;
    CALL(NULL, 0, rmf_coverage_popularity(DATA(recs, int64_t), DATA(rec_len, int32_t),
                                          PyArray_DIM((PyArrayObject *)recs, 0),
                                          (int32_t)PyArray_DIM((PyArrayObject *)recs, 1), DATA(catalog, int64_t),
                                          SIZE(catalog), DATA(pop_ids, int64_t), DATA(pop_values, double),
                                          SIZE(pop_ids), &coverage, &avg_pop, &n_pairs, &err));
    return Py_BuildValue("ddL", coverage, avg_pop, (long long)n_pairs);
}

/* ------------------------------------------------------------------ */
/* Models                                                             */
/* ------------------------------------------------------------------ */

/* The model table: what the glue needs of each model the core scores,
 * found by the exact kind name of its Python class (Model.kind).  A new
 * model adds one row (csrc/README.md). */
typedef struct {
    const char *kind;
    rmf_check_shape_fn check_shape;
    rmf_n_params_fn n_params;
    rmf_score_pairs_fn score_pairs;
    rmf_recommend_fn recommend;
} model_row;

static const model_row MODELS[] = {
    {"neuralmf", rmf_ncf_check_shape, rmf_ncf_n_params, rmf_ncf_score_pairs, rmf_ncf_recommend},
    {"bprmf", rmf_mf_check_shape, rmf_mf_n_params, rmf_mf_score_pairs, rmf_mf_recommend},
    /* ALS keeps BPRMF's layout [user factors | item factors]: same kernels. */
    {"als", rmf_mf_check_shape, rmf_mf_n_params, rmf_mf_score_pairs, rmf_mf_recommend},
};

static const model_row *find_model(const char *kind)
{
    for (size_t r = 0; r < sizeof MODELS / sizeof MODELS[0]; r++)
        if (strcmp(MODELS[r].kind, kind) == 0)
            return &MODELS[r];
    PyErr_Format(PyExc_ValueError, "the core has no model kind '%s'", kind);
    return NULL;
}

/* shape (n_users, n_items, emb_dim, hidden_dim), checked by the model. */
static int parse_shape(PyObject *obj, const model_row *row, rmf_shape *s)
{
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(obj, "iiii", &s->n_users, &s->n_items, &s->emb_dim, &s->hidden_dim))
        return -1;
    rmf_status st = row->check_shape(s, &err);
    return st == RMF_OK ? 0 : (raise_status(st, &err), -1);
}

/* A float32 vector of the model's parameter count (theta, Adam moments). */
static int check_theta(PyObject *theta, const char *name, const rmf_shape *s, const model_row *row, int writable)
{
    if (check_array(theta, name, NPY_FLOAT32, 1, writable) < 0)
        return -1;
    return check_len(theta, name, (npy_intp)row->n_params(s));
}

/* The index vectors of a batch: int32, all of the first one's length. */
static int check_index_arrays(PyObject **a, const char **names, int n)
{
    for (int q = 0; q < n; q++)
        if (check_array(a[q], names[q], NPY_INT32, 1, 0) < 0 || check_len(a[q], names[q], SIZE(a[0])) < 0)
            return -1;
    return 0;
}

static PyObject *score_pairs(PyObject *args, const model_row *row)
{
    PyObject *shape, *theta, *ui[2], *out = NULL;
    int n_threads;
    rmf_shape s;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOOi", &shape, &theta, &ui[0], &ui[1], &n_threads) ||
        parse_shape(shape, row, &s) < 0 || check_theta(theta, "theta", &s, row, 0) < 0 ||
        check_index_arrays(ui, (const char *[]){"user_idx", "item_idx"}, 2) < 0 ||
        !(out = new_array1(SIZE(ui[0]), NPY_FLOAT32)))
        return NULL;
    CALL(&out, 1, row->score_pairs(&s, DATA(theta, float), DATA(ui[0], int32_t), DATA(ui[1], int32_t), SIZE(ui[0]),
                                   n_threads, DATA(out, float), &err));
    return out;
}

static PyObject *recommend(PyObject *args, const model_row *row)
{
    PyObject *shape, *theta, *users, *seen, *o[3] = {NULL, NULL, NULL};
    int k, n_threads, has_seen;
    rmf_shape s;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOOii", &shape, &theta, &users, &seen, &k, &n_threads) ||
        parse_shape(shape, row, &s) < 0 || check_theta(theta, "theta", &s, row, 0) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || parse_optional_csr(seen, &m, &has_seen) < 0 ||
        new_topk(o, SIZE(users), k > 0 ? k : 0, 1) < 0)
        return NULL;
    CALL(o, 3, row->recommend(&s, DATA(theta, float), DATA(users, int32_t), SIZE(users), has_seen ? &m : NULL, k,
                              n_threads, DATA(o[0], int32_t), DATA(o[1], float), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

static PyObject *n_params(PyObject *args, const model_row *row)
{
    PyObject *shape;
    rmf_shape s;
    if (!PyArg_ParseTuple(args, "O", &shape) || parse_shape(shape, row, &s) < 0)
        return NULL;
    return PyLong_FromLongLong(row->n_params(&s));
}

/* Entry points whose first argument is the model kind. */
static PyObject *by_kind(PyObject *args, PyObject *(*fn)(PyObject *, const model_row *))
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    const char *kind = n > 0 && PyUnicode_Check(PyTuple_GET_ITEM(args, 0))
                           ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0)) : NULL;
    if (kind == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "the first argument must be the model kind (str)");
        return NULL;
    }
    const model_row *row = find_model(kind);
    PyObject *rest = row ? PyTuple_GetSlice(args, 1, n) : NULL;
    if (rest == NULL)
        return NULL;
    PyObject *r = fn(rest, row);
    Py_DECREF(rest);
    return r;
}

static PyObject *py_score_pairs(PyObject *self, PyObject *args) { return by_kind(args, score_pairs); }
static PyObject *py_recommend(PyObject *self, PyObject *args) { return by_kind(args, recommend); }
static PyObject *py_n_params(PyObject *self, PyObject *args) { return by_kind(args, n_params); }

/* ------------------------------------------------------------------ */
/* Training                                                           */
/* ------------------------------------------------------------------ */

/* Training parameters come as keywords so Python names every field; one
 * row per field of rmf_train_params. */
typedef struct {
    const char *name;
    char type; /* 'f' float, 'i' int32, 'u' uint64 (masked) */
    size_t offset;
} param_field;

#define FIELD(name, type, member) {name, type, offsetof(rmf_train_params, member)}
static const param_field TRAIN_FIELDS[] = {
    FIELD("dropout", 'f', dropout),       FIELD("lr", 'f', adam.lr),
    FIELD("beta1", 'f', adam.beta1),      FIELD("beta2", 'f', adam.beta2),
    FIELD("eps", 'f', adam.eps),          FIELD("weight_decay", 'f', adam.weight_decay),
    FIELD("batch_size", 'i', batch_size), FIELD("n_neg", 'i', n_neg),
    FIELD("lazy_adam", 'i', lazy_adam),   FIELD("n_threads", 'i', n_threads),
    FIELD("seed", 'u', seed),
};
_Static_assert(sizeof(int) == sizeof(int32_t), "lazy_adam and n_threads are stored as int32");

/* The core checks the values (rmf_train_check_params); the glue only
 * converts them, and refuses a misspelt keyword rather than silently
 * keeping a default. */
static int parse_train_params(PyObject *kw, rmf_train_params *p)
{
    rmf_train_default_params(p);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (kw != NULL && PyDict_Next(kw, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        if (name == NULL)
            return -1;
        const param_field *f = NULL;
        for (size_t q = 0; q < sizeof TRAIN_FIELDS / sizeof TRAIN_FIELDS[0] && f == NULL; q++)
            if (strcmp(name, TRAIN_FIELDS[q].name) == 0)
                f = &TRAIN_FIELDS[q];
        if (f == NULL)
            return PyErr_Format(PyExc_TypeError, "unknown training parameter '%s'", name), -1;
        char *dst = (char *)p + f->offset;
        if (f->type == 'f') {
            *(float *)dst = (float)PyFloat_AsDouble(value);
        } else if (f->type == 'i') {
            long l = PyLong_AsLong(value);
            if (!PyErr_Occurred() && (l < INT32_MIN || l > INT32_MAX))
                PyErr_Format(PyExc_ValueError, "%s is out of range: %ld", name, l);
            *(int32_t *)dst = (int32_t)l;
        } else {
            *(uint64_t *)dst = PyLong_AsUnsignedLongLongMask(value);
        }
        if (PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* What every epoch entry point takes: the model's shape, theta and the
 * Adam moments (writable, one per parameter), the step count and the
 * training keywords. */
static int parse_training(const model_row *row, PyObject *shape, PyObject *theta, PyObject *m, PyObject *v,
                          long long step, PyObject *kw, rmf_shape *s, rmf_train_params *p, rmf_opt_state *ost)
{
    if (parse_shape(shape, row, s) < 0 || check_theta(theta, "theta", s, row, 1) < 0 ||
        check_theta(m, "adam_m", s, row, 1) < 0 || check_theta(v, "adam_v", s, row, 1) < 0 ||
        parse_train_params(kw, p) < 0)
        return -1;
    *ost = (rmf_opt_state){DATA(theta, float), DATA(m, float), DATA(v, float), SIZE(theta), step};
    return 0;
}

/* Stop hook: take the GIL briefly to let Python run signal handlers, so
 * Ctrl-C in a notebook ends training after the current batch. */
static int check_signals(void *ctx)
{
    (void)ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() != 0;
    PyGILState_Release(g);
    return stop;
}

/* (mean_loss, n_done, step, interrupted, threads: the mean team size of
 * the epoch's batches).  A KeyboardInterrupt is
 * swallowed into interrupted=True so the caller can keep what was trained;
 * any other exception from a signal handler propagates. */
static PyObject *train_result(rmf_status st, const rmf_error *err, double loss, int64_t n_done,
                              const rmf_opt_state *ost)
{
    long long step = (long long)ost->step;
    if (st == RMF_ERR_INTERRUPTED) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
                return NULL;
            PyErr_Clear();
        }
        return Py_BuildValue("dLLOd", loss, (long long)n_done, step, Py_True, ost->team_threads);
    }
    if (st != RMF_OK)
        return raise_status(st, err);
    return Py_BuildValue("dLLOd", loss, (long long)n_done, step, Py_False, ost->team_threads);
}

/* Runs an epoch function writing into `loss`, `n_done`, `err` (declared
 * here) and `ost` without the GIL, and returns its train_result. */
#define TRAIN(call)                                                  \
    do {                                                             \
        double loss = 0;                                             \
        int64_t n_done = 0;                                          \
        rmf_error err = {{0}};                                       \
        rmf_status st_;                                              \
        RMF_NOGIL(st_, call);                                        \
        return train_result(st_, &err, loss, n_done, &ost);          \
    } while (0)

static PyObject *py_ncf_train_epoch(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *shape, *indptr, *indices, *theta, *m, *v;
    unsigned long long epoch;
    long long step;
    rmf_shape s;
    rmf_csr train;
    rmf_train_params p;
    rmf_opt_state ost;
    const model_row *row = find_model("neuralmf");
    if (row == NULL ||
        !PyArg_ParseTuple(args, "OOOKOOOL", &shape, &indptr, &indices, &epoch, &theta, &m, &v, &step) ||
        parse_training(row, shape, theta, m, v, step, kw, &s, &p, &ost) < 0 ||
        parse_csr(indptr, indices, s.n_items, &train) < 0)
        return NULL;
    TRAIN(rmf_ncf_train_epoch(&p, &s, &train, epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
}

static PyObject *py_bpr_train_epoch(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *shape, *uij[3], *theta, *m, *v;
    unsigned long long epoch;
    long long step;
    rmf_shape s;
    rmf_train_params p;
    rmf_opt_state ost;
    const model_row *row = find_model("bprmf");
    if (row == NULL ||
        !PyArg_ParseTuple(args, "OOOOKOOOL", &shape, &uij[0], &uij[1], &uij[2], &epoch, &theta, &m, &v, &step) ||
        parse_training(row, shape, theta, m, v, step, kw, &s, &p, &ost) < 0 ||
        check_index_arrays(uij, (const char *[]){"u", "i", "j"}, 3) < 0)
        return NULL;
    TRAIN(rmf_mf_train_epoch(&p, &s, DATA(uij[0], int32_t), DATA(uij[1], int32_t), DATA(uij[2], int32_t),
                             SIZE(uij[0]), epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
}

/* ================================================================== */
/* ALS (als.c) -- begin                                                */
/* ================================================================== */

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

/* ================================================================== */
/* ALS -- end                                                          */
/* ================================================================== */

/* ------------------------------------------------------------------ */
/* Item transitions (transition.c)                                    */
/* ------------------------------------------------------------------ */

/* hist: (indptr int64, items int32, n_items), each row in time order (not
 * sorted: the core checks it as a sequence, rmf_check_seq). */
static int parse_seq(PyObject *hist, rmf_seq *h)
{
    PyObject *indptr, *items;
    long long n_items;
    rmf_csr rows;
    if (!PyArg_ParseTuple(hist, "OOL", &indptr, &items, &n_items) || parse_csr(indptr, items, n_items, &rows) < 0)
        return -1;
    h->indptr = rows.indptr;
    h->items = rows.indices;
    h->n_users = rows.n_rows;
    h->n_items = rows.n_cols;
    return 0;
}

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
    PyObject *indptr, *indices;
    long long n_cols;
    if (!PyArg_ParseTuple(trans, "OOL", &indptr, &indices, &n_cols) || parse_csr(indptr, indices, n_cols, t) < 0 ||
        check_array(probs, "probs", NPY_FLOAT32, 1, 0) < 0 || check_len(probs, "probs", SIZE(indices)) < 0)
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

static PyObject *py_transition_recommend(PyObject *self, PyObject *args)
{
    PyObject *trans, *probs, *hist, *users, *seen, *o[3] = {NULL, NULL, NULL};
    double half_life;
    int k, n_threads, has_seen;
    rmf_seq h;
    rmf_csr t, m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "OOOOdOii", &trans, &probs, &hist, &users, &half_life, &seen, &k, &n_threads) ||
        parse_seq(hist, &h) < 0 || parse_transitions(trans, probs, &t) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || parse_optional_csr(seen, &m, &has_seen) < 0 ||
        new_topk(o, SIZE(users), k > 0 ? k : 0, 1) < 0)
        return NULL;
    CALL(o, 3, rmf_transition_recommend(&t, DATA(probs, float), &h, DATA(users, int32_t), SIZE(users), half_life,
                                        has_seen ? &m : NULL, k, n_threads, DATA(o[0], int32_t), DATA(o[1], float),
                                        DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

/* ------------------------------------------------------------------ */
/* Build facts                                                        */
/* ------------------------------------------------------------------ */

static PyObject *py_build_info(PyObject *self, PyObject *noargs)
{
    int fork = rmf_fork_state();
    return Py_BuildValue("{s:O,s:s,s:i,s:O,s:O,s:O,s:O}", "openmp", rmf_has_openmp() ? Py_True : Py_False,
                         "blas_config", rmf_blas_config(), "blas_threads", rmf_blas_get_threads(),
                         "blas_on_openmp", rmf_blas_use_openmp_threads() ? Py_True : Py_False,
                         "flush_subnormals", rmf_fp_supported() ? Py_True : Py_False,
                         "forked_child", (fork & 1) ? Py_True : Py_False,
                         "forked_one_thread", (fork & 2) ? Py_True : Py_False);
}

static PyObject *py_exact_subnormals(PyObject *self, PyObject *args)
{
    PyObject *flag = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &flag))
        return NULL;
    int before = rmf_fp_get_exact();
    if (flag != Py_None) {
        int on = PyObject_IsTrue(flag);
        if (on < 0)
            return NULL;
        rmf_fp_set_exact(on);
    }
    return PyBool_FromLong(before);
}

static PyObject *py_blas_threads(PyObject *self, PyObject *args)
{
    int n = 0;
    if (!PyArg_ParseTuple(args, "|i", &n))
        return NULL;
    int before;
    /* Without the GIL: a fit in another thread may hold the count's lock
     * for one of its regions. */
    Py_BEGIN_ALLOW_THREADS
    before = rmf_blas_get_threads();
    if (n > 0)
        rmf_blas_set_threads(n);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(before);
}

/* ------------------------------------------------------------------ */
/* Test-only entry points: the kernels the package calls inside its   */
/* epochs and scoring, exposed so tests compare them with NumPy       */
/* ------------------------------------------------------------------ */

static PyObject *py_adam_step(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *a[4]; /* theta, grad, m, v */
    const char *names[4] = {"theta", "grad", "adam_m", "adam_v"};
    long long step;
    rmf_train_params p;
    if (!PyArg_ParseTuple(args, "OOOOL", &a[0], &a[1], &a[2], &a[3], &step) || parse_train_params(kw, &p) < 0)
        return NULL;
    for (int q = 0; q < 4; q++)
        if (check_array(a[q], names[q], NPY_FLOAT32, 1, q != 1) < 0 || check_len(a[q], names[q], SIZE(a[0])) < 0)
            return NULL;
    rmf_error err = {{0}};
    rmf_status st = rmf_adam_check_step(&p.adam, step, &err);
    if (st != RMF_OK)
        return raise_status(st, &err);
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_adam_step(&p.adam, step, DATA(a[0], float), DATA(a[1], float), DATA(a[2], float), DATA(a[3], float),
                  SIZE(a[0]), p.n_threads);
    rmf_work_end();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_ncf_batch_grad(PyObject *self, PyObject *args)
{
    PyObject *shape, *theta, *ui[2], *y, *mask, *grad = NULL;
    int n_threads;
    rmf_shape s;
    double loss = 0;
    rmf_error err = {{0}};
    const model_row *row = find_model("neuralmf");
    if (row == NULL || !PyArg_ParseTuple(args, "OOOOOOi", &shape, &theta, &ui[0], &ui[1], &y, &mask, &n_threads) ||
        parse_shape(shape, row, &s) < 0 || check_theta(theta, "theta", &s, row, 0) < 0 ||
        check_index_arrays(ui, (const char *[]){"u", "i"}, 2) < 0 || check_array(y, "y", NPY_FLOAT32, 1, 0) < 0 ||
        check_len(y, "y", SIZE(ui[0])) < 0)
        return NULL;
    if (mask != Py_None && (check_array(mask, "mask", NPY_FLOAT32, 2, 0) < 0 ||
                            check_len(mask, "mask", (npy_intp)(SIZE(ui[0]) * s.hidden_dim)) < 0))
        return NULL;
    if (!(grad = new_array1((npy_intp)row->n_params(&s), NPY_FLOAT32)))
        return NULL;
    CALL(&grad, 1, rmf_ncf_batch_grad(&s, DATA(theta, float), DATA(ui[0], int32_t), DATA(ui[1], int32_t),
                                      DATA(y, float), SIZE(ui[0]), mask == Py_None ? NULL : DATA(mask, float),
                                      n_threads, DATA(grad, float), &loss, &err));
    return Py_BuildValue("dN", loss, grad);
}

static PyObject *py_bpr_batch_grad(PyObject *self, PyObject *args)
{
    PyObject *shape, *theta, *uij[3], *grad = NULL;
    int n_threads;
    rmf_shape s;
    double loss = 0;
    rmf_error err = {{0}};
    const model_row *row = find_model("bprmf");
    if (row == NULL || !PyArg_ParseTuple(args, "OOOOOi", &shape, &theta, &uij[0], &uij[1], &uij[2], &n_threads) ||
        parse_shape(shape, row, &s) < 0 || check_theta(theta, "theta", &s, row, 0) < 0 ||
        check_index_arrays(uij, (const char *[]){"u", "i", "j"}, 3) < 0 ||
        !(grad = new_array1((npy_intp)row->n_params(&s), NPY_FLOAT32)))
        return NULL;
    CALL(&grad, 1, rmf_mf_batch_grad(&s, DATA(theta, float), DATA(uij[0], int32_t), DATA(uij[1], int32_t),
                                     DATA(uij[2], int32_t), SIZE(uij[0]), n_threads, DATA(grad, float), &loss, &err));
    return Py_BuildValue("dN", loss, grad);
}

static PyObject *py_epoch_order(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    unsigned long long seed, epoch;
    int n_threads;
    PyObject *perm;
    if (!PyArg_ParseTuple(args, "nKKi", &n, &seed, &epoch, &n_threads) || !(perm = new_array1(n, NPY_INT64)))
        return NULL; /* NumPy refuses n < 0 */
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_epoch_order(DATA(perm, int64_t), (int64_t)n, seed, epoch, rmf_resolve_threads(n_threads));
    rmf_work_end();
    Py_END_ALLOW_THREADS
    return perm;
}

static PyObject *py_ncf_dropout_mask(PyObject *self, PyObject *args)
{
    float p;
    unsigned long long seed, epoch, batch;
    Py_ssize_t n;
    int hidden;
    PyObject *out = NULL;
    rmf_error err = {{0}};
    if (!PyArg_ParseTuple(args, "fKKKni", &p, &seed, &epoch, &batch, &n, &hidden) ||
        !(out = new_array2(n > 0 ? n : 0, hidden > 0 ? hidden : 0, NPY_FLOAT32)))
        return NULL;
    CALL(&out, 1, rmf_ncf_dropout_mask(p, seed, epoch, batch, (int64_t)n, hidden, DATA(out, float), &err));
    return out;
}

/* Floating-point mode and fork probes (tests/test_fpstate.py). */

/* _fp_probe(n_threads, a, b) -> (modes, caller_mode, c, jobs): what a fit
 * sees, as rmf_fp_probe_recmf; a (m x k) and b (k x n) float32, c = a b,
 * jobs = how many BLAS jobs the product was split into. */
static PyObject *py__fp_probe(PyObject *self, PyObject *args)
{
    int n_threads;
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "iOO", &n_threads, &a, &b))
        return NULL;
    if (check_array(a, "a", NPY_FLOAT32, 2, 0) < 0 || check_array(b, "b", NPY_FLOAT32, 2, 0) < 0)
        return NULL;
    npy_intp m = PyArray_DIM((PyArrayObject *)a, 0), k = PyArray_DIM((PyArrayObject *)a, 1);
    npy_intp n = PyArray_DIM((PyArrayObject *)b, 1);
    if (PyArray_DIM((PyArrayObject *)b, 0) != k) {
        PyErr_SetString(PyExc_ValueError, "a and b do not chain");
        return NULL;
    }
    int nt = rmf_resolve_threads(n_threads);
    PyObject *modes = new_array1(nt, NPY_INT32);
    PyObject *c = new_array2(m, n, NPY_FLOAT32);
    if (modes == NULL || c == NULL) {
        Py_XDECREF(modes);
        Py_XDECREF(c);
        return NULL;
    }
    int32_t caller = -1;
    long long jobs = rmf_blas_jobs_run();
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_fp_probe_recmf(nt, DATA(modes, int32_t), &caller, m, n, k, DATA(a, float), DATA(b, float),
                       DATA(c, float));
    rmf_work_end();
    Py_END_ALLOW_THREADS
    jobs = rmf_blas_jobs_run() - jobs;
    return Py_BuildValue("NiNL", modes, (int)caller, c, jobs);
}

/* _fp_probe_plain(n_threads) -> modes of a plain region's threads. */
static PyObject *py__fp_probe_plain(PyObject *self, PyObject *args)
{
    int n_threads;
    if (!PyArg_ParseTuple(args, "i", &n_threads))
        return NULL;
    int nt = rmf_resolve_threads(n_threads);
    PyObject *modes = new_array1(nt, NPY_INT32);
    if (modes == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_fp_probe_plain(nt, DATA(modes, int32_t));
    rmf_work_end();
    Py_END_ALLOW_THREADS
    return modes;
}

/* _fp_mode(mode=-1) -> the calling thread's mode; sets it when mode >= 0. */
static PyObject *py__fp_mode(PyObject *self, PyObject *args)
{
    int mode = -1;
    if (!PyArg_ParseTuple(args, "|i", &mode))
        return NULL;
    int before = rmf_fp_mode();
    if (mode >= 0)
        rmf_fp_set_mode(mode);
    return PyLong_FromLong(before);
}

/* _fork_release(on): whether the fork handler releases the thread pool. */
static PyObject *py__fork_release(PyObject *self, PyObject *args)
{
    int on;
    if (!PyArg_ParseTuple(args, "p", &on))
        return NULL;
    rmf_fork_set_release(on);
    Py_RETURN_NONE;
}

/* _pacer(mode): training loops' team-size pacer, 0 measures, 1 one
 * thread, 2 alternates, 3 full team (rmf_pacer_force). */
static PyObject *py__pacer(PyObject *self, PyObject *args)
{
    int mode;
    if (!PyArg_ParseTuple(args, "i", &mode))
        return NULL;
    if (mode < 0 || mode > 3) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0, 1, 2 or 3");
        return NULL;
    }
    rmf_pacer_force(mode);
    Py_RETURN_NONE;
}

/* _pacer_trace(nt, cost_one, cost_full) -> the team size the pacer picks
 * for each batch, given each batch's seconds on one thread and on nt
 * (float64 arrays of one length). */
static PyObject *py__pacer_trace(PyObject *self, PyObject *args)
{
    int nt;
    PyObject *one, *full;
    if (!PyArg_ParseTuple(args, "iOO", &nt, &one, &full))
        return NULL;
    if (check_array(one, "cost_one", NPY_FLOAT64, 1, 0) < 0 ||
        check_array(full, "cost_full", NPY_FLOAT64, 1, 0) < 0 ||
        check_len(full, "cost_full", PyArray_DIM((PyArrayObject *)one, 0)) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)one, 0);
    PyObject *sizes = new_array1(n, NPY_INT32);
    if (sizes == NULL)
        return NULL;
    rmf_pacer_trace(nt, n, DATA(one, double), DATA(full, double), DATA(sizes, int32_t));
    return sizes;
}

/* The per-model names of score_pairs and recommend, bound to their rows. */
#define BOUND(name, fn, kind)                                        \
    static PyObject *py_##name(PyObject *self, PyObject *args)       \
    {                                                                \
        const model_row *row = find_model(kind);                     \
        return row ? fn(args, row) : NULL;                           \
    }
BOUND(ncf_score_pairs, score_pairs, "neuralmf")
BOUND(mf_score_pairs, score_pairs, "bprmf")
BOUND(ncf_recommend, recommend, "neuralmf")
BOUND(mf_recommend, recommend, "bprmf")

/* ------------------------------------------------------------------ */
/* Module                                                             */
/* ------------------------------------------------------------------ */

#define NOARGS(name, doc) {#name, (PyCFunction)py_##name, METH_NOARGS, doc}
#define VARARGS(name, doc) {#name, (PyCFunction)py_##name, METH_VARARGS, doc}
#define KWARGS(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, doc}

static PyMethodDef methods[] = {
    VARARGS(parse_ratings, "parse_ratings(data: bytes, sep, skip_header) -> (user, item, rating, timestamp)"),
    VARARGS(temporal_split, "temporal_split(user, time, n_val, n_test, min_train) -> (order, part)"),
    VARARGS(factorize, "factorize(ids int64) -> (codes int32, uniques int64 ascending)"),
    VARARGS(build_csr, "build_csr(rows, cols, n_rows, n_cols) -> (indptr, indices)"),
    VARARGS(item_counts, "item_counts(indptr, indices, n_cols) -> counts"),
    VARARGS(popularity_order, "popularity_order(counts) -> item indices, most popular first"),
    VARARGS(sample_uniform, "sample_uniform(indptr, indices, n_cols, n_neg, seed, epoch, n_threads)"),
    VARARGS(sample_triplets,
            "sample_triplets(indptr, indices, n_cols, candidates, n, seed, epoch, n_threads) -> (u, i, j)"),
    VARARGS(transition_counts, "transition_counts((indptr, items, n_items), window, gap_decay, n_threads) -> (indptr, indices, weights)"),
    VARARGS(transition_scores,
            "transition_scores((indptr, indices, n_items), probs, history, users, half_life, n_threads) -> scores"),
    VARARGS(transition_recommend,
            "transition_recommend(trans, probs, history, users, half_life, seen|None, k, n_threads)"),
    VARARGS(topk_rows, "topk_rows(scores, seen|None, seen_rows, k, n_threads) -> (items, scores, len)"),
    VARARGS(topk_ranked, "topk_ranked(ranking, seen|None, users, k) -> (items, len)"),
    VARARGS(ease_fit, "ease_fit(indptr, indices, n_cols, l2, n_threads, B): EASE weights into B (n_cols^2 float32)"),
    VARARGS(spotrf_lower, "spotrf_lower(A, direct_max) -> info: in-place Cholesky, blocks above direct_max split"),
    VARARGS(ease_gram, "ease_gram(indptr, indices, n_cols, n_threads) -> upper triangle of X^T X (float32)"),
    VARARGS(slist_fit, "slist_fit((indptr, items, n_items), x_weights|None, alpha, l2, position_decay, window, "
                       "n_threads, B, A): SLIST weights into B, A scratch (n_items^2 float32 each)"),
    VARARGS(ease_recommend, "ease_recommend(B, (indptr, indices, n_cols), weights|None, rows, seen|None, "
                            "seen_rows|None, k, n_threads) -> (items, scores, len)"),
    VARARGS(ranking_metrics, "ranking_metrics(recs, rec_len, rel_indptr, rel_items) -> (per_user, means, n)"),
    VARARGS(coverage_popularity, "coverage_popularity(recs, rec_len, catalog, pop_ids, pop_values)"),
    VARARGS(score_pairs, "score_pairs(kind, shape, theta, u, i, n_threads) -> scores"),
    VARARGS(recommend, "recommend(kind, shape, theta, users, seen|None, k, n_threads) -> (items, scores, len)"),
    VARARGS(n_params, "n_params(kind, shape) -> int: the length of the model's theta"),
    KWARGS(ncf_train_epoch, "ncf_train_epoch(shape, indptr, indices, epoch, theta, m, v, step, **params)"),
    KWARGS(bpr_train_epoch, "bpr_train_epoch(shape, u, i, j, epoch, theta, m, v, step, **params)"),
    VARARGS(als_solve, "als_solve(indptr, indices, values|None, Y, X, regularization, alpha, solver 0=cg|1=cholesky, "
                       "cg_steps, n_threads, with_loss) -> loss|None: one ALS half-sweep, X rewritten in place"),
    NOARGS(build_info, "build_info() -> dict of build facts (OpenMP, BLAS)"),
    VARARGS(blas_threads, "blas_threads(n=0) -> previous count; sets it when n > 0"),
    VARARGS(exact_subnormals, "exact_subnormals(flag=None) -> previous setting; sets it unless None"),
    /* test-only */
    KWARGS(adam_step, "adam_step(theta, grad, m, v, step, **params): one in-place Adam step"),
    VARARGS(ncf_batch_grad, "ncf_batch_grad(shape, theta, u, i, y, mask|None, n_threads) -> (loss, grad)"),
    VARARGS(bpr_batch_grad, "bpr_batch_grad(shape, theta, u, i, j, n_threads) -> (loss, grad)"),
    VARARGS(epoch_order, "epoch_order(n, seed, epoch, n_threads) -> the shuffled pair order of a training epoch"),
    VARARGS(ncf_dropout_mask, "ncf_dropout_mask(p, seed, epoch, batch, n, hidden) -> the n x hidden mask training draws"),
    VARARGS(ncf_score_pairs, "ncf_score_pairs(shape, theta, u, i, n_threads) -> logits"),
    VARARGS(mf_score_pairs, "mf_score_pairs(shape, theta, u, i, n_threads) -> scores"),
    VARARGS(ncf_recommend, "ncf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    VARARGS(mf_recommend, "mf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    VARARGS(_fp_probe, "test only: _fp_probe(n_threads, a, b) -> (modes, caller_mode, a @ b, blas_jobs)"),
    VARARGS(_fp_probe_plain, "test only: _fp_probe_plain(n_threads) -> modes of a plain OpenMP region"),
    VARARGS(_fp_mode, "test only: _fp_mode(mode=-1) -> this thread's flush mode; sets it when >= 0"),
    VARARGS(_pacer, "test only: _pacer(mode): 0 measure, 1 one thread, 2 alternate, 3 full team"),
    VARARGS(_pacer_trace, "test only: _pacer_trace(nt, cost_one, cost_full) -> team sizes"),
    VARARGS(_fork_release, "test only: _fork_release(on): release the OpenMP pool before fork()"),
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_core", "recmf's C core: see csrc/recmf.h for the contracts.", -1, methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    rmf_blas_use_openmp_threads();
    if (rmf_runtime_init() != 0) {
        PyErr_SetString(PyExc_ImportError, "recmf: could not register its fork() handlers");
        return NULL;
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    SamplingError = PyErr_NewExceptionWithDoc(
        "recmf.SamplingError",
        "No negative item can be drawn for a user (every candidate is a positive).\n\n"
        "Attributes: user_id (the user's original id, when raised by fit) and user_index "
        "(its dense index).",
        PyExc_ValueError, NULL);
    if (SamplingError == NULL || PyModule_AddObjectRef(m, "SamplingError", SamplingError) < 0 ||
        PyModule_AddIntConstant(m, "TRANSITION_MAX_WINDOW", RMF_TRANSITION_MAX_WINDOW) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
