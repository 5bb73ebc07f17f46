"""The shared half of the telemetry collectors (``influx``, ``graphite``, ``syslog`` modes).

Theory of operation: a collector turns what arrives into points of its
:class:`~app.telemetry.series.SeriesStore` (and, for syslog, records of a
:class:`~app.telemetry.logs.LogStore`) through its sans-IO parser; a subclass says how
one message is parsed and stored (:meth:`CollectorMode.take`), how a datagram splits into
messages and which framer cuts a TCP stream. Everything else is here once, with the
limits StatsD has (:mod:`app.listeners.modes.statsd`):

- UDP: the per-datagram handler only queues the datagram (:mod:`.intake`: bounded in
  bytes, past it dropped and counted in ``backlog_drops``); a task parses the queue with a
  checkpoint every :data:`LINES_PER_STEP` messages, so a flood never holds the event loop.
  The socket's kernel drop counter is read every second (``kernel_drops``).
- TCP: each connection's framer (:class:`~app.wire.lines.LineFramer`,
  :class:`~app.wire.syslog_framing.SyslogFramer`) cuts frames bounded by
  ``max_message_size``; the connection's own task parses them in the same steps (a fast
  sender is held back by TCP, not queued).
- Nothing is dropped silently: a message that does not parse is counted in ``bad_lines``
  with the newest few kept as samples (``bad_samples``, as StatsD's); a point past the
  series cap is counted by the store (``overflow``).
- ``forward=host:port`` sends what arrives on, unchanged (:mod:`app.listeners.forward`).

Error handling: a parser raises only :class:`~app.errors.LineError`; it is counted, never
raised out of the collector.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import trio

from app.errors import LineError
from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.collectors import series_for
from app.listeners.forward import StreamForward, forwarder_for
from app.listeners.modes.intake import DatagramIntake, in_steps
from app.listeners.stream import Replies, Transport, serve_stream
from app.registry import Conn
from app.telemetry.series import SeriesStore
from app.wire.rules import FrameTooLongError
from app.wire.statsd import MAX_BAD_SAMPLE_BYTES, MAX_BAD_SAMPLES
from app.wire.syslog_framing import SyslogFramingError

__all__ = ["LINES_PER_STEP", "CollectorMode", "FramedSession", "Framer"]

# How often the kernel drop counter is read.
DROPS_PERIOD = 1.0
# Messages parsed between two checkpoints: about a millisecond of work.
LINES_PER_STEP = 100


class Framer(Protocol):
    """Cuts one TCP stream into messages (see :class:`~app.wire.lines.LineFramer`)."""

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]: ...

    def close(self) -> tuple[list[bytes], bytes]: ...


class FramedSession:
    """One TCP connection of a collector: frames go to the mode's outlet, raw bytes on to
    the upstream. As a :class:`~app.listeners.stream.StreamSession` each frame counts as
    one message and nothing is answered: what :meth:`receive` returns are the frames, for
    the outlet (:meth:`CollectorMode.handle_stream`) to parse in steps."""

    whole_reads = True

    def __init__(self, framer: Framer, mode: CollectorMode) -> None:
        self.framer = framer
        self.mode = mode
        self.messages = 0
        self.upstream: StreamForward | None = None

    def receive(self, view: memoryview, n: int) -> Replies:
        try:
            frames, raw = self.framer.feed(view[:n].tobytes())
        except FrameTooLongError as exc:
            self.messages += len(exc.lines)  # the stream loop hands them to the outlet
            raise
        self.messages += len(frames)
        if raw and self.upstream is not None:
            self.upstream.send_nowait(raw, len(frames))
        return frames

    def close(self) -> None:
        frames, raw = self.framer.close()
        self.messages += len(frames)
        if raw and self.upstream is not None:
            self.upstream.send_nowait(raw, len(frames))
        self.mode.consume(frames)


class CollectorMode(Mode):
    """A telemetry collector over UDP and TCP; subclasses parse (:meth:`take`)."""

    name = "collector"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        self.series: SeriesStore = series_for(spec)
        self.received = 0
        self.bad_lines = 0
        # The newest few messages that did not parse, with why (bounded; only bad ones pay).
        self.bad_samples: deque[dict[str, str]] = deque(maxlen=MAX_BAD_SAMPLES)
        self.forwarder = forwarder_for(spec.forward, spec.protocol)
        self.intake = DatagramIntake(self.forwarder)

    # What a subclass says.

    def take(self, message: bytes, now: float) -> None:
        """Parse one message and store what it holds.

        Raises:
            LineError: It does not parse (counted in ``bad_lines`` by the caller).
        """
        raise NotImplementedError

    def skip(self, message: bytes) -> bool:
        """Whether ``message`` is no message at all (blank, a comment): not counted."""
        return not message.strip()

    def split_datagram(self, data: bytes) -> list[bytes]:
        """The messages of one datagram: one per line (syslog: the datagram)."""
        return data.split(b"\n")

    def framer(self) -> Framer:
        """A fresh framer for one TCP connection."""
        raise NotImplementedError

    # Parsing.

    def consume(self, messages: Sequence[bytes | memoryview]) -> None:
        """Parse and store ``messages`` now; count the good and the bad ones."""
        now = time.time()
        take = self.take
        skip = self.skip
        for item in messages:
            message = bytes(item)
            if skip(message):
                continue
            try:
                take(message, now)
            except LineError as exc:
                self.count_bad(message, exc)
            else:
                self.received += 1

    def count_bad(self, message: bytes, exc: LineError) -> None:
        """Count one bad message and keep it as the newest sample."""
        self.bad_lines += 1
        text = message[:MAX_BAD_SAMPLE_BYTES].decode("utf-8", "backslashreplace")
        self.bad_samples.append({"line": text, "error": exc.message})

    async def consume_in_steps(self, messages: Sequence[bytes | memoryview]) -> None:
        """:meth:`consume`, with a checkpoint every :data:`LINES_PER_STEP` messages."""
        await in_steps(self.consume, messages, LINES_PER_STEP, LINES_PER_STEP)

    # Serving.

    async def run(self) -> None:
        """Parse queued datagrams; read the kernel drop counter meanwhile."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._parse_backlog)
                while True:
                    await trio.sleep(DROPS_PERIOD)
                    await self.intake.refresh_kernel_drops()
        finally:
            self.intake.close()

    async def _parse_backlog(self) -> None:
        # A checkpoint per LINES_PER_STEP messages, not per datagram: syslog has one
        # message per datagram, and a checkpoint each would cost more than the parse.
        credit = LINES_PER_STEP
        while True:
            messages = self.split_datagram(await self.intake.get())
            credit = await in_steps(self.consume, messages, credit, LINES_PER_STEP)

    async def refresh_kernel_drops(self) -> int | None:
        """Read the UDP socket's kernel drop counter (see :class:`DatagramIntake`)."""
        return await self.intake.refresh_kernel_drops()

    def open_session(self) -> FramedSession:
        return FramedSession(self.framer(), self)

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        """Serve one TCP connection; its frames are parsed in steps (and forwarded).

        A stream whose framing breaks (a syslog octet count that is not a number) cannot
        be cut again: the messages before the break are kept, the break counts as one bad
        message and the connection ends.
        """
        session = self.open_session()
        if self.forwarder is None:
            await self._serve_session(conn, transport, scope, session)
            return
        async with self.forwarder.open_stream() as upstream:
            session.upstream = upstream
            await self._serve_session(conn, transport, scope, session)

    async def _serve_session(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope, session: FramedSession
    ) -> None:
        try:
            await serve_stream(
                self.listener, conn, transport, scope, session, self.consume_in_steps
            )
        except SyslogFramingError as exc:
            # The stream loop counted the bytes, not these last messages: count them here.
            conn.msgs_in += len(exc.messages)
            self.listener.msgs_in += len(exc.messages)
            self.consume(exc.messages)
            self.count_bad(exc.line, exc)

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        return self.intake.handler(port)

    # Documents.

    def counters(self) -> dict[str, Any]:
        """The collector's counters (the listener document's section, the API's)."""
        doc: dict[str, Any] = {
            "received": self.received,
            "bad_lines": self.bad_lines,
            "bad_samples": list(self.bad_samples),
            "kernel_drops": self.intake.kernel_drops,
            "backlog_drops": self.intake.backlog_drops,
            "overflow": self.series.overflow,
            "series_count": self.series.series_count,
            "max_series": self.series.max_series,
            "forwarded": 0,
            "forward_failed": 0,
        }
        if self.forwarder is not None:
            doc.update(self.forwarder.counters())
        return doc

    def details(self) -> dict[str, Any]:
        return {self.name: self.counters()}

    def telemetry(self) -> dict[str, Any]:
        """The collector's document for ``GET /api/telemetry``: ``listener_id``, ``url``,
        ``protocol``, ``mode`` and the counters of :meth:`counters`.

        Counters: ``received`` (messages parsed and stored), ``bad_lines`` (messages that
        did not parse) with ``bad_samples`` (the newest, ``{"line", "error"}``),
        ``kernel_drops`` (UDP datagrams the kernel dropped; None for TCP or where the
        kernel does not tell), ``backlog_drops`` (datagrams dropped because the parse
        queue was full), ``overflow`` (points refused past ``max_series``),
        ``series_count``, ``forwarded`` and ``forward_failed`` (messages sent on to
        ``forward``, or not).
        """
        listener = self.listener
        return {
            "mode": self.name,
            "listener_id": listener.id,
            "url": listener.spec_url(),
            "protocol": listener.spec.protocol,
            **self.counters(),
        }
