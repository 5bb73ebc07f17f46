"""Forwarding: a collector passes on what it receives, unchanged, to an upstream collector.

Theory of operation: a collector listener with ``forward=host:port`` sends every byte it
receives on to an upstream of the same protocol over the same transport, so socketlab can
sit between a real client and a real backend as a measuring tap. Over UDP each datagram is
sent on as one datagram, at once, from the receive path, on a connected non-blocking
socket: a send the kernel cannot take now (a full buffer, an ICMP error from the upstream)
is counted in ``forward_failed``, never waited for. Over TCP each client connection gets
its own upstream connection (:meth:`Forwarder.open_stream`), so frames stay whole and a
per-connection framing (syslog's octet counting) stays the client's; the bytes of complete
frames go into a queue bounded in bytes that a task of the connection sends on. The
receive path only queues: a frame that does not fit, or that arrives while the upstream
cannot be reached, is counted in ``forward_failed``.

Counters (:meth:`Forwarder.counters`): ``forwarded`` and ``forward_failed`` in messages
(a datagram over UDP; a line or syslog frame over TCP), and ``forwarded_bytes``. A UDP
datagram is forwarded once the kernel took it: that it arrived, UDP does not say, but an
upstream port that is closed answers with an ICMP error, which fails the next send.

Policy: the upstream is a target like a run's: it is resolved once, when the listener
starts (:meth:`Forwarder.resolve`), every address checked against the lab's target policy,
and the checked address used from then on.

Resource handling: the UDP socket is closed by :meth:`Forwarder.close`; each TCP upstream
connection holds a descriptor of the listeners' share and is closed when its client
connection ends, after at most
:data:`DRAIN_TIMEOUT` seconds spent sending what was still queued.
"""

from __future__ import annotations

import ipaddress
import socket as stdsocket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from app.descriptors import DESCRIPTORS
from app.endpoint import Endpoint, host_port
from app.errors import SpecError, TargetNotAllowedError

__all__ = [
    "CONNECT_TIMEOUT",
    "DRAIN_TIMEOUT",
    "Forwarder",
    "StreamForward",
    "forwarder_for",
    "parse_forward",
]

# A TCP upstream that does not accept within this long is unreachable: its frames fail.
CONNECT_TIMEOUT = 5.0
# What a closed client connection still had queued is sent within this long, or counted.
DRAIN_TIMEOUT = 5.0
# Bytes queued per client connection: a few seconds of a busy sender over a slow upstream.
MAX_QUEUE_BYTES = 4 * 1024 * 1024


def parse_forward(value: str, protocol: str) -> Endpoint:
    """The upstream of ``forward=host:port`` for a listener of ``protocol``.

    Raises:
        SpecError: Not ``host:port`` (``[v6]:port``), port 0, or a tls:// listener
            (field ``forward``).
    """
    if protocol == "tls":
        raise SpecError("forward applies to tcp:// and udp:// listeners", "forward")
    endpoint, query = Endpoint.split(f"{protocol}://{value}", "forward", (protocol,))
    if query or endpoint.port == 0:
        raise SpecError(f"forward: {value!r} is not host:port with a port above 0", "forward")
    return endpoint


def forwarder_for(forward: str | None, protocol: str) -> Forwarder | None:
    """The forwarder of a listener's ``forward`` option (None without one)."""
    return None if forward is None else Forwarder(parse_forward(forward, protocol))


class Forwarder:
    """One collector's upstream and its counters.

    Args:
        upstream: Where to forward (protocol, host, port).
        max_queue_bytes: Bytes queued per TCP client connection.
    """

    def __init__(self, upstream: Endpoint, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        self.upstream = upstream
        self.max_queue_bytes = max_queue_bytes
        self.forwarded = 0
        self.forward_failed = 0
        self.forwarded_bytes = 0
        self.family = stdsocket.AF_INET
        self.address: tuple[Any, ...] | None = None
        self._sock: stdsocket.socket | None = None

    def counters(self) -> dict[str, Any]:
        """``forward`` (host:port), ``forwarded``, ``forward_failed``, ``forwarded_bytes``."""
        return {
            "forward": host_port(self.upstream.host, self.upstream.port),
            "forwarded": self.forwarded,
            "forward_failed": self.forward_failed,
            "forwarded_bytes": self.forwarded_bytes,
        }

    async def resolve(self, may_send_to: Callable[[str], bool]) -> None:
        """Resolve the upstream once; every address must pass ``may_send_to``.

        Raises:
            TargetNotAllowedError: An address is refused (field ``forward``).
            SpecError: The name does not resolve (field ``forward``).
        """
        kind = stdsocket.SOCK_DGRAM if self.upstream.protocol == "udp" else stdsocket.SOCK_STREAM
        where = host_port(self.upstream.host, self.upstream.port)
        try:
            infos = await trio.socket.getaddrinfo(self.upstream.host, self.upstream.port, type=kind)
        except OSError as exc:
            raise SpecError(f"forward: {where} does not resolve: {exc}", "forward") from None
        if not infos:
            raise SpecError(f"forward: {where} does not resolve", "forward")
        for _, _, _, _, sockaddr in infos:
            if not may_send_to(str(sockaddr[0])):
                raise TargetNotAllowedError(
                    f"forward: {where} resolves to {sockaddr[0]}, which is not an allowed "
                    "target (loopback and the networks and hosts given with --allow-target)",
                    "forward",
                )
        family, _, _, _, address = infos[0]
        self.family = family
        self.address = tuple(address)

    def loops_to(self, host: str, port: int) -> bool:
        """Whether the upstream is the listener bound at ``host:port`` itself (which would
        send every datagram around forever)."""
        address = self._target()
        if int(address[1]) != port:
            return False
        try:
            bound = ipaddress.ip_address(host)
            target = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        except ValueError:
            return bool(host == address[0])
        return bound == target or (bound.is_unspecified and bound.version == target.version)

    def _target(self) -> tuple[Any, ...]:
        if self.address is None:
            # Not resolved through the lab (a test, a literal address): use it as written.
            self.address = (self.upstream.host, self.upstream.port)
            if ":" in self.upstream.host:
                self.family = stdsocket.AF_INET6
        return self.address

    # UDP

    def open_datagram(self) -> None:
        """Open the UDP socket to the upstream (connected: ICMP errors surface as errors)."""
        if self._sock is not None:
            return
        address = self._target()
        sock = stdsocket.socket(self.family, stdsocket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def send_datagram(self, data: bytes | memoryview) -> None:
        """Forward one datagram now, or count it failed. Never blocks, never raises."""
        sock = self._sock
        if sock is None:
            self.forward_failed += 1
            return
        try:
            sock.send(data)
        except OSError:
            # EAGAIN (buffer full) or ECONNREFUSED (the upstream's port was closed).
            self.forward_failed += 1
            return
        self.forwarded += 1
        self.forwarded_bytes += len(data)

    def close(self) -> None:
        """Close the UDP socket (TCP upstreams close with their client connections)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # TCP

    @asynccontextmanager
    async def open_stream(self) -> AsyncIterator[StreamForward]:
        """An upstream connection for one client connection, for the ``async with`` block.

        The connection is made by a task of the block; frames queued before it is made wait
        for it. At the end of the block what is still queued is sent within
        :data:`DRAIN_TIMEOUT`, then the connection closes; anything left is counted failed.
        """
        stream = StreamForward(self)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.pump)
            try:
                yield stream
            finally:
                stream.closing = True
                stream.wake.set()
                try:
                    # Not shielded: a connection closed by its idle timeout, the API or a
                    # stop leaves at once, and what it had queued is counted failed.
                    with trio.move_on_after(DRAIN_TIMEOUT):
                        await stream.drained.wait()
                finally:
                    nursery.cancel_scope.cancel()
                    stream.fail_rest()


class StreamForward:
    """The upstream of one TCP client connection: a bounded queue and the task sending it."""

    def __init__(self, owner: Forwarder) -> None:
        self.owner = owner
        self.queue: deque[tuple[bytes, int]] = deque()
        self.queued_bytes = 0
        self.closing = False
        self.broken = False
        self.wake = trio.Event()
        self.drained = trio.Event()

    def send_nowait(self, raw: bytes, count: int) -> None:
        """Queue ``raw`` (``count`` frames) for the upstream, or count it failed."""
        if not raw:
            return
        owner = self.owner
        if self.broken or self.queued_bytes + len(raw) > owner.max_queue_bytes:
            owner.forward_failed += count
            return
        self.queue.append((raw, count))
        self.queued_bytes += len(raw)
        self.wake.set()

    def fail_rest(self) -> None:
        """Count what is still queued as failed and drop it."""
        self.owner.forward_failed += sum(count for _, count in self.queue)
        self.queue.clear()
        self.queued_bytes = 0

    async def pump(self) -> None:
        """Connect, then send the queue as it fills; on any error the rest fails.

        The upstream connection takes a descriptor from the listeners' share
        (:mod:`app.descriptors`), as its client connection did: a flood of forwarded
        connections cannot eat the web server's reserve. Without one, nothing of this
        connection is forwarded (counted failed).
        """
        if not DESCRIPTORS.take_nowait():
            self.broken = True
            self.fail_rest()
            self.drained.set()
            return
        try:
            await self._connect_and_send()
        finally:
            DESCRIPTORS.give()
        self.drained.set()

    async def _connect_and_send(self) -> None:
        owner = self.owner
        address = owner._target()
        sock = trio.socket.socket(owner.family, stdsocket.SOCK_STREAM)
        with sock:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await sock.connect(address)
                while True:
                    while self.queue:
                        raw, count = self.queue[0]
                        view = memoryview(raw)
                        while view:
                            sent = await sock.send(view)
                            view = view[sent:]
                        self.queue.popleft()
                        self.queued_bytes -= len(raw)
                        owner.forwarded += count
                        owner.forwarded_bytes += len(raw)
                    if self.closing:
                        break
                    self.wake = trio.Event()
                    await self.wake.wait()
            except (OSError, trio.TooSlowError):
                self.broken = True
                self.fail_rest()
