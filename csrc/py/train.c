/* train.c -- the glue of the training epochs: keyword parameters, the
 * stop hook that lets Ctrl-C end training between batches, and the result
 * of an epoch. */
#include "py/glue.h"

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
static int parse_training(const rmf_model *row, PyObject *shape, PyObject *theta, PyObject *m, PyObject *v,
                          long long step, PyObject *kw, rmf_shape *s, rmf_train_params *p, rmf_opt_state *ost)
{
    if (parse_shape(shape, row, s) < 0 || check_theta(theta, "theta", s, row, 1) < 0 ||
        check_theta(m, "adam_m", s, row, 1) < 0 || check_theta(v, "adam_v", s, row, 1) < 0 ||
        parse_train_params(kw, p) < 0)
        return -1;
    *ost = (rmf_opt_state){DATA(theta, float), DATA(m, float), DATA(v, float), SIZE(theta), step};
    return 0;
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
    const rmf_model *row = find_model("neuralmf");
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
    const rmf_model *row = find_model("bprmf");
    if (row == NULL ||
        !PyArg_ParseTuple(args, "OOOOKOOOL", &shape, &uij[0], &uij[1], &uij[2], &epoch, &theta, &m, &v, &step) ||
        parse_training(row, shape, theta, m, v, step, kw, &s, &p, &ost) < 0 ||
        check_index_arrays(uij, (const char *[]){"u", "i", "j"}, 3) < 0)
        return NULL;
    TRAIN(rmf_mf_train_epoch(&p, &s, DATA(uij[0], int32_t), DATA(uij[1], int32_t), DATA(uij[2], int32_t),
                             SIZE(uij[0]), epoch, &ost, check_signals, NULL, &loss, &n_done, &err));
}

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


PyMethodDef rmf_py_train_methods[] = {
    KWARGS(ncf_train_epoch, "ncf_train_epoch(shape, indptr, indices, epoch, theta, m, v, step, **params)"),
    KWARGS(bpr_train_epoch, "bpr_train_epoch(shape, u, i, j, epoch, theta, m, v, step, **params)"),
    KWARGS(adam_step, "adam_step(theta, grad, m, v, step, **params): one in-place Adam step"),
    {NULL, NULL, 0, NULL},
};
