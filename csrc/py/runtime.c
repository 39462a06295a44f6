/* runtime.c -- the glue of build facts, thread and floating-point
 * settings, and the runtime's test hooks. */
#include "py/glue.h"

/* ------------------------------------------------------------------ */
/* Build facts                                                        */
/* ------------------------------------------------------------------ */

static PyObject *py_build_info(PyObject *self, PyObject *noargs)
{
    int fork = rmf_fork_state();
    return Py_BuildValue("{s:O,s:z,s:s,s:z,s:i,s:O,s:O,s:O,s:O}", "openmp", rmf_has_openmp() ? Py_True : Py_False,
                         "openmp_library", rmf_openmp_library(), "blas_config", rmf_blas_config(),
                         "blas_library", rmf_blas_library(), "blas_threads", rmf_blas_get_threads(),
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

/* _interrupt_at(poll) -> polls: the calling thread's next stoppable call
 * raises SIGINT itself at its poll-th poll (0: never); returns how many
 * polls the calling thread made since the last _interrupt_at. */
static PyObject *py__interrupt_at(PyObject *self, PyObject *args)
{
    long long poll = -1;
    if (!PyArg_ParseTuple(args, "|L", &poll))
        return NULL;
    long long made = (long long)rmf_stop_polls();
    if (poll >= 0)
        rmf_stop_interrupt_at(poll);
    return PyLong_FromLongLong(made);
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


PyMethodDef rmf_py_runtime_methods[] = {
    NOARGS(build_info, "build_info() -> dict of build facts (OpenMP, BLAS)"),
    VARARGS(blas_threads, "blas_threads(n=0) -> previous count; sets it when n > 0"),
    VARARGS(exact_subnormals, "exact_subnormals(flag=None) -> previous setting; sets it unless None"),
    VARARGS(_fp_probe, "test only: _fp_probe(n_threads, a, b) -> (modes, caller_mode, a @ b, blas_jobs)"),
    VARARGS(_fp_probe_plain, "test only: _fp_probe_plain(n_threads) -> modes of a plain OpenMP region"),
    VARARGS(_fp_mode, "test only: _fp_mode(mode=-1) -> this thread's flush mode; sets it when >= 0"),
    VARARGS(_pacer, "test only: _pacer(mode): 0 measure, 1 one thread, 2 alternate, 3 full team"),
    VARARGS(_pacer_trace, "test only: _pacer_trace(nt, cost_one, cost_full) -> team sizes"),
    VARARGS(_fork_release, "test only: _fork_release(on): release the OpenMP pool before fork()"),
    VARARGS(_interrupt_at, "test only: _interrupt_at(poll=-1) -> polls made: the next call raises SIGINT at "
                           "its poll-th stop poll (0 never, -1 only reads)"),
    {NULL, NULL, 0, NULL},
};
