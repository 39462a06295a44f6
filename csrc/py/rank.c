/* rank.c -- the glue of top-k selection and the ranking metrics. */
#include "py/glue.h"

static PyObject *py_topk_rows(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"scores", "seen", "seen_rows", "k", "n_threads", "allowed", NULL};
    PyObject *scores, *seen, *seen_rows, *allowed = Py_None, *o[3] = {NULL, NULL, NULL};
    int k, n_threads, has_seen;
    const uint8_t *cand;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOii|O", names, &scores, &seen, &seen_rows, &k, &n_threads,
                                     &allowed) ||
        check_array(scores, "scores", NPY_FLOAT32, 2, 0) < 0 || parse_optional_csr(seen, &m, &has_seen) < 0)
        return NULL;
    npy_intp n_rows = PyArray_DIM((PyArrayObject *)scores, 0), n_cols = PyArray_DIM((PyArrayObject *)scores, 1);
    if (has_seen && (check_array(seen_rows, "seen_rows", NPY_INT32, 1, 0) < 0 ||
                     check_len(seen_rows, "seen_rows", n_rows) < 0))
        return NULL;
    if (parse_allowed(allowed, n_cols, &cand) < 0)
        return NULL;
    if (new_topk(o, n_rows, k > 0 ? k : 0, 1) < 0)
        return NULL;
    CALL(o, 3, rmf_topk_rows(DATA(scores, float), n_rows, (int32_t)n_cols, has_seen ? &m : NULL,
                             has_seen ? DATA(seen_rows, int32_t) : NULL, cand, k, n_threads, DATA(o[0], int32_t),
                             DATA(o[1], float), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

static PyObject *py_topk_ranked(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"ranking", "seen", "users", "k", "allowed", NULL};
    PyObject *ranking, *seen, *users, *allowed = Py_None, *o[3] = {NULL, NULL, NULL};
    int k, has_seen;
    const uint8_t *cand;
    rmf_csr m;
    rmf_error err = {{0}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOi|O", names, &ranking, &seen, &users, &k, &allowed) ||
        check_array(ranking, "ranking", NPY_INT32, 1, 0) < 0 || check_array(users, "users", NPY_INT32, 1, 0) < 0 ||
        parse_optional_csr(seen, &m, &has_seen) < 0 ||
        /* the mask's own length (any): read only once it is an array (a
         * Python int here segfaulted, tests/test_fuzz.py) */
        parse_allowed(allowed, PyArray_Check(allowed) ? PyArray_SIZE((PyArrayObject *)allowed) : 0, &cand) < 0 ||
        new_topk(o, SIZE(users), k > 0 ? k : 0, 0) < 0)
        return NULL;
    CALL(o, 3, rmf_topk_ranked(DATA(ranking, int32_t), (int32_t)SIZE(ranking), has_seen ? &m : NULL,
                               DATA(users, int32_t), SIZE(users), cand,
                               cand ? (int32_t)PyArray_SIZE((PyArrayObject *)allowed) : 0, k, DATA(o[0], int32_t),
                               DATA(o[2], int32_t), &err));
    PyObject *items_len[2] = {o[0], o[2]};
    return pack(items_len, 2);
}

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


PyMethodDef rmf_py_rank_methods[] = {
    KWARGS(topk_rows, "topk_rows(scores, seen|None, seen_rows, k, n_threads, allowed=None) -> (items, scores, len)"),
    KWARGS(topk_ranked, "topk_ranked(ranking, seen|None, users, k, allowed=None) -> (items, len)"),
    VARARGS(ranking_metrics, "ranking_metrics(recs, rec_len, rel_indptr, rel_items) -> (per_user, means, n)"),
    VARARGS(coverage_popularity, "coverage_popularity(recs, rec_len, catalog, pop_ids, pop_values)"),
    {NULL, NULL, 0, NULL},
};
