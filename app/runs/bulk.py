"""TCP ``bulk``: maximum throughput, one writer per connection.

Each connection writes ``size``-byte chunks as fast as the kernel takes them, until its
quota or the send deadline, and counts the bytes the kernel accepted. A reader drains and
counts whatever comes back, so an echo server cannot stall the writer; against a sink
nothing comes back. At the end the write side is shut down and replies still in flight get
``timeout`` seconds. Throughput is the bytes sent over the elapsed time, which is what the
receiving side counts once the connection is closed.

Each write is charged to the run's budget first (:mod:`app.runs.budget`): the writer waits
while the rate and bit-rate caps say so, and stops at the byte cap.
"""

from __future__ import annotations

import math
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow


async def tcp_bulk_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection writing as fast as it can."""
    await serve_tcp_flow(ctx, partial(_write_and_drain, ctx, quota))


async def _write_and_drain(
    ctx: FlowContext, quota: int | None, channel: Channel, conn: Conn
) -> None:
    stats = ctx.stats
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel
    receive_scope = trio.CancelScope()
    sent_bytes = 0
    done_sending = False

    async def writer() -> None:
        nonlocal sent_bytes, done_sending
        view = memoryview(ctx.message_buffer())
        size = ctx.size
        chunk = view[:size]
        count = 0
        take = ctx.budget.take
        try:
            while quota is None or count < quota:
                now = trio.current_time()
                if now >= ctx.send_deadline:
                    break
                wait = take(size, now)
                if wait:
                    if wait == math.inf:
                        break  # the byte cap
                    await trio.sleep_until(min(wait, ctx.send_deadline))
                    continue
                await channel.send_all(chunk)
                count += 1
                sent_bytes += size
                stats.sent += 1
                stats.bytes_sent += size
                conn.bytes_out += size
                conn.msgs_out += 1
                conn.touch()
        finally:
            done_sending = True
            stats.note_send_end(trio.current_time())
            channel.shutdown_write()
            receive_scope.deadline = trio.current_time() + ctx.timeout

    async def reader() -> None:
        rview = memoryview(bytearray(65536))
        received = 0
        with receive_scope:
            while True:
                n = await channel.recv_into(rview, 65536)
                if not n:
                    return
                received += n
                stats.bytes_received += n
                conn.bytes_in += n
                if done_sending and received >= sent_bytes:
                    return

    with flow_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await writer()
