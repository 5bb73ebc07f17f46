"""Impairment for echo listeners: what a bad network does, without tc or netem.

Options (see :class:`~app.listeners.spec.ListenerSpec`): ``delay`` and ``jitter`` in seconds
(each reply waits ``delay ± jitter``, drawn uniformly, never below 0), and for UDP ``loss``
and ``duplicate`` in percent. Loss is decided per received datagram (the echo is not sent);
duplication sends the echo twice, each copy with its own delay.

Theory of operation: UDP replies that must wait go into a :class:`DelayLine`, a heap ordered
by due time drained by one task per listener, so with jitter replies are reordered as they
would be on a real path. TCP keeps byte order: each connection gets a writer task fed through
a bounded channel, every chunk is due no earlier than the one before it, and a full channel
stops reading, so a fast sender is slowed by TCP's own flow control rather than buffered
without bound.

Resource handling: the delay line holds at most ``MAX_PENDING`` datagrams; past that a reply
is dropped and counted in ``queue_full``. Replies still waiting when the listener stops are
discarded.
"""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener
from app.listeners.spec import ListenerSpec
from app.listeners.stream import Replies, StreamSession, Transport, send_counted, serve_stream
from app.registry import Conn

# Datagrams waiting in one listener's delay line: 50 ms at 100k datagrams/s fits.
MAX_PENDING = 10_000
# Chunks waiting per TCP connection before reading stops (backpressure).
_TCP_PENDING = 64


class DelayLine:
    """Items released at their due time (``trio.current_time()`` clock), earliest first."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._heap: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, item: Any) -> bool:
        """Queue ``item`` for ``due``; False (not queued) when the line is full."""
        heap = self._heap
        if len(heap) >= self.max_pending:
            return False
        order = next(self._order)
        heapq.heappush(heap, (due, order, item))
        if heap[0][1] == order:
            self._wake.set()  # a new earliest item: the runner must re-arm its timer
        return True

    async def run(self, deliver: Any) -> None:
        """Call ``deliver(item)`` for each item at its due time, forever."""
        heap = self._heap
        while True:
            if not heap:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            now = trio.current_time()
            if heap[0][0] > now:
                self._wake = trio.Event()
                with trio.move_on_at(heap[0][0]):
                    await self._wake.wait()
                continue
            while heap and heap[0][0] <= now:
                deliver(heapq.heappop(heap)[2])
            await trio.lowlevel.checkpoint()


class Impairment:
    """One echo listener's impairment settings, random source and counters.

    Counters:
        dropped: Datagrams not echoed because of ``loss``.
        duplicated: Extra copies sent because of ``duplicate``.
        delayed: Replies (datagrams or TCP chunks) that waited in a delay line.
        queue_full: Replies dropped because the UDP delay line was full.
    """

    def __init__(self, spec: ListenerSpec) -> None:
        self.delay = spec.delay
        self.jitter = spec.jitter
        self.loss = spec.loss / 100.0
        self.duplicate = spec.duplicate / 100.0
        self.seed = spec.seed
        self.rng = random.Random(spec.seed)
        self.line = DelayLine()
        self.deliver: Any = None
        self.dropped = 0
        self.duplicated = 0
        self.delayed = 0
        self.queue_full = 0

    @staticmethod
    def wanted(spec: ListenerSpec) -> bool:
        """Whether ``spec`` asks for any impairment."""
        return bool(spec.delay or spec.jitter or spec.loss or spec.duplicate)

    @property
    def delays(self) -> bool:
        return bool(self.delay or self.jitter)

    def draw_delay(self) -> float:
        """One delay in seconds: uniform in ``delay ± jitter``, at least 0."""
        if not self.jitter:
            return self.delay
        return max(0.0, self.delay + self.rng.uniform(-self.jitter, self.jitter))

    async def run(self) -> None:
        """Drain the UDP delay line (TCP connections have their own writers)."""
        if self.deliver is not None and self.delays:
            await self.line.run(self.deliver)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delay": self.delay,
            "jitter": self.jitter,
            "loss": self.loss * 100.0,
            "duplicate": self.duplicate * 100.0,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
            "delayed": self.delayed,
            "queue_full": self.queue_full,
            "pending": len(self.line),
        }


def impaired_datagram_handler(impairment: Impairment, port: DatagramPort) -> DatagramHandler:
    """The per-datagram function of an impaired UDP echo listener."""
    rng = impairment.rng
    loss = impairment.loss
    duplicate = impairment.duplicate
    delays = impairment.delays
    line = impairment.line
    reply = port.reply

    def deliver(item: tuple[bytes, Any, Conn]) -> None:
        data, addr, flow = item
        reply(flow, data, addr)

    impairment.deliver = deliver

    def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
        if loss and rng.random() < loss:
            impairment.dropped += 1
            return
        copies = 1
        if duplicate and rng.random() < duplicate:
            copies = 2
            impairment.duplicated += 1
        if not delays:
            for _ in range(copies):
                reply(flow, view[:n], addr)
            return
        data = bytes(view[:n])
        now = trio.current_time()
        for _ in range(copies):
            if line.push(now + impairment.draw_delay(), (data, addr, flow)):
                impairment.delayed += 1
            else:
                impairment.queue_full += 1

    return handle


async def impaired_stream(
    listener: Listener,
    impairment: Impairment,
    conn: Conn,
    transport: Transport,
    scope: trio.CancelScope,
    session: StreamSession,
) -> None:
    """Serve one TCP/TLS connection with every reply delayed, byte order kept.

    The stream loop reads and counts as for any mode; its replies go to a writer task
    through a bounded channel instead of straight to the socket, each due no earlier than
    the one before it. A full channel stops the loop reading (TCP's own backpressure).
    """
    send_channel, receive_channel = trio.open_memory_channel[tuple[float, bytes]](_TCP_PENDING)

    async def writer() -> None:
        async with receive_channel:
            async for due, data in receive_channel:
                await trio.sleep_until(due)
                await send_counted(listener, conn, transport, data)
                conn.touch()

    last_due = 0.0

    async def delay(replies: Replies) -> None:
        nonlocal last_due
        for reply in replies:
            last_due = max(trio.current_time() + impairment.draw_delay(), last_due)
            impairment.delayed += 1
            # A copy: the reply may be a view of the read buffer, reused by the next read.
            await send_channel.send((last_due, bytes(reply)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        async with send_channel:
            await serve_stream(listener, conn, transport, scope, session, delay)
