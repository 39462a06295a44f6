/* train.c -- the glue of training: one epoch of any mini-batch model (the
 * stop hook lets Ctrl-C end it between batches), and the test entry points
 * of the loop's parts (a batch's gradient, the epoch order, the dropout
 * draw, Adam).  Nothing here names a model. */
#include "py/glue.h"

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

/* train_epoch(kind, config, data, epoch, theta, m, v, step): one epoch
 * in place; data as the model's source says (parse_data). */
static PyObject *py_train_epoch(PyObject *self, PyObject *args)
{
    PyObject *kind, *dict, *data, *theta, *m, *v;
    unsigned long long epoch;
    long long step;
    const rmf_model *model;
    config_buf cfg;
    rmf_csr csr;
    rmf_seq seq;
    rmf_data d;
    int64_t n;
    if (!PyArg_ParseTuple(args, "OOOKOOOL", &kind, &dict, &data, &epoch, &theta, &m, &v, &step) ||
        !(model = find_model(kind)) || parse_config(model, dict, &cfg) < 0 || (n = n_params_of(model, &cfg)) < 0 ||
        check_theta(theta, "theta", n, 1) < 0 || check_theta(m, "adam_m", n, 1) < 0 ||
        check_theta(v, "adam_v", n, 1) < 0 || parse_data(model, &cfg.base, data, &csr, &seq, &d) < 0)
        return NULL;
    rmf_opt_state ost = {DATA(theta, float), DATA(m, float), DATA(v, float), n, step, 0.0};
    double loss = 0;
    int64_t n_done = 0;
    rmf_error err = {{0}};
    rmf_status st;
    RMF_NOGIL(st, rmf_train_epoch(model, &cfg, &d, epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
    return train_result(st, &err, loss, n_done, &ost);
}

/* batch_grad(kind, config, theta, batch, n_threads, mask=None) -> (loss,
 * grad): one batch's mean loss and dense gradient.  batch: (u, i, y) for
 * pairs, (u, i, j) for triplets, (indptr, items, rows) for sequences; mask
 * (n x hidden float32) a dropout mask to use, else none is drawn. */
static PyObject *py_batch_grad(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "config", "theta", "batch", "n_threads", "mask", NULL};
    PyObject *kind, *dict, *theta, *bo, *mask = Py_None, *grad = NULL;
    int n_threads;
    const rmf_model *m;
    config_buf cfg;
    int64_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOi|O", names, &kind, &dict, &theta, &bo, &n_threads, &mask) ||
        !(m = find_model(kind)) || parse_config(m, dict, &cfg) < 0 || (n = n_params_of(m, &cfg)) < 0 ||
        check_theta(theta, "theta", n, 0) < 0)
        return NULL;
    rmf_batch b = {0};
    rmf_seq seq;
    PyObject *a[3];
    int source = rmf_model_source(m);
    if (source == RMF_SOURCE_SEQUENCES) {
        PyObject *indptr, *items;
        if (parse_tuple(bo, "batch", "(indptr, items, rows)", "OOO", &indptr, &items, &a[0]) < 0)
            return NULL;
        PyObject *rows = PyTuple_Pack(2, indptr, items);
        int bad = rows == NULL || parse_rows(rows, cfg.base.n_items, &seq) < 0 ||
                  check_array(a[0], "rows", NPY_INT32, 1, 0) < 0;
        Py_XDECREF(rows);
        if (bad)
            return NULL;
        b.seq = &seq;
        b.rows = DATA(a[0], int32_t);
    } else {
        if (parse_tuple(bo, "batch", source == RMF_SOURCE_PAIRS ? "(u, i, y)" : "(u, i, j)", "OOO", &a[0], &a[1],
                        &a[2]) < 0 ||
            check_index_arrays(a, (const char *[]){"u", "i"}, 2) < 0)
            return NULL;
        if (source == RMF_SOURCE_PAIRS ? check_array(a[2], "y", NPY_FLOAT32, 1, 0) < 0
                                       : check_array(a[2], "j", NPY_INT32, 1, 0) < 0)
            return NULL;
        if (check_len(a[2], source == RMF_SOURCE_PAIRS ? "y" : "j", SIZE(a[0])) < 0)
            return NULL;
        b.u = DATA(a[0], int32_t);
        b.i = DATA(a[1], int32_t);
        if (source == RMF_SOURCE_PAIRS)
            b.y = DATA(a[2], float);
        else
            b.j = DATA(a[2], int32_t);
    }
    b.n = SIZE(a[0]);
    if (mask != Py_None) {
        if (check_array(mask, "mask", NPY_FLOAT32, 2, 0) < 0 ||
            check_len(mask, "mask", (npy_intp)b.n * PyArray_DIM((PyArrayObject *)mask, 1)) < 0)
            return NULL;
        b.mask = DATA(mask, float);
    }
    double loss = 0;
    rmf_error err = {{0}};
    if (!(grad = new_array1((npy_intp)n, NPY_FLOAT32)))
        return NULL;
    CALL(&grad, 1, rmf_train_batch_grad(m, &cfg, DATA(theta, float), &b, n_threads, DATA(grad, float), &loss,
                                        &err));
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

static PyObject *py_dropout_mask(PyObject *self, PyObject *args)
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
    CALL(&out, 1, rmf_dropout_mask(p, seed, epoch, batch, (int64_t)n, hidden, DATA(out, float), &err));
    return out;
}

/* adam_step(theta, grad, m, v, step, **params): one in-place Adam step;
 * params are the loop's Adam keywords and n_threads. */
static PyObject *py_adam_step(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *a[4]; /* theta, grad, m, v */
    const char *names[4] = {"theta", "grad", "adam_m", "adam_v"};
    long long step;
    config_buf cfg;
    memset(&cfg, 0, sizeof cfg);
    rmf_adam_default_params(&cfg.base.train.adam);
    if (!PyArg_ParseTuple(args, "OOOOL", &a[0], &a[1], &a[2], &a[3], &step))
        return NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (kw != NULL && PyDict_Next(kw, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        const rmf_field *f = name ? rmf_train_field(name) : NULL;
        if (name == NULL)
            return NULL;
        if (f == NULL)
            return PyErr_Format(PyExc_TypeError, "unknown training parameter '%s'", name);
        if (set_field(f, value, &cfg) < 0)
            return NULL;
    }
    for (int q = 0; q < 4; q++)
        if (check_array(a[q], names[q], NPY_FLOAT32, 1, q != 1) < 0 || check_len(a[q], names[q], SIZE(a[0])) < 0)
            return NULL;
    rmf_error err = {{0}};
    rmf_status st = rmf_adam_check_step(&cfg.base.train.adam, step, &err);
    if (st != RMF_OK)
        return raise_status(st, &err);
    Py_BEGIN_ALLOW_THREADS
    rmf_work_begin();
    rmf_adam_step(&cfg.base.train.adam, step, DATA(a[0], float), DATA(a[1], float), DATA(a[2], float),
                  DATA(a[3], float), SIZE(a[0]), cfg.base.train.n_threads);
    rmf_work_end();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyMethodDef rmf_py_train_methods[] = {
    VARARGS(train_epoch, "train_epoch(kind, config, data, epoch, theta, m, v, step) -> "
                         "(loss, n_done, step, interrupted, threads)"),
    KWARGS(batch_grad, "batch_grad(kind, config, theta, batch, n_threads, mask=None) -> (loss, grad)"),
    VARARGS(epoch_order, "epoch_order(n, seed, epoch, n_threads) -> the shuffled example order of an epoch"),
    VARARGS(dropout_mask, "dropout_mask(p, seed, epoch, batch, n, hidden) -> the n x hidden mask training draws"),
    KWARGS(adam_step, "adam_step(theta, grad, m, v, step, **params): one in-place Adam step"),
    {NULL, NULL, 0, NULL},
};
