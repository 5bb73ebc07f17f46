"""Echo mode: every byte (TCP, TLS) or datagram (UDP) goes back to its sender.

Plain echo over TCP is the lab's hottest path: one task per listener serves every
connection through a private epoll (:class:`~app.sockio.ReadyLoop`), reading into one
preallocated buffer with ``recv_into`` and sending from a memoryview of it, touching only
counters. Plain echo over UDP uses the UDP server's inlined loop. TLS (and any other
stream) goes through the one stream loop with an :class:`EchoSession`. With impairment
options the work moves to :mod:`app.listeners.modes.impair`.
"""

from __future__ import annotations

import select
import socket
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.modes.impair import Impairment, impaired_datagram_handler, impaired_stream
from app.listeners.stream import Replies, Transport
from app.registry import Conn
from app.sockio import DirectSocket, ReadyLoop, Served


class EchoSession:
    """Echo as a stream session: every read is one message, sent back as it came."""

    __slots__ = ("messages",)

    whole_reads = False
    light_reads = True  # a read is sent back as it is, whatever its size

    def __init__(self) -> None:
        self.messages = 0

    def receive(self, view: memoryview, n: int) -> Replies:
        self.messages += 1
        return (view[:n],)

    def close(self) -> None:
        pass


class _EchoConn(Served):
    """One plain TCP connection served by the listener's socket loop."""

    __slots__ = ("conn", "moved_at", "pending", "scope")

    def __init__(
        self, sock: socket.socket, conn: Conn, scope: trio.CancelScope, now: float
    ) -> None:
        super().__init__(sock)
        self.conn = conn
        self.scope = scope
        self.moved_at = now
        self.pending: memoryview | None = None  # what the kernel has not taken yet


class EchoMode(Mode):
    """Reflect everything; a UDP reply is never larger than its request (it is the request)."""

    name = "echo"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        self.impairment = Impairment(spec) if Impairment.wanted(spec) else None
        self.udp_fast_echo = self.impairment is None
        # One read buffer for every plain TCP connection of this listener (see
        # _echo_socket): an idle connection then costs no buffer at all.
        self._shared = bytearray(spec.max_message_size)
        self._view = memoryview(self._shared)
        # Moving a cancel scope's deadline costs about 1.5 us (a heap push), so the idle
        # deadline moves at most every ``refresh`` seconds: a silent connection is closed
        # between idle and idle + refresh after its last byte.
        self._idle = spec.idle_timeout
        self._refresh = min(self._idle / 16, 1.0)
        self._loop: ReadyLoop[_EchoConn] = ReadyLoop(self._on_ready)

    async def run(self) -> None:
        if self.impairment is not None:
            await self.impairment.run()
        elif self.listener.spec.protocol == "tcp":
            await self._loop.run()

    def open_session(self) -> EchoSession:
        return EchoSession()

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        if self.impairment is not None:
            await impaired_stream(
                self.listener, self.impairment, conn, transport, scope, EchoSession()
            )
        elif isinstance(transport, DirectSocket):
            await self._echo_socket(conn, transport.sock, scope)
        else:
            await super().handle_stream(conn, transport, scope)

    async def _echo_socket(self, conn: Conn, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Plain TCP echo, the lab's hottest path: served by the listener's socket loop.

        This task owns the connection (its scope, row and socket) and waits while the loop
        (:meth:`_on_ready`) echoes; it returns at EOF and raises what the loop ran into.
        """
        state = _EchoConn(sock, conn, scope, trio.current_time())
        self._loop.add(state)
        await self._loop.wait(state)

    def _on_ready(self, state: _EchoConn, mask: int) -> None:
        """Echo what one connection sent, without waiting.

        Every connection reads into the listener's one shared buffer. That is sound because
        nothing waits between a read and the send of what it read: what the kernel does not
        take is copied out of the shared buffer, and the connection is watched for room
        instead of data until it has gone (so a client that does not read its replies
        stops being read: backpressure).
        """
        sock = state.sock
        pending = state.pending
        if pending is not None:
            try:
                sent = sock.send(pending)
            except BlockingIOError:
                return
            if sent < len(pending):
                state.pending = pending[sent:]
                return
            state.pending = None
            self._loop.watch(state, select.EPOLLIN)
            return
        try:
            n = sock.recv_into(self._shared)
        except BlockingIOError:
            return
        if not n:
            self._loop.finish(state)
            return
        conn = state.conn
        listener = self.listener
        conn.bytes_in += n
        conn.msgs_in += 1
        listener.bytes_in += n
        listener.msgs_in += 1
        view = self._view
        try:
            sent = sock.send(view[:n])
        except BlockingIOError:
            sent = 0
        if sent < n:
            # The shared buffer is the next reader's: keep the rest.
            state.pending = memoryview(bytes(view[sent:n]))
            self._loop.watch(state, select.EPOLLOUT)
        conn.bytes_out += n
        conn.msgs_out += 1
        listener.bytes_out += n
        listener.msgs_out += 1
        if not conn.dirty:  # touch() once per snapshot: a call less per message after
            conn.touch()
        now = self._loop.now
        if now - state.moved_at >= self._refresh:
            # + refresh: the last byte may come up to refresh later than this move.
            state.scope.deadline = now + self._idle + self._refresh
            state.moved_at = now

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        assert self.impairment is not None  # plain echo uses the UDP server's own loop
        return impaired_datagram_handler(self.impairment, port)

    def details(self) -> dict[str, Any]:
        if self.impairment is None:
            return {}
        return {"impairment": self.impairment.to_dict()}
