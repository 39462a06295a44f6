/*
 * glue.h -- what the files of py/ share.  py/ is the only part of recmf that
 * includes Python.h and NumPy: each entry point parses its arguments,
 * checks what only the glue can -- type, ndim, dtype, contiguity,
 * alignment, writability, lengths: a TypeError/ValueError naming the
 * argument -- allocates its outputs with NumPy, runs the core without the
 * GIL (CALL) and turns a core status into an exception in one place
 * (raise_status).  Values (k, id ranges, CSR soundness, model shapes,
 * hyperparameters) are the core's to check, each with one message.  The
 * Python layer (recmf/) prepares arrays, so these checks are the last line
 * of defence, not the user-facing API.
 *
 * One file per area (data.c, rank.c, models.c, train.c, solvers.c,
 * runtime.c), each ending with its method table; module.c puts them
 * together.  The helpers are defined in glue.c.
 */
#ifndef RECMF_PY_GLUE_H
#define RECMF_PY_GLUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* One NumPy API table for the extension, imported by module.c. */
#define PY_ARRAY_UNIQUE_SYMBOL RECMF_ARRAY_API
#ifndef RMF_PY_MODULE
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "recmf.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* recmf.SamplingError, a ValueError (created by module.c). */
extern PyObject *SamplingError;

/* ------------------------------------------------------------------ */
/* Errors and core calls                                              */
/* ------------------------------------------------------------------ */

/* Raises the exception of a core status (err's message); returns NULL. */
PyObject *raise_status(rmf_status st, const rmf_error *err);
/* One RuntimeWarning per process when a forked child's regions run on
 * one thread (threads.c); -1 when the warning was turned into an error. */
int warn_fork_fallback(void);

/* Ctrl-C (the core's side: runtime/stop.c).  check_signals lets Python run
 * its signal handlers (a user's own SIGINT handler included) with the GIL
 * taken briefly: non-zero when one raised (the exception stays set).
 * stop_begin/stop_end go around every core call, with the GIL: a call
 * from Python's main thread (rmf_py_main_ident, set at import) can be
 * stopped by Ctrl-C at its next block; others never are. */
int check_signals(void *ctx);
extern unsigned long rmf_py_main_ident;
int stop_begin(rmf_stop *s);
int stop_end(rmf_stop *s, int main);

/* Runs a core call without the GIL; `st` receives its status (a warning
 * turned into an exception makes it an error, raised by raise_status; a
 * call that a Python signal handler stopped -- its exception is set -- is
 * RMF_ERR_INTERRUPTED, whatever the core returned, and its outputs are
 * dropped). */
#define RMF_NOGIL(st, call)                                   \
    do {                                                      \
        rmf_stop stop_;                                       \
        int main_ = stop_begin(&stop_);                       \
        Py_BEGIN_ALLOW_THREADS                                \
        rmf_work_begin();                                     \
        (st) = (call);                                        \
        rmf_work_end();                                       \
        Py_END_ALLOW_THREADS                                  \
        if (stop_end(&stop_, main_))                          \
            (st) = RMF_ERR_INTERRUPTED;                       \
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
int check_array(PyObject *obj, const char *name, int type, int ndim, int writable);
/* obj (an ndarray) has want elements. */
int check_len(PyObject *obj, const char *name, npy_intp want);
/* A writable float32 n x n array when writable. */
int check_square(PyObject *B, const char *name, long long n, int writable);
/* The index vectors of a batch: int32, all of the first one's length. */
int check_index_arrays(PyObject **a, const char **names, int n);

#define DATA(obj, type) ((type *)PyArray_DATA((PyArrayObject *)(obj)))
#define SIZE(obj) ((int64_t)PyArray_SIZE((PyArrayObject *)(obj)))

/* New zeroed outputs: n, or n x m (a MemoryError, before allocating, for
 * one that needs more than half the available memory). */
PyObject *new_array2(npy_intp n, npy_intp m, int type);
#define new_array1(n, type) new_array2((n), -1, (type))
/* Cuts a 1-D output down to its first n entries. */
int shrink(PyObject *arr, npy_intp n);
/* Releases the n outputs o[] (some may be NULL); returns NULL. */
PyObject *fail(PyObject **o, int n);
/* A tuple stealing the n new references o[]; released on failure. */
PyObject *pack(PyObject **o, int n);
/* The (n_rows x k) items, scores and (n_rows) lengths every top-K returns;
 * 0 or -1 with o[] released. */
int new_topk(PyObject **o, npy_intp n_rows, int k, int with_scores);

/* ------------------------------------------------------------------ */
/* The core's structs                                                 */
/* ------------------------------------------------------------------ */

/* A CSR passed as (indptr int64, indices int32, n_cols). */
int parse_csr(PyObject *indptr, PyObject *indices, long long n_cols, rmf_csr *out);
/* PyArg_ParseTuple(obj, fmt, ...) on an argument the caller passed as a
 * tuple of `fields` (e.g. "(u, i, j)"); a TypeError naming it when it is
 * not a tuple (PyArg_ParseTuple would raise SystemError). */
int parse_tuple(PyObject *obj, const char *name, const char *fields, const char *fmt, ...);
/* A CSR passed as the tuple (indptr, indices, n_cols); a TypeError naming
 * it otherwise. */
int parse_csr_tuple(PyObject *obj, const char *name, rmf_csr *m);
/* seen: (indptr, indices, n_cols) or None (*present = 0). */
int parse_optional_csr(PyObject *seen, rmf_csr *m, int *present);
/* hist: (indptr int64, items int32, n_items), rows in time order. */
int parse_seq(PyObject *hist, rmf_seq *h);
/* The model of kind (a str), or NULL with an exception set. */
const rmf_model *find_model(PyObject *kind);
/* A model's config, in a buffer of RMF_CONFIG_MAX bytes. */
typedef union {
    rmf_config base;
    max_align_t align;
    char bytes[RMF_CONFIG_MAX];
} config_buf;
/* Sets field f of cfg from a Python number. */
int set_field(const rmf_field *f, PyObject *value, void *cfg);
/* cfg = the model's defaults, then the dict's keys (None: none), checked
 * by the core; an unknown key is a TypeError. */
int parse_config(const rmf_model *m, PyObject *dict, void *cfg);
/* The model's n_params for cfg, or -1 with an exception set. */
int64_t n_params_of(const rmf_model *m, const void *cfg);
/* A float32 array (any shape) of n_params elements, C-contiguous. */
int check_theta(PyObject *theta, const char *name, int64_t n_params, int writable);
/* allowed: None (*out = NULL) or a uint8 or bool array of n_items
 * candidate flags (non-zero: may be recommended). */
int parse_allowed(PyObject *obj, npy_intp n_items, const uint8_t **out);
/* rows: (indptr int64, items int32) over n_items items. */
int parse_rows(PyObject *obj, int32_t n_items, rmf_seq *h);
/* A model's data as its source says: (indptr, indices) for pairs and
 * matrices, (u, i, j) for triplets, (indptr, items) for sequences; csr and
 * seq hold what d points to. */
int parse_data(const rmf_model *m, const rmf_config *c, PyObject *obj, rmf_csr *csr, rmf_seq *seq,
               rmf_data *d);

/* ------------------------------------------------------------------ */
/* Method tables                                                      */
/* ------------------------------------------------------------------ */

#define NOARGS(name, doc) {#name, (PyCFunction)py_##name, METH_NOARGS, doc}
#define VARARGS(name, doc) {#name, (PyCFunction)py_##name, METH_VARARGS, doc}
#define KWARGS(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, doc}

extern PyMethodDef rmf_py_data_methods[];    /* data.c */
extern PyMethodDef rmf_py_rank_methods[];    /* rank.c */
extern PyMethodDef rmf_py_model_methods[];   /* models.c */
extern PyMethodDef rmf_py_train_methods[];   /* train.c */
extern PyMethodDef rmf_py_solver_methods[];  /* solvers.c */
extern PyMethodDef rmf_py_runtime_methods[]; /* runtime.c */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#endif /* RECMF_PY_GLUE_H */
