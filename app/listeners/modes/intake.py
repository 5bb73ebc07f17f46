"""The UDP intake of a collector (statsd, influx, graphite, syslog): the receive path's half.

Theory of operation: parsing a datagram of thousands of lines would hold the event loop,
so the per-datagram handler (:meth:`DatagramIntake.handler`, the hot path) only forwards
the datagram (``forward``, non-blocking) and queues it; the collector's own task takes the
queue (:meth:`DatagramIntake.get`) and parses with checkpoints. The queue is bounded in
bytes: a datagram past :data:`MAX_BACKLOG` is dropped and counted in ``backlog_drops``.
Datagrams the kernel dropped because the socket buffer was full never reach the handler:
:meth:`DatagramIntake.refresh_kernel_drops` reads the socket's drop counter
(``kernel_drops``; None until read, for TCP, or where the kernel does not tell).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from app.listeners.base import DatagramHandler, DatagramPort
from app.listeners.forward import Forwarder
from app.listeners.udp import read_kernel_drops
from app.registry import Conn

__all__ = ["MAX_BACKLOG", "DatagramIntake", "in_steps"]

# Bytes of UDP datagrams waiting to be parsed; a datagram past this is dropped, counted.
MAX_BACKLOG = 8 * 1024 * 1024

T = TypeVar("T")


async def in_steps(
    consume: Callable[[Sequence[T]], object], items: Sequence[T], credit: int, step: int
) -> int:
    """Hand ``items`` to ``consume``, with a checkpoint whenever ``credit`` of them are spent.

    The credit carries from one call to the next (one datagram's lines, then the next's),
    so the checkpoints come every ``step`` items, not once per datagram.

    Args:
        consume: What parses a slice of the items.
        items: The lines or messages of one datagram or chunk.
        credit: Items that may still go before the next checkpoint.
        step: Items between two checkpoints.

    Returns:
        The credit left for the caller's next call (never negative).
    """
    start = 0
    while len(items) - start > credit:
        consume(items[start : start + credit])
        start += credit
        await trio.lowlevel.checkpoint()
        credit = step
    consume(items[start:] if start else items)
    return credit - (len(items) - start)


class DatagramIntake:
    """A collector's queue of received datagrams and its drop counters.

    Args:
        forwarder: Where every datagram is sent on, unchanged (``forward``), if anywhere.
        max_bytes: Bytes queued at most.
    """

    def __init__(self, forwarder: Forwarder | None, max_bytes: int = MAX_BACKLOG) -> None:
        self.forwarder = forwarder
        self.max_bytes = max_bytes
        self.kernel_drops: int | None = None
        self.backlog_drops = 0
        self.sock: Any = None
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wake = trio.Event()

    def handler(self, port: DatagramPort) -> DatagramHandler:
        """The per-datagram function for ``port``'s socket (opens the forward socket)."""
        self.sock = port.sock
        queue = self._queue
        forwarder = self.forwarder
        if forwarder is not None:
            forwarder.open_datagram()

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            if forwarder is not None:
                forwarder.send_datagram(view[:n])
            if self._bytes + n > self.max_bytes:
                self.backlog_drops += 1
                return
            queue.append(view[:n].tobytes())
            self._bytes += n
            self._wake.set()

        return handle

    async def get(self) -> bytes:
        """The oldest queued datagram, waiting for one when there is none."""
        queue = self._queue
        while not queue:
            # Nothing awaits between the emptiness check and the wait: no wake-up is lost.
            self._wake = trio.Event()
            await self._wake.wait()
        data = queue.popleft()
        self._bytes -= len(data)
        return data

    async def refresh_kernel_drops(self) -> int | None:
        """Read the socket's kernel drop counter (in a thread: it is file I/O)."""
        sock = self.sock
        if sock is not None and sock.fileno() >= 0:
            drops = await trio.to_thread.run_sync(read_kernel_drops, sock)
            if drops is not None:
                self.kernel_drops = drops
        return self.kernel_drops

    def close(self) -> None:
        """The listener stopped: close the forward socket."""
        if self.forwarder is not None:
            self.forwarder.close()
