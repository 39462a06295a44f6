/* models.c -- the glue of the model table: what a model is (its kinds,
 * fields, layout), scoring and recommending, and the solvers of
 * closed-form models.  Every entry point takes the model's kind and its
 * config as a dict; nothing here names a model. */
#include "py/glue.h"

#include <stdio.h>
#include <stdlib.h>

static const char *SOURCES[] = {"none", "pairs", "triplets", "sequences", "matrix"};

/* models() -> the kinds of the core's model table, in order. */
static PyObject *py_models(PyObject *self, PyObject *noargs)
{
    PyObject *out = PyList_New(0);
    const rmf_model *m;
    for (int r = 0; out && (m = rmf_model_at(r)) != NULL; r++) {
        PyObject *name = PyUnicode_FromString(rmf_model_name(m));
        if (name == NULL || PyList_Append(out, name) < 0) {
            Py_XDECREF(name);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(name);
    }
    return out;
}

/* A field's default, as a Python number: a float as the shortest decimal
 * that rounds to it (1e-3, not 0.0010000000474974513). */
static PyObject *field_value(const rmf_field *f, const void *cfg)
{
    const char *src = (const char *)cfg + f->offset;
    if (f->type == 'f') {
        const float x = *(const float *)src;
        char buf[32];
        for (int digits = 1; digits <= 9; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
            if (strtof(buf, NULL) == x)
                break;
        }
        return PyFloat_FromDouble(strtod(buf, NULL));
    }
    if (f->type == 'i')
        return PyLong_FromLong(*(const int32_t *)src);
    return PyLong_FromUnsignedLongLong(*(const uint64_t *)src);
}

/* model_info(kind) -> {"source", "minibatch", "fields": [(name, type,
 * default, help)]}: what the CLI and the docs read. */
static PyObject *py_model_info(PyObject *self, PyObject *kind)
{
    const rmf_model *m = find_model(kind);
    if (m == NULL)
        return NULL;
    config_buf cfg;
    rmf_model_defaults(m, &cfg);
    PyObject *fields = PyList_New(0);
    const rmf_field *f;
    for (int q = 0; fields && (f = rmf_model_field_at(m, q)) != NULL; q++) {
        PyObject *row = Py_BuildValue("(sCNs)", f->name, f->type, field_value(f, &cfg), f->help);
        if (row == NULL || PyList_Append(fields, row) < 0)
            Py_CLEAR(fields);
        Py_XDECREF(row);
    }
    if (fields == NULL)
        return NULL;
    return Py_BuildValue("{s:s,s:O,s:N}", "source", SOURCES[rmf_model_source(m)], "minibatch",
                         rmf_model_minibatch(m) ? Py_True : Py_False, "fields", fields);
}

/* layout(kind, config) -> (n_params, [(name, offset, shape, role, init,
 * init_arg)]): theta's blocks, in order. */
static PyObject *py_layout(PyObject *self, PyObject *args)
{
    PyObject *kind, *dict;
    config_buf cfg;
    const rmf_model *m;
    if (!PyArg_ParseTuple(args, "OO", &kind, &dict) || !(m = find_model(kind)) || parse_config(m, dict, &cfg) < 0)
        return NULL;
    rmf_layout L;
    rmf_error err = {{0}};
    rmf_status st = rmf_model_layout(m, &cfg, &L, &err);
    if (st != RMF_OK)
        return raise_status(st, &err);
    static const char *ROLES[] = {"dense", "table"}, *INITS[] = {"zero", "normal", "uniform"};
    PyObject *blocks = PyList_New(L.n_blocks);
    for (int b = 0; blocks && b < L.n_blocks; b++) {
        const rmf_block *k = &L.block[b];
        PyObject *shape = k->cols > 0 ? Py_BuildValue("(LL)", (long long)k->rows, (long long)k->cols)
                                      : Py_BuildValue("(L)", (long long)k->rows);
        PyObject *row = shape ? Py_BuildValue("(sLNssd)", k->name, (long long)k->offset, shape, ROLES[k->role],
                                              INITS[k->init], k->init_arg)
                              : NULL;
        if (row == NULL)
            Py_CLEAR(blocks);
        else
            PyList_SET_ITEM(blocks, b, row);
    }
    return blocks ? Py_BuildValue("LN", (long long)L.n_params, blocks) : NULL;
}

/* n_params(kind, config) -> the length of the model's theta. */
static PyObject *py_n_params(PyObject *self, PyObject *args)
{
    PyObject *kind, *dict;
    config_buf cfg;
    const rmf_model *m;
    if (!PyArg_ParseTuple(args, "OO", &kind, &dict) || !(m = find_model(kind)) || parse_config(m, dict, &cfg) < 0)
        return NULL;
    int64_t n = n_params_of(m, &cfg);
    return n < 0 ? NULL : PyLong_FromLongLong(n);
}

/* What scoring takes first: kind, config, theta (checked against the
 * layout); history (None or (indptr, items)) into h. */
static int parse_model_call(PyObject *kind, PyObject *dict, PyObject *theta, PyObject *history,
                            const rmf_model **m, config_buf *cfg, rmf_seq *h, int *has_history)
{
    int64_t n;
    if (!(*m = find_model(kind)) || parse_config(*m, dict, cfg) < 0 || (n = n_params_of(*m, cfg)) < 0 ||
        check_theta(theta, "theta", n, 0) < 0)
        return -1;
    *has_history = history != Py_None;
    return *has_history ? parse_rows(history, cfg->base.n_items, h) : 0;
}

/* score_pairs(kind, config, theta, u, i, n_threads, history=None) -> scores. */
static PyObject *py_score_pairs(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "config", "theta", "u", "i", "n_threads", "history", NULL};
    PyObject *kind, *dict, *theta, *ui[2], *history = Py_None, *out = NULL;
    int n_threads, has_history;
    const rmf_model *m;
    config_buf cfg;
    rmf_seq h;
    rmf_error err = {{0}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOi|O", names, &kind, &dict, &theta, &ui[0], &ui[1],
                                     &n_threads, &history) ||
        parse_model_call(kind, dict, theta, history, &m, &cfg, &h, &has_history) < 0 ||
        check_index_arrays(ui, (const char *[]){"user_idx", "item_idx"}, 2) < 0 ||
        !(out = new_array1(SIZE(ui[0]), NPY_FLOAT32)))
        return NULL;
    CALL(&out, 1, rmf_model_score(m, &cfg, DATA(theta, float), DATA(ui[0], int32_t), DATA(ui[1], int32_t),
                                  SIZE(ui[0]), has_history ? &h : NULL, n_threads, DATA(out, float), &err));
    return out;
}

/* recommend(kind, config, theta, users, seen|None, k, n_threads,
 * history=None, weights=None, allowed=None) -> (items, scores, len). */
static PyObject *py_recommend(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "config", "theta", "users", "seen", "k", "n_threads",
                            "history", "weights", "allowed", NULL};
    PyObject *kind, *dict, *theta, *users, *seen, *history = Py_None, *weights = Py_None, *allowed = Py_None;
    PyObject *o[3] = {NULL, NULL, NULL};
    int k, n_threads, has_seen, has_history;
    const rmf_model *m;
    config_buf cfg;
    rmf_seq h;
    rmf_csr s;
    rmf_error err = {{0}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOii|OOO", names, &kind, &dict, &theta, &users, &seen, &k,
                                     &n_threads, &history, &weights, &allowed) ||
        parse_model_call(kind, dict, theta, history, &m, &cfg, &h, &has_history) < 0 ||
        check_array(users, "users", NPY_INT32, 1, 0) < 0 || parse_optional_csr(seen, &s, &has_seen) < 0)
        return NULL;
    if (weights != Py_None &&
        (!has_history || check_array(weights, "weights", NPY_FLOAT32, 1, 0) < 0 ||
         check_len(weights, "weights", (npy_intp)h.indptr[h.n_users]) < 0))
        return has_history ? NULL : (PyErr_SetString(PyExc_ValueError, "weights need a history"), NULL);
    const uint8_t *cand;
    if (parse_allowed(allowed, cfg.base.n_items, &cand) < 0)
        return NULL;
    if (new_topk(o, SIZE(users), k > 0 ? k : 0, 1) < 0)
        return NULL;
    rmf_query q = {DATA(users, int32_t), SIZE(users), has_history ? &h : NULL,
                   weights == Py_None ? NULL : DATA(weights, float), has_seen ? &s : NULL,
                   cand};
    CALL(o, 3, rmf_model_recommend(m, &cfg, DATA(theta, float), &q, k, n_threads, DATA(o[0], int32_t),
                                   DATA(o[1], float), DATA(o[2], int32_t), &err));
    return pack(o, 3);
}

/* fit(kind, config, data, theta, n_threads): a closed-form model's
 * parameters into theta (writable), from its source's data. */
static PyObject *py_fit(PyObject *self, PyObject *args)
{
    PyObject *kind, *dict, *data, *theta;
    int n_threads;
    const rmf_model *m;
    config_buf cfg;
    rmf_csr csr;
    rmf_seq seq;
    rmf_data d;
    int64_t n;
    if (!PyArg_ParseTuple(args, "OOOOi", &kind, &dict, &data, &theta, &n_threads) || !(m = find_model(kind)) ||
        parse_config(m, dict, &cfg) < 0 || (n = n_params_of(m, &cfg)) < 0 ||
        check_theta(theta, "theta", n, 1) < 0 || parse_data(m, &cfg.base, data, &csr, &seq, &d) < 0)
        return NULL;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_model_fit(m, &cfg, &d, n_threads, DATA(theta, float), &err));
    if (st != RMF_OK)
        return raise_status(st, &err);
    Py_RETURN_NONE;
}

PyMethodDef rmf_py_model_methods[] = {
    NOARGS(models, "models() -> the kinds of the core's model table"),
    {"model_info", (PyCFunction)py_model_info, METH_O,
     "model_info(kind) -> {source, minibatch, fields: [(name, type, default, help)]}"},
    VARARGS(layout, "layout(kind, config) -> (n_params, [(name, offset, shape, role, init, init_arg)])"),
    VARARGS(n_params, "n_params(kind, config) -> int: the length of the model's theta"),
    KWARGS(score_pairs, "score_pairs(kind, config, theta, u, i, n_threads, history=None) -> scores"),
    KWARGS(recommend, "recommend(kind, config, theta, users, seen|None, k, n_threads, history=None, "
                      "weights=None, allowed=None) -> (items, scores, len)"),
    VARARGS(fit, "fit(kind, config, data, theta, n_threads): a closed-form model's theta from its data"),
    {NULL, NULL, 0, NULL},
};
