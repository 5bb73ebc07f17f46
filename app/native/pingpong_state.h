/* The pingpong engine's state, and how its counts reach the run's figures
 * (included by _pingpong.c, which has the theory of operation).
 *
 * A Slot per adopted flow (indexed by its descriptor) holds what the engine owns of it and
 * the counts not yet added to its registry row; the Engine holds the pass's run-level
 * counts. The fold_* functions add them to the Python objects (rows, RunStats, the
 * interval histogram) before a call returns, so no other task ever sees them half done.
 */
#ifndef SOCKETLAB_PINGPONG_STATE_H
#define SOCKETLAB_PINGPONG_STATE_H

#define MAXWIN 16        /* the largest window served here; wider ones stay in Python */
#define MAXEVENTS 256    /* events of one pass (the caller asks for at most this many) */
#define HEADER_SIZE 28   /* app/wire/probe.py */
#define SEQ_OFFSET 12
#define PREFIX 0x534C01u /* "SL", version 1 */
#define FLAG_WARMUP 0x01

/* Hand-back codes (app/runs/mux_native.py has their meaning for Python). */
enum { H_EVENT, H_CLOSED, H_ERROR, H_REFUSED, H_UNMATCHED, H_REFILL, H_BLOCKED, H_PARTIAL,
       H_SEND_REFUSED };

typedef struct {
    int used, handed, touched, due;
    PyObject *conn;           /* the flow's registry row (a strong reference) */
    Py_buffer msg;            /* the flow's message buffer, its header stamped per message */
    Py_ssize_t size, got;     /* message size; TCP: bytes of the oldest reply read so far */
    uint64_t seq, first, quota;
    int window, warmup, n;    /* n: messages in flight, oldest first */
    uint64_t seqs[MAXWIN];
    int64_t t0s[MAXWIN];
    int64_t in_msgs, in_bytes, out_msgs, out_bytes; /* not yet added to the row */
} Slot;

typedef struct {
    PyObject_HEAD
    int epfd, udp;
    Py_buffer rbuf;           /* the one receive buffer */
    uint64_t mask;            /* FastHistogram's layout (hdrfast.py) */
    int shift, half_mag, bucket_offset;
    int64_t half, counts_len;
    Slot *slots;              /* indexed by descriptor */
    int nslots;
    int touched[MAXEVENTS], ntouched, due[MAXEVENTS], ndue;
    /* Figures of the current pass, added to the run's at its end. */
    int64_t sent, bytes_sent, received, bytes_received, recorded, min, max;
    /* The run's Budget (app/runs/budget.py) during a call: its byte cap and its virtual
     * schedule, charged per send as Budget.take charges them. */
    double bytes_left, pace_due, per_message, per_byte, slack, now;
} Engine;

static PyObject *s_bytes_in, *s_bytes_out, *s_msgs_in, *s_msgs_out, *s_dirty, *s_touch,
    *s_sent, *s_bytes_sent, *s_received, *s_bytes_received, *s_counts, *s_total, *s_min,
    *s_max, *s_bytes_left, *s_due, *s_per_message, *s_per_byte;

static int64_t now_ns(void) {
    /* time.perf_counter_ns's clock on Linux: the send times Python stamps are comparable. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* obj.name += delta (skipped when delta is 0). */
static int add_attr(PyObject *obj, PyObject *name, int64_t delta) {
    if (!delta) return 0;
    PyObject *old = PyObject_GetAttr(obj, name);
    if (!old) return -1;
    PyObject *d = PyLong_FromLongLong(delta);
    PyObject *sum = d ? PyNumber_Add(old, d) : NULL;
    Py_DECREF(old);
    Py_XDECREF(d);
    if (!sum) return -1;
    int r = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return r;
}

/* Add a slot's counts to its row, and mark the row changed for the next snapshot. */
static int fold_row(Slot *s) {
    if (!(s->in_msgs | s->out_msgs | s->in_bytes | s->out_bytes)) return 0;
    if (add_attr(s->conn, s_bytes_in, s->in_bytes) || add_attr(s->conn, s_msgs_in, s->in_msgs) ||
        add_attr(s->conn, s_bytes_out, s->out_bytes) || add_attr(s->conn, s_msgs_out, s->out_msgs))
        return -1;
    s->in_msgs = s->in_bytes = s->out_msgs = s->out_bytes = 0;
    PyObject *dirty = PyObject_GetAttr(s->conn, s_dirty);
    if (!dirty) return -1;
    int is_dirty = PyObject_IsTrue(dirty);
    Py_DECREF(dirty);
    if (is_dirty) return is_dirty < 0 ? -1 : 0;
    PyObject *r = PyObject_CallMethodNoArgs(s->conn, s_touch);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static void free_slot(Slot *s) {
    if (!s->used) return;
    PyBuffer_Release(&s->msg);
    Py_CLEAR(s->conn);
    s->used = 0;
}

static Slot *slot_of(Engine *e, int fd) {
    return fd >= 0 && fd < e->nslots && e->slots[fd].used ? &e->slots[fd] : NULL;
}

/* One value into the histogram's counts, at FastHistogram.record_ns's slot. */
static void record_value(Engine *e, int64_t *counts, uint64_t v) {
    int bucket = 64 - __builtin_clzll(v | e->mask) - e->bucket_offset;
    int64_t index = ((int64_t)(bucket + 1) << e->half_mag) + (int64_t)(v >> (bucket + e->shift)) -
                    e->half;
    if (index >= e->counts_len) return; /* out of range: not recorded, as record_ns */
    counts[index]++;
    e->recorded++;
    if ((int64_t)v < e->min) e->min = (int64_t)v;
    if ((int64_t)v > e->max) e->max = (int64_t)v;
}

/* A reply to the message sent at t0: counted, its RTT recorded (not in the warm-up). */
static void record(Engine *e, int64_t *counts, int64_t t0, Py_ssize_t bytes, int64_t from) {
    if (t0 < from) return;
    record_value(e, counts, (uint64_t)(now_ns() - t0));
    e->received++;
    e->bytes_received += bytes;
}

/* Add the pass's figures to the run's (stats) and to the interval histogram's. */
static int fold_run(Engine *e, PyObject *stats, PyObject *hist) {
    if (add_attr(stats, s_sent, e->sent) || add_attr(stats, s_bytes_sent, e->bytes_sent) ||
        add_attr(stats, s_received, e->received) ||
        add_attr(stats, s_bytes_received, e->bytes_received) || add_attr(hist, s_total, e->recorded))
        return -1;
    if (e->recorded) {
        PyObject *names[2] = {s_min, s_max};
        int64_t values[2] = {e->min, e->max};
        int ops[2] = {Py_LT, Py_GT};
        for (int i = 0; i < 2; i++) {
            PyObject *v = PyLong_FromLongLong(values[i]);
            PyObject *old = v ? PyObject_GetAttr(hist, names[i]) : NULL;
            int better = old ? PyObject_RichCompareBool(v, old, ops[i]) : -1;
            Py_XDECREF(old);
            if (better > 0) better = PyObject_SetAttr(hist, names[i], v) ? -1 : 1;
            Py_XDECREF(v);
            if (better < 0) return -1;
        }
    }
    e->sent = e->bytes_sent = e->received = e->bytes_received = e->recorded = 0;
    e->min = INT64_MAX;
    e->max = 0;
    return 0;
}

/* The histogram's counts array (hdrh's, int64s: FastHistogram) to record into. */
static int get_counts(Engine *e, PyObject *hist, Py_buffer *counts) {
    PyObject *obj = PyObject_GetAttr(hist, s_counts);
    if (!obj) return -1;
    int r = PyObject_GetBuffer(obj, counts, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
    Py_DECREF(obj);
    if (r < 0) return -1;
    if (counts->itemsize == 8 && counts->len / 8 >= e->counts_len) return 0;
    PyBuffer_Release(counts);
    PyErr_SetString(PyExc_ValueError, "the histogram's counts are not the layout's int64s");
    return -1;
}

#endif
