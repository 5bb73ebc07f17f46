"""Pingpong flows of one run driven by one task over a private epoll.

Theory of operation: a task per flow pays, for every reply, a trio scheduler round, a pair
of ``epoll_ctl`` calls and a task switch: as much CPU as the system calls themselves. Here
the plain TCP and UDP flows of a pingpong run are served by one
:class:`~app.sockio.ReadyLoop`: for each ready socket, read the reply, record its RTT, send
the next message.

Each flow keeps its own task: it connects, owns the socket and its registry row, registers
with :meth:`Multiplexer.drive` and waits there until the driver says the flow is done. So a
stop (cancellation), a close from the API (the row's ``close_hook``) and a flow's error end
exactly one flow, and the flow's task closes what it opened, as before.

Caps: every new message is charged to the run's budget first (:mod:`app.runs.budget`). A
flow the rate caps hold back is *parked* (it neither sends nor ends) and the sweep resumes
it; at the byte cap it sends nothing more and ends once its replies are in.

Timeouts: a sweep every ``refresh`` seconds (not a cancel scope per message) looks at the
oldest reply each flow still waits for. TCP ends the flow with a ``timeout`` error; UDP
counts the datagram lost and sends the next. A late reply is noticed between ``timeout``
and ``timeout + refresh`` after its send.

Error handling: an ``OSError`` ends the flow it happened on, counted by kind; any other
exception there is a bug, raised in that flow's task, where the run's per-flow boundary
logs it with the run and flow ids and counts it as ``internal``; the other flows go on.
"""

from __future__ import annotations

import math
import select
import socket as stdsocket
import time
from collections import deque

import trio

from app.registry import Conn
from app.runs.context import FlowContext
from app.runs.stats import error_kind
from app.sockio import ReadyLoop, Served
from app.wire import probe

perf_ns = time.perf_counter_ns

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT


class MuxFlow(Served):
    """The state of one flow between two events."""

    __slots__ = (
        "blocked",
        "buf",
        "conn",
        "counted",
        "flow_id",
        "got",
        "msg",
        "outstanding",
        "parked",
        "pending",
        "quota",
        "seq",
        "t0",
        "view",
        "waiting",
        "with_header",
    )

    def __init__(
        self, sock: stdsocket.socket, conn: Conn, flow_id: int, quota: int | None, buf: bytearray
    ) -> None:
        super().__init__(sock)
        self.conn = conn
        self.flow_id = flow_id
        self.quota = quota
        self.seq = 0
        self.buf = buf
        self.view = memoryview(buf)
        self.msg: memoryview | None = None  # the message view when every message has one size
        # TCP: (send time, size) of the replies still due, bytes of the first one read so
        # far, and what the kernel did not take of the last send.
        self.outstanding: deque[tuple[int, int]] = deque()
        self.got = 0
        self.pending: memoryview | None = None
        # UDP: the datagram in flight.
        self.t0 = 0
        self.waiting = False
        self.counted = False
        self.with_header = False
        self.blocked = False
        self.parked = False  # held back by the run's rate caps until the next sweep


class Multiplexer:
    """Drives the pingpong flows of one run (plain TCP or UDP, not TLS)."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.udp = ctx.protocol == "udp"
        self.refresh = min(ctx.timeout / 16, 0.1)
        self._loop: ReadyLoop[MuxFlow] = ReadyLoop(
            self._on_udp if self.udp else self._on_tcp, self._on_error
        )
        # Replies are counted, not kept: one receive buffer serves every flow.
        self._rbuf = bytearray(ctx.max_size + 1)
        self._rview = memoryview(self._rbuf)
        self._timeout_ns = int(ctx.timeout * 1e9)
        self._window = ctx.spec.in_flight
        self._sizes = ctx.sizes
        self._fixed = len(ctx.sizes) == 1
        self._parked: list[MuxFlow] = []
        self._take = ctx.budget.take  # the run's caps, charged per new message

    async def run(self) -> None:
        """Serve the registered flows until cancelled (after the run's flows have ended)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep)
            await self._loop.run()

    async def drive(
        self, sock: stdsocket.socket, conn: Conn, flow_id: int, quota: int | None
    ) -> None:
        """Run one flow on ``sock`` (connected, non-blocking) until it is done.

        Returns when the quota is used and answered, after the send deadline once the
        replies are in, after an error (counted), or after a close from the API. The caller
        closes ``sock`` and the row.
        """
        buf = self.ctx.message_buffer()
        flow = MuxFlow(sock, conn, flow_id, quota, buf)
        if self._fixed:
            flow.msg = flow.view[: self._sizes[0]]

        def close_from_api() -> None:
            self._loop.finish(flow)

        conn.close_hook = close_from_api
        self._loop.add(flow)
        self._loop.now = trio.current_time()
        try:
            if self.udp:
                self._next_udp(flow)
            else:
                self._fill(flow)
                if not flow.outstanding and not flow.parked:
                    self._loop.finish(flow)
        except Exception as exc:
            self._on_error(flow, exc)
        await self._loop.wait(flow)

    async def _sweep(self) -> None:
        loop = self._loop
        while True:
            await trio.sleep(self.refresh)
            loop.now = trio.current_time()
            if self._parked:
                self._resume()
            oldest_allowed = perf_ns() - self._timeout_ns
            for flow in list(loop.items.values()):
                try:
                    if self.udp:
                        if flow.waiting and flow.t0 < oldest_allowed:
                            self._lost(flow)
                    elif flow.outstanding and flow.outstanding[0][0] < oldest_allowed:
                        self._fail(flow, "timeout")
                except Exception as exc:
                    self._on_error(flow, exc)

    def _on_error(self, flow: MuxFlow, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._fail(flow, error_kind(exc))
        else:
            # A bug: the flow's task raises it, and the run's per-flow boundary logs it and
            # counts it as "internal".
            self._loop.finish(flow, exc)

    def _fail(self, flow: MuxFlow, kind: str) -> None:
        """End a flow with an error, counted once (a flow that has ended already is not)."""
        if self._loop.finish(flow):
            self.ctx.stats.record_error(kind)

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
                if self.udp:
                    self._next_udp(flow)
                else:
                    self._fill(flow)
                    if not flow.outstanding and not flow.parked:
                        self._loop.finish(flow)
            except Exception as exc:
                self._on_error(flow, exc)

    def _watch_writable(self, flow: MuxFlow, on: bool) -> None:
        flow.blocked = on
        self._loop.watch(flow, EPOLLIN | EPOLLOUT if on else EPOLLIN)

    # --- TCP: replies matched by order, ``in_flight`` outstanding ---------------------

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
                self._fail(flow, "closed")
                return
            if n < need:
                flow.got += n
                return
            flow.got = 0
            outstanding.popleft()
            ctx = self.ctx
            if t0 >= ctx.measure_from_ns:
                stats = ctx.stats
                stats.interval.record_value(perf_ns() - t0)
                stats.received += 1
                stats.bytes_received += size
            conn = flow.conn
            conn.bytes_in += size
            conn.msgs_in += 1
            conn.touch()
        self._fill(flow)
        if not outstanding and not flow.parked:
            self._loop.finish(flow)

    def _fill(self, flow: MuxFlow) -> None:
        """Send until ``in_flight`` messages are out (or the quota or the time is up)."""
        ctx = self.ctx
        if flow.blocked or flow.parked or self._loop.now >= ctx.send_deadline:
            return
        outstanding = flow.outstanding
        quota = flow.quota
        sizes = self._sizes
        stats = ctx.stats
        conn = flow.conn
        take = self._take
        while len(outstanding) < self._window and (quota is None or flow.seq < quota):
            seq = flow.seq
            size = sizes[seq % len(sizes)]
            wait = take(size, self._loop.now)
            if wait:
                self._park(flow, wait)
                return
            t0 = perf_ns()
            if size >= probe.HEADER_SIZE:
                probe.encode_into(flow.buf, ctx.run_tag, flow.flow_id, seq, t0)
            data = flow.msg if flow.msg is not None else flow.view[:size]
            try:
                n = flow.sock.send(data)
            except BlockingIOError:
                n = 0
            outstanding.append((t0, size))
            if t0 >= ctx.measure_from_ns:
                stats.sent += 1
                stats.bytes_sent += size
            conn.bytes_out += size
            conn.msgs_out += 1
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

    # --- UDP: one datagram in flight, matched by the probe header's sequence number ---

    def _on_udp(self, flow: MuxFlow, mask: int) -> None:
        if mask & EPOLLOUT:
            self._watch_writable(flow, False)
            self._send_udp(flow)
            if mask == EPOLLOUT:
                return
        try:
            n = flow.sock.recv_into(self._rbuf)
        except BlockingIOError:
            return
        except ConnectionRefusedError:
            # ICMP port unreachable: counted, and this datagram's timeout is waited out,
            # so a dead port is not flooded.
            self.ctx.stats.record_error("unreachable")
            return
        conn = flow.conn
        conn.bytes_in += n
        conn.msgs_in += 1
        if not flow.waiting:
            return  # a reply after its datagram was counted lost
        stats = self.ctx.stats
        if flow.with_header and probe.peek_seq(self._rbuf) != flow.seq:
            if flow.counted:
                stats.late += 1
            return
        if flow.counted:
            stats.interval.record_value(perf_ns() - flow.t0)
            stats.received += 1
            stats.bytes_received += n
        conn.touch()
        flow.waiting = False
        flow.seq += 1
        self._next_udp(flow)

    def _lost(self, flow: MuxFlow) -> None:
        """No reply within the timeout: that datagram is lost; on to the next."""
        if flow.counted:
            self.ctx.stats.lost += 1
        flow.conn.touch()
        flow.waiting = False
        flow.seq += 1
        self._next_udp(flow)

    def _next_udp(self, flow: MuxFlow) -> None:
        quota = flow.quota
        if (quota is not None and flow.seq >= quota) or self._loop.now >= self.ctx.send_deadline:
            self._loop.finish(flow)
        elif not flow.blocked:
            wait = self._take(self._sizes[flow.seq % len(self._sizes)], self._loop.now)
            if not wait:
                self._send_udp(flow)
            elif wait == math.inf:
                self._loop.finish(flow)  # the byte cap: nothing more to send
            else:
                self._park(flow, wait)

    def _send_udp(self, flow: MuxFlow) -> None:
        ctx = self.ctx
        sizes = self._sizes
        seq = flow.seq
        size = sizes[seq % len(sizes)]
        t0 = perf_ns()
        with_header = size >= probe.HEADER_SIZE
        if with_header:
            probe.encode_into(flow.buf, ctx.run_tag, flow.flow_id, seq, t0)
        try:
            flow.sock.send(flow.msg if flow.msg is not None else flow.view[:size])
        except BlockingIOError:
            self._watch_writable(flow, True)  # sent (with a new send time) when writable
            return
        except ConnectionRefusedError:
            # An ICMP port unreachable for an earlier datagram: this one was not sent and
            # will be counted lost after the timeout, as a dead port deserves.
            ctx.stats.record_error("unreachable")
        flow.t0 = t0
        flow.with_header = with_header
        flow.counted = counted = t0 >= ctx.measure_from_ns
        flow.waiting = True
        if counted:
            stats = ctx.stats
            stats.sent += 1
            stats.bytes_sent += size
        conn = flow.conn
        conn.bytes_out += size
        conn.msgs_out += 1
