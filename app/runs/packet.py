"""The ``packet`` pattern: one message, and its reply shown as hex and as text.

The payload is sent exactly as given (text with escapes, or hex), without a probe header,
as Packet Sender does. TCP: the reply is what arrives within ``timeout`` of the send, read
until the peer pauses for a moment or closes; UDP: the first datagram back. When nothing
comes back within ``timeout`` the run still finishes, and its reply says so.
"""

from __future__ import annotations

import socket as stdsocket
import time
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow, serve_udp_flow
from app.wire.payload import to_hex, to_text

perf_ns = time.perf_counter_ns
# After the first bytes of a TCP reply, wait this long for more before calling it complete.
_QUIET = 0.1
MAX_REPLY = 65_536


def _payload(ctx: FlowContext) -> bytes:
    raw = ctx.spec.payload.raw()
    return raw if raw is not None else ctx.spec.payload.build(ctx.size)


def _reply(data: bytes, rtt_ns: int | None) -> dict[str, object]:
    return {
        "bytes": len(data),
        "hex": to_hex(data),
        "text": to_text(data),
        "rtt_ms": None if rtt_ns is None else rtt_ns / 1e6,
    }


async def packet_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """Send one message and keep what comes back in ``stats.reply``."""
    stats = ctx.stats
    payload = _payload(ctx)
    if ctx.protocol == "udp":
        await _udp_packet(ctx, payload)
    else:
        await _tcp_packet(ctx, payload)
    if stats.reply is None and not stats.error_count:
        stats.reply = {
            "bytes": 0,
            "hex": "",
            "text": "",
            "rtt_ms": None,
            "note": f"no reply within {ctx.timeout:g} s",
        }


async def _tcp_packet(ctx: FlowContext, payload: bytes) -> None:
    await serve_tcp_flow(ctx, partial(_tcp_exchange, ctx, payload))


async def _tcp_exchange(ctx: FlowContext, payload: bytes, channel: Channel, conn: Conn) -> None:
    stats = ctx.stats
    t0 = perf_ns()
    await channel.send_all(memoryview(payload))
    stats.sent = 1
    stats.bytes_sent = len(payload)
    rview = memoryview(bytearray(MAX_REPLY))
    got = 0
    first_ns = None
    with trio.move_on_after(ctx.timeout):
        n = await channel.recv_into(rview, MAX_REPLY)
        first_ns = perf_ns() - t0
        got = n
        while n and got < MAX_REPLY:
            with trio.move_on_after(_QUIET) as quiet:
                n = await channel.recv_into(rview[got:], MAX_REPLY - got)
                got += n
            if quiet.cancelled_caught:
                break
    if got:
        stats.received = 1
        stats.bytes_received = got
        assert first_ns is not None
        stats.interval.record_value(first_ns)
        stats.reply = _reply(bytes(rview[:got]), first_ns)


async def _udp_packet(ctx: FlowContext, payload: bytes) -> None:
    await serve_udp_flow(ctx, partial(_udp_exchange, ctx, payload))


async def _udp_exchange(
    ctx: FlowContext, payload: bytes, sock: stdsocket.socket, conn: Conn
) -> None:
    stats = ctx.stats
    rbuf = bytearray(MAX_REPLY)
    t0 = perf_ns()
    sock.send(payload)
    stats.sent = 1
    stats.bytes_sent = len(payload)
    with trio.move_on_after(ctx.timeout):
        # The first datagram back is the reply; a spurious wake-up just waits again.
        await trio.lowlevel.wait_readable(sock)
        n = -1
        while n < 0:
            try:
                n = sock.recv_into(rbuf)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
        rtt = perf_ns() - t0
        stats.received = 1
        stats.bytes_received = n
        stats.interval.record_value(rtt)
        stats.reply = _reply(bytes(rbuf[:n]), rtt)
    if stats.reply is None:
        stats.lost = 1
