"""StatsD mode: a StatsD / DogStatsD collector over UDP and TCP.

Every datagram (UDP) or newline-terminated chunk of the stream (TCP, :class:`StatsdStream`)
is parsed and folded into the listener's :class:`~app.wire.statsd.Aggregator`: counters
with sample rates, gauges with ``+``/``-`` deltas (or set, ``signed_gauges=set``),
timers/histograms/distributions with percentiles, sets, tags, DogStatsD events and service
checks, several lines per datagram. A task flushes it every ``flush_interval`` seconds;
``GET /api/telemetry`` shows the open interval and the last flush
(:meth:`StatsdMode.telemetry`).

No datagram and no flush holds the event loop for long: a datagram of thousands of lines
or a flush of millions of timer samples would freeze the lab's API while it is processed.
The UDP handler only queues the datagram (bounded in bytes: past the bound a datagram is
dropped and counted in ``backlog_drops``); a task of the mode parses the queue with a
checkpoint every ``_LINES_PER_STEP`` lines. Over TCP the connection's own task parses what
it read, with the same checkpoints (a fast sender is held back by TCP, not queued). A flush
swaps in a fresh interval at once and summarizes the timers ``_SAMPLES_PER_STEP`` samples
at a time (:meth:`StatsdMode.flush_in_steps`).

Nothing is dropped silently: lines that do not parse are counted (``bad_lines``), metrics
that would need a key past ``max_keys`` are counted (``overflow``), set members past the
per-set bound too (``set_overflow``), and datagrams the kernel discarded because the socket
buffer was full are read from the socket's drop counter (``kernel_drops``, refreshed every
second and on every telemetry request; None where the kernel does not tell, and for TCP,
which does not drop). The UDP queue and these counters are every collector's
(:mod:`app.listeners.modes.intake`).

With ``forward=host:port`` what arrives is also sent on, unchanged, to an upstream StatsD
(:mod:`app.listeners.forward`; ``forwarded`` and ``forward_failed`` in the counters).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.collectors import series_for
from app.listeners.forward import StreamForward, forwarder_for
from app.listeners.modes.intake import DatagramIntake, in_steps
from app.listeners.modes.statsd_series import history_doc, snapshot_points
from app.listeners.stream import Replies, Transport, serve_stream
from app.registry import Conn
from app.telemetry.series import SeriesStore
from app.wire.rules import FrameTooLongError
from app.wire.statsd import Aggregator, Snapshot

logger = logging.getLogger(__name__)

# How often the kernel drop counter is read between flushes.
_DROPS_PERIOD = 1.0
# Lines parsed between two checkpoints: about a millisecond of work.
_LINES_PER_STEP = 250
# Timer samples sorted and summarized between two checkpoints of a flush: a few ms.
_SAMPLES_PER_STEP = 20_000
# Points of a flush put into the series store between two checkpoints.
_POINTS_PER_STEP = 2_000


class StatsdStream:
    """Cuts one TCP stream at newlines; whole lines go to an aggregator. No I/O.

    Feeding a stream whole, byte by byte or in any chunks aggregates the same. At EOF,
    :meth:`close` feeds an unterminated last line too. As a
    :class:`~app.listeners.stream.StreamSession` each read counts as one message and
    nothing is answered; with ``deferred``, :meth:`receive` returns the complete lines it
    read instead of aggregating them, for the mode's outlet to aggregate in steps
    (:meth:`StatsdMode.handle_stream`).

    Args:
        aggregator: Where the metrics go.
        max_line: Longest unterminated tail kept; past it :meth:`feed` raises.
        deferred: Return complete lines from :meth:`receive` rather than aggregate them.

    Attributes:
        upstream: Where the complete lines go on, unchanged (``forward``), if anywhere.
    """

    whole_reads = True

    def __init__(self, aggregator: Aggregator, max_line: int, *, deferred: bool = False) -> None:
        self.aggregator = aggregator
        self.max_line = max_line
        self.deferred = deferred
        self.messages = 0
        self.upstream: StreamForward | None = None
        self._pending = bytearray()

    def receive(self, view: memoryview, n: int) -> Replies:
        self.messages += 1
        if not self.deferred:
            self.feed(view[:n].tobytes())
            return ()
        chunk = self.cut(view[:n].tobytes())
        if chunk is not None and self.upstream is not None:
            self.upstream.send_nowait(chunk + b"\n", chunk.count(b"\n") + 1)
        return (chunk,) if chunk else ()

    def cut(self, data: bytes) -> bytes | None:
        """Add received bytes; return the lines they complete (None when none).

        Raises:
            FrameTooLongError: A line grew past ``max_line`` without a newline; its
                ``lines`` hold the complete lines before it.
        """
        cut = data.rfind(b"\n")
        pending = self._pending
        chunk = None
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
        if len(pending) > self.max_line:
            pending.clear()
            raise FrameTooLongError(self.max_line, [chunk] if chunk else None)
        return chunk

    def feed(self, data: bytes) -> None:
        """Add received bytes; every line they complete is aggregated now.

        Raises:
            FrameTooLongError: A line grew past ``max_line`` without a newline (the lines
                before it are aggregated).
        """
        try:
            chunk = self.cut(data)
        except FrameTooLongError as exc:
            for lines in exc.lines:
                self.aggregator.feed(lines)
            raise FrameTooLongError(self.max_line) from None  # nothing left to answer
        if chunk is not None:
            self.aggregator.feed(chunk)

    def close(self) -> None:
        """End of stream: aggregate the last line even without its newline."""
        if self._pending:
            if self.upstream is not None:
                self.upstream.send_nowait(bytes(self._pending), 1)
            self.aggregator.feed(bytes(self._pending))
            self._pending.clear()


class StatsdMode(Mode):
    """Collect StatsD metrics; flush on a timer."""

    name = "statsd"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        # Unix time of flushes (a test on trio's virtual clock swaps in its own).
        self.wall_clock: Callable[[], float] = time.time
        self.aggregator = Aggregator(
            max_keys=spec.max_keys,
            percentiles=spec.percentiles,
            started_at=time.time(),
            signed_gauges=spec.signed_gauges,
            delete_counters=spec.delete_counters,
        )
        self.flushes = 0
        self.on_flush: Callable[[Snapshot], None] | None = None
        # Every flush's metrics, as the one telemetry model's series (app.telemetry).
        self.series: SeriesStore = series_for(spec)
        # The last flush in which metrics arrived: shown when traffic stops.
        self.last_active: Snapshot | None = None
        self._received_at_flush = 0
        self.forwarder = forwarder_for(spec.forward, spec.protocol)
        self.intake = DatagramIntake(self.forwarder)

    @property
    def kernel_drops(self) -> int | None:
        return self.intake.kernel_drops

    @property
    def backlog_drops(self) -> int:
        return self.intake.backlog_drops

    async def run(self) -> None:
        """Parse queued datagrams; flush every ``flush_interval`` seconds; read the kernel
        drop counter meanwhile."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._parse_backlog)
                await self._flush_timer()
        finally:
            self.intake.close()

    async def _flush_timer(self) -> None:
        interval = self.listener.spec.flush_interval
        next_flush = trio.current_time() + interval
        while True:
            await trio.sleep_until(min(next_flush, trio.current_time() + _DROPS_PERIOD))
            await self.refresh_kernel_drops()
            if trio.current_time() >= next_flush:
                await self.flush_in_steps()
                next_flush += interval * max(
                    1, math.ceil((trio.current_time() - next_flush) / interval)
                )

    async def _parse_backlog(self) -> None:
        intake = self.intake
        aggregator = self.aggregator
        credit = _LINES_PER_STEP
        while True:
            data = await intake.get()
            credit = await in_steps(
                aggregator.feed_lines, data.split(b"\n"), credit, _LINES_PER_STEP
            )
            if credit <= 0:
                await trio.lowlevel.checkpoint()
                credit = _LINES_PER_STEP

    def _published(self, snapshot: Snapshot) -> Snapshot:
        self.flushes += 1
        received = snapshot["metrics_received"]
        if received > self._received_at_flush:
            self.last_active = snapshot
        self._received_at_flush = received
        if self.on_flush is not None:
            try:
                self.on_flush(snapshot)
            except Exception:
                logger.exception("listener %s: flush callback failed", self.listener.id)
        return snapshot

    def flush(self) -> Snapshot:
        """End the interval now, all in one go (tests, the CLI)."""
        snapshot = self.aggregator.flush(self.wall_clock())
        now = self.wall_clock()
        for point in snapshot_points(snapshot):
            self.series.add(point, now)
        return self._published(snapshot)

    async def flush_in_steps(self) -> Snapshot:
        """End the interval now; summarize its timers with a checkpoint every
        ``_SAMPLES_PER_STEP`` samples (the timer does this; the API may too)."""
        job = self.aggregator.begin_flush(self.wall_clock())
        while not job.step(_SAMPLES_PER_STEP):
            await trio.lowlevel.checkpoint()
        assert job.snapshot is not None
        now = self.wall_clock()
        for done, point in enumerate(snapshot_points(job.snapshot), 1):
            self.series.add(point, now)
            if done % _POINTS_PER_STEP == 0:
                await trio.lowlevel.checkpoint()
        return self._published(job.snapshot)

    async def refresh_kernel_drops(self) -> int | None:
        """Read the UDP socket's kernel drop counter (in a thread: it is file I/O)."""
        return await self.intake.refresh_kernel_drops()

    def open_session(self) -> StatsdStream:
        return StatsdStream(self.aggregator, self.listener.spec.max_message_size, deferred=True)

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        """Serve one TCP/TLS connection; what it reads is aggregated in steps (and sent on
        to ``forward`` on an upstream connection of its own)."""
        session = self.open_session()
        if self.forwarder is None:
            await serve_stream(self.listener, conn, transport, scope, session, self._aggregate)
            return
        async with self.forwarder.open_stream() as upstream:
            session.upstream = upstream
            await serve_stream(self.listener, conn, transport, scope, session, self._aggregate)

    async def _aggregate(self, chunks: Replies) -> None:
        for chunk in chunks:
            await in_steps(
                self.aggregator.feed_lines,
                bytes(chunk).split(b"\n"),
                _LINES_PER_STEP,
                _LINES_PER_STEP,
            )

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        return self.intake.handler(port)

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
            "backlog_drops": self.backlog_drops,
            "events_received": agg.events_received,
            "service_checks_received": agg.service_checks_received,
            "flushes": self.flushes,
            "flush_interval": self.listener.spec.flush_interval,
            "last_flush_at": None if last is None else last["flushed_at"],
            **(
                self.forwarder.counters()
                if self.forwarder is not None
                else {"forwarded": 0, "forward_failed": 0}
            ),
        }

    def details(self) -> dict[str, Any]:
        return {"statsd": self._counters()}

    def history_doc(self) -> dict[str, Any]:
        """For ``GET /api/telemetry/{id}/history``: every metric's value at each flush its
        series still hold raw (:func:`~app.listeners.modes.statsd_series.history_doc`), the
        last flush with traffic, and the newest bad lines with why they were refused."""
        return {
            "listener_id": self.listener.id,
            "flush_interval": self.listener.spec.flush_interval,
            "percentiles": list(self.listener.spec.percentiles),
            **history_doc(self.series),
            "last_active_flush": self.last_active,
            "bad_lines": self.aggregator.bad_lines,
            "bad_samples": list(self.aggregator.bad_samples),
        }

    def telemetry(self) -> dict[str, Any]:
        """The collector's document for ``GET /api/telemetry``.

        Keys: ``listener_id``, ``url``, ``protocol``, the counters of :meth:`details`, and
        ``current`` (the open interval, as :meth:`~app.wire.statsd.Aggregator.current`) and
        ``last_flush`` (the last closed interval, or None before the first flush). Both
        snapshots have ``counters`` ({key: {value, rate}}), ``gauges``, ``timers`` ({key:
        {count, min, max, mean, sum, p50, ...}}), ``sets`` (distinct members) and
        ``events`` and ``service_checks`` (DogStatsD) and ``flushed_at`` (Unix time). Keys
        are ``name`` or ``name|#tag,tag`` (sorted tags). The open interval's timers leave
        their percentiles out while it holds more than ``_SAMPLES_PER_STEP`` samples.
        """
        listener = self.listener
        return {
            "listener_id": listener.id,
            "url": listener.spec_url(),
            "protocol": listener.spec.protocol,
            **self._counters(),
            # Percentiles of the open interval only while sorting them is cheap; a flush
            # computes them in steps, and the last flush has them.
            "current": self.aggregator.current(
                self.wall_clock(), percentiles=self.aggregator.samples_held <= _SAMPLES_PER_STEP
            ),
            "last_flush": self.aggregator.last_flush,
        }
