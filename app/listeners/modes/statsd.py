"""StatsD mode: a StatsD / DogStatsD collector over UDP and TCP.

Every datagram (UDP) or newline-terminated chunk of the stream (TCP, :class:`StatsdStream`)
is parsed and folded into the listener's :class:`~app.wire.statsd.Aggregator`: counters
with sample rates, gauges with ``+``/``-`` deltas, timers/histograms/distributions with
percentiles, sets, tags, several metrics per datagram. A task flushes it every
``flush_interval`` seconds; ``GET /api/telemetry`` shows the open interval and the last
flush (:meth:`StatsdMode.telemetry`).

Nothing is dropped silently: lines that do not parse are counted (``bad_lines``), metrics
that would need a key past ``max_keys`` are counted (``overflow``), set members past the
per-set bound too (``set_overflow``), and datagrams the kernel discarded because the socket
buffer was full are read from the socket's drop counter (``kernel_drops``, refreshed every
second and on every telemetry request; None where the kernel does not tell, and for TCP,
which does not drop).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.stream import Replies
from app.listeners.udp import read_kernel_drops
from app.registry import Conn
from app.wire.rules import FrameTooLongError
from app.wire.statsd import Aggregator, Snapshot

logger = logging.getLogger(__name__)

# How often the kernel drop counter is read between flushes.
_DROPS_PERIOD = 1.0


class StatsdStream:
    """Cuts one TCP stream at newlines and feeds whole lines to an aggregator. No I/O.

    Feeding a stream whole, byte by byte or in any chunks aggregates the same. At EOF,
    :meth:`close` feeds an unterminated last line too. As a
    :class:`~app.listeners.stream.StreamSession` each read counts as one message and
    nothing is answered.

    Args:
        aggregator: Where the metrics go.
        max_line: Longest unterminated tail kept; past it :meth:`feed` raises.
    """

    whole_reads = True

    def __init__(self, aggregator: Aggregator, max_line: int) -> None:
        self.aggregator = aggregator
        self.max_line = max_line
        self.messages = 0
        self._pending = bytearray()

    def receive(self, view: memoryview, n: int) -> Replies:
        self.messages += 1
        self.feed(view[:n].tobytes())
        return ()

    def feed(self, data: bytes) -> None:
        """Add received bytes; every line they complete is aggregated.

        Raises:
            FrameTooLongError: A line grew past ``max_line`` without a newline.
        """
        cut = data.rfind(b"\n")
        pending = self._pending
        if cut < 0:
            pending += data
        else:
            if pending:
                pending += data[:cut]
                chunk = bytes(pending)
                pending.clear()
            else:
                chunk = data[:cut]
            pending += data[cut + 1 :]
            self.aggregator.feed(chunk)
        if len(pending) > self.max_line:
            pending.clear()
            raise FrameTooLongError(self.max_line)

    def close(self) -> None:
        """End of stream: aggregate the last line even without its newline."""
        if self._pending:
            self.aggregator.feed(bytes(self._pending))
            self._pending.clear()


class StatsdMode(Mode):
    """Collect StatsD metrics; flush on a timer."""

    name = "statsd"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        self.aggregator = Aggregator(
            max_keys=spec.max_keys, percentiles=spec.percentiles, started_at=time.time()
        )
        self.flushes = 0
        self.kernel_drops: int | None = None
        self.on_flush: Callable[[Snapshot], None] | None = None
        self._sock: Any = None

    async def run(self) -> None:
        """Flush every ``flush_interval`` seconds; read the kernel drop counter meanwhile."""
        interval = self.listener.spec.flush_interval
        next_flush = trio.current_time() + interval
        while True:
            await trio.sleep_until(min(next_flush, trio.current_time() + _DROPS_PERIOD))
            await self.refresh_kernel_drops()
            if trio.current_time() >= next_flush:
                self.flush()
                next_flush += interval * max(
                    1, math.ceil((trio.current_time() - next_flush) / interval)
                )

    def flush(self) -> Snapshot:
        """End the interval now (the timer does this; tests and the API may too)."""
        snapshot = self.aggregator.flush(time.time())
        self.flushes += 1
        if self.on_flush is not None:
            try:
                self.on_flush(snapshot)
            except Exception:
                logger.exception("listener %s: flush callback failed", self.listener.id)
        return snapshot

    async def refresh_kernel_drops(self) -> int | None:
        """Read the UDP socket's kernel drop counter (in a thread: it is file I/O)."""
        sock = self._sock
        if sock is not None and sock.fileno() >= 0:
            drops = await trio.to_thread.run_sync(read_kernel_drops, sock)
            if drops is not None:
                self.kernel_drops = drops
        return self.kernel_drops

    def open_session(self) -> StatsdStream:
        return StatsdStream(self.aggregator, self.listener.spec.max_message_size)

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        self._sock = port.sock
        feed = self.aggregator.feed

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            feed(view[:n].tobytes())

        return handle

    def _counters(self) -> dict[str, Any]:
        agg = self.aggregator
        last = agg.last_flush
        return {
            "metrics_received": agg.metrics_received,
            "bad_lines": agg.bad_lines,
            "overflow": agg.overflow,
            "set_overflow": agg.set_overflow,
            "keys": agg.keys,
            "max_keys": agg.max_keys,
            "kernel_drops": self.kernel_drops,
            "flushes": self.flushes,
            "flush_interval": self.listener.spec.flush_interval,
            "last_flush_at": None if last is None else last["flushed_at"],
        }

    def details(self) -> dict[str, Any]:
        return {"statsd": self._counters()}

    def telemetry(self) -> dict[str, Any]:
        """The collector's document for ``GET /api/telemetry``.

        Keys: ``listener_id``, ``url``, ``protocol``, the counters of :meth:`details`, and
        ``current`` (the open interval, as :meth:`~app.wire.statsd.Aggregator.current`) and
        ``last_flush`` (the last closed interval, or None before the first flush). Both
        snapshots have ``counters`` ({key: {value, rate}}), ``gauges``, ``timers`` ({key:
        {count, min, max, mean, sum, p50, ...}}), ``sets`` (distinct members) and
        ``flushed_at`` (Unix time). Keys are ``name`` or ``name|#tag,tag`` (sorted tags).
        """
        listener = self.listener
        return {
            "listener_id": listener.id,
            "url": listener.spec_url(),
            "protocol": listener.spec.protocol,
            **self._counters(),
            "current": self.aggregator.current(time.time()),
            "last_flush": self.aggregator.last_flush,
        }
