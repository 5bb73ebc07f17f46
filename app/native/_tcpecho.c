/* The plain TCP echo's pass over its ready sockets, compiled (app/listeners/modes/echo.py).
 *
 * Theory of operation: the echo mode serves every plain TCP connection of a listener from
 * one app.readyloop.ReadyLoop (a private, level-triggered epoll). In Python each ready socket
 * costs a handler call, a recv_into, a send and eight counter updates: a few microseconds
 * of interpreter per round trip. An EchoPass does the loop's pass instead: one
 * epoll_wait(timeout 0) for at most the caller's number of events, then for each socket
 * the loop adopted (adopt(): a plain echo connection, an _EchoConn) that is readable and
 * has nothing pending, one recv into a private buffer and one send of what it read, and
 * the counters Python would have bumped:
 *
 *   conn.bytes_in/msgs_in, conn.bytes_out/msgs_out  written into the row's slots at once,
 *       so whatever Python reads between two passes is exact (no fold to forget);
 *   conn.touch() the first time after a snapshot (conn.dirty false), item.active_at = now
 *       (the idle heap's clock: app.listeners.idle);
 *   listener.bytes_in/... summed over the pass and added before any Python code runs
 *       (a callback) and before the pass returns, on every exit path.
 *
 * What it does not handle goes to Python as the Python loop would have done it:
 *   - an fd it did not adopt, or an event other than a plain EPOLLIN (EPOLLOUT while a
 *     reply is pending, EPOLLERR, EPOLLHUP), or an adopted item with a reply pending:
 *     handler(item, mask), looked up in the loop's items;
 *   - end of stream (recv 0): handler(item, mask), whose own recv sees the end again
 *     (it is sticky) and ends the connection;
 *   - a recv or send error (a reset, a broken pipe): on_error(item, OSError(errno)), as
 *     if the handler had raised it (the error is consumed by the call that reported it);
 *   - a partial send (the peer's window is full): keep(item, rest) (the rest copied
 *     into bytes), which makes it item.pending and watches the socket for EPOLLOUT only,
 *     so that its next events go to the handler until the rest has gone.
 * An exception from the handler goes to on_error; one from on_error (or a BaseException)
 * ends the pass and propagates, as in the Python loop.
 *
 * Object handling: the table of adopted items (indexed by fd) holds a reference to each;
 * forget(fd) (the loop's finish) drops it. No Python object is made per message except
 * the counters' new values (ints, shared between in and out while they are equal).
 * Everything runs with the GIL held; every socket call is non-blocking.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyslots.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_EVENTS 256 /* per call, whatever the caller asks: the array is on the stack */

typedef struct {
    PyObject_HEAD
    int epfd;                 /* the ReadyLoop's epoll; not ours, never closed here */
    PyObject *items;          /* the loop's dict fd -> item */
    PyObject *handler;        /* handler(item, mask) */
    PyObject *on_error;       /* on_error(item, exc) */
    PyObject *keep;           /* keep(item, rest): a partial send's rest */
    PyObject *listener;       /* whose bytes_in/... the pass adds to */
    PyTypeObject *item_type;  /* _EchoConn: the slots below are its */
    PyTypeObject *conn_type;  /* app.registry.Conn */
    Py_ssize_t off_conn, off_pending, off_active;                 /* of an item */
    Py_ssize_t off_bin, off_bout, off_min, off_mout, off_dirty;   /* of a Conn */
    PyObject **table;         /* fd -> adopted item (a reference), or NULL */
    int size;                 /* entries of table */
    char *buf;
    Py_ssize_t bufsize;
    long long l_bin, l_min, l_bout, l_mout; /* the listener's share not added yet (in
                                               this order: see listener_names) */
} EchoPass;

/* Interned names: the listener's counters (in the order of EchoPass.l_*) and touch. */
static PyObject *listener_names[4], *str_touch;

/* Add the listener's share of the pass to its counters (Python: listener.x += n). */
static int flush_listener(EchoPass *self) {
    long long *shares = &self->l_bin;
    for (int i = 0; i < 4; i++) {
        if (shares[i] == 0) continue;
        PyObject *old = PyObject_GetAttr(self->listener, listener_names[i]);
        if (old == NULL) return -1;
        PyObject *n = PyLong_FromLongLong(shares[i]);
        PyObject *sum = n ? PyNumber_Add(old, n) : NULL;
        Py_DECREF(old);
        Py_XDECREF(n);
        if (sum == NULL) return -1;
        int rc = PyObject_SetAttr(self->listener, listener_names[i], sum);
        Py_DECREF(sum);
        if (rc < 0) return -1;
        shares[i] = 0;
    }
    return 0;
}

/* The exception raised (by the handler, or by the pass while serving item) goes to
 * on_error(item, exc), as the Python loop does with a handler's Exception. 0, or -1 when
 * the pass must end: a BaseException, or on_error failed. */
static int handler_failed(EchoPass *self, PyObject *item) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = NULL;
    if (flush_listener(self) == 0)
        r = PyObject_CallFunctionObjArgs(self->on_error, item, exc, NULL);
    Py_DECREF(exc);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* Call fn(item, arg) as the Python loop calls its handler (an Exception goes to on_error).
 * 0, or -1 when the pass must end. The listener's counters are exact before any Python
 * code runs. */
static int call_python(EchoPass *self, PyObject *fn, PyObject *item, PyObject *arg) {
    if (flush_listener(self) < 0) return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(fn, item, arg, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    return fn == self->on_error ? -1 : handler_failed(self, item);
}

/* on_error(item, OSError(err)): the OSError constructor picks the subclass
 * (ConnectionResetError, BrokenPipeError, ...). */
static int call_error(EchoPass *self, PyObject *item, int err) {
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    if (exc == NULL) return -1;
    int rc = call_python(self, self->on_error, item, exc);
    Py_DECREF(exc);
    return rc;
}

/* Hand what the kernel did not take to keep(item, rest): it becomes item.pending and the
 * socket is watched for room only, by the same Python code as for the Python pass.
 * 0: kept; 1: keep raised an Exception, given to on_error (the handler would have raised
 * it before counting the message out); -1: the pass must end. */
static int keep_rest(EchoPass *self, PyObject *item, const char *rest, Py_ssize_t n) {
    if (flush_listener(self) < 0) return -1;
    PyObject *bytes = PyBytes_FromStringAndSize(rest, n);
    PyObject *r = bytes ? PyObject_CallFunctionObjArgs(self->keep, item, bytes, NULL) : NULL;
    Py_XDECREF(bytes);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    return handler_failed(self, item) < 0 ? -1 : 1;
}

/* Echo one readable adopted socket (its reference held by the caller). 1: not handled
 * here (the handler's), 0: done, -1: the pass must end. What fails here (a counter that
 * is not an int, no memory, touch() raising) goes to on_error as the handler's would. */
static int echo_one(EchoPass *self, PyObject *item, int fd, PyObject *now) {
    PyObject *conn = SLOT(item, self->off_conn);
    if (conn == NULL || !Py_IS_TYPE(conn, self->conn_type)) return 1; /* before reading */
    ssize_t n;
    do {
        n = recv(fd, self->buf, (size_t)self->bufsize, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return call_error(self, item, errno);
    }
    if (n == 0) return 1; /* the end of stream: the handler ends the connection */
    Py_INCREF(conn); /* on_error below may end the connection and let go of its row */
    int rc = -1;
    /* In first, as in Python: a send that fails leaves the bytes counted in only. */
    if (add_to(conn, self->off_bin, n, NULL) < 0 || add_to(conn, self->off_min, 1, NULL) < 0)
        goto broken;
    self->l_bin += n;
    self->l_min += 1;
    ssize_t sent;
    do {
        sent = send(fd, self->buf, (size_t)n, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        rc = call_error(self, item, errno);
        goto done;
    }
    if (sent < 0) sent = 0;
    if (sent < n && (rc = keep_rest(self, item, self->buf + sent, n - sent)) != 0) {
        rc = rc < 0 ? -1 : 0;
        goto done;
    }
    /* Out: the whole message, as Python counts it (the rest is pending, not lost). */
    if (add_to(conn, self->off_bout, n, SLOT(conn, self->off_bin)) < 0 ||
        add_to(conn, self->off_mout, 1, SLOT(conn, self->off_min)) < 0)
        goto broken;
    self->l_bout += n;
    self->l_mout += 1;
    if (SLOT(conn, self->off_dirty) != Py_True) { /* touch() once per snapshot */
        if (flush_listener(self) < 0) goto broken;
        PyObject *r = PyObject_CallMethodNoArgs(conn, str_touch);
        if (r == NULL) goto broken;
        Py_DECREF(r);
    }
    slot_set(item, self->off_active, Py_NewRef(now));
    rc = 0;
    goto done;
broken:
    rc = handler_failed(self, item);
done:
    Py_DECREF(conn);
    return rc;
}

/* The item the Python loop would serve for fd (a borrowed reference), NULL when none
 * (ended earlier in this pass) or on an error (then with an exception). */
static PyObject *loop_item(EchoPass *self, int fd) {
    if (self->items == NULL) return NULL; /* closed by a callback: serve nothing more */
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL) return NULL;
    PyObject *item = PyDict_GetItemWithError(self->items, key);
    Py_DECREF(key);
    return item;
}

/* Serve k ready sockets. 0, or -1 when the pass must end (with an exception). */
static int serve(EchoPass *self, struct epoll_event *events, int k, PyObject *now) {
    for (int i = 0; i < k; i++) {
        int fd = events[i].data.fd;
        uint32_t mask = events[i].events;
        PyObject *item = (fd >= 0 && fd < self->size) ? self->table[fd] : NULL;
        int rc = 1;
        if (item != NULL) {
            Py_INCREF(item); /* a callback may forget it */
            if (mask == EPOLLIN && SLOT(item, self->off_pending) == Py_None)
                rc = echo_one(self, item, fd, now);
        } else if ((item = loop_item(self, fd)) != NULL) {
            Py_INCREF(item);
        } else if (PyErr_Occurred()) {
            return -1;
        } else {
            continue; /* ended earlier in this pass */
        }
        if (rc == 1) {
            PyObject *m = PyLong_FromUnsignedLong(mask);
            rc = m ? call_python(self, self->handler, item, m) : -1;
            Py_XDECREF(m);
        }
        Py_DECREF(item);
        if (rc < 0) return -1;
    }
    return 0;
}

/* Poll and serve until max_events were served or a poll finds none ready: the caller
 * waits for the epoll when fewer than max_events come back, and yields otherwise. */
static PyObject *EchoPass_run(EchoPass *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run(max_events, now)");
        return NULL;
    }
    long max = PyLong_AsLong(args[0]);
    if (max == -1 && PyErr_Occurred()) return NULL;
    if (max < 1) max = 1;
    if (max > MAX_EVENTS) max = MAX_EVENTS;
    if (self->items == NULL) {
        PyErr_SetString(PyExc_ValueError, "the pass is closed");
        return NULL;
    }
    struct epoll_event events[MAX_EVENTS];
    long served = 0;
    while (served < max) {
        int k;
        do {
            k = epoll_wait(self->epfd, events, (int)(max - served), 0);
        } while (k < 0 && errno == EINTR);
        if (k < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (k == 0) break;
        served += k;
        if (serve(self, events, k, args[1]) < 0) goto fail;
    }
    if (flush_listener(self) < 0) return NULL;
    return PyLong_FromLong(served);
fail:;
    /* The listener's counters stay exact on the way out too. */
    PyObject *exc = PyErr_GetRaisedException();
    if (flush_listener(self) < 0) PyErr_Clear();
    PyErr_SetRaisedException(exc);
    return NULL;
}

static PyObject *EchoPass_adopt(EchoPass *self, PyObject *item) {
    if (self->items == NULL) {
        PyErr_SetString(PyExc_ValueError, "the pass is closed");
        return NULL;
    }
    if (!Py_IS_TYPE(item, self->item_type)) {
        PyErr_Format(PyExc_TypeError, "not a %s", self->item_type->tp_name);
        return NULL;
    }
    PyObject *conn = SLOT(item, self->off_conn);
    if (conn == NULL || !Py_IS_TYPE(conn, self->conn_type)) {
        PyErr_Format(PyExc_TypeError, "its conn is not a %s", self->conn_type->tp_name);
        return NULL;
    }
    PyObject *fdobj = PyObject_GetAttrString(item, "fd");
    if (fdobj == NULL) return NULL;
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (fd < 0 || fd > INT_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "a bad file descriptor");
        return NULL;
    }
    if (fd >= self->size) {
        int size = self->size ? self->size : 64;
        while (size <= fd) size *= 2;
        PyObject **table = PyMem_Realloc(self->table, (size_t)size * sizeof(PyObject *));
        if (table == NULL) return PyErr_NoMemory();
        for (int i = self->size; i < size; i++) table[i] = NULL;
        self->table = table;
        self->size = size;
    }
    Py_XSETREF(self->table[fd], Py_NewRef(item));
    Py_RETURN_NONE;
}

static PyObject *EchoPass_forget(EchoPass *self, PyObject *arg) {
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (fd >= 0 && fd < self->size) Py_CLEAR(self->table[fd]);
    Py_RETURN_NONE;
}

static int EchoPass_clear(EchoPass *self) {
    for (int i = 0; i < self->size; i++) Py_CLEAR(self->table[i]);
    Py_CLEAR(self->items);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->keep);
    Py_CLEAR(self->listener);
    Py_CLEAR(self->item_type);
    Py_CLEAR(self->conn_type);
    return 0;
}

static PyObject *EchoPass_close(EchoPass *self, PyObject *Py_UNUSED(arg)) {
    EchoPass_clear(self);
    Py_RETURN_NONE;
}

static int EchoPass_traverse(EchoPass *self, visitproc visit, void *arg) {
    for (int i = 0; i < self->size; i++) Py_VISIT(self->table[i]);
    Py_VISIT(self->items);
    Py_VISIT(self->handler);
    Py_VISIT(self->on_error);
    Py_VISIT(self->keep);
    Py_VISIT(self->listener);
    Py_VISIT(self->item_type);
    Py_VISIT(self->conn_type);
    return 0;
}

static void EchoPass_dealloc(EchoPass *self) {
    PyObject_GC_UnTrack(self);
    EchoPass_clear(self);
    PyMem_Free(self->table);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int EchoPass_init(EchoPass *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"epfd",      "items",     "handler", "on_error", "keep",
                         "listener",  "item_type", "conn_type", "bufsize", NULL};
    int epfd;
    Py_ssize_t bufsize;
    PyObject *items, *handler, *on_error, *keep, *listener;
    PyTypeObject *item_type, *conn_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO!OOOOO!O!n", kw, &epfd, &PyDict_Type,
                                     &items, &handler, &on_error, &keep, &listener, &PyType_Type,
                                     &item_type, &PyType_Type, &conn_type, &bufsize))
        return -1;
    if (bufsize < 1) {
        PyErr_SetString(PyExc_ValueError, "bufsize must be positive");
        return -1;
    }
    static const char *item_slots[] = {"conn", "pending", "active_at"};
    static const char *conn_slots[] = {"bytes_in", "bytes_out", "msgs_in", "msgs_out", "dirty"};
    Py_ssize_t *item_offs[] = {&self->off_conn, &self->off_pending, &self->off_active};
    Py_ssize_t *conn_offs[] = {&self->off_bin, &self->off_bout, &self->off_min, &self->off_mout,
                               &self->off_dirty};
    for (int i = 0; i < 3; i++)
        if (slot_offset(item_type, item_slots[i], item_offs[i]) < 0) return -1;
    for (int i = 0; i < 5; i++)
        if (slot_offset(conn_type, conn_slots[i], conn_offs[i]) < 0) return -1;
    char *buf = PyMem_Realloc(self->buf, (size_t)bufsize);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    EchoPass_clear(self);
    self->buf = buf;
    self->bufsize = bufsize;
    self->epfd = epfd;
    self->items = Py_NewRef(items);
    self->handler = Py_NewRef(handler);
    self->on_error = Py_NewRef(on_error);
    self->keep = Py_NewRef(keep);
    self->listener = Py_NewRef(listener);
    self->item_type = (PyTypeObject *)Py_NewRef(item_type);
    self->conn_type = (PyTypeObject *)Py_NewRef(conn_type);
    return 0;
}

static PyMethodDef EchoPass_methods[] = {
    {"run", (PyCFunction)(void (*)(void))EchoPass_run, METH_FASTCALL,
     "run(max_events, now) -> served: passes over the ready sockets until max_events were served or none is ready."},
    {"adopt", (PyCFunction)EchoPass_adopt, METH_O,
     "adopt(item): echo this plain connection here (it is served by the loop already)."},
    {"forget", (PyCFunction)EchoPass_forget, METH_O,
     "forget(fd): the item of fd is no longer served (idempotent)."},
    {"close", (PyCFunction)EchoPass_close, METH_NOARGS,
     "close(): let go of every item and callback (the loop has ended)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EchoPassType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "app.native._tcpecho.EchoPass",
    .tp_doc = "One ReadyLoop pass of a plain TCP echo, compiled (see the module's source).",
    .tp_basicsize = sizeof(EchoPass),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EchoPass_init,
    .tp_dealloc = (destructor)EchoPass_dealloc,
    .tp_traverse = (traverseproc)EchoPass_traverse,
    .tp_clear = (inquiry)EchoPass_clear,
    .tp_methods = EchoPass_methods,
};

static struct PyModuleDef tcpecho_module = {
    PyModuleDef_HEAD_INIT, "_tcpecho", "The plain TCP echo's socket pass, compiled.", -1, NULL,
};

PyMODINIT_FUNC PyInit__tcpecho(void) {
    static const char *names[4] = {"bytes_in", "msgs_in", "bytes_out", "msgs_out"};
    for (int i = 0; i < 4; i++)
        if ((listener_names[i] = PyUnicode_InternFromString(names[i])) == NULL) return NULL;
    if ((str_touch = PyUnicode_InternFromString("touch")) == NULL) return NULL;
    if (PyType_Ready(&EchoPassType) < 0) return NULL;
    PyObject *m = PyModule_Create(&tcpecho_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "EchoPass", (PyObject *)&EchoPassType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
