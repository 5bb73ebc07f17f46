"""The ``pingpong`` pattern: closed loop, one message in flight per connection or flow.

Every message starts with the probe header (:mod:`app.wire.probe`) when it is large enough,
so replies are matched by sequence number; smaller messages are matched by order, which is
sound for TCP (a byte stream echoed in order) and counted as such for UDP.

Error handling: a failure ends only the connection it happened on and is counted by kind
(:func:`app.runs.stats.error_kind`); the other connections go on. UDP replies that do not
arrive within ``timeout`` are counted as lost, replies to an earlier message as late.

Resource handling: each connection's socket is closed when its task ends, whether by the end
of the run, a stop, an error, or a close from the API (its registry row's ``close_hook``).
"""

from __future__ import annotations

import errno
import socket as stdsocket
import time

import trio

from app.registry import Registry
from app.runs.stats import RunStats, error_kind
from app.wire import probe

perf_ns = time.perf_counter_ns


class FlowContext:
    """What every connection of one run shares."""

    def __init__(
        self,
        run_id: str,
        registry: Registry,
        stats: RunStats,
        address: tuple[object, ...],
        family: int,
        size: int,
        timeout: float,
        payload: bytes,
    ) -> None:
        self.run_id = run_id
        self.run_tag = probe.run_tag_of(run_id)
        self.registry = registry
        self.stats = stats
        self.address = address
        self.family = family
        self.size = size
        self.timeout = timeout
        self.payload = payload

    def message_buffer(self) -> bytearray:
        """A fresh per-flow send buffer holding the payload, padded or cut to ``size``."""
        payload = self.payload or b"\0"
        reps = -(-self.size // len(payload))
        return bytearray((payload * reps)[: self.size])


async def tcp_pingpong_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection sending ``quota`` messages (or until cancelled)."""
    stats = ctx.stats
    sock = trio.socket.socket(ctx.family, stdsocket.SOCK_STREAM)
    with sock:
        try:
            with trio.fail_after(ctx.timeout):
                await sock.connect(ctx.address)
        except trio.TooSlowError:
            stats.record_error("timeout")
            return
        except OSError as exc:
            stats.record_error(error_kind(exc))
            return
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        stats.connections_opened += 1
        conn = ctx.registry.open("tcp", sock.getsockname(), sock.getpeername(), run_id=ctx.run_id)
        scope = trio.CancelScope()
        closed_by_api = False

        def close_from_api() -> None:
            nonlocal closed_by_api
            closed_by_api = True
            scope.cancel()

        conn.close_hook = close_from_api
        size = ctx.size
        buf = ctx.message_buffer()
        view = memoryview(buf)
        rbuf = bytearray(size)
        rview = memoryview(rbuf)
        with_header = size >= probe.HEADER_SIZE
        run_tag = ctx.run_tag
        timeout = ctx.timeout
        interval = stats.interval
        seq = 0
        try:
            with scope:
                while quota is None or seq < quota:
                    scope.deadline = trio.current_time() + timeout
                    t0 = perf_ns()
                    if with_header:
                        probe.encode_into(buf, run_tag, flow_id, seq, t0)
                    sent = await sock.send(buf)
                    while sent < size:
                        sent += await sock.send(view[sent:])
                    stats.sent += 1
                    stats.bytes_sent += size
                    got = await sock.recv_into(rbuf, size)
                    while 0 < got < size:
                        n = await sock.recv_into(rview[got:], size - got)
                        if not n:
                            got = 0
                            break
                        got += n
                    if not got:
                        stats.record_error("closed")
                        return
                    interval.record_value(perf_ns() - t0)
                    stats.received += 1
                    stats.bytes_received += size
                    conn.bytes_out += size
                    conn.bytes_in += size
                    conn.msgs_out += 1
                    conn.msgs_in += 1
                    conn.touch()
                    seq += 1
            if scope.cancelled_caught and not closed_by_api:
                stats.record_error("timeout")
        except OSError as exc:
            stats.record_error(error_kind(exc))
        finally:
            ctx.registry.close(conn)


async def udp_pingpong_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One UDP flow (a connected socket) sending ``quota`` datagrams (or until cancelled)."""
    stats = ctx.stats
    sock = stdsocket.socket(ctx.family, stdsocket.SOCK_DGRAM)
    sock.setblocking(False)
    with sock:
        try:
            sock.connect(ctx.address)
        except OSError as exc:
            stats.record_error(error_kind(exc))
            return
        stats.connections_opened += 1
        conn = ctx.registry.open("udp", sock.getsockname(), sock.getpeername(), run_id=ctx.run_id)
        scope = trio.CancelScope()
        conn.close_hook = scope.cancel
        size = ctx.size
        buf = ctx.message_buffer()
        rbuf = bytearray(max(size, 2048) + 1)
        with_header = size >= probe.HEADER_SIZE
        run_tag = ctx.run_tag
        timeout = ctx.timeout
        interval = stats.interval
        seq = 0
        try:
            with scope:
                while quota is None or seq < quota:
                    t0 = perf_ns()
                    if with_header:
                        probe.encode_into(buf, run_tag, flow_id, seq, t0)
                    try:
                        sock.send(buf)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(sock)
                        sock.send(buf)
                    stats.sent += 1
                    stats.bytes_sent += size
                    conn.bytes_out += size
                    conn.msgs_out += 1
                    answered = False
                    with trio.move_on_after(timeout):
                        while True:
                            try:
                                n = sock.recv_into(rbuf)
                            except BlockingIOError:
                                await trio.lowlevel.wait_readable(sock)
                                continue
                            except ConnectionRefusedError:
                                # ICMP port unreachable for an earlier datagram: count it and
                                # wait out this message's timeout, so a dead port is not
                                # flooded.
                                stats.record_error("unreachable")
                                await trio.sleep_forever()
                            conn.bytes_in += n
                            conn.msgs_in += 1
                            if with_header and probe.peek_seq(rbuf) != seq:
                                stats.late += 1
                                continue
                            interval.record_value(perf_ns() - t0)
                            stats.received += 1
                            stats.bytes_received += n
                            answered = True
                            break
                    if not answered:
                        stats.lost += 1
                    conn.touch()
                    seq += 1
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                stats.record_error("other")
            else:
                stats.record_error(error_kind(exc))
        finally:
            ctx.registry.close(conn)
