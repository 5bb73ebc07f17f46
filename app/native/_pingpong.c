/* The steady state of a pingpong run's flows, served in C (app/runs/mux_native.py).
 *
 * Theory of operation: one Engine per run's multiplexer, over the epoll of its socket loop
 * (app/readyloop.py ReadyLoop). Python *adopts* a flow into the engine once it is in the
 * steady state (counted, not blocked, not parked, one message size, every message with a
 * probe header): from then on the engine owns what changes per message (the next sequence
 * number, the messages in flight and their send times, the bytes of a TCP reply read so
 * far). Engine.serve does passes of the loop: epoll_wait (timeout 0, at most a
 * caller-given number of events); for each ready adopted flow it receives the replies,
 * matches them (TCP by order, UDP by the probe header's sequence number, as
 * app/runs/mux.py and mux_udp.py do), records each RTT into the interval histogram's
 * counts (FastHistogram's slot, hdrh's counts array through the buffer protocol); at the
 * end of the pass it stamps (sequence number and send time, app/wire/probe.py STAMP) and
 * sends the next messages of the flows answered in it, back to back, as the Python loop
 * does. While nothing was handed back it polls again for the next pass, up to the
 * caller's number of events in all (Python's cost per call, and the rows' updates, are then
 * paid once for several passes). Before it returns it adds what it counted to the run's
 * figures (sent, received, bytes, the histogram's total/min/max) and to each touched
 * flow's registry row (pingpong_state.h), so whenever any other task runs, every figure is
 * exact.
 *
 * Everything else is *handed back*: serve appends (fd, code, a, b) to a Python list and
 * leaves that flow alone for the rest of the pass; Python then takes the flow's state back
 * (Engine.release) and deals with it as its own code does (an event of a flow not adopted,
 * the end of the stream, an error, an unmatched/late/duplicate reply, EAGAIN or a partial
 * send, the deadline/caps/quota: see the codes in pingpong_state.h). A call stops polling
 * at its first hand-back, so Python sees each event once.
 *
 * Allocation: none per message; per call, the attribute updates of the figures and rows
 * that changed (Python ints), and a tuple per hand-back. Work per call is bounded by the
 * caller's event count and each flow's window. No call blocks (sockets are non-blocking).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "pingpong_state.h"

/* Hand a flow's event back to Python; its slot is left alone until Python releases it. */
static int hand(Engine *e, PyObject *out, int fd, int code, PyObject *a, PyObject *b) {
    Slot *s = slot_of(e, fd);
    if (s) s->handed = 1;
    if (!a || !b) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return -1;
    }
    PyObject *t = Py_BuildValue("(iiNN)", fd, code, a, b);
    if (!t) return -1;
    int r = PyList_Append(out, t);
    Py_DECREF(t);
    return r;
}

static int hand_int(Engine *e, PyObject *out, int fd, int code, long long a) {
    return hand(e, out, fd, code, PyLong_FromLongLong(a), Py_NewRef(Py_None));
}

static void touch(Engine *e, int fd, Slot *s) {
    if (!s->touched && e->ntouched < MAXEVENTS) {
        s->touched = 1;
        e->touched[e->ntouched++] = fd;
    }
}

static void pop(Slot *s, int i) {
    memmove(&s->seqs[i], &s->seqs[i + 1], (s->n - i - 1) * sizeof s->seqs[0]);
    memmove(&s->t0s[i], &s->t0s[i + 1], (s->n - i - 1) * sizeof s->t0s[0]);
    s->n--;
}

/* TCP: read what is left of the oldest reply (replies come in order). */
static int on_tcp(Engine *e, PyObject *out, int fd, Slot *s, int64_t *counts, int64_t from) {
    Py_ssize_t need = s->size - s->got;
    ssize_t r;
    do r = recv(fd, e->rbuf.buf, need, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : hand_int(e, out, fd, H_ERROR, errno);
    if (r == 0) return hand_int(e, out, fd, H_CLOSED, 0);
    touch(e, fd, s);
    if (r < need) {
        s->got += r;
        return 0;
    }
    s->got = 0;
    int64_t t0 = s->t0s[0];
    pop(s, 0);
    record(e, counts, t0, s->size, from);
    s->in_msgs++;
    s->in_bytes += s->size;
    s->due = 1;
    return 0;
}

/* UDP: up to a window of replies, each matched by its probe header's sequence number. */
static int on_udp(Engine *e, PyObject *out, int fd, Slot *s, int64_t *counts, int64_t from) {
    const unsigned char *p = e->rbuf.buf;
    for (int reads = s->window; reads > 0; reads--) {
        ssize_t r;
        do r = recv(fd, e->rbuf.buf, e->rbuf.len, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return hand_int(e, out, fd, errno == ECONNREFUSED ? H_REFUSED : H_ERROR, errno);
        }
        touch(e, fd, s);
        s->in_msgs++;
        s->in_bytes += r;
        uint32_t word = r >= HEADER_SIZE ? (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3] : 0;
        if (word >> 8 != PREFIX) /* no probe header: it answers nothing */
            return hand(e, out, fd, H_UNMATCHED, Py_NewRef(Py_None), PyLong_FromSsize_t(r));
        uint64_t seq = get_be64(p + SEQ_OFFSET);
        if (s->warmup && !(word & FLAG_WARMUP)) seq += s->first; /* a counted reply */
        int i = 0;
        while (i < s->n && s->seqs[i] != seq) i++;
        if (i == s->n)
            return hand(e, out, fd, H_UNMATCHED, PyLong_FromUnsignedLongLong(seq),
                        PyLong_FromSsize_t(r));
        int64_t t0 = s->t0s[i];
        pop(s, i);
        record(e, counts, t0, r, from);
    }
    s->due = 1;
    return 0;
}

/* Budget.take, the same arithmetic on the same doubles: 1 when the message is charged.
 * A message it would hold back (the byte cap, the rate caps, a pause) is not charged:
 * Python asks again and parks the flow or ends its sending, as its own answer says.
 * tests/test_budget_native.py holds it equal to Budget.take through take() below. */
static int charge(double *bytes_left, double *pace_due, double per_message, double per_byte,
                  double slack, double now, double size) {
    if (size > *bytes_left) return 0;
    double due = *pace_due;
    if (due < now) due = now;
    else if (due - slack > now) return 0;
    double cost = size * per_byte;
    if (cost < per_message) cost = per_message;
    *pace_due = due + cost;
    *bytes_left -= size;
    return 1;
}

static int take(Engine *e, Py_ssize_t size) {
    return charge(&e->bytes_left, &e->pace_due, e->per_message, e->per_byte, e->slack, e->now,
                  (double)size);
}

/* The Budget fields charge() works on, in this order: bytes_left, _due, _per_message,
 * _per_byte (set up with the other names at import). */
static PyObject *budget_names[4];

/* Read a Budget's four fields into f; -1 with an exception set when one is missing. */
static int read_budget(PyObject *budget, double f[4]) {
    for (int i = 0; i < 4; i++) {
        PyObject *v = PyObject_GetAttr(budget, budget_names[i]);
        f[i] = v ? PyFloat_AsDouble(v) : -1.0;
        Py_XDECREF(v);
        if (PyErr_Occurred()) return -1;
    }
    return 0;
}

/* The end of a pass for one answered flow: send until its window is full. */
static int refill(Engine *e, PyObject *out, int fd, Slot *s, int may_send, int64_t from) {
    if (!may_send) return hand_int(e, out, fd, H_REFILL, 0); /* past the send deadline */
    unsigned char *m = s->msg.buf;
    while (s->n < s->window && s->seq < s->quota) {
        if (!take(e, s->size)) return hand_int(e, out, fd, H_REFILL, 0);
        int64_t t0 = now_ns();
        put_be64(m + SEQ_OFFSET, s->seq - s->first);
        put_be64(m + SEQ_OFFSET + 8, (uint64_t)t0);
        ssize_t r;
        do r = send(fd, m, s->size, 0);
        while (r < 0 && errno == EINTR);
        int code = -1;
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (e->udp) return hand_int(e, out, fd, H_BLOCKED, 0); /* not sent */
                r = 0; /* TCP: counted as sent, all of it pending, as Python does */
            } else if (e->udp && errno == ECONNREFUSED) {
                code = H_SEND_REFUSED; /* counted and in flight: lost at its deadline */
            } else {
                return hand_int(e, out, fd, H_ERROR, errno); /* not sent, not counted */
            }
        }
        touch(e, fd, s);
        s->seqs[s->n] = s->seq++;
        s->t0s[s->n++] = t0;
        s->out_msgs++;
        s->out_bytes += s->size;
        if (t0 >= from) {
            e->sent++;
            e->bytes_sent += s->size;
        }
        if (code >= 0) return hand_int(e, out, fd, code, 0);
        if (!e->udp && r < s->size) return hand_int(e, out, fd, H_PARTIAL, r);
    }
    /* Nothing in flight and nothing more to send: Python ends the flow. */
    return s->n ? 0 : hand_int(e, out, fd, H_REFILL, 0);
}

/* record(histogram, values): each value recorded as serve records an RTT (for tests). */
static PyObject *Engine_record(Engine *e, PyObject *args) {
    PyObject *hist, *values;
    if (!PyArg_ParseTuple(args, "OO", &hist, &values)) return NULL;
    PyObject *seq = PySequence_Fast(values, "values: a sequence of ints");
    Py_buffer counts;
    if (!seq || get_counts(e, hist, &counts) < 0) {
        Py_XDECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        uint64_t v = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred()) break;
        record_value(e, counts.buf, v);
    }
    Py_DECREF(seq);
    int rc = PyErr_Occurred() ? -1 : fold_run(e, Py_None, hist);
    PyBuffer_Release(&counts);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Engine_serve(Engine *e, PyObject *args) {
    int max_events, may_send;
    long long from;
    PyObject *stats, *hist, *budget, *out;
    if (!PyArg_ParseTuple(args, "ipdLOOOO!", &max_events, &may_send, &e->now, &from, &stats, &hist,
                          &budget, &PyList_Type, &out))
        return NULL;
    if (max_events < 1 || max_events > MAXEVENTS) max_events = MAXEVENTS;
    struct epoll_event ev[MAXEVENTS];
    int n = epoll_wait(e->epfd, ev, max_events, 0);
    if (n < 0) {
        if (errno == EINTR) return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (n == 0) return PyLong_FromLong(0);
    PyObject **names = budget_names;
    double *fields[4] = {&e->bytes_left, &e->pace_due, &e->per_message, &e->per_byte}, start[4];
    if (read_budget(budget, start) < 0) return NULL;
    for (int i = 0; i < 4; i++) *fields[i] = start[i];
    Py_buffer counts;
    if (get_counts(e, hist, &counts) < 0) return NULL;
    int rc = 0, total = 0;
    e->ntouched = 0;
    /* Passes one after the other while the engine serves every event itself (no hand-back
     * yet), up to max_events in all: the caller's per-call work is paid once for them. */
    while (n > 0) {
        total += n;
        e->ndue = 0;
        for (int i = 0; i < n && !rc; i++) {
            int fd = ev[i].data.fd;
            uint32_t mask = ev[i].events;
            Slot *s = slot_of(e, fd);
            if (!s || s->handed || (mask & EPOLLOUT) || !s->n) {
                rc = hand_int(e, out, fd, H_EVENT, mask); /* Python's handler serves it */
                continue;
            }
            rc = e->udp ? on_udp(e, out, fd, s, counts.buf, from)
                        : on_tcp(e, out, fd, s, counts.buf, from);
            if (s->due && !s->handed) e->due[e->ndue++] = fd;
        }
        for (int i = 0; i < e->ndue && !rc; i++) {
            Slot *s = &e->slots[e->due[i]];
            s->due = 0;
            if (!s->handed) rc = refill(e, out, e->due[i], s, may_send, from);
        }
        if (rc || PyList_GET_SIZE(out) || total >= max_events) break;
        do n = epoll_wait(e->epfd, ev, max_events - total, 0);
        while (n < 0 && errno == EINTR);
    }
    for (int i = 0; i < e->ntouched; i++) { /* every exit path: the rows stay exact */
        Slot *s = &e->slots[e->touched[i]];
        s->touched = s->due = 0;
        if (s->used && fold_row(s) && !rc) rc = -1;
    }
    if (fold_run(e, stats, hist) && !rc) rc = -1;
    for (int i = 0; i < 2; i++) { /* what take changed (an unlimited cap stays infinite) */
        if (*fields[i] == start[i]) continue;
        PyObject *v = PyFloat_FromDouble(*fields[i]);
        if ((!v || PyObject_SetAttr(budget, names[i], v)) && !rc) rc = -1;
        Py_XDECREF(v);
    }
    PyBuffer_Release(&counts);
    return rc ? NULL : PyLong_FromLong(total);
}

static PyObject *Engine_adopt(Engine *e, PyObject *args) {
    int fd, window, warmup;
    PyObject *conn, *buf, *inflight;
    Py_ssize_t size, got;
    unsigned long long seq, first;
    long long quota;
    if (!PyArg_ParseTuple(args, "iOOnKKLpinO", &fd, &conn, &buf, &size, &seq, &first, &quota,
                          &warmup, &window, &got, &inflight))
        return NULL;
    PyObject *items = PySequence_Fast(inflight, "in flight: a sequence of (seq, t0)");
    if (!items) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    if (fd < 0 || window < 1 || window > MAXWIN || count > window || size < HEADER_SIZE ||
        (e->udp ? got != 0 : size > e->rbuf.len || got < 0 || got >= size) || slot_of(e, fd)) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "not a flow this engine serves");
        return NULL;
    }
    if (fd >= e->nslots) {
        int nslots = fd + 64;
        Slot *slots = PyMem_Realloc(e->slots, nslots * sizeof *slots);
        if (!slots) {
            Py_DECREF(items);
            return PyErr_NoMemory();
        }
        memset(slots + e->nslots, 0, (nslots - e->nslots) * sizeof *slots);
        e->slots = slots;
        e->nslots = nslots;
    }
    Slot *s = &e->slots[fd];
    memset(s, 0, sizeof *s);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "KL", &s->seqs[i], &s->t0s[i])) {
            Py_DECREF(items);
            return NULL;
        }
    }
    Py_DECREF(items);
    if (PyObject_GetBuffer(buf, &s->msg, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (s->msg.len < size) {
        PyBuffer_Release(&s->msg);
        PyErr_SetString(PyExc_ValueError, "the message buffer is shorter than a message");
        return NULL;
    }
    s->used = 1;
    s->conn = Py_NewRef(conn);
    s->size = size;
    s->got = got;
    s->seq = seq;
    s->first = first;
    s->quota = quota < 0 ? UINT64_MAX : (uint64_t)quota;
    s->warmup = warmup;
    s->window = window;
    s->n = (int)count;
    Py_RETURN_NONE;
}

static PyObject *Engine_release(Engine *e, PyObject *arg) {
    Slot *s = slot_of(e, (int)PyLong_AsLong(arg));
    if (!s) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *inflight = PyList_New(s->n);
    for (int i = 0; inflight && i < s->n; i++) {
        PyObject *t = Py_BuildValue("(KL)", s->seqs[i], s->t0s[i]);
        if (!t) Py_CLEAR(inflight);
        else PyList_SET_ITEM(inflight, i, t);
    }
    PyObject *r = inflight ? Py_BuildValue("(KnN)", s->seq, s->got, inflight) : NULL;
    int folded = fold_row(s); /* nothing is pending between passes, but be sure */
    free_slot(s);
    if (folded < 0) Py_CLEAR(r);
    return r;
}

static PyObject *Engine_oldest(Engine *e, PyObject *arg) {
    Slot *s = slot_of(e, (int)PyLong_AsLong(arg));
    if (!s || !s->n) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(s->t0s[0]);
}

static PyObject *clock_ns(PyObject *self, PyObject *unused) { return PyLong_FromLongLong(now_ns()); }

static int Engine_init(Engine *e, PyObject *args, PyObject *kw) {
    PyObject *rbuf;
    unsigned long long mask;
    long long half, counts_len;
    if (!PyArg_ParseTuple(args, "ipO(KiiiLL)d", &e->epfd, &e->udp, &rbuf, &mask, &e->shift,
                          &e->half_mag, &e->bucket_offset, &half, &counts_len, &e->slack))
        return -1;
    if (e->rbuf.obj) PyBuffer_Release(&e->rbuf);
    if (PyObject_GetBuffer(rbuf, &e->rbuf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (!mask) {
        PyErr_SetString(PyExc_ValueError, "a histogram's sub-bucket mask is never 0");
        return -1;
    }
    e->mask = mask;
    e->half = half;
    e->counts_len = counts_len;
    e->min = INT64_MAX;
    return 0;
}

static void Engine_dealloc(Engine *e) {
    for (int i = 0; i < e->nslots; i++) free_slot(&e->slots[i]);
    PyMem_Free(e->slots);
    if (e->rbuf.obj) PyBuffer_Release(&e->rbuf);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMethodDef Engine_methods[] = {
    {"serve", (PyCFunction)Engine_serve, METH_VARARGS,
     "serve(max_events, may_send, now, measure_from_ns, stats, histogram, budget, handed) -> events"},
    {"adopt", (PyCFunction)Engine_adopt, METH_VARARGS,
     "adopt(fd, conn, buf, size, seq, first, quota, warmup, window, got, inflight)"},
    {"record", (PyCFunction)Engine_record, METH_VARARGS, "record(histogram, values)"},
    {"release", (PyCFunction)Engine_release, METH_O,
     "release(fd) -> (seq, got, [(seq, t0), ...]) or None"},
    {"oldest", (PyCFunction)Engine_oldest, METH_O, "oldest(fd) -> send time of the oldest, or None"},
    {NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "app.native._pingpong.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Engine(epoll_fd, udp, receive_buffer, histogram_layout, pace_slack)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

/* take(budget, size, now, slack): what the engine charges one message, on a Budget. */
static PyObject *take_one(PyObject *module, PyObject *args) {
    PyObject *budget;
    double size, now, slack, f[4];
    if (!PyArg_ParseTuple(args, "Oddd", &budget, &size, &now, &slack)) return NULL;
    PyObject **names = budget_names;
    if (read_budget(budget, f) < 0) return NULL;
    int charged = charge(&f[0], &f[1], f[2], f[3], slack, now, size);
    for (int i = 0; i < 2; i++) {
        PyObject *v = PyFloat_FromDouble(f[i]);
        int rc = v ? PyObject_SetAttr(budget, names[i], v) : -1;
        Py_XDECREF(v);
        if (rc) return NULL;
    }
    return PyBool_FromLong(charged);
}

static PyMethodDef module_methods[] = {
    {"clock_ns", clock_ns, METH_NOARGS, "The engine's clock (perf_counter_ns's)."},
    {"take", take_one, METH_VARARGS,
     "take(budget, size, now, slack) -> whether the engine charges the message"},
    {NULL},
};

static struct PyModuleDef pingpong_module = {
    PyModuleDef_HEAD_INIT, "_pingpong", "The steady state of pingpong flows.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__pingpong(void) {
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_bytes_in, "bytes_in"}, {&s_bytes_out, "bytes_out"}, {&s_msgs_in, "msgs_in"},
        {&s_msgs_out, "msgs_out"}, {&s_dirty, "dirty"}, {&s_touch, "touch"}, {&s_sent, "sent"},
        {&s_bytes_sent, "bytes_sent"}, {&s_received, "received"},
        {&s_bytes_received, "bytes_received"}, {&s_counts, "counts"},
        {&s_total, "total_count"}, {&s_min, "min_value"}, {&s_max, "max_value"},
        {&s_bytes_left, "bytes_left"}, {&s_due, "_due"}, {&s_per_message, "_per_message"},
        {&s_per_byte, "_per_byte"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(*names[i].slot = PyUnicode_InternFromString(names[i].name))) return NULL;
    PyObject *budget[4] = {s_bytes_left, s_due, s_per_message, s_per_byte};
    for (int i = 0; i < 4; i++) budget_names[i] = budget[i];
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&pingpong_module);
    if (m && PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) < 0) Py_CLEAR(m);
    if (m && PyModule_AddIntConstant(m, "MAXWIN", MAXWIN) < 0) Py_CLEAR(m);
    return m;
}
