/* socketlab's compiled fast paths (app/native/__init__.py says how they are used).
 *
 * Every function here has a pure-Python twin that the tests also run; each does only the
 * per-message work of one hot loop, without logging, events or allocations per message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyMethodDef fast_methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "_fast", "socketlab's compiled fast paths.", -1, fast_methods,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&fast_module); }
