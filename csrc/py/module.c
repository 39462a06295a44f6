/* module.c -- recmf._core: the module object, built from the method
 * tables of the glue's files (glue.h), and what import does once. */
#define RMF_PY_MODULE /* the one file that imports NumPy's C API */
#include "py/glue.h"

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_core", "recmf's C core: see csrc/recmf.h for the contracts.", -1, NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    rmf_blas_use_openmp_threads();
    if (rmf_runtime_init() != 0) {
        PyErr_SetString(PyExc_ImportError, "recmf: could not register its fork() handlers");
        return NULL;
    }
    /* Python's main thread, the one that runs signal handlers (glue.c). */
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *main_thread = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = main_thread ? PyObject_GetAttrString(main_thread, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(main_thread);
    if (ident == NULL)
        return NULL;
    rmf_py_main_ident = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (PyErr_Occurred())
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    PyMethodDef *tables[] = {rmf_py_data_methods,  rmf_py_rank_methods,   rmf_py_model_methods,
                             rmf_py_train_methods, rmf_py_solver_methods, rmf_py_runtime_methods};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        if (PyModule_AddFunctions(m, tables[t]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
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
