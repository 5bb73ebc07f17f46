"""Open-loop patterns: ``rate`` (evenly spaced), ``burst`` (K back to back every interval),
and UDP ``bulk`` (a blast at the rate cap).

Theory of operation: each flow has a sender and a receiver task. The sender sends message
``i`` at its *intended* time from the schedule, never waiting for replies; when it is late
(the target or the network stalled it) it sends at once to catch up instead of shifting the
schedule. It waits on a :class:`~app.runs.timer.PreciseTimer`, so on time means within tens
of microseconds, not epoll's millisecond. RTT is measured from the intended send time, so a
stall of the target shows up in the percentiles instead of hiding (no coordinated omission,
as sockperf's under-load mode); only a sender less than 2 ms late is measured from its real
send, so the timer's own lateness is not charged to the target.

The probe header carries the *actual* send time, as iperf3's does, so RFC 3550 jitter
(:class:`FlowStats`) is the network's and not the sender's lateness; how late the sender
was (actual minus intended) is its own figure, ``send_lateness_ms``. The intended time of a
reply is derived from its sequence number and the schedule.

TCP replies are matched by order (an echo returns the stream in order); UDP replies by the
probe header (flow and sequence number), so loss, duplicates and reordering come from
:class:`FlowStats`. Warm-up messages carry the header's warm-up flag and are numbered apart
from the counted ones, so every receiver leaves them out. After the last send a flow waits
at most ``timeout`` for replies still in flight; what is missing then is lost. A run that
expects no replies (aimed at a sink) does not wait and claims no loss: ``lost`` is null and
the receiving end's figures, when a socketlab sink kept them, say what arrived.
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
from app.runs.stats import CLOSED_DETAIL, UNREACHABLE_DETAIL, timeout_detail
from app.runs.timer import PreciseTimer
from app.wire import probe

perf_ns = time.perf_counter_ns
Schedule = Callable[[int], float]
# How late a sender may be before its lateness counts as latency: a little more than
# epoll's millisecond granularity, for the platforms without a precise timer.
TIMER_SLACK_NS = 2_000_000
_WARMUP = probe.FLAG_WARMUP
# A sender behind its schedule yields to the event loop once per this many messages.
CATCH_UP_BATCH = 32


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
    """Waits for each message of one flow to be due, stamps its header, and says when to
    measure it from.

    A sender that is late does not wait: it catches up instead of shifting the schedule,
    and its messages keep their intended times, so a stall of the target shows. A message
    sent less than :data:`TIMER_SLACK_NS` after its intended time is measured from when it
    really went out: that much lateness is the sender's timer, not the target (without a
    precise timer epoll wakes up to a millisecond late, and at rates above 1,000 msg/s per
    flow the messages due meanwhile go out together). Anything later (a stall of this
    process or a blocked send) still counts. A sender catching up (or a burst) yields to
    the event loop once every :data:`CATCH_UP_BATCH` messages.

    Messages are indexed from 0 in schedule order; the header's sequence number counts the
    warm-up messages and the counted ones apart, each from 0 (:attr:`first` is the index of
    the first counted message).
    """

    __slots__ = ("ctx", "first", "flow_id", "schedule", "stats", "timer", "unslept")

    def __init__(self, ctx: FlowContext, flow_id: int, timer: PreciseTimer) -> None:
        self.ctx = ctx
        self.flow_id = flow_id
        self.schedule = schedule_for(ctx, flow_id)
        self.timer = timer
        self.stats = ctx.stats
        self.first: int | None = None
        self.unslept = 0  # messages sent in a row without waiting

    def intended_ns(self, seq: int) -> int:
        """The intended send time (``perf_counter_ns``) of counted message ``seq``."""
        return self.ctx.perf0 + int(self.schedule(seq + (self.first or 0)) * 1e9)

    async def next(self, index: int, buf: bytearray) -> tuple[int, int, bool] | None:
        """Wait for message ``index`` and write its probe header into ``buf``.

        Returns the time to measure the message's latency from (ns, the sender's clock),
        its size and whether it is counted (not warm-up), or ``None`` when the message
        would be due after the send deadline.
        """
        ctx = self.ctx
        offset = self.schedule(index)
        due = ctx.clock0 + offset
        if due >= ctx.send_deadline:
            return None
        intended = ctx.perf0 + int(offset * 1e9)
        now = perf_ns()
        if intended > now:
            await self.timer.sleep_until_ns(intended, due)
            now = perf_ns()
            self.unslept = 0
        else:
            # Catching up: yield now and then, so the listeners and receivers on this loop
            # (an echo of this lab, this flow's own replies) drain their sockets instead of
            # dropping what a backlog sent back to back would queue.
            self.unslept += 1
            if self.unslept >= CATCH_UP_BATCH:
                self.unslept = 0
                await trio.lowlevel.checkpoint()
                now = perf_ns()
        lateness = now - intended
        if lateness < 0:  # trio's fallback sleep may end a few microseconds early
            lateness = 0
        counted = intended >= ctx.measure_from_ns
        if counted:
            if self.first is None:
                self.first = index
            seq, flags = index - self.first, 0
            stats = self.stats
            stats.paced_sends += 1
            stats.send_lateness_ns += lateness
            if lateness > stats.send_lateness_max_ns:
                stats.send_lateness_max_ns = lateness
            if lateness >= TIMER_SLACK_NS:
                stats.late_sends += 1
        else:
            seq, flags = index, _WARMUP
        size = ctx.sizes[index % len(ctx.sizes)]
        if size >= probe.HEADER_SIZE:
            probe.encode_into(buf, ctx.run_tag, self.flow_id, seq, now, flags=flags)
        return (now if lateness < TIMER_SLACK_NS else intended), size, counted


async def tcp_openloop_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection on an open-loop schedule."""
    await serve_tcp_flow(ctx, partial(_tcp_openloop, ctx, flow_id, quota))


async def _tcp_openloop(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    stats = ctx.stats
    timer = PreciseTimer()
    pacer = Pacer(ctx, flow_id, timer)
    expect = ctx.expect_replies
    # (measure from, size, counted) of each message whose reply is still due.
    pending: deque[tuple[int, int, bool]] = deque()
    receive_scope = trio.CancelScope()
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel

    async def sender() -> None:
        buf = ctx.message_buffer()
        view = memoryview(buf)
        index = 0
        spend = ctx.budget.spend
        try:
            while quota is None or index < quota:
                due = await pacer.next(index, buf)
                if due is None:
                    break
                _, size, counted = due
                if not spend(size):
                    break  # the run's byte cap (app.runs.budget)
                if expect:
                    pending.append(due)
                await channel.send_all(view[:size])
                if counted:
                    stats.sent += 1
                    stats.bytes_sent += size
                conn.bytes_out += size
                conn.msgs_out += 1
                index += 1
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
                    if expect:
                        stats.record_error("closed", CLOSED_DETAIL)
                    return
                conn.bytes_in += n
                if not expect:
                    # Nothing is owed: what comes back anyway is counted as bytes.
                    stats.bytes_received += n
                    conn.touch()
                    continue
                now = perf_ns()
                while n and pending:
                    measure_from, size, counted = pending[0]
                    need = size - partial
                    if n < need:
                        partial += n
                        break
                    n -= need
                    partial = 0
                    pending.popleft()
                    conn.msgs_in += 1
                    if counted:
                        interval.record_value(now - measure_from)
                        stats.received += 1
                        stats.bytes_received += size
                conn.touch()

    with timer, flow_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await sender()
    lost = sum(1 for _, _, counted in pending if counted)
    if lost:
        stats.lost += lost
        stats.record_error("timeout", timeout_detail(ctx.timeout))


async def udp_openloop_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One UDP flow on an open-loop schedule; replies are optional (a sink sends none)."""
    await serve_udp_flow(ctx, partial(_udp_openloop, ctx, flow_id, quota))


async def _udp_openloop(
    ctx: FlowContext, flow_id: int, quota: int | None, sock: stdsocket.socket, conn: Conn
) -> None:
    stats = ctx.stats
    flow = FlowStats()
    stats.flow_list.append(flow)
    timer = PreciseTimer()
    pacer = Pacer(ctx, flow_id, timer)
    expect = ctx.expect_replies
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
        index = 0
        spend = ctx.budget.spend
        try:
            while quota is None or index < quota:
                due = await pacer.next(index, buf)
                if due is None:
                    break
                _, size, counted = due
                if not spend(size):
                    break  # the run's byte cap (app.runs.budget)
                while True:
                    try:
                        sock.send(view[:size])
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(sock)
                        continue
                    except ConnectionRefusedError:
                        stats.record_error("unreachable", UNREACHABLE_DETAIL)
                    break
                if counted:
                    stats.sent += 1
                    stats.bytes_sent += size
                    sent_here += 1
                conn.bytes_out += size
                conn.msgs_out += 1
                index += 1
        finally:
            done_sending = True
            stats.note_send_end(trio.current_time())
            receive_scope.deadline = trio.current_time() + ctx.timeout
            if not expect or unique_replies() >= sent_here:
                receive_scope.cancel()

    async def receiver() -> None:
        nonlocal plain
        rbuf = bytearray(ctx.max_size + 1)
        interval = stats.interval
        run_tag = ctx.run_tag
        intended_ns = pacer.intended_ns
        with receive_scope:
            while True:
                try:
                    n = sock.recv_into(rbuf)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except ConnectionRefusedError:
                    stats.record_error("unreachable", UNREACHABLE_DETAIL)
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
                if header.flags & _WARMUP:
                    continue
                dups = flow.duplicates
                sent_ns = header.sent_ns
                flow.record(header.seq, sent_ns, now)
                if flow.duplicates != dups:
                    stats.duplicates += 1
                    continue
                # Latency from the intended time, unless the sender was only a timer's
                # slack late (see Pacer); jitter above came from the real send time.
                intended = intended_ns(header.seq)
                measure_from = sent_ns if sent_ns - intended < TIMER_SLACK_NS else intended
                interval.record_value(max(now - measure_from, 1))
                stats.received += 1
                stats.bytes_received += n
                conn.touch()
                if done_sending and unique_replies() >= sent_here:
                    return

    try:
        with timer, flow_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                await sender()
    finally:
        flow.expected = sent_here
        stats.reordered += flow.reordered
        if expect and (unique_replies() or ctx.spec.pattern != "bulk"):
            # Replies seen (or expected, for rate and burst): what is missing is lost.
            stats.lost += max(sent_here - unique_replies(), 0)
