/* models.c -- the glue of the model table: score_pairs, recommend and
 * n_params by kind, and the test entry points of the models' kernels. */
#include "py/glue.h"

static PyObject *score_pairs(PyObject *args, const rmf_model *row)
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

static PyObject *recommend(PyObject *args, const rmf_model *row)
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

static PyObject *n_params(PyObject *args, const rmf_model *row)
{
    PyObject *shape;
    rmf_shape s;
    if (!PyArg_ParseTuple(args, "O", &shape) || parse_shape(shape, row, &s) < 0)
        return NULL;
    return PyLong_FromLongLong(row->n_params(&s));
}

/* Entry points whose first argument is the model kind. */
static PyObject *by_kind(PyObject *args, PyObject *(*fn)(PyObject *, const rmf_model *))
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    const char *kind = n > 0 && PyUnicode_Check(PyTuple_GET_ITEM(args, 0))
                           ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0)) : NULL;
    if (kind == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "the first argument must be the model kind (str)");
        return NULL;
    }
    const rmf_model *row = find_model(kind);
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

static PyObject *py_ncf_batch_grad(PyObject *self, PyObject *args)
{
    PyObject *shape, *theta, *ui[2], *y, *mask, *grad = NULL;
    int n_threads;
    rmf_shape s;
    double loss = 0;
    rmf_error err = {{0}};
    const rmf_model *row = find_model("neuralmf");
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
    const rmf_model *row = find_model("bprmf");
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

/* The per-model names of score_pairs and recommend, bound to their rows. */
#define BOUND(name, fn, kind)                                        \
    static PyObject *py_##name(PyObject *self, PyObject *args)       \
    {                                                                \
        const rmf_model *row = find_model(kind);                     \
        return row ? fn(args, row) : NULL;                           \
    }
BOUND(ncf_score_pairs, score_pairs, "neuralmf")
BOUND(mf_score_pairs, score_pairs, "bprmf")
BOUND(ncf_recommend, recommend, "neuralmf")
BOUND(mf_recommend, recommend, "bprmf")

PyMethodDef rmf_py_model_methods[] = {
    VARARGS(score_pairs, "score_pairs(kind, shape, theta, u, i, n_threads) -> scores"),
    VARARGS(recommend, "recommend(kind, shape, theta, users, seen|None, k, n_threads) -> (items, scores, len)"),
    VARARGS(n_params, "n_params(kind, shape) -> int: the length of the model's theta"),
    VARARGS(ncf_batch_grad, "ncf_batch_grad(shape, theta, u, i, y, mask|None, n_threads) -> (loss, grad)"),
    VARARGS(bpr_batch_grad, "bpr_batch_grad(shape, theta, u, i, j, n_threads) -> (loss, grad)"),
    VARARGS(epoch_order, "epoch_order(n, seed, epoch, n_threads) -> the shuffled pair order of a training epoch"),
    VARARGS(ncf_dropout_mask, "ncf_dropout_mask(p, seed, epoch, batch, n, hidden) -> the n x hidden mask training draws"),
    VARARGS(ncf_score_pairs, "ncf_score_pairs(shape, theta, u, i, n_threads) -> logits"),
    VARARGS(mf_score_pairs, "mf_score_pairs(shape, theta, u, i, n_threads) -> scores"),
    VARARGS(ncf_recommend, "ncf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    VARARGS(mf_recommend, "mf_recommend(shape, theta, users, seen|None, k, n_threads)"),
    {NULL, NULL, 0, NULL},
};
