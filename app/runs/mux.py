"""Pingpong flows of one run driven by one task over a private epoll.

Theory of operation: a task per flow pays, for every reply, a trio scheduler round, a pair
of ``epoll_ctl`` calls and a task switch: as much CPU as the system calls themselves. Here
the plain TCP and UDP flows of a pingpong run are served by one
:class:`~app.readyloop.ReadyLoop`: for each ready socket, read the reply, record its RTT, send
the next message. :class:`Multiplexer` serves TCP (replies matched by order);
:class:`~app.runs.mux_udp.UdpMultiplexer` serves UDP on the same driver.

Each flow keeps its own task: it connects, owns the socket and its registry row, registers
with :meth:`Multiplexer.drive` and waits there until the driver says the flow is done. So a
stop (cancellation), a close from the API (the row's ``close_hook``) and a flow's error end
exactly one flow, and the flow's task closes what it opened, as before.

Caps: every new message is charged to the run's budget first (:mod:`app.runs.budget`). A
flow the rate caps hold back is *parked* (it neither sends nor ends) and the sweep resumes
it; at the byte cap it sends nothing more and ends once its replies are in. A paused run
parks every flow the same way (the budget holds it back), and a flow retired by a live edit
(:meth:`Multiplexer.retire`) ends once its replies are in.

Timeouts: a sweep every ``refresh`` seconds (not a cancel scope per message) looks at the
oldest reply each flow still waits for. TCP ends the flow with a ``timeout`` error and
counts every message still unanswered lost; UDP counts each datagram past its deadline
lost and sends another in its place, so one loss costs one slot of the window for a
timeout, not the whole flow. A late reply is noticed between ``timeout`` and ``timeout +
refresh`` after its send.

Compiled steady state: when app/native/_pingpong.c is built (and SOCKETLAB_NO_NATIVE is not
set), the loop is a :class:`~app.runs.mux_native.NativeLoop`: the flows in the steady state
are served in C, and everything else comes back to the handlers here, which stay the
reference (and the whole path without it).

Error handling: an ``OSError`` ends the flow it happened on, counted by kind, and its
unanswered messages are lost; any other exception there is a bug, raised in that flow's
task, where the run's per-flow boundary logs it with the run and flow ids and counts it as
``internal``; the other flows go on.
"""

from __future__ import annotations

import math
import select
import socket as stdsocket
import time
from collections.abc import Callable
from functools import partial

import trio

from app.native import native
from app.readyloop import ReadyLoop
from app.registry import Conn
from app.runs.context import FlowContext
from app.runs.error_kinds import CLOSED_DETAIL, error_detail, error_kind, timeout_detail
from app.runs.mux_native import NativeLoop
from app.runs.muxflow import MuxFlow as MuxFlow  # where mux_udp and the tests name it
from app.wire import probe

perf_ns = time.perf_counter_ns

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
HEADER_SIZE = probe.HEADER_SIZE
# Set in the header of a message sent during the warm-up (app.wire.probe).
WARMUP = probe.FLAG_WARMUP
FLAGS_OFFSET = probe.FLAGS_OFFSET
SEQ_OFFSET = probe.SEQ_OFFSET
stamp = probe.STAMP.pack_into


class Multiplexer:
    """Drives the pingpong flows of one run: plain TCP here, UDP in a subclass.

    A subclass gives the ready handler (:meth:`_handler`), the first sends of a flow
    (:meth:`_start`), the sends at the end of a pass for the flows answered in it
    (:meth:`_refill`), what the sweep does with a flow's overdue replies (:meth:`_overdue`),
    what a flow that fails leaves unanswered (:meth:`_abandon`), and the size of the one
    receive buffer (:meth:`receive_size`).
    """

    udp = False  # replies matched by order (UDP: by sequence number)

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.refresh = min(ctx.timeout / 16, 0.1)
        # Flows whose replies came in this pass: they send at its end, one after the other
        # (see _send_due).
        self._due: list[MuxFlow] = []
        # Replies are counted, not kept: one receive buffer, made once, serves every flow
        # (a handler never awaits, so no two replies are in it at once).
        self._rbuf = bytearray(self.receive_size(ctx))
        self._rview = memoryview(self._rbuf)
        self._timeout_ns = int(ctx.timeout * 1e9)
        self._window = ctx.spec.in_flight
        self._sizes = ctx.sizes
        self._fixed = len(ctx.sizes) == 1
        self._parked: list[MuxFlow] = []
        self._take = ctx.budget.take  # the run's caps, charged per new message
        # The RTT histogram is reset at each interval, never replaced: bound once.
        self._record = ctx.stats.interval.record_ns
        # Every message carries a probe header: each flow's is written once (drive) and
        # only its sequence number and send time per message (probe.STAMP).
        self._all_headers = min(ctx.sizes) >= HEADER_SIZE
        # The steady state in C when it is built (app.runs.mux_native), else in Python.
        module = native("pingpong")
        self._native: NativeLoop | None = None
        self._adopt: Callable[[MuxFlow], None] | None = None
        self._loop: ReadyLoop[MuxFlow]
        if module is None:
            self._loop = ReadyLoop(self._handler(), self._on_error, self._send_due)
        else:
            self._loop = self._native = NativeLoop(self, module, self.udp)
            if self._native.serves:
                self._adopt = self._native.adopt

    @staticmethod
    def receive_size(ctx: FlowContext) -> int:
        """A TCP read takes at most the rest of one reply."""
        return ctx.max_size

    def _handler(self) -> Callable[[MuxFlow, int], None]:
        return self._on_tcp

    async def run(self) -> None:
        """Serve the registered flows until cancelled (after the run's flows have ended)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep)
            await self._loop.run()

    async def drive(
        self, sock: stdsocket.socket, conn: Conn, flow_id: int, quota: int | None
    ) -> None:
        """Run one flow on ``sock`` (connected, non-blocking) until it is done.

        Returns when the quota is used and answered (for UDP: answered or lost), after the
        send deadline once the replies are in, after an error (counted), or after a close
        from the API. The caller closes ``sock`` and the row.
        """
        buf = self.ctx.message_buffer()
        flow = MuxFlow(sock, conn, flow_id, quota, buf)
        if self._fixed:
            flow.msg = flow.view[: self._sizes[0]]
        if self._all_headers:
            # Flagged warm-up until the flow's first counted message clears the flag.
            probe.encode_into(buf, self.ctx.run_tag, flow_id, 0, 0, flags=WARMUP)

        def close_from_api() -> None:
            self._loop.finish(flow)

        conn.close_hook = close_from_api
        self.ctx.retirers[flow_id] = partial(self.retire, flow)
        self._loop.add(flow)
        self._loop.now = trio.current_time()
        try:
            self._start(flow)
        except Exception as exc:
            self._on_error(flow, exc)
        try:
            await self._loop.wait(flow)
        finally:
            self.ctx.retirers.pop(flow_id, None)

    def retire(self, flow: MuxFlow) -> None:
        """Send nothing more on ``flow`` (a live edit left the run fewer connections); it
        ends once the replies it waits for are in, as at the end of the run."""
        if self._native is not None:
            self._native.reclaim(flow)
        flow.quota = flow.seq
        if not (flow.outstanding or flow.inflight):
            self._loop.finish(flow)  # a parked one too: the sweep would only end it

    async def _sweep(self) -> None:
        loop = self._loop
        while True:
            await trio.sleep(self.refresh)
            loop.now = trio.current_time()
            if self._parked:
                self._resume()
            oldest_allowed = perf_ns() - self._timeout_ns
            native = self._native
            for flow in list(loop.items.values()):
                try:
                    if flow.native and native is not None:
                        t0 = native.oldest(flow)
                        if t0 is None or t0 >= oldest_allowed:
                            continue
                        native.reclaim(flow)  # overdue: Python's code counts it
                    self._overdue(flow, oldest_allowed)
                except Exception as exc:
                    self._on_error(flow, exc)

    def _on_error(self, flow: MuxFlow, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._fail(flow, error_kind(exc), error_detail(exc))
        else:
            # A bug: the flow's task raises it, and the run's per-flow boundary logs it and
            # counts it as "internal".
            self._loop.finish(flow, exc)

    def _fail(self, flow: MuxFlow, kind: str, detail: str | None = None) -> None:
        """End a flow with an error, counted once (a flow that has ended already is not);
        the messages it still waited for will never be answered: they are lost."""
        if self._loop.finish(flow):
            self.ctx.stats.flow_failed(kind, detail)
            self._abandon(flow)

    def _park(self, flow: MuxFlow, wait: float) -> None:
        """The budget said ``wait``: hold the flow until the next sweep, or (the byte cap)
        let it end once its replies are in."""
        if wait != math.inf and not flow.parked:
            flow.parked = True
            self._parked.append(flow)

    def _resume(self) -> None:
        """Send again for the flows the budget held back (those still served)."""
        parked, self._parked = self._parked, []
        items = self._loop.items
        for flow in parked:
            flow.parked = False
            if items.get(flow.fd) is not flow:
                continue
            try:
                self._start(flow)
            except Exception as exc:
                self._on_error(flow, exc)

    def _watch_writable(self, flow: MuxFlow, on: bool) -> None:
        flow.blocked = on
        self._loop.watch(flow, EPOLLIN | EPOLLOUT if on else EPOLLIN)

    def _stamp(self, flow: MuxFlow, seq: int, size: int) -> int:
        """Read the send time of ``flow``'s message ``seq`` and write it into the message's
        probe header (if it has room for one), numbered as probe.encode_numbered numbers it.

        A flow whose messages all carry a header has it written once (:meth:`drive`): per
        message only the sequence number and the send time are (probe.STAMP), and the
        flags byte once, at the first counted message.

        Returns:
            The send time (``perf_counter_ns``); counted from ``ctx.measure_from_ns`` on.
        """
        t0 = perf_ns()
        counted = t0 >= self.ctx.measure_from_ns
        if counted and seq < flow.first_counted:
            flow.first_counted = seq
            if self._all_headers:
                flow.buf[FLAGS_OFFSET] = 0  # no longer a warm-up message
        if self._all_headers:
            stamp(flow.buf, SEQ_OFFSET, seq - flow.first_counted if counted else seq, t0)
        elif size >= HEADER_SIZE:
            probe.encode_numbered(
                flow.buf, self.ctx.run_tag, flow.flow_id, seq, flow.first_counted, t0, counted
            )
        return t0

    # --- TCP: replies matched by order, ``in_flight`` outstanding ---------------------

    def _start(self, flow: MuxFlow) -> None:
        self._fill(flow)
        if not flow.outstanding and not flow.parked:
            self._loop.finish(flow)

    def _overdue(self, flow: MuxFlow, oldest_allowed: int) -> None:
        # Replies come in order: once the oldest is overdue, the stream is of no more use.
        if flow.outstanding and flow.outstanding[0][0] < oldest_allowed:
            self._fail(flow, "timeout", timeout_detail(self.ctx.timeout))

    def _abandon(self, flow: MuxFlow) -> None:
        outstanding = flow.outstanding
        self.ctx.stats.count_unanswered((t0 for t0, _ in outstanding), self.ctx.measure_from_ns)
        outstanding.clear()

    def _unmatched(self, flow: MuxFlow, seq: int | None, n: int) -> None:
        """A reply that answers nothing in flight: UDP's (TCP's come in order)."""
        raise NotImplementedError

    def _on_tcp(self, flow: MuxFlow, mask: int) -> None:
        if mask & EPOLLOUT:
            self._flush(flow)
        # Replies are read even while a send waits: a peer blocked on sending them back
        # would otherwise never read ours.
        outstanding = flow.outstanding
        if mask != EPOLLOUT and outstanding:
            t0, size = outstanding[0]
            need = size - flow.got
            try:
                n = flow.sock.recv_into(self._rview, need)
            except BlockingIOError:
                return
            if not n:
                self._fail(flow, "closed", CLOSED_DETAIL)
                return
            if n < need:
                flow.got += n
                return
            flow.got = 0
            outstanding.popleft()
            ctx = self.ctx
            if t0 >= ctx.measure_from_ns:
                self._record(perf_ns() - t0)
                stats = ctx.stats
                stats.received += 1
                stats.bytes_received += size
            conn = flow.conn
            conn.bytes_in += size
            conn.msgs_in += 1
            if not conn.dirty:
                conn.touch()  # once per snapshot: the test saves a call per reply
            self._due.append(flow)  # its next message goes at the end of the pass
            return
        self._fill(flow)
        if not outstanding and not flow.parked:
            self._loop.finish(flow)

    def _send_due(self) -> None:
        """At the end of a pass, send the next messages of the flows answered in it.

        Sent together, not each right after its reply: a peer faster than this loop (a C
        echo) otherwise sleeps between two of them and every send pays for waking it (a
        tenth of the client's CPU, measured with perf), where back to back most find it
        awake. Each message's send time is still read just before its send.
        """
        due = self._due
        if not due:
            return
        self._due = []
        items = self._loop.items
        refill = self._refill
        adopt = self._adopt
        for flow in due:
            if items.get(flow.fd) is not flow:
                continue  # ended in the pass (an error, a close from the API)
            try:
                refill(flow)
                if adopt is not None:
                    adopt(flow)  # the compiled engine serves it from now on, if it may
            except Exception as exc:
                self._on_error(flow, exc)

    def _refill(self, flow: MuxFlow) -> None:
        """Send what the replies of a pass made room for; end the flow if it is done."""
        self._fill(flow)
        if not flow.outstanding and not flow.parked:
            self._loop.finish(flow)

    def _fill(self, flow: MuxFlow) -> None:
        """Send until ``in_flight`` messages are out (or the quota or the time is up).

        Runs for every reply: locals only where a value is used more than once.
        """
        ctx = self.ctx
        now = self._loop.now
        if flow.blocked or flow.parked or now >= ctx.send_deadline:
            return
        outstanding = flow.outstanding
        quota = flow.quota
        while len(outstanding) < self._window and (quota is None or flow.seq < quota):
            seq = flow.seq
            size = self._sizes[seq % len(self._sizes)]
            wait = self._take(size, now)
            if wait:
                self._park(flow, wait)
                return
            # Replies are matched by order: the header's numbers are the receiver's.
            if self._all_headers and flow.first_counted <= seq:
                # After the flow's first counted message every one is counted: stamped here,
                # without the call (the common case, once per reply).
                t0 = perf_ns()
                stamp(flow.buf, SEQ_OFFSET, seq - flow.first_counted, t0)
            else:
                t0 = self._stamp(flow, seq, size)
            data = flow.msg if flow.msg is not None else flow.view[:size]
            try:
                n = flow.sock.send(data)
            except BlockingIOError:
                n = 0
            outstanding.append((t0, size))
            conn = flow.conn
            conn.bytes_out += size
            conn.msgs_out += 1
            if t0 >= ctx.measure_from_ns:
                stats = ctx.stats
                stats.sent += 1
                stats.bytes_sent += size
            flow.seq = seq + 1
            if n < size:
                # The kernel took part of it: the rest goes when the socket is writable,
                # and the buffer is not reused before that.
                flow.pending = data[n:]
                self._watch_writable(flow, True)
                return

    def _flush(self, flow: MuxFlow) -> None:
        """Send what is left of a message; stop watching for writability once it is gone."""
        pending = flow.pending
        if pending is None:
            return
        try:
            n = flow.sock.send(pending)
        except BlockingIOError:
            return
        if n < len(pending):
            flow.pending = pending[n:]
            return
        flow.pending = None
        self._watch_writable(flow, False)
