"""The reverse direction of a run: a socketlab source sends, this end measures.

Theory of operation: each reverse flow opens its own TCP/TLS connection or UDP flow to the
target (a listener in ``source`` mode, :mod:`app.listeners.modes.source`) and sends one send
request (:mod:`app.wire.sendreq`) describing the flow's share of the run: its pattern, size,
per-flow rate or bursts, count, and what is left of the run's warm-up and duration when the
flow starts (so every flow stops when the run's forward flows do). The source then sends
probe-headed messages; this end counts them with the code a sink uses
(:class:`~app.listeners.modes.sink.ProbeSink`, with :class:`FixedFramer` cutting a TCP
stream into the requested size), so loss, duplicates, reordering, jitter and bytes per second
of the reverse direction are computed exactly as at a sink. A ``--bidir`` run starts both
kinds of flow, forward and reverse, side by side (:func:`~app.runs.flows.flow_kinds`).

The run's ``received`` and ``bytes_received`` counters (and so its series and rates) count
what arrived in the reverse direction; its summary's ``reverse`` section holds the one-way
figures beside what the source says it sent (``sent``, ``lost``: the source's count, when a
socketlab source of this lab or a peer was asked; else the requested count when a count run
has no warm-up, else the gaps the receiver saw).

End of a flow: the source ends a TCP stream with its last message; a UDP flow ends when it
has the requested count, at the run's send deadline plus ``timeout``, or once nothing came
for ``timeout`` plus one gap of the schedule. A UDP request is sent again (at most
:data:`REQUEST_TRIES` times) while nothing has arrived, since the request itself can be lost.

Error handling: a target that echoes the request back is not a source (counted as
``other`` with that reason); a TCP source that closes before sending refused the request
(``closed``); one that sends nothing within ``timeout`` refused it or is no source
(``timeout``).
"""

from __future__ import annotations

import math
import socket as stdsocket
import time
from functools import partial
from typing import Any

import trio

from app.listeners.modes.received import ReceivedBytes
from app.listeners.modes.sink import FixedFramer, ProbeSink
from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow, serve_udp_flow
from app.runs.flowstats import FlowTable, one_way
from app.wire import probe, sendreq

perf_ns = time.perf_counter_ns
# A UDP request is sent this many times at most while nothing has come back.
REQUEST_TRIES = 4
NOT_A_SOURCE = "the target sent the send request back: it is not a socketlab source (mode=source)"
REFUSED = (
    "the source closed the connection without sending: it refused the request (its "
    "max_streams, or its target policy) or could not serve it"
)
_READ_SIZE = 65536


class ReverseSide:
    """What the reverse flows of one run received, counted as a sink counts.

    Attributes:
        sink: The one-way statistics of every reverse flow of the run.
        requested: Messages asked of the source in all when that is known to be what it
            sends counted (a count run without warm-up), else None.
    """

    def __init__(self, ctx: FlowContext) -> None:
        spec = ctx.spec
        self.run_tag = ctx.run_tag
        self.stats = ctx.stats
        self.sink = ProbeSink(max_runs=2, max_flows=max(spec.connections, 1))
        self.requested = spec.count if spec.count is not None and not spec.warmup else None
        self._counted = 0
        self._bytes = 0

    def sync(self) -> None:
        """Move what arrived since the last call into the run's counters (a few integer
        operations: once per read)."""
        sink = self.sink
        counted = sink.probes - sink.warmup
        stats = self.stats
        stats.received += counted - self._counted
        self._counted = counted
        got = sink.received.get(self.run_tag)
        if got is not None:
            stats.bytes_received += got.bytes - self._bytes
            self._bytes = got.bytes

    def summary(self, source: dict[str, Any] | None) -> dict[str, Any]:
        """The reverse direction's figures, beside ``source``: what the source counted
        (the run's receiving-end figures), when it was asked."""
        figures = self.sink.for_run(self.run_tag) or {}
        figures = {**FlowTable().summary(), **ReceivedBytes().summary(), **figures}
        sent = None if source is None else source.get("tx_messages")
        if sent is None:
            sent = self.requested
        doc = one_way(figures, sent) if sent is not None else {**figures, "sent": None}
        assert doc is not None
        doc["source"] = (
            None
            if source is None or "tx_messages" not in source
            else {k: v for k, v in source.items() if k.startswith("tx_")}
        )
        return doc


def with_reverse_side(ctx: FlowContext) -> None:
    """The preparation of reverse flows: one :class:`ReverseSide` for the run."""
    side = ReverseSide(ctx)
    ctx.reverse = side
    ctx.stats.reverse = side


def request_for(ctx: FlowContext, flow_id: int, quota: int | None) -> bytes:
    """The send request of one reverse flow, starting now."""
    spec = ctx.spec
    now = trio.current_time()
    left = ctx.send_deadline - now
    duration = 0.0 if math.isinf(left) else max(left, 0.001)
    rate = ctx.per_flow_rate() or 0.0
    pattern = spec.pattern
    if pattern == "bulk" and ctx.protocol == "tcp":
        rate = 0.0  # as fast as the source's caps allow
    return sendreq.encode(
        sendreq.SendRequest(
            pattern=pattern,
            run_tag=ctx.run_tag,
            flow=flow_id,
            size=ctx.size,
            rate=rate,
            messages=quota or 0,
            duration=duration,
            warmup=max(ctx.clock0 + spec.warmup - now, 0.0),
            burst=spec.burst if pattern == "burst" else 0,
            interval=spec.interval if pattern == "burst" else 0.0,
        )
    )


def _quiet_after(ctx: FlowContext) -> float:
    """Seconds without arrivals after which a flow's source is taken to be done."""
    spec = ctx.spec
    if spec.pattern == "burst":
        gap = spec.interval
    else:
        rate = ctx.per_flow_rate()
        gap = 1.0 / rate if rate else 0.0
    return ctx.timeout + gap


def _end_at(ctx: FlowContext) -> float:
    return ctx.send_deadline + ctx.timeout


async def tcp_reverse_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP (or TLS) connection on which the source sends."""
    await serve_tcp_flow(ctx, partial(_tcp_reverse, ctx, flow_id, quota))


async def _tcp_reverse(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    side = ctx.reverse
    assert side is not None
    stats = ctx.stats
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel
    request = request_for(ctx, flow_id, quota)
    await channel.send_all(memoryview(request))
    conn.bytes_out += len(request)
    conn.msgs_out += 1
    framer = FixedFramer(side.sink, ctx.size)
    view = memoryview(bytearray(_READ_SIZE))
    quiet_after = _quiet_after(ctx)
    arrived = False
    with flow_scope, trio.move_on_at(_end_at(ctx)):
        while True:
            with trio.move_on_after(quiet_after):
                n = await channel.recv_into(view, _READ_SIZE)
                if not n:
                    if not arrived:
                        stats.record_error("closed", REFUSED)
                    break
                if not arrived:
                    arrived = True
                    if sendreq.is_request(view[:n]):
                        stats.record_error("other", NOT_A_SOURCE)
                        break
                conn.bytes_in += n
                conn.msgs_in += framer.feed(view, n, perf_ns())
                side.sync()
                conn.touch()
                continue
            stats.record_error("timeout", f"the source sent nothing for {quiet_after:g} s")
            break
    stats.note_send_end(trio.current_time())


async def udp_reverse_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One UDP flow to which the source sends."""
    await serve_udp_flow(ctx, partial(_udp_reverse, ctx, flow_id, quota))


async def _udp_reverse(
    ctx: FlowContext, flow_id: int, quota: int | None, sock: stdsocket.socket, conn: Conn
) -> None:
    side = ctx.reverse
    assert side is not None
    stats = ctx.stats
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel
    request = request_for(ctx, flow_id, quota)
    record = side.sink.record
    buf = bytearray(ctx.size + 1)
    view = memoryview(buf)
    quiet_after = _quiet_after(ctx)
    retry_after = min(ctx.timeout / REQUEST_TRIES, 0.25)
    sock.send(request)
    tries = 1
    arrivals = 0
    with flow_scope, trio.move_on_at(_end_at(ctx)):
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                with trio.move_on_after(quiet_after if arrivals else retry_after) as quiet:
                    await trio.lowlevel.wait_readable(sock)
                if quiet.cancelled_caught:
                    if arrivals:
                        break  # the source is done (or what is missing was lost)
                    if tries >= REQUEST_TRIES:
                        stats.record_error("timeout", "the source sent nothing after the request")
                        break
                    tries += 1  # the request itself may have been lost
                    sock.send(request)
                continue
            except ConnectionRefusedError:
                stats.record_error("unreachable")
                break
            if not arrivals and sendreq.is_request(view[:n]):
                stats.record_error("other", NOT_A_SOURCE)
                break
            arrivals += 1
            conn.bytes_in += n
            conn.msgs_in += 1
            if n >= probe.HEADER_SIZE:
                record(view, perf_ns(), n)
                side.sync()
            conn.touch()
            if quota is not None and arrivals >= quota:
                break
    stats.note_send_end(trio.current_time())
