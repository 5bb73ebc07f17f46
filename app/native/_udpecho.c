/* _udpecho: the plain UDP echo's drain loop, compiled.
 *
 * Theory of operation: a UDP echo listener (app/listeners/udpecho.py) makes one Echo per
 * socket. Python tells it which sources are known flows: add(raw sockaddr, slot) after
 * Python opened the flow's registry row and its reply guard answers it without a limit
 * (a loopback source, a port from 1024 up); forget(slot) when the flow is forgotten.
 * drain(budget, spins) then reads datagrams in batches (recvmmsg) into buffers allocated
 * once, looks each source up in an open-addressing table of the known sockaddrs, counts it
 * in that slot's int64 counters and sends every reply of the batch back to its source in
 * one sendmmsg, pointing at the same buffers (an echo copies nothing). A datagram it does
 * not handle (an unknown source, one longer than max_size) is left in its buffer and the
 * call returns HANDOFF; Python takes them with handoffs() and serves them as its own loop
 * would (a new flow, rejected, oversized, the reply guard). take() hands Python the
 * counters of the slots touched since the last take() and zeroes them, so Python folds
 * them into the flows' registry rows once per call, not per datagram.
 *
 * Bounded: one call reads at most `budget` datagrams and tries at most `spins` reads that
 * find none (a ping-pong's next requests are a round trip away; the Python loop spins the
 * same way), so the caller's trio checkpoints still happen. No Python object is made per
 * datagram: the per-call result tuple and the take() list are the only allocations.
 *
 * Errors: EAGAIN/EWOULDBLOCK/EINTR on a read end the batch (drained); any other read error
 * (an ICMP error queued for an earlier reply) returns ERROR before any datagram of that
 * read is counted. A reply the kernel refuses is counted in the call's errors and skipped,
 * the others are sent; a slot's msgs_out/bytes_out count only replies the kernel took.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define ST_DRAINED 0 /* the socket had nothing more (after the spins) */
#define ST_BUDGET 1  /* budget datagrams read: checkpoint, then call again */
#define ST_HANDOFF 2 /* datagrams wait in handoffs() */
#define ST_ERROR 3   /* a read failed (not EAGAIN): count it, wait for readiness */
#define KEYLEN 28    /* sockaddr_in6; an IPv4 key is its first 8 bytes, zero padded */
#define EMPTY (-1)
#define MAX_FLOWS (1 << 22)
/* Every method first: an Echo whose __init__ did not complete has no buffers. */
#define NEED_READY(e)                                                     \
    if (!(e)->table) {                                                    \
        PyErr_SetString(PyExc_RuntimeError, "Echo is not initialised"); \
        return NULL;                                                      \
    }

typedef struct {
    unsigned char b[KEYLEN];
} Key;

typedef struct { /* one known flow */
    Key key;
    unsigned char used, dirty; /* dirty: in touched[] */
    int64_t c[4];              /* since the last take(): msgs_in, bytes_in, msgs_out, bytes_out */
} Flow;

typedef struct {
    PyObject_HEAD
    int fd;
    int family;
    socklen_t namelen;
    Py_ssize_t max_size, size; /* size: each buffer, max_size + 1 */
    unsigned slots;
    char *data;
    struct sockaddr_in6 *names;
    struct mmsghdr *rhdr, *shdr;
    struct iovec *riov, *siov;
    int32_t *sent_slot;  /* per queued reply: its flow slot */
    unsigned *handoff;   /* per handed-off datagram: its batch entry */
    unsigned nhandoff;
    /* Known flows: flows[slot], and a linear-probing table of slot indexes by key. */
    uint32_t cap, tmask;
    int32_t *table;
    Flow *flows;
    uint32_t *touched; /* slots with counts since the last take() */
    uint32_t ntouched;
} Echo;

static void key_of(const Echo *e, const struct sockaddr_in6 *name, Key *k) {
    memset(k, 0, sizeof *k);
    memcpy(k->b, name, e->family == AF_INET ? 8 : KEYLEN);
}

static uint32_t hash_key(const Key *k) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < KEYLEN; i++) h = (h ^ k->b[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static int32_t lookup(const Echo *e, const Key *k) {
    for (uint32_t i = hash_key(k) & e->tmask;; i = (i + 1) & e->tmask) {
        int32_t s = e->table[i];
        if (s == EMPTY) return EMPTY;
        if (!memcmp(e->flows[s].key.b, k->b, KEYLEN)) return s;
    }
}

static void table_put(Echo *e, int32_t slot) {
    uint32_t i = hash_key(&e->flows[slot].key) & e->tmask;
    while (e->table[i] != EMPTY) i = (i + 1) & e->tmask;
    e->table[i] = slot;
}

/* Grow the per-slot arrays to hold slot `need`; the table stays at least twice as large
 * as the slots, so a probe always meets an empty entry. */
static int grow(Echo *e, uint32_t need) {
    uint32_t cap = e->cap ? e->cap : 16;
    while (cap <= need) cap *= 2;
    Flow *flows = PyMem_Realloc(e->flows, cap * sizeof(Flow));
    if (flows) e->flows = flows;
    uint32_t *touched = PyMem_Realloc(e->touched, cap * sizeof(uint32_t));
    if (touched) e->touched = touched;
    int32_t *table = PyMem_Malloc(cap * 2 * sizeof(int32_t));
    if (!flows || !touched || !table) {
        PyMem_Free(table);
        PyErr_NoMemory();
        return -1;
    }
    memset(e->flows + e->cap, 0, (cap - e->cap) * sizeof(Flow));
    PyMem_Free(e->table);
    e->table = table;
    e->tmask = cap * 2 - 1;
    for (uint32_t i = 0; i <= e->tmask; i++) table[i] = EMPTY;
    for (uint32_t s = 0; s < e->cap; s++)
        if (e->flows[s].used) table_put(e, (int32_t)s);
    e->cap = cap;
    return 0;
}

static void echo_dealloc(Echo *e) {
    void *owned[] = {e->data, e->names,     e->rhdr,    e->shdr,  e->riov,
                     e->siov, e->sent_slot, e->handoff, e->table, e->flows, e->touched};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) PyMem_Free(owned[i]);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int echo_init(Echo *e, PyObject *args, PyObject *kw) {
    static char *names[] = {"fd", "family", "max_size", "slots", NULL};
    unsigned slots = 64;
    if (e->data) { /* __init__ called twice: keep the first */
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iin|I", names, &e->fd, &e->family,
                                     &e->max_size, &slots))
        return -1;
    if (e->family != AF_INET && e->family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "only AF_INET and AF_INET6 sockets");
        return -1;
    }
    if (e->max_size < 1 || e->max_size > (1 << 20) || slots < 1 || slots > 1024) {
        PyErr_SetString(PyExc_ValueError, "max_size or slots out of range");
        return -1;
    }
    e->namelen = e->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    e->size = e->max_size + 1;
    e->slots = slots;
    /* Large enough for malloc to map it: pages are given only where datagrams land. */
    e->data = PyMem_Malloc((size_t)e->size * slots);
    e->names = PyMem_Calloc(slots, sizeof(struct sockaddr_in6));
    e->rhdr = PyMem_Calloc(slots, sizeof(struct mmsghdr));
    e->shdr = PyMem_Calloc(slots, sizeof(struct mmsghdr));
    e->riov = PyMem_Calloc(slots, sizeof(struct iovec));
    e->siov = PyMem_Calloc(slots, sizeof(struct iovec));
    e->sent_slot = PyMem_Calloc(slots, sizeof(int32_t));
    e->handoff = PyMem_Calloc(slots, sizeof(unsigned));
    if (!e->data || !e->names || !e->rhdr || !e->shdr || !e->riov || !e->siov ||
        !e->sent_slot || !e->handoff) {
        PyErr_NoMemory();
        return -1; /* dealloc frees what was allocated */
    }
    for (unsigned i = 0; i < slots; i++) {
        e->riov[i].iov_base = e->data + (size_t)i * e->size;
        e->riov[i].iov_len = e->size;
        e->rhdr[i].msg_hdr.msg_name = &e->names[i];
        e->rhdr[i].msg_hdr.msg_iov = &e->riov[i];
        e->rhdr[i].msg_hdr.msg_iovlen = 1;
        e->shdr[i].msg_hdr.msg_iov = &e->siov[i];
        e->shdr[i].msg_hdr.msg_iovlen = 1;
    }
    return grow(e, 0);
}

static void count(Echo *e, int32_t slot, int what, int64_t bytes) {
    Flow *f = &e->flows[slot];
    f->c[what] += 1;
    f->c[what + 1] += bytes;
    if (!f->dirty) {
        f->dirty = 1;
        e->touched[e->ntouched++] = (uint32_t)slot;
    }
}

/* Send the q queued replies; returns the replies refused (each skipped). */
static int64_t send_replies(Echo *e, unsigned q, int64_t *msgs_out, int64_t *bytes_out) {
    unsigned done = 0;
    int64_t errors = 0;
    int retries = 8; /* EINTR: nothing was sent, try again, but not forever */
    while (done < q) {
        int r = sendmmsg(e->fd, e->shdr + done, q - done, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR && retries-- > 0) continue;
        if (r <= 0) { /* the kernel refused shdr[done]: count it, send the rest */
            errors++;
            done++;
            continue;
        }
        for (unsigned k = done; k < done + (unsigned)r; k++) {
            int64_t n = (int64_t)e->siov[k].iov_len;
            count(e, e->sent_slot[k], 2, n);
            *msgs_out += 1;
            *bytes_out += n;
        }
        done += (unsigned)r;
    }
    return errors;
}

/* drain(budget, spins) -> (status, read, msgs_in, bytes_in, msgs_out, bytes_out, errors) */
static PyObject *echo_drain(Echo *e, PyObject *args) {
    NEED_READY(e)
    unsigned budget, spins;
    if (!PyArg_ParseTuple(args, "II", &budget, &spins)) return NULL;
    int64_t read = 0, msgs_in = 0, bytes_in = 0, msgs_out = 0, bytes_out = 0, errors = 0;
    int status = ST_BUDGET, loaded = 0;
    e->nhandoff = 0;
    while (read < budget) {
        unsigned want = budget - (unsigned)read < e->slots ? budget - (unsigned)read : e->slots;
        for (unsigned i = 0; i < want; i++) e->rhdr[i].msg_hdr.msg_namelen = e->namelen;
        int n = recvmmsg(e->fd, e->rhdr, want, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                status = ST_ERROR;
                break;
            }
            n = 0;
        }
        read += n;
        loaded = loaded || read > 1;
        unsigned q = 0;
        for (int i = 0; i < n; i++) {
            int64_t len = e->rhdr[i].msg_len; /* the real length (MSG_TRUNC) */
            Key k;
            key_of(e, &e->names[i], &k);
            int32_t slot = len > e->max_size ? EMPTY : lookup(e, &k);
            if (slot == EMPTY) {
                e->handoff[e->nhandoff++] = (unsigned)i;
                continue;
            }
            count(e, slot, 0, len);
            msgs_in++;
            bytes_in += len;
            e->shdr[q].msg_hdr.msg_name = &e->names[i];
            e->shdr[q].msg_hdr.msg_namelen = e->rhdr[i].msg_hdr.msg_namelen;
            e->siov[q].iov_base = e->riov[i].iov_base;
            e->siov[q].iov_len = (size_t)len;
            e->sent_slot[q++] = slot;
        }
        if (q) errors += send_replies(e, q, &msgs_out, &bytes_out);
        if (e->nhandoff) {
            status = ST_HANDOFF;
            break;
        }
        if ((unsigned)n < want) { /* drained: spin a few reads when this call was busy */
            if (loaded && spins) {
                spins--;
                continue;
            }
            status = ST_DRAINED;
            break;
        }
    }
    return Py_BuildValue("(iLLLLLL)", status, (long long)read, (long long)msgs_in,
                         (long long)bytes_in, (long long)msgs_out, (long long)bytes_out,
                         (long long)errors);
}

/* handoffs() -> [(data, size, raw sockaddr)] of the last drain, in arrival order. */
static PyObject *echo_handoffs(Echo *e, PyObject *unused) {
    NEED_READY(e)
    PyObject *out = PyList_New(e->nhandoff);
    if (!out) return NULL;
    for (unsigned j = 0; j < e->nhandoff; j++) {
        unsigned i = e->handoff[j];
        Py_ssize_t len = e->rhdr[i].msg_len;
        Py_ssize_t kept = len < e->size ? len : e->size;
        PyObject *item = Py_BuildValue("(y#ny#)", (char *)e->riov[i].iov_base, kept, len,
                                       (char *)&e->names[i],
                                       (Py_ssize_t)e->rhdr[i].msg_hdr.msg_namelen);
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, j, item);
    }
    e->nhandoff = 0;
    return out;
}

/* take() -> [(slot, msgs_in, bytes_in, msgs_out, bytes_out)] of the touched slots, zeroed. */
static PyObject *echo_take(Echo *e, PyObject *unused) {
    NEED_READY(e)
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (uint32_t j = 0; j < e->ntouched; j++) {
        int64_t *c = e->flows[e->touched[j]].c;
        if (!c[0] && !c[2]) continue; /* forgotten since: its counts went with it */
        PyObject *item = Py_BuildValue("(ILLLL)", e->touched[j], (long long)c[0],
                                       (long long)c[1], (long long)c[2], (long long)c[3]);
        if (!item || PyList_Append(out, item) < 0) {
            /* nothing is zeroed: every count stays for the next take() */
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    for (uint32_t j = 0; j < e->ntouched; j++) {
        Flow *f = &e->flows[e->touched[j]];
        memset(f->c, 0, sizeof f->c);
        f->dirty = 0;
    }
    e->ntouched = 0;
    return out;
}

/* add(raw sockaddr, slot): datagrams from that source are served here, counted in slot. */
static PyObject *echo_add(Echo *e, PyObject *args) {
    NEED_READY(e)
    Py_buffer raw;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "y*I", &raw, &slot)) return NULL;
    PyObject *result = NULL;
    Key k;
    if (raw.len != e->namelen || ((struct sockaddr *)raw.buf)->sa_family != e->family) {
        PyErr_SetString(PyExc_ValueError, "not a sockaddr of this socket's family");
    } else if (slot >= MAX_FLOWS) {
        PyErr_SetString(PyExc_ValueError, "slot out of range");
    } else if ((slot >= e->cap && grow(e, slot) < 0)) {
        /* MemoryError set */
    } else if (key_of(e, raw.buf, &k), lookup(e, &k) != EMPTY || e->flows[slot].used) {
        PyErr_SetString(PyExc_ValueError, "source or slot already known");
    } else {
        e->flows[slot].key = k;
        e->flows[slot].used = 1;
        table_put(e, (int32_t)slot);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&raw);
    return result;
}

/* forget(slot): its source goes to handoffs() again. Call it after take(): counts the slot
 * still holds are zeroed with it. Linear probing's backward-shift delete keeps every
 * other key reachable without tombstones. */
static PyObject *echo_forget(Echo *e, PyObject *arg) {
    NEED_READY(e)
    unsigned long slot = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) return NULL;
    if (slot >= e->cap || !e->flows[slot].used) {
        PyErr_SetString(PyExc_KeyError, "slot not known");
        return NULL;
    }
    uint32_t i = hash_key(&e->flows[slot].key) & e->tmask;
    while (e->table[i] != (int32_t)slot) i = (i + 1) & e->tmask;
    for (uint32_t j = i;;) {
        j = (j + 1) & e->tmask;
        int32_t s = e->table[j];
        if (s == EMPTY) break;
        uint32_t home = hash_key(&e->flows[s].key) & e->tmask;
        /* s stays when its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
        e->table[i] = s;
        i = j;
    }
    e->table[i] = EMPTY;
    e->flows[slot].used = 0;
    memset(e->flows[slot].c, 0, sizeof e->flows[slot].c);
    return Py_NewRef(Py_None);
}

static PyMethodDef echo_methods[] = {
    {"drain", (PyCFunction)echo_drain, METH_VARARGS,
     "drain(budget, spins) -> (status, read, msgs_in, bytes_in, msgs_out, bytes_out, errors)"},
    {"handoffs", (PyCFunction)echo_handoffs, METH_NOARGS,
     "handoffs() -> [(data, size, raw sockaddr)] the last drain left to Python"},
    {"take", (PyCFunction)echo_take, METH_NOARGS,
     "take() -> [(slot, msgs_in, bytes_in, msgs_out, bytes_out)] since the last take()"},
    {"add", (PyCFunction)echo_add, METH_VARARGS, "add(raw sockaddr, slot): a known flow"},
    {"forget", (PyCFunction)echo_forget, METH_O, "forget(slot): no longer a known flow"},
    {NULL},
};

static PyTypeObject EchoType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "app.native._udpecho.Echo",
    .tp_basicsize = sizeof(Echo),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Echo(fd, family, max_size, slots=64): the compiled drain of one UDP socket.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)echo_init,
    .tp_dealloc = (destructor)echo_dealloc,
    .tp_methods = echo_methods,
};

static struct PyModuleDef udpecho_module = {
    PyModuleDef_HEAD_INIT, "_udpecho", "The plain UDP echo's drain loop, compiled.", -1, NULL,
};

PyMODINIT_FUNC PyInit__udpecho(void) {
    if (PyType_Ready(&EchoType) < 0) return NULL;
    PyObject *m = PyModule_Create(&udpecho_module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Echo", (PyObject *)&EchoType) < 0 ||
        PyModule_AddIntConstant(m, "DRAINED", ST_DRAINED) < 0 ||
        PyModule_AddIntConstant(m, "BUDGET", ST_BUDGET) < 0 ||
        PyModule_AddIntConstant(m, "HANDOFF", ST_HANDOFF) < 0 ||
        PyModule_AddIntConstant(m, "ERROR", ST_ERROR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
