/* A module that only says the build works: app/native/build.py compiles every _*.c here
 * into a module of its own, and tests/test_native.py holds each one built. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_probe", "The build of socketlab's compiled fast paths works.", -1,
    NULL,
};

PyMODINIT_FUNC PyInit__probe(void) { return PyModule_Create(&probe_module); }
