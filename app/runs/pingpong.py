"""The ``pingpong`` pattern: closed loop, ``in_flight`` messages outstanding per flow.

TCP: a flow sends ``in_flight`` messages, then one more each time a whole reply has come
back. An echo returns the byte stream in order, so replies are matched by order (sound for
any message size) and the RTT of each is measured from its own send time. A flow whose
oldest reply misses ``timeout`` ends with a ``timeout`` error.

UDP: ``in_flight`` datagrams out per flow, each on its own deadline; a reply is matched by
the probe header's sequence number when the message is large enough to carry one. A
datagram whose reply misses ``timeout`` counts as lost and another is sent in its place; a
reply to it after that is late, a second reply to an answered one a duplicate. Messages too
small for a header are matched by order and counted, which is all UDP allows.

Warm-up: messages sent before the warm-up ends carry :data:`~app.wire.probe.FLAG_WARMUP` and
are numbered apart from the counted ones, each from 0 (as open-loop flows number them), so
a sink leaves them out and charges no loss for them; a flow still matches its replies by
its own numbering (app.runs.mux_udp adds the first counted number back).

Error handling: a failure ends only the flow it happened on and is counted by kind, and the
messages that flow still waited for are counted lost (they will never be answered); the run
goes on with the other flows. Resource handling: each flow's socket is closed when its task
ends: end of the run, a stop, an error, or a close from the API (the registry row's
``close_hook``).
"""

from __future__ import annotations

import math
import socket as stdsocket
import time
from collections import deque
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow, serve_udp_flow
from app.runs.error_kinds import CLOSED_DETAIL, timeout_detail
from app.sockio import DirectSocket
from app.wire import probe

perf_ns = time.perf_counter_ns


async def tcp_pingpong_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP (or TLS) connection sending ``quota`` messages, or until the send deadline.

    Plain TCP is served by the run's multiplexer; TLS (an ``SSLStream`` per connection)
    by the loop below, in this task.
    """
    await serve_tcp_flow(ctx, partial(_tcp_pingpong, ctx, flow_id, quota))


async def _tcp_pingpong(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    if ctx.mux is not None and isinstance(channel, DirectSocket):
        # Plain TCP: the run's multiplexer serves the messages (app.runs.mux).
        await ctx.mux.drive(channel.sock, conn, flow_id, quota)
        return
    stats = ctx.stats
    scope = trio.CancelScope()
    closed_by_api = False

    def close_from_api() -> None:
        nonlocal closed_by_api
        closed_by_api = True
        scope.cancel()

    conn.close_hook = close_from_api
    buf = ctx.message_buffer()
    view = memoryview(buf)
    rview = memoryview(bytearray(ctx.max_size))
    sizes = ctx.sizes
    n_sizes = len(sizes)
    header_room = probe.HEADER_SIZE
    run_tag = ctx.run_tag
    timeout = ctx.timeout
    measure_from = ctx.measure_from_ns
    interval = stats.interval
    window = ctx.spec.in_flight
    outstanding: deque[tuple[int, int]] = deque()
    seq = 0
    first_counted = -1  # the first message sent after the warm-up
    refresh = min(timeout / 16, 0.1)
    moved_at = -refresh
    # A flow that ends on an error or a timeout gives up on the replies it still waits
    # for: they are lost. A close from the API (or a stop) is not the peer's doing.
    take = ctx.budget.take
    try:
        with scope:
            while True:
                # Keep the window full while there is quota and time left.
                while (
                    len(outstanding) < window
                    and (quota is None or seq < quota)
                    and trio.current_time() < ctx.send_deadline
                ):
                    size = sizes[seq % n_sizes]
                    wait = take(size, trio.current_time())
                    if wait:
                        # Held back by the run's caps (app.runs.budget). Replies in flight
                        # are read first, so that their RTT does not include this wait.
                        if outstanding or wait == math.inf:
                            break
                        scope.deadline = math.inf  # no reply is due while it waits
                        moved_at = -math.inf
                        await trio.sleep_until(min(wait, ctx.send_deadline))
                        continue
                    t0 = perf_ns()
                    counted = t0 >= measure_from
                    if counted and first_counted < 0:
                        first_counted = seq
                    if size >= header_room:
                        probe.encode_numbered(
                            buf, run_tag, flow_id, seq, first_counted, t0, counted
                        )
                    await channel.send_all(view[:size])
                    if counted:
                        stats.sent += 1
                        stats.bytes_sent += size
                    seq += 1
                    outstanding.append((t0, size))
                    conn.bytes_out += size
                    conn.msgs_out += 1
                if not outstanding:
                    break
                now = trio.current_time()
                if now - moved_at >= refresh:
                    # Throttled: moving a deadline costs about 1.5 us. A reply is late after
                    # timeout, and noticed at most refresh later.
                    scope.deadline = now + timeout + refresh
                    moved_at = now
                t0, size = outstanding[0]
                got = await channel.recv_into(rview, size)
                while 0 < got < size:
                    n = await channel.recv_into(rview[got:], size - got)
                    if not n:
                        got = 0
                        break
                    got += n
                if not got:
                    stats.flow_failed("closed", CLOSED_DETAIL)
                    break
                outstanding.popleft()
                if t0 >= measure_from:
                    interval.record_value(perf_ns() - t0)
                    stats.received += 1
                    stats.bytes_received += size
                conn.bytes_in += size
                conn.msgs_in += 1
                conn.touch()
    except OSError:
        stats.count_unanswered((t0 for t0, _ in outstanding), measure_from)
        raise
    if scope.cancelled_caught and not closed_by_api:
        stats.flow_failed("timeout", timeout_detail(timeout))
    if not closed_by_api:
        stats.count_unanswered((t0 for t0, _ in outstanding), measure_from)


async def udp_pingpong_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One UDP flow sending ``quota`` datagrams (or until the send deadline), ``in_flight``
    at a time.

    Its messages are served by the run's multiplexer (app.runs.mux_udp); this task owns
    the socket and the registry row.
    """
    await serve_udp_flow(ctx, partial(_udp_pingpong, ctx, flow_id, quota))


async def _udp_pingpong(
    ctx: FlowContext, flow_id: int, quota: int | None, sock: stdsocket.socket, conn: Conn
) -> None:
    assert ctx.mux is not None
    await ctx.mux.drive(sock, conn, flow_id, quota)
