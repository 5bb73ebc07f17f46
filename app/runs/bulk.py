"""TCP ``bulk``: maximum throughput, one writer per connection.

Each connection writes ``size``-byte chunks as fast as the kernel takes them, until its
quota or the send deadline, and counts the bytes the kernel accepted. A reader drains and
counts whatever comes back, so an echo server cannot stall the writer; against a sink
nothing comes back. At the end the write side is shut down and replies still in flight get
``timeout`` seconds. Throughput is the bytes sent over the elapsed time, which is what the
receiving side counts once the connection is closed.

Each chunk starts with a probe header (when it has room for one), so a sink listener given
``message_size`` equal to ``size`` counts the chunks as messages; chunks written before the
warm-up ends are flagged so and are not counted here either (nor their echo).

Each write is charged to the run's budget first (:mod:`app.runs.budget`): the writer waits
while the rate and bit-rate caps say so, and stops at the byte cap.
"""

from __future__ import annotations

import math
import time
from functools import partial

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext, serve_tcp_flow
from app.wire import probe

perf_ns = time.perf_counter_ns


async def tcp_bulk_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """One TCP connection writing as fast as it can."""
    await serve_tcp_flow(ctx, partial(_write_and_drain, ctx, flow_id, quota))


async def _write_and_drain(
    ctx: FlowContext, flow_id: int, quota: int | None, channel: Channel, conn: Conn
) -> None:
    stats = ctx.stats
    flow_scope = trio.CancelScope()
    conn.close_hook = flow_scope.cancel
    receive_scope = trio.CancelScope()
    sent_bytes = 0
    warmup_bytes = 0  # written before the warm-up ended: their echo is not counted either
    done_sending = False

    async def writer() -> None:
        nonlocal sent_bytes, warmup_bytes, done_sending
        buf = ctx.message_buffer()
        size = ctx.size
        chunk = memoryview(buf)[:size]
        header = size >= probe.HEADER_SIZE
        run_tag = ctx.run_tag
        measure_from = ctx.measure_from_ns
        count = 0
        first_counted = -1  # the first chunk written after the warm-up
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
                t0 = perf_ns()
                counted = t0 >= measure_from
                if counted:
                    if first_counted < 0:
                        first_counted = count
                else:
                    # Before the write: its echo may be read before this task resumes.
                    warmup_bytes += size
                if header:
                    probe.encode_numbered(buf, run_tag, flow_id, count, first_counted, t0, counted)
                await channel.send_all(chunk)
                count += 1
                sent_bytes += size
                conn.bytes_out += size
                conn.msgs_out += 1
                conn.touch()
                if counted:
                    stats.sent += 1
                    stats.bytes_sent += size
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
                # An echo sends the stream back in order: its first warmup_bytes answer
                # the warm-up, the rest is counted.
                beyond = received - warmup_bytes
                if beyond > 0:
                    stats.bytes_received += n if beyond >= n else beyond
                conn.bytes_in += n
                if done_sending and received >= sent_bytes:
                    return

    with flow_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await writer()
