/* glue.c -- what every file of the glue shares: the one mapping of a core
 * status to a Python exception, array checks, outputs, and the parsing of
 * the core's structs (CSR, sequences, model shapes). */
#include "py/glue.h"

#include <stdarg.h>

PyObject *SamplingError; /* recmf.SamplingError, a ValueError */

/* ------------------------------------------------------------------ */
/* Errors and core calls                                              */
/* ------------------------------------------------------------------ */

PyObject *raise_status(rmf_status st, const rmf_error *err)
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
int warn_fork_fallback(void)
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

/* ------------------------------------------------------------------ */
/* Ctrl-C                                                             */
/* ------------------------------------------------------------------ */

int check_signals(void *ctx)
{
    (void)ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() != 0;
    PyGILState_Release(g);
    return stop;
}

unsigned long rmf_py_main_ident = 0;

#if defined(__unix__) || defined(__APPLE__)
/* While the main thread is in a call, SIGINT goes first to this handler,
 * which marks it pending for the call's polls (rmf_stop_signal) and then
 * runs the handler that was installed -- Python's, which trips its own
 * flag as usual.  Installed only over a handler function (never over
 * SIG_DFL or SIG_IGN, whose meaning it would change) and put back only if
 * still in place (a Python handler may install another meanwhile). */
static struct sigaction chained_int;
static int chain_depth = 0;

static void on_sigint(int sig, siginfo_t *info, void *uctx)
{
    rmf_stop_signal();
    if (chained_int.sa_flags & SA_SIGINFO)
        chained_int.sa_sigaction(sig, info, uctx);
    else if (chained_int.sa_handler != SIG_DFL && chained_int.sa_handler != SIG_IGN)
        chained_int.sa_handler(sig);
}

static void chain_sigint(void)
{
    if (chain_depth++ > 0)
        return;
    struct sigaction cur, mine;
    if (sigaction(SIGINT, NULL, &cur) != 0 || cur.sa_sigaction == on_sigint ||
        (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN)))
        return;
    chained_int = cur;
    mine = cur;
    mine.sa_sigaction = on_sigint;
    mine.sa_flags = cur.sa_flags | SA_SIGINFO;
    sigaction(SIGINT, &mine, NULL);
}

static void unchain_sigint(void)
{
    if (--chain_depth > 0)
        return;
    struct sigaction cur;
    if (sigaction(SIGINT, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigint)
        sigaction(SIGINT, &chained_int, NULL);
}
#else
static void chain_sigint(void) {}
static void unchain_sigint(void) {}
#endif

int stop_begin(rmf_stop *s)
{
    int main = PyThread_get_thread_ident() == rmf_py_main_ident;
    rmf_stop_begin(s, main ? check_signals : NULL, NULL);
    if (main)
        chain_sigint();
    return main;
}

int stop_end(rmf_stop *s, int main)
{
    if (main)
        unchain_sigint();
    return rmf_stop_end(s);
}

/* ------------------------------------------------------------------ */
/* Arrays                                                             */
/* ------------------------------------------------------------------ */

/* Borrowed obj must be an ndarray of exactly `type`, `ndim` dimensions
 * (-1: any), C-contiguous and aligned; writable when `writable`. */
int check_array(PyObject *obj, const char *name, int type, int ndim, int writable)
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

int check_len(PyObject *obj, const char *name, npy_intp want)
{
    npy_intp got = PyArray_SIZE((PyArrayObject *)obj);
    if (got != want)
        return PyErr_Format(PyExc_ValueError, "%s must have %zd elements, got %zd", name, (Py_ssize_t)want,
                            (Py_ssize_t)got), -1;
    return 0;
}


/* Bytes of memory the system can give now (MemAvailable), -1 if unknown. */
static double available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    double kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

/* New zeroed outputs: n, or n x m.  An output sized by an argument (k, a
 * count, n_items) that the memory cannot hold is a MemoryError saying so
 * before it is allocated: zeroed pages cost nothing until the core fills
 * them, and then the process would be killed (issue 20, the resource kind).
 * Half the available memory at most: the core's working memory (a
 * transition count's cursors, a top-k's heaps) can be as big again. */
PyObject *new_array2(npy_intp n, npy_intp m, int type)
{
    npy_intp dims[2] = {n, m};
    int itemsize = type == NPY_INT8 ? 1 : type == NPY_INT32 || type == NPY_FLOAT32 ? 4 : 8;
    double need = (double)n * (double)(m < 0 ? 1 : m) * (double)itemsize;
    if (need > (double)(1 << 30)) {
        double avail = available_bytes();
        if (avail >= 0 && 2 * need > avail) {
            char msg[160]; /* PyErr_Format has no %f */
            snprintf(msg, sizeof msg, "an output of %.2f GiB (%lld x %lld) does not fit in the %.2f GiB of "
                     "memory available (with the work it takes)", need / (1 << 30), (long long)n,
                     (long long)(m < 0 ? 1 : m), avail / (1 << 30));
            PyErr_SetString(PyExc_MemoryError, msg);
            return NULL;
        }
    }
    return PyArray_ZEROS(m < 0 ? 1 : 2, dims, type, 0);
}

/* Cuts a 1-D output down to its first n entries (the core filled fewer
 * than its capacity). */
int shrink(PyObject *arr, npy_intp n)
{
    PyArray_Dims shape = {&n, 1};
    PyObject *r = PyArray_Resize((PyArrayObject *)arr, &shape, 0, NPY_CORDER);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Releases the n outputs o[] (some may be NULL); returns NULL. */
PyObject *fail(PyObject **o, int n)
{
    for (int k = 0; k < n; k++)
        Py_CLEAR(o[k]);
    return NULL;
}

/* A tuple stealing the n new references o[]; released on failure. */
PyObject *pack(PyObject **o, int n)
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
int new_topk(PyObject **o, npy_intp n_rows, int k, int with_scores)
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
int parse_csr(PyObject *indptr, PyObject *indices, long long n_cols, rmf_csr *out)
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

/* PyArg_ParseTuple on a non-tuple is a SystemError: checked first (found
 * by tests/test_fuzz.py). */
int parse_tuple(PyObject *obj, const char *name, const char *fields, const char *fmt, ...)
{
    if (!PyTuple_Check(obj))
        return PyErr_Format(PyExc_TypeError, "%s must be a tuple %s, got %s", name, fields,
                            Py_TYPE(obj)->tp_name), -1;
    va_list va;
    va_start(va, fmt);
    int ok = PyArg_VaParse(obj, fmt, va);
    va_end(va);
    return ok ? 0 : -1;
}

int parse_csr_tuple(PyObject *obj, const char *name, rmf_csr *m)
{
    PyObject *indptr, *indices;
    long long n_cols;
    if (parse_tuple(obj, name, "(indptr, indices, n_cols)", "OOL", &indptr, &indices, &n_cols) < 0)
        return -1;
    return parse_csr(indptr, indices, n_cols, m);
}

int parse_optional_csr(PyObject *seen, rmf_csr *m, int *present)
{
    *present = seen != Py_None;
    return *present ? parse_csr_tuple(seen, "seen", m) : 0;
}

int check_square(PyObject *B, const char *name, long long n, int writable)
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

/* hist: (indptr int64, items int32, n_items), each row in time order (not
 * sorted: the core checks it as a sequence, rmf_check_seq). */
int parse_seq(PyObject *hist, rmf_seq *h)
{
    rmf_csr rows;
    if (parse_csr_tuple(hist, "history", &rows) < 0)
        return -1;
    h->indptr = rows.indptr;
    h->items = rows.indices;
    h->n_users = rows.n_rows;
    h->n_items = rows.n_cols;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Models                                                             */
/* ------------------------------------------------------------------ */

const rmf_model *find_model(PyObject *kind)
{
    const char *name = PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "the model kind must be a str, got %s", Py_TYPE(kind)->tp_name);
        return NULL;
    }
    const rmf_model *m = rmf_model_find(name);
    if (m == NULL)
        PyErr_Format(PyExc_ValueError, "the core has no model kind '%s'", name);
    return m;
}

/* The core checks the values (rmf_model_check); the glue only converts
 * them. */
int set_field(const rmf_field *f, PyObject *value, void *cfg)
{
    char *dst = (char *)cfg + f->offset;
    if (f->type == 'f') {
        *(float *)dst = (float)PyFloat_AsDouble(value);
    } else if (f->type == 'i') {
        long l = PyLong_AsLong(value);
        if (!PyErr_Occurred() && (l < INT32_MIN || l > INT32_MAX))
            PyErr_Format(PyExc_ValueError, "%s is out of range: %ld", f->name, l);
        *(int32_t *)dst = (int32_t)l;
    } else {
        *(uint64_t *)dst = PyLong_AsUnsignedLongLongMask(value);
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* Refuses a misspelt keyword rather than silently keeping a default. */
int parse_config(const rmf_model *m, PyObject *dict, void *cfg)
{
    rmf_model_defaults(m, cfg);
    if (dict != Py_None && !PyDict_Check(dict))
        return PyErr_Format(PyExc_TypeError, "config must be a dict, got %s", Py_TYPE(dict)->tp_name), -1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (dict != Py_None && PyDict_Next(dict, &pos, &key, &value)) {
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (name == NULL)
            return PyErr_Occurred() ? -1 : (PyErr_SetString(PyExc_TypeError, "config keys must be str"), -1);
        const rmf_field *f = rmf_model_field(m, name);
        if (f == NULL)
            return PyErr_Format(PyExc_TypeError, "unknown parameter '%s' of %s", name, rmf_model_name(m)), -1;
        if (set_field(f, value, cfg) < 0)
            return -1;
    }
    rmf_error err = {{0}};
    rmf_status st = rmf_model_check(m, cfg, &err);
    return st == RMF_OK ? 0 : (raise_status(st, &err), -1);
}

int64_t n_params_of(const rmf_model *m, const void *cfg)
{
    rmf_layout L;
    rmf_error err = {{0}};
    rmf_status st = rmf_model_layout(m, cfg, &L, &err);
    return st == RMF_OK ? L.n_params : (raise_status(st, &err), -1);
}

/* A float32 array (any shape) of n_params elements (theta, Adam moments). */
int check_theta(PyObject *theta, const char *name, int64_t n_params, int writable)
{
    if (check_array(theta, name, NPY_FLOAT32, -1, writable) < 0)
        return -1;
    return check_len(theta, name, (npy_intp)n_params);
}

/* The index vectors of a batch: int32, all of the first one's length. */
int check_index_arrays(PyObject **a, const char **names, int n)
{
    for (int q = 0; q < n; q++)
        if (check_array(a[q], names[q], NPY_INT32, 1, 0) < 0 || check_len(a[q], names[q], SIZE(a[0])) < 0)
            return -1;
    return 0;
}

int parse_allowed(PyObject *obj, npy_intp n_items, const uint8_t **out)
{
    *out = NULL;
    if (obj == Py_None)
        return 0;
    int type = PyArray_Check(obj) && PyArray_TYPE((PyArrayObject *)obj) == NPY_BOOL ? NPY_BOOL : NPY_UINT8;
    if (check_array(obj, "allowed", type, 1, 0) < 0 || check_len(obj, "allowed", n_items) < 0)
        return -1;
    *out = DATA(obj, uint8_t);
    return 0;
}

int parse_rows(PyObject *obj, int32_t n_items, rmf_seq *h)
{
    PyObject *indptr, *items;
    rmf_csr rows;
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2)
        return PyErr_SetString(PyExc_TypeError, "rows must be a tuple (indptr, items)"), -1;
    indptr = PyTuple_GET_ITEM(obj, 0);
    items = PyTuple_GET_ITEM(obj, 1);
    if (parse_csr(indptr, items, n_items, &rows) < 0)
        return -1;
    *h = (rmf_seq){rows.indptr, rows.indices, rows.n_rows, rows.n_cols};
    return 0;
}

int parse_data(const rmf_model *m, const rmf_config *c, PyObject *obj, rmf_csr *csr, rmf_seq *seq,
               rmf_data *d)
{
    memset(d, 0, sizeof *d);
    switch (rmf_model_source(m)) {
    case RMF_SOURCE_PAIRS:
    case RMF_SOURCE_MATRIX: {
        PyObject *indptr, *indices;
        if (parse_tuple(obj, "data", "(indptr, indices)", "OO", &indptr, &indices) < 0 ||
            parse_csr(indptr, indices, c->n_items, csr) < 0)
            return -1;
        d->positives = csr;
        return 0;
    }
    case RMF_SOURCE_TRIPLETS: {
        PyObject *uij[3];
        if (parse_tuple(obj, "data", "(u, i, j)", "OOO", &uij[0], &uij[1], &uij[2]) < 0 ||
            check_index_arrays(uij, (const char *[]){"u", "i", "j"}, 3) < 0)
            return -1;
        *d = (rmf_data){NULL, DATA(uij[0], int32_t), DATA(uij[1], int32_t), DATA(uij[2], int32_t),
                        SIZE(uij[0]), NULL};
        return 0;
    }
    case RMF_SOURCE_SEQUENCES:
        if (parse_rows(obj, c->n_items, seq) < 0)
            return -1;
        d->seq = seq;
        return 0;
    default:
        PyErr_SetString(PyExc_ValueError, "this model learns outside the core (no data source)");
        return -1;
    }
}
