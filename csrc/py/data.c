/* data.c -- the glue of the data core: parsing, the temporal split,
 * factorization and CSR, popularity counts, negative sampling. */
#include "py/glue.h"

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


PyMethodDef rmf_py_data_methods[] = {
    VARARGS(parse_ratings, "parse_ratings(data: bytes, sep, skip_header) -> (user, item, rating, timestamp)"),
    VARARGS(temporal_split, "temporal_split(user, time, n_val, n_test, min_train) -> (order, part)"),
    VARARGS(factorize, "factorize(ids int64) -> (codes int32, uniques int64 ascending)"),
    VARARGS(build_csr, "build_csr(rows, cols, n_rows, n_cols) -> (indptr, indices)"),
    VARARGS(item_counts, "item_counts(indptr, indices, n_cols) -> counts"),
    VARARGS(popularity_order, "popularity_order(counts) -> item indices, most popular first"),
    VARARGS(sample_uniform, "sample_uniform(indptr, indices, n_cols, n_neg, seed, epoch, n_threads)"),
    VARARGS(sample_triplets,
            "sample_triplets(indptr, indices, n_cols, candidates, n, seed, epoch, n_threads) -> (u, i, j)"),
    {NULL, NULL, 0, NULL},
};
