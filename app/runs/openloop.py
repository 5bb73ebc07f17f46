"""Open-loop patterns: ``rate`` (evenly spaced), ``burst`` (K back to back every interval),
and UDP ``bulk`` (a blast at the rate cap).

Theory of operation: each flow has a sender and a receiver task. The sender sends message
``i`` at its *intended* time from the schedule, never waiting for replies; when it is late
(the target or the network stalled it) it sends at once to catch up instead of shifting the
schedule. RTT is measured from the intended send time, so a stall of the target shows up in
the percentiles instead of hiding (no coordinated omission, as sockperf's under-load mode);
only the timer's own lateness after a sleep (under 2 ms) is not charged to the target.

TCP replies are matched by order (an echo returns the stream in order); UDP replies by the
probe header, which carries the intended send time, the flow and the sequence number, so
loss, duplicates, reordering and RFC 3550 jitter come from :class:`FlowStats`. After the last
send a flow waits at most ``timeout`` for replies still in flight; what is missing then is
lost.
"""

from __future__ import annotations

import socket as stdsocket
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow, serve_udp_flow
from app.runs.flowstats import FlowStats
from app.wire import probe

perf_ns = time.perf_counter_ns
Schedule = Callable[[int], float]
# How late a sleeping sender may wake before its lateness counts as latency: a little more
# than epoll's millisecond granularity.
TIMER_SLACK_NS = 2_000_000


def schedule_for(ctx: FlowContext, flow_id: int) -> Schedule:
    """Seconds after the start at which message ``i`` of this flow is due."""
    spec = ctx.spec
    n = spec.connections
    if spec.pattern == "burst":
        k, gap = spec.burst, spec.interval
        return lambda i: (i // k) * gap
    rate = ctx.per_flow_rate() or 1.0
    period = 1.0 / rate
    # Flows are offset by a fraction of a period so that together they are evenly spaced.
    phase = period * flow_id / n
    return lambda i: phase + i * period


class Pacer:
    """Waits for each message of one flow to be due and says when to measure it from.

    A sender that is late does not wait: it catches up instead of shifting the schedule,
    and its messages keep their intended times, so a stall of the target shows.

    A sender that slept wakes up to about a millisecond late, as epoll's timeout is whole
    milliseconds rounded up. That lateness is the timer's, not the target's: it would add
    half a millisecond to every latency of a slow schedule, and at rates above 1,000 msg/s
    per flow the messages due while the timer overslept go out late together. So a message
    due before the last wake-up, and by no more than :data:`TIMER_SLACK_NS`, is measured
    from when it really goes out; anything later (a stall of this process or a blocked
    send) still counts.
    """

    __slots__ = ("ctx", "flow_id", "schedule", "woke")

    def __init__(self, ctx: FlowContext, flow_id: int) -> None:
        self.ctx = ctx
        self.flow_id = flow_id
        self.schedule = schedule_for(ctx, flow_id)
        self.woke = 0  # perf_counter_ns when the last sleep ended

    async def next(self, seq: int, buf: bytearray) -> tuple[int, int] | None:
        """Wait for message ``seq`` and write its probe header into ``buf``.

        Returns the time to measure the message's latency from (ns, the sender's clock)
        and its size, or ``None`` when the message would be due after the send deadline.
        """
        ctx = self.ctx
        offset = self.schedule(seq)
        due = ctx.clock0 + offset
        if due >= ctx.send_deadline:
            return None
        t0 = ctx.perf0 + int(offset * 1e9)
        if due > trio.current_time():
            await trio.sleep_until(due)
            self.woke = perf_ns()
        if t0 <= self.woke < t0 + TIMER_SLACK_NS:
            t0 = perf_ns()
        size = ctx.sizes[seq % len(ctx.sizes)]
        if size >= probe.HEADER_SIZE:
            probe.encode_into(buf, ctx.run_tag, self.flow_id, seq, t0)
        return t0, size


async def tcp_openloop_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection on an open-loop schedule."""
    await serve_tcp_flow(ctx, partial(_tcp_openloop, ctx, flow_id, quota))


async def _tcp_openloop(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    stats = ctx.stats
    pacer = Pacer(ctx, flow_id)
    pending: deque[tuple[int, int]] = deque()
    receive_scope = trio.CancelScope()
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel
    measure_from = ctx.measure_from_ns

    async def sender() -> None:
        buf = ctx.message_buffer()
        view = memoryview(buf)
        seq = 0
        spend = ctx.budget.spend
        try:
            while quota is None or seq < quota:
                due = await pacer.next(seq, buf)
                if due is None:
                    break
                intended, size = due
                if not spend(size):
                    break  # the run's byte cap (app.runs.budget)
                pending.append((intended, size))
                await channel.send_all(view[:size])
                if intended >= measure_from:
                    stats.sent += 1
                    stats.bytes_sent += size
                conn.bytes_out += size
                conn.msgs_out += 1
                seq += 1
        finally:
            # Replies still in flight get ``timeout`` seconds more.
            receive_scope.deadline = trio.current_time() + ctx.timeout
            if not pending:
                receive_scope.cancel()
            stats.note_send_end(trio.current_time())

    async def receiver() -> None:
        rview = memoryview(bytearray(65536))
        partial = 0
        interval = stats.interval
        with receive_scope:
            while True:
                if not pending and receive_scope.deadline != float("inf"):
                    return
                n = await channel.recv_into(rview, 65536)
                if not n:
                    stats.record_error("closed")
                    return
                conn.bytes_in += n
                now = perf_ns()
                while n and pending:
                    intended, size = pending[0]
                    need = size - partial
                    if n < need:
                        partial += n
                        break
                    n -= need
                    partial = 0
                    pending.popleft()
                    conn.msgs_in += 1
                    if intended >= measure_from:
                        interval.record_value(now - intended)
                        stats.received += 1
                        stats.bytes_received += size
                conn.touch()

    with flow_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await sender()
    lost = sum(1 for intended, _ in pending if intended >= measure_from)
    if lost:
        stats.lost += lost
        stats.record_error("timeout")


async def udp_openloop_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One UDP flow on an open-loop schedule; replies are optional (a sink sends none)."""
    await serve_udp_flow(ctx, partial(_udp_openloop, ctx, flow_id, quota))


async def _udp_openloop(
    ctx: FlowContext, flow_id: int, quota: int | None, sock: stdsocket.socket, conn: Conn
) -> None:
    stats = ctx.stats
    flow = FlowStats()
    stats.flow_list.append(flow)
    pacer = Pacer(ctx, flow_id)
    measure_from = ctx.measure_from_ns
    receive_scope = trio.CancelScope()
    sent_here = 0
    plain = 0  # replies too small for a header, counted by number only
    done_sending = False

    def unique_replies() -> int:
        return flow.received - flow.duplicates + plain

    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel

    async def sender() -> None:
        nonlocal sent_here, done_sending
        buf = ctx.message_buffer()
        view = memoryview(buf)
        seq = 0
        spend = ctx.budget.spend
        try:
            while quota is None or seq < quota:
                due = await pacer.next(seq, buf)
                if due is None:
                    break
                intended, size = due
                if not spend(size):
                    break  # the run's byte cap (app.runs.budget)
                while True:
                    try:
                        sock.send(view[:size])
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(sock)
                        continue
                    except ConnectionRefusedError:
                        stats.record_error("unreachable")
                    break
                if intended >= measure_from:
                    stats.sent += 1
                    stats.bytes_sent += size
                    sent_here += 1
                conn.bytes_out += size
                conn.msgs_out += 1
                seq += 1
        finally:
            done_sending = True
            stats.note_send_end(trio.current_time())
            receive_scope.deadline = trio.current_time() + ctx.timeout
            if unique_replies() >= sent_here:
                receive_scope.cancel()

    async def receiver() -> None:
        nonlocal plain
        rbuf = bytearray(ctx.max_size + 1)
        interval = stats.interval
        run_tag = ctx.run_tag
        with receive_scope:
            while True:
                try:
                    n = sock.recv_into(rbuf)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except ConnectionRefusedError:
                    stats.record_error("unreachable")
                    continue
                now = perf_ns()
                conn.bytes_in += n
                conn.msgs_in += 1
                header = probe.decode(rbuf) if n >= probe.HEADER_SIZE else None
                if header is None or header.run_tag != run_tag:
                    # Too small for a header: counted, but an RTT by order would be a
                    # guess once a datagram is lost.
                    if header is None and n < probe.HEADER_SIZE:
                        plain += 1
                        stats.received += 1
                        stats.bytes_received += n
                        if done_sending and unique_replies() >= sent_here:
                            return
                    else:
                        stats.late += 1
                    continue
                if header.sent_ns < measure_from:
                    continue
                dups = flow.duplicates
                flow.record(header.seq, header.sent_ns, now)
                if flow.duplicates != dups:
                    stats.duplicates += 1
                    continue
                interval.record_value(now - header.sent_ns)
                stats.received += 1
                stats.bytes_received += n
                conn.touch()
                if done_sending and unique_replies() >= sent_here:
                    return

    try:
        with flow_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                await sender()
    finally:
        flow.expected = sent_here
        stats.reordered += flow.reordered
        if unique_replies() or ctx.spec.pattern != "bulk":
            # Replies seen (or expected, for rate and burst): what is missing is lost.
            stats.lost += max(sent_here - unique_replies(), 0)
