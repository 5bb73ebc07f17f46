"""Open-loop patterns: ``rate`` (evenly spaced), ``burst`` (K back to back every interval),
and UDP ``bulk`` (a blast at the rate cap).

Theory of operation: each flow has a sender and a receiver task. The sender sends message
``i`` at its *intended* time from the schedule, never waiting for replies; when it is late
(the target or the network stalled it) it sends at once to catch up instead of shifting the
schedule. Its :class:`~app.runs.pacer.Pacer` waits on a
:class:`~app.runs.timer.PreciseTimer`, so on time means within tens of microseconds, not
epoll's millisecond. RTT is measured from the intended send time, so a
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

A live edit of the run (rate, connections, pause; :mod:`app.runs.control`) reaches the
senders through their pacers: the schedule changes, the hot path does not.
"""

from __future__ import annotations

import socket as stdsocket
import time
from collections import deque
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow, serve_udp_flow
from app.runs.error_kinds import CLOSED_DETAIL, UNREACHABLE_DETAIL, timeout_detail
from app.runs.flowstats import FlowStats
from app.runs.pacer import TIMER_SLACK_NS, Pacer
from app.wire import probe

perf_ns = time.perf_counter_ns
_WARMUP = probe.FLAG_WARMUP


async def tcp_openloop_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection on an open-loop schedule."""
    await serve_tcp_flow(ctx, partial(_tcp_openloop, ctx, flow_id, quota))


async def _tcp_openloop(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    stats = ctx.stats
    pacer = Pacer(ctx, flow_id)
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

    with pacer, flow_scope:
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
    pacer = Pacer(ctx, flow_id)
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
        with pacer, flow_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                await sender()
    finally:
        flow.expected = sent_here
        stats.reordered += flow.reordered
        if expect and (unique_replies() or ctx.spec.pattern != "bulk"):
            # Replies seen (or expected, for rate and burst): what is missing is lost.
            stats.lost += max(sent_here - unique_replies(), 0)
