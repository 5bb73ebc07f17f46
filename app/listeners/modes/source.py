"""Source mode: send probe traffic to whoever asks, within the listener's caps.

The far end of reverse and bidirectional runs. A requester sends one send request
(:mod:`app.wire.sendreq`): the first 40 bytes of a TCP/TLS connection, or one UDP datagram.
The source answers with messages of the requested size, each starting with a probe header
of the request's run tag and flow (warm-up messages flagged, numbered apart, as a run's
own sender does), on the requested schedule: as fast as the caps allow (bulk), evenly spaced
(rate) or in bursts. A connection or datagram that does not start with a request is a
sink's (:class:`~app.listeners.modes.sink.SinkMode`): a bidirectional run's forward half is
counted here as at a sink.

Caps, so a source is never an amplifier: it sends only to requesters the lab's target
policy allows (loopback, and the networks and hosts given with ``--allow-target``; never
to a source port below 1024), one stream per UDP requester, at most ``max_streams`` streams
at once, each at most ``max_rate`` messages per second and ``max_duration`` seconds. A
request past them is refused and counted, never queued.

Counting: what was sent of each run (by run tag; warm-up left out) is kept beside what the
sink side received, and both are the run's figures at this end
(``GET /api/listeners/{id}/probes/{run_tag}``: ``tx_messages``, ``tx_bytes``).

UDP: the per-datagram handler must not block, so it hands each request to :meth:`run`
through a bounded channel (a full channel drops the request and counts it).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener
from app.listeners.modes.sink import MAX_RUNS, SinkMode
from app.listeners.stream import Transport, send_all
from app.registry import Conn
from app.runs.targets import TargetPolicy
from app.runs.timer import PreciseTimer
from app.wire import probe, sendreq
from app.wire.sendreq import SendRequest, SendRequestError

logger = logging.getLogger(__name__)
perf_ns = time.perf_counter_ns

# UDP requests waiting for the sender task: a few per flow of a big run; past it, dropped.
REQUEST_QUEUE = 256
# The largest UDP payload over IPv4.
MAX_DATAGRAM = 65_507
# A sender behind its schedule yields to the event loop once per this many messages.
CATCH_UP_BATCH = 32
# Source ports below this are system services: a forged request must not aim a stream
# at them (the reflection rule of app.wire.replyguard).
_LOWEST_PORT = 1024
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def policy_allows(policy: TargetPolicy) -> Callable[[str], bool]:
    """Whether a requester's address is one runs may send to, by ``policy``'s rules."""

    def allowed(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))
        except ValueError:
            return False
        return policy.denied_reason(address) is None and policy.allowed(address, host)

    return allowed


class Sent:
    """What a source sent of one run: counted messages and bytes, warm-up apart."""

    __slots__ = ("bytes", "messages", "streams", "warmup")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.warmup = 0
        self.streams = 0

    def summary(self) -> dict[str, int]:
        return {
            "tx_messages": self.messages,
            "tx_bytes": self.bytes,
            "tx_warmup": self.warmup,
            "tx_streams": self.streams,
        }


class Schedule:
    """When each message of one stream is due and how it is numbered. No I/O."""

    __slots__ = ("end", "first", "max_rate", "request")

    def __init__(self, request: SendRequest, max_rate: float, max_duration: float) -> None:
        self.request = request
        self.max_rate = max_rate
        self.end = min(request.duration or math.inf, max_duration)
        self.first: int | None = None  # index of the first counted message

    def due(self, index: int) -> float | None:
        """Seconds after the start at which message ``index`` goes; None past the end."""
        request = self.request
        if request.messages and index >= request.messages:
            return None
        offset = request.offset(index, self.max_rate)
        return None if offset >= self.end else offset

    def numbered(self, index: int, offset: float) -> tuple[int, int]:
        """The probe sequence number and flags of message ``index`` due at ``offset``."""
        if offset < self.request.warmup:
            return index, probe.FLAG_WARMUP
        if self.first is None:
            self.first = index
        return index - self.first, 0


class SourceMode(SinkMode):
    """Send probe streams on request; count what arrives otherwise, as a sink."""

    name = "source"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.sent: OrderedDict[int, Sent] = OrderedDict()
        # Who may be sent to: loopback only until the lab gives its target policy.
        self.may_send_to: Callable[[str], bool] = policy_allows(TargetPolicy())
        self.streams = 0
        self.refused = 0
        self.bad_requests = 0
        self.dropped_requests = 0
        self._requests, self._pending = trio.open_memory_channel[
            tuple[Any, Conn, SendRequest, DatagramPort]
        ](REQUEST_QUEUE)
        self._requesters: set[Any] = set()

    def sent_of(self, run_tag: int) -> Sent:
        """The counts of run ``run_tag``, for the :data:`MAX_RUNS` runs most recently begun."""
        sent = self.sent.get(run_tag)
        if sent is None:
            if len(self.sent) >= MAX_RUNS:
                self.sent.popitem(last=False)
            sent = self.sent[run_tag] = Sent()
        return sent

    def _admit(self, host: str, port: int, size: int) -> bool:
        """Whether a stream to ``host:port`` of ``size``-byte messages may start now."""
        spec = self.listener.spec
        if (
            self.streams >= spec.max_streams
            or port < _LOWEST_PORT
            or (spec.protocol == "udp" and size > MAX_DATAGRAM)
            or not self.may_send_to(host)
        ):
            self.refused += 1
            return False
        return True

    # TCP and TLS: a request at the start of the connection, else a sink's stream.

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        reader = sendreq.RequestReader()
        head = bytearray(sendreq.REQUEST_SIZE)
        got = 0
        request: SendRequest | None = None
        while request is None:
            n = await transport.recv_into(head, sendreq.REQUEST_SIZE - got)
            if not n:
                return
            try:
                request = reader.feed(memoryview(head)[got : got + n])
            except SendRequestError:
                if sendreq.is_request(head[: got + n]):
                    self.bad_requests += 1
                    return
                # Not a request: a sink's stream, its first bytes read already.
                prefixed = _Prefixed(transport, bytes(head[: got + n]))
                await super().handle_stream(conn, prefixed, scope)
                return
            got += n
        conn.bytes_in += got
        self.listener.bytes_in += got
        host, _, port = conn.remote.rpartition(":")
        if not self._admit(host, int(port), request.size):
            return
        scope.deadline = math.inf  # the stream's own caps end it, not the idle timeout
        self.streams += 1
        try:
            await self._send_tcp(conn, transport, request)
        except _STREAM_ERRORS as exc:
            # The requester went away (its run was stopped): the stream just ends.
            logger.debug("source stream to %s ended: %r", conn.remote, exc)
        finally:
            self.streams -= 1
        aclose = getattr(getattr(transport, "stream", None), "aclose", None)
        if aclose is not None:
            # TLS: a close_notify, so the requester reads a clean end of stream.
            with trio.move_on_after(1.0):
                await aclose()

    async def _send_tcp(self, conn: Conn, transport: Transport, request: SendRequest) -> None:
        view = memoryview(bytearray(request.size))

        async def send(data: memoryview) -> bool:
            await send_all(transport, data)
            return True

        await self._stream(request, view, conn, send)

    async def _stream(
        self,
        request: SendRequest,
        view: memoryview,
        conn: Conn,
        send: Callable[[memoryview], Awaitable[bool]],
    ) -> None:
        """Send ``request``'s messages through ``send`` (False: stop) and count them."""
        listener = self.listener
        spec = listener.spec
        schedule = Schedule(request, spec.max_rate, spec.max_duration)
        sent = self.sent_of(request.run_tag)
        sent.streams += 1
        size = request.size
        header = size >= probe.HEADER_SIZE
        start_ns = perf_ns()
        start = trio.current_time()
        unslept = 0
        index = 0
        with PreciseTimer() as timer:
            while True:
                offset = schedule.due(index)
                if offset is None:
                    return
                intended = start_ns + int(offset * 1e9)
                if intended > perf_ns():
                    await timer.sleep_until_ns(intended, start + offset)
                    unslept = 0
                else:
                    unslept += 1
                    if unslept >= CATCH_UP_BATCH:
                        unslept = 0
                        await trio.lowlevel.checkpoint()
                seq, flags = schedule.numbered(index, offset)
                if header:
                    probe.encode_into(
                        view, request.run_tag, request.flow, seq, perf_ns(), flags=flags
                    )
                if not await send(view):
                    return
                index += 1
                if flags:
                    sent.warmup += 1
                else:
                    sent.messages += 1
                    sent.bytes += size
                conn.bytes_out += size
                conn.msgs_out += 1
                conn.touch()
                listener.bytes_out += size
                listener.msgs_out += 1

    # UDP: a request datagram from a requester, else a sink's datagram.

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        sink_handle = super().datagram_handler(port)
        requesters = self._requesters
        send_nowait = self._requests.send_nowait

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            if not (n >= 3 and view[0] == 0x53 and view[1] == 0x52):
                sink_handle(view, n, addr, flow)
                return
            try:
                request = sendreq.decode(view[:n])
            except SendRequestError:
                self.bad_requests += 1
                return
            if addr in requesters:
                return  # one stream per requester: a repeated request changes nothing
            try:
                send_nowait((addr, flow, request, port))
            except trio.WouldBlock:
                self.dropped_requests += 1
                return
            requesters.add(addr)

        return handle

    async def run(self) -> None:
        async with trio.open_nursery() as nursery, self._pending:
            async for addr, flow, request, port in self._pending:
                if not self._admit(str(addr[0]), int(addr[1]), request.size):
                    self._requesters.discard(addr)
                    continue
                self.streams += 1
                nursery.start_soon(self._send_udp, addr, flow, request, port)

    async def _send_udp(
        self, addr: Any, flow: Conn, request: SendRequest, port: DatagramPort
    ) -> None:
        sock = port.sock
        listener = self.listener

        async def send(data: memoryview) -> bool:
            while True:
                try:
                    sock.sendto(data, addr)
                    return True
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                except ConnectionRefusedError:
                    return False  # the requester's port is closed: nobody reads
                except OSError:
                    listener.errors += 1
                    return False

        try:
            await self._stream(request, memoryview(bytearray(request.size)), flow, send)
        finally:
            self.streams -= 1
            self._requesters.discard(addr)

    def details(self) -> dict[str, Any]:
        doc = super().details()
        doc["source"] = {
            "streams": self.streams,
            "refused": self.refused,
            "bad_requests": self.bad_requests,
            "dropped_requests": self.dropped_requests,
            "runs": {f"{tag:08x}": sent.summary() for tag, sent in self.sent.items()},
        }
        return doc

    def receiving_end(self, run_tag: int) -> dict[str, Any] | None:
        figures = super().receiving_end(run_tag)
        assert figures is not None
        sent = self.sent.get(run_tag)
        return {**figures, **(sent or Sent()).summary()}


class _Prefixed:
    """A transport whose first reads return bytes read from it already."""

    __slots__ = ("_prefix", "_transport")

    def __init__(self, transport: Transport, prefix: bytes) -> None:
        self._transport = transport
        self._prefix = prefix

    async def recv_into(self, buffer: bytearray, nbytes: int = 0, /) -> int:
        prefix = self._prefix
        if not prefix:
            return await self._transport.recv_into(buffer, nbytes)
        n = min(len(prefix), nbytes or len(buffer))
        buffer[:n] = prefix[:n]
        self._prefix = prefix[n:]
        return n

    async def send(self, data: memoryview, /) -> int:
        return await self._transport.send(data)
