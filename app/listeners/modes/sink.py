"""Sink mode: discard and count; one-way statistics of socketlab probe traffic.

Every message that starts with a probe header (:mod:`app.wire.probe`) and is not flagged as
sent during its run's warm-up (counted apart, in ``warmup``) is recorded in a
:class:`~app.runs.flowstats.FlowTable` per run tag, keyed by flow id, which gives one-way
loss, duplicates, reordering and RFC 3550 jitter for that run as seen at this end. The
listener's ``probe`` section holds them by run tag (``format(run_tag_of(run_id), "08x")``),
so a run against a sink can show both ends.

Framing: a UDP datagram is a message. A TCP stream has no message boundaries, so by default
a TCP sink counts bytes and reads only (one-way loss and jitter are UDP measurements; TCP
never loses or reorders). Given ``message_size``, a TCP sink cuts the stream into messages of
exactly that size and reads the probe header at the start of each (:class:`FixedFramer`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.modes.received import ReceivedBytes
from app.listeners.stream import Replies
from app.registry import Conn
from app.runs.flowstats import FlowTable
from app.wire import probe

# Runs remembered at once (least recently active forgotten first) and flows per run.
MAX_RUNS = 32
MAX_FLOWS_PER_RUN = 4096

# Up to this many flows the summary is computed on every request; above it, reused 1 s.
_FRESH_FLOWS = 1024
_SUMMARY_REUSE = 1.0

_HEADER_SIZE = probe.HEADER_SIZE
_WARMUP = probe.FLAG_WARMUP
perf_ns = time.perf_counter_ns


class ProbeSink:
    """One-way statistics of probe messages, per run tag and flow. No I/O, no clock reads.

    Attributes:
        probes: Messages that carried a probe header.
        warmup: Of those, messages sent during their run's warm-up: left out of the figures.
        foreign: Messages that did not (another tool's traffic, or too short).
        forgotten_runs: Runs dropped from the table to stay within ``max_runs``.
    """

    def __init__(self, max_runs: int = MAX_RUNS, max_flows: int = MAX_FLOWS_PER_RUN) -> None:
        self.max_runs = max_runs
        self.max_flows = max_flows
        self.runs: OrderedDict[int, FlowTable] = OrderedDict()
        # Bytes per run tag, bounded like ``runs`` (a TCP stream without framing has bytes
        # and no flow table).
        self.received: OrderedDict[int, ReceivedBytes] = OrderedDict()
        self.probes = 0
        self.warmup = 0
        self.foreign = 0
        self.forgotten_runs = 0

    def record(self, data: Any, recv_ns: int, nbytes: int = 0) -> None:
        """Account for one message of ``nbytes`` whose first bytes are ``data`` (at least
        the header); ``nbytes`` 0: its bytes are counted apart (:meth:`bytes_of`)."""
        header = probe.decode(data)
        if header is None:
            self.foreign += 1
            return
        self.probes += 1
        if header.flags & _WARMUP:
            self.warmup += 1
            return
        if nbytes:
            self.bytes_of(header.run_tag).add(nbytes, recv_ns)
        runs = self.runs
        table = runs.get(header.run_tag)
        if table is None:
            if len(runs) >= self.max_runs:
                runs.popitem(last=False)
                self.forgotten_runs += 1
            table = runs[header.run_tag] = FlowTable(max_flows=self.max_flows)
        elif len(runs) > 1:
            runs.move_to_end(header.run_tag)
        table.record(header.flow, header.seq, header.sent_ns, recv_ns)

    def bytes_of(self, run_tag: int) -> ReceivedBytes:
        """The bytes received of run ``run_tag``: kept for the :data:`MAX_RUNS` runs most
        recently begun (an older run's are forgotten)."""
        received = self.received
        got = received.get(run_tag)
        if got is None:
            if len(received) >= self.max_runs:
                received.popitem(last=False)
            got = received[run_tag] = ReceivedBytes()
        return got

    def stream_of(self, data: Any) -> ReceivedBytes | None:
        """The bytes of the run whose probe header starts a TCP stream, or None (no probe
        there: another tool's stream); the stream counts as one probe."""
        header = probe.decode(data)
        if header is None:
            self.foreign += 1
            return None
        self.probes += 1
        return self.bytes_of(header.run_tag)

    def for_run(self, run_tag: int) -> dict[str, Any] | None:
        """The statistics of one run (by its probe tag), or None when none of its probes
        came: its one-way figures (datagrams and framed streams) and its bytes received."""
        table = self.runs.get(run_tag)
        received = self.received.get(run_tag)
        if table is None and received is None:
            return None
        doc: dict[str, Any] = {} if table is None else table.summary()
        if received is not None:
            doc.update(received.summary())
        return doc

    def summary(self) -> dict[str, Any]:
        """``probes``, ``warmup``, ``foreign``, ``forgotten_runs`` and ``runs``: {run tag
        hex: stats}."""
        return {
            "probes": self.probes,
            "warmup": self.warmup,
            "foreign": self.foreign,
            "forgotten_runs": self.forgotten_runs,
            "runs": {f"{tag:08x}": self.for_run(tag) for tag in {**self.runs, **self.received}},
        }


class FixedFramer:
    """Cuts one TCP stream into ``message_size``-byte messages for a :class:`ProbeSink`.

    Feeding the stream whole, byte by byte or in any chunks gives the same messages; the
    header of a message split across reads is put back together in a 28-byte buffer.
    Messages shorter than a probe header are counted but carry no probe.
    """

    def __init__(self, sink: ProbeSink, message_size: int) -> None:
        self.sink = sink
        self.message_size = message_size
        self.messages = 0
        self._pos = 0  # bytes of the current message seen so far
        self._header = bytearray(_HEADER_SIZE)
        self._wants_header = message_size >= _HEADER_SIZE

    def feed(self, view: memoryview, n: int, recv_ns: int) -> int:
        """Account for ``view[:n]``; returns how many messages it completed."""
        size = self.message_size
        header = self._header
        pos = self._pos
        done = 0
        i = 0
        while i < n:
            if pos < _HEADER_SIZE and self._wants_header:
                take = min(_HEADER_SIZE - pos, n - i)
                header[pos : pos + take] = view[i : i + take]
                pos += take
                i += take
                if pos == _HEADER_SIZE:
                    self.sink.record(header, recv_ns, size)
            else:
                take = min(size - pos, n - i)
                pos += take
                i += take
            if pos == size:
                pos = 0
                done += 1
        self._pos = pos
        self.messages += done
        return done


class SinkSession:
    """Sink as a stream session: count, answer nothing. With ``framer``, each fixed-size
    message is one message and its probe header is recorded; without, the stream is one
    run's when it starts with a probe header, and its bytes are counted for that run."""

    __slots__ = ("_framer", "_head", "_sink", "_stream", "_unseen", "light_reads", "messages")

    whole_reads = False

    def __init__(self, sink: ProbeSink, framer: FixedFramer | None) -> None:
        self._framer = framer
        # Unframed, a read costs the same whatever its size: no yield after each big one.
        self.light_reads = framer is None
        self._sink = sink
        self._stream: ReceivedBytes | None = None
        # The stream's first bytes until a header's worth came, and how many bytes that was.
        self._head: bytearray | None = bytearray() if framer is None else None
        self._unseen = 0
        self.messages = 0

    def receive(self, view: memoryview, n: int) -> Replies:
        framer = self._framer
        if framer is not None:
            self.messages += framer.feed(view, n, perf_ns())
            return ()
        self.messages += 1
        stream = self._stream
        if stream is not None:
            stream.add(n, perf_ns())
        elif self._head is not None:
            self._tag(view, n)
        return ()

    def _tag(self, view: memoryview, n: int) -> None:
        head = self._head
        assert head is not None
        head += view[: min(_HEADER_SIZE - len(head), n)]
        self._unseen += n
        if len(head) == _HEADER_SIZE:
            self._head = None
            stream = self._stream = self._sink.stream_of(head)
            if stream is not None:
                stream.add(self._unseen, perf_ns())

    def close(self) -> None:
        pass


class SinkMode(Mode):
    """Read everything, reply nothing, count; decode probe headers."""

    name = "sink"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.sink = ProbeSink()
        self._summary: dict[str, Any] | None = None
        self._summary_until = 0.0

    def open_session(self) -> SinkSession:
        message_size = self.listener.spec.message_size
        framer = None if message_size is None else FixedFramer(self.sink, message_size)
        return SinkSession(self.sink, framer)

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        sink = self.sink

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            if n >= _HEADER_SIZE:
                sink.record(view, perf_ns(), n)
            else:
                sink.foreign += 1

        return handle

    def details(self) -> dict[str, Any]:
        # The summary walks every flow. The dashboard asks a few times a second, so a sink
        # that tracks many flows reuses a summary for up to a second.
        sink = self.sink
        now = trio.current_time()
        if self._summary is None or now >= self._summary_until:
            self._summary = sink.summary()
            flows = sum(len(table) for table in sink.runs.values())
            self._summary_until = now + (_SUMMARY_REUSE if flows > _FRESH_FLOWS else 0.0)
        return {"probe": self._summary}

    def probe_summary(self, run_tag: int) -> dict[str, Any] | None:
        return self.sink.for_run(run_tag)

    def receiving_end(self, run_tag: int) -> dict[str, Any] | None:
        # Zeros before the first probe, so a run asking early sees "nothing yet".
        result = self.sink.for_run(run_tag) or ReceivedBytes().summary()
        spec = self.listener.spec
        if spec.protocol != "udp" and spec.message_size is None:
            return {"framed": False, **result}
        if "received" not in result:
            result = {**FlowTable().summary(), **result}
        return result
