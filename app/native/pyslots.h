/* Reading and writing the __slots__ of Python objects from C, for the fast paths that
 * keep Python's counters exact without a Python call per message.
 *
 * A class with __slots__ stores each slot at a fixed offset of its instances (its member
 * descriptor says where). slot_offset() finds that offset once, checking that it is an
 * object slot; SLOT() then reads it and slot_set() writes it as the attribute assignment
 * would (the old value released). A slot that was never assigned reads NULL. add_to()
 * is ``obj.counter += n`` on such a slot.
 *
 * Also here: Python 3.12's PyErr_GetRaisedException/PyErr_SetRaisedException over the
 * 3.11 API, for the fast paths that catch an exception and hand it to a Python callback.
 */
#ifndef SOCKETLAB_PYSLOTS_H
#define SOCKETLAB_PYSLOTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* The offset of a __slots__ attribute (a member descriptor of an object slot). */
static inline int slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out) {
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
    PyErr_Clear();
    int ok = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok) *out = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_XDECREF(d);
    if (!ok) PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
    return ok ? 0 : -1;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Store v (a new reference, stolen) into a slot, releasing what it held. */
static inline void slot_set(PyObject *obj, Py_ssize_t off, PyObject *v) {
    PyObject *old = SLOT(obj, off);
    SLOT(obj, off) = v;
    Py_XDECREF(old);
}

/* The value of a counter (an int); -1 with an exception when it is not one. */
static inline long long value_of(PyObject *v) {
    if (v == NULL || !PyLong_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "a counter is not an int");
        return -1;
    }
    return PyLong_AsLongLong(v);
}

/* obj.<off> += n (Python's ``conn.bytes_in += n``). When the sum equals the counter
 * ``twin`` (bytes_out is bytes_in once a message is echoed) that int is shared, so an
 * echoed message makes two ints, not four. 0, or -1 with an exception. */
static inline int add_to(PyObject *obj, Py_ssize_t off, long long n, PyObject *twin) {
    long long v = value_of(SLOT(obj, off));
    if (v == -1 && PyErr_Occurred()) return -1;
    v += n;
    PyObject *sum;
    if (twin != NULL && PyLong_CheckExact(twin) && PyLong_AsLongLong(twin) == v) {
        sum = Py_NewRef(twin);
    } else if ((sum = PyLong_FromLongLong(v)) == NULL) {
        return -1;
    }
    slot_set(obj, off, sum);
    return 0;
}

#if PY_VERSION_HEX < 0x030C0000 /* Python 3.11 */
static inline PyObject *PyErr_GetRaisedException(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static inline void PyErr_SetRaisedException(PyObject *exc) {
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}
#endif

#endif
