/*
 * module.c -- the only file that includes Python.h and NumPy.
 *
 * Each function: parse and check arguments (exact dtype, C-contiguous,
 * aligned, writable where written; a TypeError/ValueError naming the
 * argument otherwise), allocate outputs with NumPy, release the GIL around
 * the core call, and map the core's status to an exception in one place
 * (raise_status).  The Python layer (recmf/) prepares arrays, so these
 * checks are the last line of defence, not the user-facing API.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL RECMF_ARRAY_API
#include <numpy/arrayobject.h>

#include <string.h>

#include "recmf.h"

static PyObject *SamplingError; /* recmf.SamplingError, a ValueError */

/* ------------------------------------------------------------------ */
/* Errors                                                             */
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

/* ------------------------------------------------------------------ */
/* Array checks                                                       */
/* ------------------------------------------------------------------ */

/* Borrowed obj must be an ndarray of exactly `type`, `ndim` dimensions
 * (-1: any), C-contiguous and aligned; writable when `writable`. */
static int check_array(PyObject *obj, const char *name, int type, int ndim, int writable)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array, got %s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type) {
        PyArray_Descr *want = PyArray_DescrFromType(type);
        PyErr_Format(PyExc_TypeError, "%s must have dtype %S, got %S", name, (PyObject *)want,
                     (PyObject *)PyArray_DESCR(a));
        Py_XDECREF(want);
        return -1;
    }
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got %d dimensions", name, ndim,
                     PyArray_NDIM(a));
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned", name);
        return -1;
    }
    if (writable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writable", name);
        return -1;
    }
    return 0;
}

static int check_len(PyObject *obj, const char *name, npy_intp want)
{
    npy_intp got = PyArray_SIZE((PyArrayObject *)obj);
    if (got != want) {
        PyErr_Format(PyExc_ValueError, "%s must have %zd elements, got %zd", name, (Py_ssize_t)want,
                     (Py_ssize_t)got);
        return -1;
    }
    return 0;
}

#define DATA(obj, type) ((type *)PyArray_DATA((PyArrayObject *)(obj)))
#define SIZE(obj) ((int64_t)PyArray_SIZE((PyArrayObject *)(obj)))

static PyObject *new_array1(npy_intp n, int type)
{
    npy_intp dims[1] = {n};
    return PyArray_ZEROS(1, dims, type, 0);
}

static PyObject *new_array2(npy_intp n, npy_intp m, int type)
{
    npy_intp dims[2] = {n, m};
    return PyArray_ZEROS(2, dims, type, 0);
}

/* A CSR passed as (indptr int64, indices int32, n_cols): checks shapes and
 * that the structure is sound, since the core trusts it.  Rows must be
 * sorted and distinct when `sorted` (a matrix), not otherwise (a sequence
 * per row, as rmf_seq). */
static int parse_rows(PyObject *indptr, PyObject *indices, long long n_cols, int sorted, rmf_csr *out)
{
    if (check_array(indptr, "indptr", NPY_INT64, 1, 0) < 0 ||
        check_array(indices, "indices", NPY_INT32, 1, 0) < 0)
        return -1;
    int64_t n_rows = SIZE(indptr) - 1;
    if (n_rows < 0 || n_rows > INT32_MAX || n_cols < 0 || n_cols > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "indptr must have n_rows + 1 entries and n_cols must fit in int32");
        return -1;
    }
    const int64_t *p = DATA(indptr, int64_t);
    const int32_t *ix = DATA(indices, int32_t);
    if (p[0] != 0 || p[n_rows] != SIZE(indices)) {
        PyErr_SetString(PyExc_ValueError, "indptr must start at 0 and end at len(indices)");
        return -1;
    }
    for (int64_t u = 0; u < n_rows; u++) {
        if (p[u + 1] < p[u]) {
            PyErr_Format(PyExc_ValueError, "indptr must be non-decreasing (row %lld)", (long long)u);
            return -1;
        }
        for (int64_t k = p[u]; k < p[u + 1]; k++) {
            if (ix[k] < 0 || ix[k] >= n_cols || (sorted && k > p[u] && ix[k] <= ix[k - 1])) {
                PyErr_Format(PyExc_ValueError, "indices of row %lld must be %sin [0, %lld)", (long long)u,
                             sorted ? "sorted, distinct and " : "", n_cols);
                return -1;
            }
        }
    }
    out->indptr = p;
    out->indices = ix;
    out->n_rows = (int32_t)n_rows;
    out->n_cols = (int32_t)n_cols;
    return 0;
}

static int parse_csr(PyObject *indptr, PyObject *indices, long long n_cols, rmf_csr *out)
{
    return parse_rows(indptr, indices, n_cols, 1, out);
}

static int check_index_range(PyObject *arr, const char *name, int32_t bound)
{
    const int32_t *a = DATA(arr, int32_t);
    int64_t n = SIZE(arr);
    for (int64_t k = 0; k < n; k++)
        if (a[k] < 0 || a[k] >= bound) {
            PyErr_Format(PyExc_ValueError, "%s[%lld] = %d is outside [0, %d)", name, (long long)k,
                         a[k], bound);
            return -1;
        }
    return 0;
}

/* Cuts a 1-D output down to its first n entries (the core filled fewer
 * than its capacity); 0, or -1 with an exception. */
static int shrink(PyObject *arr, npy_intp n)
{
    PyArray_Dims shape = {&n, 1};
    PyObject *r = PyArray_Resize((PyArrayObject *)arr, &shape, 0, NPY_CORDER);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* After the core call that filled out: out, or the exception for st (out
 * released). */
static PyObject *array_result(rmf_status st, const rmf_error *err, PyObject *out)
{
    if (st == RMF_OK)
        return out;
    Py_DECREF(out);
    return raise_status(st, err);
}

/* ------------------------------------------------------------------ */
/* Data core                                                          */
/* ------------------------------------------------------------------ */

static PyObject *py_parse_ratings(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    const char *sep;
    long long skip_header;
    if (!PyArg_ParseTuple(args, "y*sL", &buf, &sep, &skip_header))
        return NULL;
    PyObject *user = NULL, *item = NULL, *rating = NULL, *ts = NULL, *result = NULL;
    int64_t cap = rmf_count_lines(buf.buf, buf.len);
    user = new_array1(cap, NPY_INT64);
    item = new_array1(cap, NPY_INT64);
    rating = new_array1(cap, NPY_FLOAT64);
    ts = new_array1(cap, NPY_INT64);
    if (!user || !item || !rating || !ts)
        goto done;
    rmf_error err = {{0}};
    int64_t n = 0;
    rmf_status st;
    RMF_NOGIL(st, rmf_parse_ratings(buf.buf, buf.len, sep, skip_header, cap, DATA(user, int64_t),
                                    DATA(item, int64_t), DATA(rating, double), DATA(ts, int64_t),
                                    &n, &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto done;
    }
    /* Shrink to the rows found: the line count was an upper bound. */
    PyObject *arrays[4] = {user, item, rating, ts};
    for (int a = 0; a < 4; a++)
        if (shrink(arrays[a], (npy_intp)n) < 0)
            goto done;
    result = PyTuple_Pack(4, user, item, rating, ts);
done:
    PyBuffer_Release(&buf);
    Py_XDECREF(user);
    Py_XDECREF(item);
    Py_XDECREF(rating);
    Py_XDECREF(ts);
    return result;
}

static PyObject *py_temporal_split(PyObject *self, PyObject *args)
{
    PyObject *user, *time;
    long long n_val, n_test, min_train;
    if (!PyArg_ParseTuple(args, "OOLLL", &user, &time, &n_val, &n_test, &min_train))
        return NULL;
    if (check_array(user, "user", NPY_INT64, 1, 0) < 0 || check_array(time, "time", NPY_INT64, 1, 0) < 0 ||
        check_len(time, "time", SIZE(user)) < 0)
        return NULL;
    int64_t n = SIZE(user);
    PyObject *order = new_array1(n, NPY_INT64), *part = new_array1(n, NPY_INT8);
    if (!order || !part)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_temporal_split(DATA(user, int64_t), DATA(time, int64_t), n, n_val, n_test,
                                     min_train, DATA(order, int64_t), DATA(part, int8_t), &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    return Py_BuildValue("NN", order, part);
fail:
    Py_XDECREF(order);
    Py_XDECREF(part);
    return NULL;
}

static PyObject *py_factorize(PyObject *self, PyObject *args)
{
    PyObject *ids;
    if (!PyArg_ParseTuple(args, "O", &ids))
        return NULL;
    if (check_array(ids, "ids", NPY_INT64, 1, 0) < 0)
        return NULL;
    int64_t n = SIZE(ids), n_unique = 0;
    PyObject *codes = new_array1(n, NPY_INT32), *uniques = new_array1(n, NPY_INT64);
    if (!codes || !uniques)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_factorize(DATA(ids, int64_t), n, DATA(codes, int32_t), DATA(uniques, int64_t),
                                &n_unique, &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    PyArray_Dims shape = {(npy_intp[]){(npy_intp)n_unique}, 1};
    PyObject *r = PyArray_Resize((PyArrayObject *)uniques, &shape, 0, NPY_CORDER);
    if (r == NULL)
        goto fail;
    Py_DECREF(r);
    return Py_BuildValue("NN", codes, uniques);
fail:
    Py_XDECREF(codes);
    Py_XDECREF(uniques);
    return NULL;
}

static PyObject *py_build_csr(PyObject *self, PyObject *args)
{
    PyObject *rows, *cols;
    int n_rows, n_cols;
    if (!PyArg_ParseTuple(args, "OOii", &rows, &cols, &n_rows, &n_cols))
        return NULL;
    if (check_array(rows, "rows", NPY_INT32, 1, 0) < 0 || check_array(cols, "cols", NPY_INT32, 1, 0) < 0 ||
        check_len(cols, "cols", SIZE(rows)) < 0)
        return NULL;
    int64_t n = SIZE(rows), nnz = 0;
    PyObject *indptr = new_array1((npy_intp)n_rows + 1, NPY_INT64), *indices = new_array1(n, NPY_INT32);
    if (!indptr || !indices)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_build_csr(DATA(rows, int32_t), DATA(cols, int32_t), n, n_rows, n_cols,
                                DATA(indptr, int64_t), DATA(indices, int32_t), &nnz, &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    if (shrink(indices, (npy_intp)nnz) < 0)
        goto fail;
    return Py_BuildValue("NN", indptr, indices);
fail:
    Py_XDECREF(indptr);
    Py_XDECREF(indices);
    return NULL;
}

static PyObject *py_item_counts(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices;
    long long n_cols;
    rmf_csr m;
    if (!PyArg_ParseTuple(args, "OOL", &indptr, &indices, &n_cols) || parse_csr(indptr, indices, n_cols, &m) < 0)
        return NULL;
    PyObject *counts = new_array1((npy_intp)n_cols, NPY_INT64);
    if (counts == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_item_counts(&m, DATA(counts, int64_t));
    rmf_work_end();
    Py_END_ALLOW_THREADS
    return counts;
}

static PyObject *py_popularity_order(PyObject *self, PyObject *args)
{
    PyObject *counts;
    if (!PyArg_ParseTuple(args, "O", &counts) || check_array(counts, "counts", NPY_INT64, 1, 0) < 0)
        return NULL;
    if (SIZE(counts) > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "counts has more than 2^31 - 1 items");
        return NULL;
    }
    int32_t n = (int32_t)SIZE(counts);
    PyObject *order = new_array1(n, NPY_INT32);
    if (order == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_popularity_order(DATA(counts, int64_t), n, DATA(order, int32_t), &err));
    if (st != RMF_OK) {
        Py_DECREF(order);
        return raise_status(st, &err);
    }
    return order;
}

static PyObject *py_sample_uniform(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices;
    long long n_cols;
    int n_neg, n_threads;
    unsigned long long seed, epoch;
    rmf_csr m;
    if (!PyArg_ParseTuple(args, "OOLiKKi", &indptr, &indices, &n_cols, &n_neg, &seed, &epoch, &n_threads) ||
        parse_csr(indptr, indices, n_cols, &m) < 0)
        return NULL;
    if (n_neg < 1) {
        PyErr_Format(PyExc_ValueError, "n_neg must be >= 1, got %d", n_neg);
        return NULL;
    }
    PyObject *out = new_array1((npy_intp)(SIZE(indices) * n_neg), NPY_INT32);
    if (out == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_sample_uniform(&m, n_neg, seed, epoch, n_threads, DATA(out, int32_t), &err));
    return array_result(st, &err, out);
}

static PyObject *py_sample_triplets(PyObject *self, PyObject *args)
{
    PyObject *indptr, *indices, *cand;
    long long n_cols, n_triplets;
    unsigned long long seed, epoch;
    int n_threads;
    rmf_csr m;
    if (!PyArg_ParseTuple(args, "OOLOLKKi", &indptr, &indices, &n_cols, &cand, &n_triplets, &seed, &epoch,
                          &n_threads) ||
        parse_csr(indptr, indices, n_cols, &m) < 0 || check_array(cand, "candidates", NPY_INT32, 1, 0) < 0)
        return NULL;
    if (n_triplets < 0) {
        PyErr_Format(PyExc_ValueError, "triplets_per_epoch must be >= 0, got %lld", n_triplets);
        return NULL;
    }
    PyObject *u = new_array1(n_triplets, NPY_INT32), *i = new_array1(n_triplets, NPY_INT32),
             *j = new_array1(n_triplets, NPY_INT32);
    if (!u || !i || !j)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_sample_triplets(&m, DATA(cand, int32_t), (int32_t)SIZE(cand), n_triplets, seed, epoch,
                                      n_threads, DATA(u, int32_t), DATA(i, int32_t), DATA(j, int32_t), &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    return Py_BuildValue("NNN", u, i, j);
fail:
    Py_XDECREF(u);
    Py_XDECREF(i);
    Py_XDECREF(j);
    return NULL;
}

/* seen: (indptr, indices, n_cols) or None. */
static int parse_optional_csr(PyObject *seen, rmf_csr *m, int *present)
{
    *present = 0;
    if (seen == Py_None)
        return 0;
    PyObject *indptr, *indices;
    long long n_cols;
    if (!PyArg_ParseTuple(seen, "OOL", &indptr, &indices, &n_cols))
        return -1;
    if (parse_csr(indptr, indices, n_cols, m) < 0)
        return -1;
    *present = 1;
    return 0;
}

static PyObject *py_topk_rows(PyObject *self, PyObject *args)
{
    PyObject *scores, *seen, *seen_rows;
    int k, n_threads;
    if (!PyArg_ParseTuple(args, "OOOii", &scores, &seen, &seen_rows, &k, &n_threads))
        return NULL;
    if (check_array(scores, "scores", NPY_FLOAT32, 2, 0) < 0)
        return NULL;
    rmf_csr m;
    int has_seen;
    if (parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    npy_intp n_rows = PyArray_DIM((PyArrayObject *)scores, 0), n_cols = PyArray_DIM((PyArrayObject *)scores, 1);
    if (has_seen && (check_array(seen_rows, "seen_rows", NPY_INT32, 1, 0) < 0 ||
                     check_len(seen_rows, "seen_rows", n_rows) < 0))
        return NULL;
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be >= 1, got %d", k);
        return NULL;
    }
    PyObject *items = new_array2(n_rows, k, NPY_INT32), *vals = new_array2(n_rows, k, NPY_FLOAT32),
             *len = new_array1(n_rows, NPY_INT32);
    if (!items || !vals || !len)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_topk_rows(DATA(scores, float), n_rows, (int32_t)n_cols, has_seen ? &m : NULL,
                                has_seen ? DATA(seen_rows, int32_t) : NULL, k, n_threads, DATA(items, int32_t),
                                DATA(vals, float), DATA(len, int32_t), &err));
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

static PyObject *py_topk_ranked(PyObject *self, PyObject *args)
{
    PyObject *ranking, *seen, *users;
    int k;
    if (!PyArg_ParseTuple(args, "OOOi", &ranking, &seen, &users, &k))
        return NULL;
    if (check_array(ranking, "ranking", NPY_INT32, 1, 0) < 0 || check_array(users, "users", NPY_INT32, 1, 0) < 0)
        return NULL;
    rmf_csr m;
    int has_seen;
    if (parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be >= 1, got %d", k);
        return NULL;
    }
    if (has_seen && check_index_range(ranking, "ranking", m.n_cols) < 0)
        return NULL;
    int64_t n = SIZE(users);
    PyObject *items = new_array2(n, k, NPY_INT32), *len = new_array1(n, NPY_INT32);
    if (!items || !len)
        goto fail;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_topk_ranked(DATA(ranking, int32_t), (int32_t)SIZE(ranking), has_seen ? &m : NULL,
                                  DATA(users, int32_t), n, k, DATA(items, int32_t), DATA(len, int32_t), &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto fail;
    }
    return Py_BuildValue("NN", items, len);
fail:
    Py_XDECREF(items);
    Py_XDECREF(len);
    return NULL;
}

static PyObject *py_ranking_metrics(PyObject *self, PyObject *args)
{
    PyObject *recs, *rec_len, *rel_indptr, *rel_items;
    if (!PyArg_ParseTuple(args, "OOOO", &recs, &rec_len, &rel_indptr, &rel_items))
        return NULL;
    if (check_array(recs, "recs", NPY_INT64, 2, 0) < 0 || check_array(rec_len, "rec_len", NPY_INT32, 1, 0) < 0 ||
        check_array(rel_indptr, "rel_indptr", NPY_INT64, 1, 0) < 0 ||
        check_array(rel_items, "rel_items", NPY_INT64, 1, 0) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)recs, 0);
    npy_intp k = PyArray_DIM((PyArrayObject *)recs, 1);
    if (check_len(rec_len, "rec_len", n) < 0 || check_len(rel_indptr, "rel_indptr", n + 1) < 0)
        return NULL;
    const int64_t *p = DATA(rel_indptr, int64_t);
    if (p[0] != 0 || p[n] != SIZE(rel_items)) {
        PyErr_SetString(PyExc_ValueError, "rel_indptr must start at 0 and end at len(rel_items)");
        return NULL;
    }
    for (npy_intp u = 0; u < n; u++)
        if (p[u + 1] < p[u]) {
            PyErr_SetString(PyExc_ValueError, "rel_indptr must be non-decreasing");
            return NULL;
        }
    if (k < 1 || k > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "recs must have between 1 and 2^31 - 1 columns");
        return NULL;
    }
    PyObject *per_user = new_array2(n, 4, NPY_FLOAT64);
    if (per_user == NULL)
        return NULL;
    double means[4];
    int64_t n_eval = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ranking_metrics(DATA(recs, int64_t), DATA(rec_len, int32_t), n, (int32_t)k, p,
                                      DATA(rel_items, int64_t), DATA(per_user, double), means, &n_eval, &err));
    if (st != RMF_OK) {
        Py_DECREF(per_user);
        return raise_status(st, &err);
    }
    return Py_BuildValue("N(dddd)L", per_user, means[0], means[1], means[2], means[3], (long long)n_eval);
}

/* Borrowed a (int64, 1-D) must be sorted ascending and distinct. */
static int check_sorted_distinct(PyObject *a, const char *name)
{
    const int64_t *v = DATA(a, int64_t);
    for (int64_t q = 1; q < SIZE(a); q++)
        if (v[q] <= v[q - 1]) {
            PyErr_Format(PyExc_ValueError, "%s must be sorted ascending and distinct", name);
            return -1;
        }
    return 0;
}

static PyObject *py_coverage_popularity(PyObject *self, PyObject *args)
{
    PyObject *recs, *rec_len, *catalog, *pop_ids, *pop_values;
    if (!PyArg_ParseTuple(args, "OOOOO", &recs, &rec_len, &catalog, &pop_ids, &pop_values))
        return NULL;
    if (check_array(recs, "recs", NPY_INT64, 2, 0) < 0 || check_array(rec_len, "rec_len", NPY_INT32, 1, 0) < 0 ||
        check_array(catalog, "catalog", NPY_INT64, 1, 0) < 0 ||
        check_array(pop_ids, "pop_ids", NPY_INT64, 1, 0) < 0 ||
        check_array(pop_values, "pop_values", NPY_FLOAT64, 1, 0) < 0 ||
        check_len(rec_len, "rec_len", PyArray_DIM((PyArrayObject *)recs, 0)) < 0 ||
        check_len(pop_values, "pop_values", SIZE(pop_ids)) < 0 ||
        check_sorted_distinct(catalog, "catalog") < 0 || check_sorted_distinct(pop_ids, "pop_ids") < 0)
        return NULL;
    if (PyArray_DIM((PyArrayObject *)recs, 1) > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "recs must have at most 2^31 - 1 columns");
        return NULL;
    }
    double coverage = 0, avg_pop = 0;
    int64_t n_pairs = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_coverage_popularity(DATA(recs, int64_t), DATA(rec_len, int32_t),
                                          PyArray_DIM((PyArrayObject *)recs, 0),
                                          (int32_t)PyArray_DIM((PyArrayObject *)recs, 1),
                                          DATA(catalog, int64_t), SIZE(catalog), DATA(pop_ids, int64_t),
                                          DATA(pop_values, double), SIZE(pop_ids), &coverage, &avg_pop,
                                          &n_pairs, &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    return Py_BuildValue("ddL", coverage, avg_pop, (long long)n_pairs);
}

/* ------------------------------------------------------------------ */
/* Models                                                             */
/* ------------------------------------------------------------------ */

/* shape: (n_users, n_items, emb_dim, hidden_dim) */
static int parse_shape(PyObject *obj, rmf_shape *s)
{
    if (!PyArg_ParseTuple(obj, "iiii", &s->n_users, &s->n_items, &s->emb_dim, &s->hidden_dim))
        return -1;
    if (s->n_users < 1 || s->n_items < 1 || s->emb_dim < 1 || s->hidden_dim < 0) {
        PyErr_Format(PyExc_ValueError, "bad model shape (%d users, %d items, emb_dim %d, hidden_dim %d)",
                     s->n_users, s->n_items, s->emb_dim, s->hidden_dim);
        return -1;
    }
    return 0;
}

static int64_t n_params_of(const rmf_shape *s, int is_ncf)
{
    return is_ncf ? rmf_ncf_n_params(s) : rmf_mf_n_params(s);
}

static int check_theta(PyObject *theta, const char *name, const rmf_shape *s, int is_ncf, int writable)
{
    if (check_array(theta, name, NPY_FLOAT32, 1, writable) < 0)
        return -1;
    return check_len(theta, name, (npy_intp)n_params_of(s, is_ncf));
}

/* Training parameters come as keywords so Python names every field. */
static int parse_train_params(PyObject *kw, rmf_train_params *p)
{
    rmf_train_default_params(p);
    if (kw == NULL)
        return 0;
    /* A misspelt keyword must not silently fall back to a default. */
    static const char *known[] = {"dropout", "lr", "beta1", "beta2", "eps", "weight_decay", "batch_size",
                                  "n_neg", "lazy_adam", "n_threads", "seed", NULL};
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kw, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        if (name == NULL)
            return -1;
        int found = 0;
        for (int f = 0; known[f] && !found; f++)
            found = strcmp(name, known[f]) == 0;
        if (!found) {
            PyErr_Format(PyExc_TypeError, "unknown training parameter '%s'", name);
            return -1;
        }
    }
    static const char *float_keys[] = {"dropout", "lr", "beta1", "beta2", "eps", "weight_decay", NULL};
    float *float_fields[] = {&p->dropout, &p->adam.lr, &p->adam.beta1, &p->adam.beta2, &p->adam.eps,
                             &p->adam.weight_decay};
    for (int f = 0; float_keys[f]; f++) {
        PyObject *v = PyDict_GetItemString(kw, float_keys[f]);
        if (v == NULL)
            continue;
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        *float_fields[f] = (float)d;
    }
    static const char *int_keys[] = {"batch_size", "n_neg", "lazy_adam", "n_threads", NULL};
    int tmp[4] = {p->batch_size, p->n_neg, p->lazy_adam, p->n_threads};
    for (int f = 0; int_keys[f]; f++) {
        PyObject *v = PyDict_GetItemString(kw, int_keys[f]);
        if (v == NULL)
            continue;
        long l = PyLong_AsLong(v);
        if (l == -1 && PyErr_Occurred())
            return -1;
        if (l < INT32_MIN || l > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "%s is out of range: %ld", int_keys[f], l);
            return -1;
        }
        tmp[f] = (int)l;
    }
    p->batch_size = tmp[0];
    p->n_neg = tmp[1];
    p->lazy_adam = tmp[2];
    p->n_threads = tmp[3];
    PyObject *seed = PyDict_GetItemString(kw, "seed");
    if (seed != NULL) {
        unsigned long long s = PyLong_AsUnsignedLongLongMask(seed);
        if (PyErr_Occurred())
            return -1;
        p->seed = s;
    }
    const char *msg = rmf_train_check_params(p);
    if (msg != NULL) {
        PyErr_SetString(PyExc_ValueError, msg);
        return -1;
    }
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

/* Returns (mean_loss, n_done, step, interrupted).  A KeyboardInterrupt is
 * swallowed into interrupted=True so the caller can keep what was trained;
 * any other exception from a signal handler propagates. */
static PyObject *train_result(rmf_status st, const rmf_error *err, double loss, int64_t n_done, int64_t step)
{
    if (st == RMF_ERR_INTERRUPTED) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
                return NULL;
            PyErr_Clear();
        }
        return Py_BuildValue("dLLO", loss, (long long)n_done, (long long)step, Py_True);
    }
    if (st != RMF_OK)
        return raise_status(st, err);
    return Py_BuildValue("dLLO", loss, (long long)n_done, (long long)step, Py_False);
}

static int parse_opt_state(PyObject *theta, PyObject *m, PyObject *v, long long step, const rmf_shape *s,
                           int is_ncf, rmf_opt_state *st)
{
    if (check_theta(theta, "theta", s, is_ncf, 1) < 0 || check_theta(m, "adam_m", s, is_ncf, 1) < 0 ||
        check_theta(v, "adam_v", s, is_ncf, 1) < 0)
        return -1;
    if (step < 0) {
        PyErr_Format(PyExc_ValueError, "step must be >= 0, got %lld", step);
        return -1;
    }
    st->theta = DATA(theta, float);
    st->m = DATA(m, float);
    st->v = DATA(v, float);
    st->n_params = SIZE(theta);
    st->step = step;
    return 0;
}

static PyObject *py_ncf_train_epoch(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *shape, *indptr, *indices, *theta, *m, *v;
    unsigned long long epoch;
    long long step;
    if (!PyArg_ParseTuple(args, "OOOKOOOL", &shape, &indptr, &indices, &epoch, &theta, &m, &v, &step))
        return NULL;
    rmf_shape s;
    rmf_csr train;
    rmf_train_params p;
    rmf_opt_state ost;
    if (parse_shape(shape, &s) < 0 || parse_csr(indptr, indices, s.n_items, &train) < 0 ||
        parse_train_params(kw, &p) < 0 || parse_opt_state(theta, m, v, step, &s, 1, &ost) < 0)
        return NULL;
    if (train.n_rows != s.n_users) {
        PyErr_Format(PyExc_ValueError, "the training matrix has %d rows but the model has %d users",
                     train.n_rows, s.n_users);
        return NULL;
    }
    double loss = 0;
    int64_t n_done = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ncf_train_epoch(&p, &s, &train, epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
    return train_result(st, &err, loss, n_done, ost.step);
}

static PyObject *py_bpr_train_epoch(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *shape, *u, *i, *j, *theta, *m, *v;
    unsigned long long epoch;
    long long step;
    if (!PyArg_ParseTuple(args, "OOOOKOOOL", &shape, &u, &i, &j, &epoch, &theta, &m, &v, &step))
        return NULL;
    rmf_shape s;
    rmf_train_params p;
    rmf_opt_state ost;
    if (parse_shape(shape, &s) < 0 || parse_train_params(kw, &p) < 0 ||
        parse_opt_state(theta, m, v, step, &s, 0, &ost) < 0)
        return NULL;
    if (check_array(u, "u", NPY_INT32, 1, 0) < 0 || check_array(i, "i", NPY_INT32, 1, 0) < 0 ||
        check_array(j, "j", NPY_INT32, 1, 0) < 0 || check_len(i, "i", SIZE(u)) < 0 ||
        check_len(j, "j", SIZE(u)) < 0 || check_index_range(u, "u", s.n_users) < 0 ||
        check_index_range(i, "i", s.n_items) < 0 || check_index_range(j, "j", s.n_items) < 0)
        return NULL;
    double loss = 0;
    int64_t n_done = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_bpr_train_epoch(&p, &s, DATA(u, int32_t), DATA(i, int32_t), DATA(j, int32_t), SIZE(u),
                                      epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
    return train_result(st, &err, loss, n_done, ost.step);
}

static PyObject *py_adam_step(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *theta, *g, *m, *v;
    long long step;
    if (!PyArg_ParseTuple(args, "OOOOL", &theta, &g, &m, &v, &step))
        return NULL;
    rmf_train_params p;
    if (parse_train_params(kw, &p) < 0)
        return NULL;
    if (check_array(theta, "theta", NPY_FLOAT32, 1, 1) < 0 || check_array(g, "grad", NPY_FLOAT32, 1, 0) < 0 ||
        check_array(m, "adam_m", NPY_FLOAT32, 1, 1) < 0 || check_array(v, "adam_v", NPY_FLOAT32, 1, 1) < 0 ||
        check_len(g, "grad", SIZE(theta)) < 0 || check_len(m, "adam_m", SIZE(theta)) < 0 ||
        check_len(v, "adam_v", SIZE(theta)) < 0)
        return NULL;
    if (step < 1) {
        PyErr_Format(PyExc_ValueError, "step must be >= 1, got %lld", step);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_adam_step(&p.adam, step, DATA(theta, float), DATA(g, float), DATA(m, float), DATA(v, float),
                  SIZE(theta), p.n_threads);
    rmf_work_end();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_ncf_batch_grad(PyObject *self, PyObject *args)
{
    PyObject *shape, *theta, *u, *i, *y, *mask;
    int n_threads;
    if (!PyArg_ParseTuple(args, "OOOOOOi", &shape, &theta, &u, &i, &y, &mask, &n_threads))
        return NULL;
    rmf_shape s;
    if (parse_shape(shape, &s) < 0 || check_theta(theta, "theta", &s, 1, 0) < 0)
        return NULL;
    if (check_array(u, "u", NPY_INT32, 1, 0) < 0 || check_array(i, "i", NPY_INT32, 1, 0) < 0 ||
        check_array(y, "y", NPY_FLOAT32, 1, 0) < 0 || check_len(i, "i", SIZE(u)) < 0 ||
        check_len(y, "y", SIZE(u)) < 0 || check_index_range(u, "u", s.n_users) < 0 ||
        check_index_range(i, "i", s.n_items) < 0)
        return NULL;
    if (mask != Py_None && (check_array(mask, "mask", NPY_FLOAT32, 2, 0) < 0 ||
                            check_len(mask, "mask", (npy_intp)(SIZE(u) * s.hidden_dim)) < 0))
        return NULL;
    PyObject *grad = new_array1((npy_intp)rmf_ncf_n_params(&s), NPY_FLOAT32);
    if (grad == NULL)
        return NULL;
    double loss = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ncf_batch_grad(&s, DATA(theta, float), DATA(u, int32_t), DATA(i, int32_t), DATA(y, float),
                                     SIZE(u), mask == Py_None ? NULL : DATA(mask, float), n_threads,
                                     DATA(grad, float), &loss, &err));
    if (st != RMF_OK) {
        Py_DECREF(grad);
        return raise_status(st, &err);
    }
    return Py_BuildValue("dN", loss, grad);
}

static PyObject *py_epoch_order(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    unsigned long long seed, epoch;
    int n_threads;
    if (!PyArg_ParseTuple(args, "nKKi", &n, &seed, &epoch, &n_threads))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    PyObject *perm = new_array1((npy_intp)n, NPY_INT64);
    if (perm == NULL)
        return NULL;
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
    if (!PyArg_ParseTuple(args, "fKKKni", &p, &seed, &epoch, &batch, &n, &hidden))
        return NULL;
    if (n < 0 || hidden < 1) {
        PyErr_SetString(PyExc_ValueError, "need n >= 0 rows of hidden >= 1 units");
        return NULL;
    }
    npy_intp dims[2] = {(npy_intp)n, (npy_intp)hidden};
    PyObject *out = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (out == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_ncf_dropout_mask(p, seed, epoch, batch, (int64_t)n, hidden, DATA(out, float), &err));
    return array_result(st, &err, out);
}

static PyObject *py_bpr_batch_grad(PyObject *self, PyObject *args)
{
    PyObject *shape, *theta, *u, *i, *j;
    int n_threads;
    if (!PyArg_ParseTuple(args, "OOOOOi", &shape, &theta, &u, &i, &j, &n_threads))
        return NULL;
    rmf_shape s;
    if (parse_shape(shape, &s) < 0 || check_theta(theta, "theta", &s, 0, 0) < 0)
        return NULL;
    if (check_array(u, "u", NPY_INT32, 1, 0) < 0 || check_array(i, "i", NPY_INT32, 1, 0) < 0 ||
        check_array(j, "j", NPY_INT32, 1, 0) < 0 || check_len(i, "i", SIZE(u)) < 0 ||
        check_len(j, "j", SIZE(u)) < 0 || check_index_range(u, "u", s.n_users) < 0 ||
        check_index_range(i, "i", s.n_items) < 0 || check_index_range(j, "j", s.n_items) < 0)
        return NULL;
    PyObject *grad = new_array1((npy_intp)rmf_mf_n_params(&s), NPY_FLOAT32);
    if (grad == NULL)
        return NULL;
    double loss = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_bpr_batch_grad(&s, DATA(theta, float), DATA(u, int32_t), DATA(i, int32_t),
                                     DATA(j, int32_t), SIZE(u), n_threads, DATA(grad, float), &loss, &err));
    if (st != RMF_OK) {
        Py_DECREF(grad);
        return raise_status(st, &err);
    }
    return Py_BuildValue("dN", loss, grad);
}

typedef rmf_status (*score_pairs_fn)(const rmf_shape *, const float *, const int32_t *, const int32_t *,
                                     int64_t, int, float *, rmf_error *);
typedef rmf_status (*recommend_fn)(const rmf_shape *, const float *, const int32_t *, int64_t, const rmf_csr *,
                                   int32_t, int, int32_t *, float *, int32_t *, rmf_error *);

/* The outputs of a top-K call: items (int32) and scores (float32), n x k,
 * and lengths (int32, n); 0, or -1 with an exception (also for k < 1) and
 * nothing held. */
static int topk_outputs(int64_t n, int k, PyObject *o[3])
{
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be >= 1, got %d", k);
        return -1;
    }
    o[0] = new_array2(n, k, NPY_INT32);
    o[1] = new_array2(n, k, NPY_FLOAT32);
    o[2] = new_array1(n, NPY_INT32);
    if (o[0] && o[1] && o[2])
        return 0;
    for (int q = 0; q < 3; q++)
        Py_CLEAR(o[q]);
    return -1;
}

/* After the core call that filled o: (items, scores, lengths), or the
 * exception for st (o released either way). */
static PyObject *topk_result(rmf_status st, const rmf_error *err, PyObject *o[3])
{
    if (st == RMF_OK)
        return Py_BuildValue("NNN", o[0], o[1], o[2]);
    for (int q = 0; q < 3; q++)
        Py_CLEAR(o[q]);
    return raise_status(st, err);
}

static PyObject *score_pairs(PyObject *args, int is_ncf, score_pairs_fn fn)
{
    PyObject *shape, *theta, *u, *i;
    int n_threads;
    if (!PyArg_ParseTuple(args, "OOOOi", &shape, &theta, &u, &i, &n_threads))
        return NULL;
    rmf_shape s;
    if (parse_shape(shape, &s) < 0 || check_theta(theta, "theta", &s, is_ncf, 0) < 0)
        return NULL;
    if (check_array(u, "user_idx", NPY_INT32, 1, 0) < 0 || check_array(i, "item_idx", NPY_INT32, 1, 0) < 0 ||
        check_len(i, "item_idx", SIZE(u)) < 0 || check_index_range(u, "user_idx", s.n_users) < 0 ||
        check_index_range(i, "item_idx", s.n_items) < 0)
        return NULL;
    PyObject *out = new_array1(SIZE(u), NPY_FLOAT32);
    if (out == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, fn(&s, DATA(theta, float), DATA(u, int32_t), DATA(i, int32_t), SIZE(u), n_threads,
                     DATA(out, float), &err));
    return array_result(st, &err, out);
}

static PyObject *recommend(PyObject *args, int is_ncf, recommend_fn fn)
{
    PyObject *shape, *theta, *users, *seen;
    int k, n_threads;
    if (!PyArg_ParseTuple(args, "OOOOii", &shape, &theta, &users, &seen, &k, &n_threads))
        return NULL;
    rmf_shape s;
    rmf_csr m;
    int has_seen;
    if (parse_shape(shape, &s) < 0 || check_theta(theta, "theta", &s, is_ncf, 0) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || check_index_range(users, "users", s.n_users) < 0 ||
        parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    if (has_seen && (m.n_rows != s.n_users || m.n_cols != s.n_items)) {
        PyErr_Format(PyExc_ValueError, "seen matrix is %d x %d but the model is %d x %d", m.n_rows, m.n_cols,
                     s.n_users, s.n_items);
        return NULL;
    }
    int64_t n = SIZE(users);
    PyObject *o[3];
    if (topk_outputs(n, k, o) < 0)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, fn(&s, DATA(theta, float), DATA(users, int32_t), n, has_seen ? &m : NULL, k, n_threads,
                     DATA(o[0], int32_t), DATA(o[1], float), DATA(o[2], int32_t), &err));
    return topk_result(st, &err, o);
}

static PyObject *py_ncf_score_pairs(PyObject *self, PyObject *args) { return score_pairs(args, 1, rmf_ncf_score_pairs); }
static PyObject *py_mf_score_pairs(PyObject *self, PyObject *args) { return score_pairs(args, 0, rmf_mf_score_pairs); }
static PyObject *py_ncf_recommend(PyObject *self, PyObject *args) { return recommend(args, 1, rmf_ncf_recommend); }
static PyObject *py_mf_recommend(PyObject *self, PyObject *args) { return recommend(args, 0, rmf_mf_recommend); }

static PyObject *py_n_params(PyObject *self, PyObject *args)
{
    PyObject *shape;
    const char *kind;
    if (!PyArg_ParseTuple(args, "sO", &kind, &shape))
        return NULL;
    rmf_shape s;
    if (parse_shape(shape, &s) < 0)
        return NULL;
    return PyLong_FromLongLong(n_params_of(&s, kind[0] == 'n'));
}

/* ------------------------------------------------------------------ */
/* Item transitions                                                   */
/* ------------------------------------------------------------------ */

/* hist: (indptr int64, items int32, n_items), rows in time order. */
static int parse_seq(PyObject *hist, rmf_seq *h)
{
    PyObject *indptr, *items;
    long long n_items;
    rmf_csr rows;
    if (!PyArg_ParseTuple(hist, "OOL", &indptr, &items, &n_items) ||
        parse_rows(indptr, items, n_items, 0, &rows) < 0)
        return -1;
    h->indptr = rows.indptr;
    h->items = rows.indices;
    h->n_users = rows.n_rows;
    h->n_items = rows.n_cols;
    return 0;
}

static PyObject *py_transition_counts(PyObject *self, PyObject *args)
{
    PyObject *hist;
    int window, n_threads;
    double gap_decay;
    if (!PyArg_ParseTuple(args, "Oidi", &hist, &window, &gap_decay, &n_threads))
        return NULL;
    rmf_seq h;
    if (parse_seq(hist, &h) < 0)
        return NULL;
    if (window < 1 || window > RMF_TRANSITION_MAX_WINDOW) {
        PyErr_Format(PyExc_ValueError, "window must be in [1, %d], got %d", RMF_TRANSITION_MAX_WINDOW, window);
        return NULL;
    }
    int64_t cap = rmf_transition_capacity(&h, window), nnz = 0;
    PyObject *indptr = new_array1((npy_intp)h.n_items + 1, NPY_INT64), *indices = new_array1(cap, NPY_INT32),
             *weights = new_array1(cap, NPY_FLOAT64), *result = NULL;
    if (!indptr || !indices || !weights)
        goto done;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_transition_counts(&h, window, gap_decay, n_threads, DATA(indptr, int64_t),
                                        DATA(indices, int32_t), DATA(weights, double), &nnz, &err));
    if (st != RMF_OK) {
        raise_status(st, &err);
        goto done;
    }
    if (shrink(indices, (npy_intp)nnz) < 0 || shrink(weights, (npy_intp)nnz) < 0)
        goto done;
    result = Py_BuildValue("OOO", indptr, indices, weights);
done:
    Py_XDECREF(indptr);
    Py_XDECREF(indices);
    Py_XDECREF(weights);
    return result;
}

/* trans: (indptr, indices, n_items) plus probs float32 of len(indices). */
static int parse_transitions(PyObject *trans, PyObject *probs, const rmf_seq *h, rmf_csr *t)
{
    PyObject *indptr, *indices;
    long long n_cols;
    if (!PyArg_ParseTuple(trans, "OOL", &indptr, &indices, &n_cols))
        return -1;
    if (parse_csr(indptr, indices, n_cols, t) < 0 || check_array(probs, "probs", NPY_FLOAT32, 1, 0) < 0 ||
        check_len(probs, "probs", SIZE(indices)) < 0)
        return -1;
    if (t->n_rows != t->n_cols || t->n_rows != h->n_items) {
        PyErr_Format(PyExc_ValueError, "the transition matrix is %d x %d but the history has %d items", t->n_rows,
                     t->n_cols, h->n_items);
        return -1;
    }
    return 0;
}

static PyObject *py_transition_scores(PyObject *self, PyObject *args)
{
    PyObject *trans, *probs, *hist, *users;
    double half_life;
    int n_threads;
    if (!PyArg_ParseTuple(args, "OOOOdi", &trans, &probs, &hist, &users, &half_life, &n_threads))
        return NULL;
    rmf_seq h;
    rmf_csr t;
    if (parse_seq(hist, &h) < 0 || parse_transitions(trans, probs, &h, &t) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || check_index_range(users, "users", h.n_users) < 0)
        return NULL;
    PyObject *out = new_array2(SIZE(users), h.n_items, NPY_FLOAT32);
    if (out == NULL)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_transition_scores(&t, DATA(probs, float), &h, DATA(users, int32_t), SIZE(users), half_life,
                                        n_threads, DATA(out, float), &err));
    return array_result(st, &err, out);
}

static PyObject *py_transition_recommend(PyObject *self, PyObject *args)
{
    PyObject *trans, *probs, *hist, *users, *seen;
    double half_life;
    int k, n_threads;
    if (!PyArg_ParseTuple(args, "OOOOdOii", &trans, &probs, &hist, &users, &half_life, &seen, &k, &n_threads))
        return NULL;
    rmf_seq h;
    rmf_csr t, m;
    int has_seen;
    if (parse_seq(hist, &h) < 0 || parse_transitions(trans, probs, &h, &t) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || check_index_range(users, "users", h.n_users) < 0 ||
        parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    int64_t n = SIZE(users);
    PyObject *o[3];
    if (topk_outputs(n, k, o) < 0)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_transition_recommend(&t, DATA(probs, float), &h, DATA(users, int32_t), n, half_life,
                                           has_seen ? &m : NULL, k, n_threads, DATA(o[0], int32_t),
                                           DATA(o[1], float), DATA(o[2], int32_t), &err));
    return topk_result(st, &err, o);
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

/* ------------------------------------------------------------------ */
/* Test only: floating-point mode and fork probes (tests/test_fpstate.py) */
/* ------------------------------------------------------------------ */

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

static PyObject *py_blas_threads(PyObject *self, PyObject *args)
{
    int n = 0;
    if (!PyArg_ParseTuple(args, "|i", &n))
        return NULL;
    int before = rmf_blas_get_threads();
    if (n > 0)
        rmf_blas_set_threads(n);
    return PyLong_FromLong(before);
}

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
    VARARGS(topk_rows, "topk_rows(scores, seen|None, seen_rows, k, n_threads) -> (items, scores, len)"),
    VARARGS(topk_ranked, "topk_ranked(ranking, seen|None, users, k) -> (items, len)"),
    VARARGS(ranking_metrics, "ranking_metrics(recs, rec_len, rel_indptr, rel_items) -> (per_user, means, n)"),
    VARARGS(coverage_popularity, "coverage_popularity(recs, rec_len, catalog, pop_ids, pop_values)"),
    KWARGS(adam_step, "adam_step(theta, grad, m, v, step, **params): one in-place Adam step"),
    KWARGS(ncf_train_epoch, "ncf_train_epoch(shape, indptr, indices, epoch, theta, m, v, step, **params)"),
    KWARGS(bpr_train_epoch, "bpr_train_epoch(shape, u, i, j, epoch, theta, m, v, step, **params)"),
    VARARGS(ncf_batch_grad, "ncf_batch_grad(shape, theta, u, i, y, mask|None, n_threads) -> (loss, grad)"),
    VARARGS(epoch_order, "epoch_order(n, seed, epoch, n_threads) -> the shuffled pair order of a training epoch"),
    VARARGS(ncf_dropout_mask, "ncf_dropout_mask(p, seed, epoch, batch, n, hidden) -> the n x hidden mask training draws"),
    VARARGS(bpr_batch_grad, "bpr_batch_grad(shape, theta, u, i, j, n_threads) -> (loss, grad)"),
    VARARGS(ncf_score_pairs, "ncf_score_pairs(shape, theta, u, i, n_threads) -> logits"),
    VARARGS(mf_score_pairs, "mf_score_pairs(shape, theta, u, i, n_threads) -> scores"),
    VARARGS(ncf_recommend, "ncf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    VARARGS(mf_recommend, "mf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    VARARGS(transition_counts, "transition_counts((indptr, items, n_items), window, gap_decay, n_threads) -> (indptr, indices, weights)"),
    VARARGS(transition_scores,
            "transition_scores((indptr, indices, n_items), probs, history, users, half_life, n_threads) -> scores"),
    VARARGS(transition_recommend,
            "transition_recommend(trans, probs, history, users, half_life, seen|None, k, n_threads)"),
    VARARGS(n_params, "n_params(kind 'ncf'|'mf', shape) -> int"),
    NOARGS(build_info, "build_info() -> dict of build facts (OpenMP, BLAS)"),
    VARARGS(blas_threads, "blas_threads(n=0) -> previous count; sets it when n > 0"),
    VARARGS(exact_subnormals, "exact_subnormals(flag=None) -> previous setting; sets it unless None"),
    VARARGS(_fp_probe, "test only: _fp_probe(n_threads, a, b) -> (modes, caller_mode, a @ b, blas_jobs)"),
    VARARGS(_fp_probe_plain, "test only: _fp_probe_plain(n_threads) -> modes of a plain OpenMP region"),
    VARARGS(_fp_mode, "test only: _fp_mode(mode=-1) -> this thread's flush mode; sets it when >= 0"),
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
