"""Echo mode: every byte (TCP, TLS) or datagram (UDP) goes back to its sender.

Plain echo over TCP is the lab's hottest path: one task per listener serves every
connection through a private epoll (:class:`~app.readyloop.ReadyLoop`), reading into one
preallocated buffer with ``recv_into`` and sending from a memoryview of it, touching only
counters. Where it is built, that pass is compiled (``app/native/_tcpecho.c``): it echoes
and counts a readable connection in C and calls :meth:`EchoMode._on_ready` for everything
else (an end, an error, a reply waiting for room); ``SOCKETLAB_NO_NATIVE=1`` leaves it all
to :meth:`EchoMode._on_ready`. A connection has no task of its own (the mode adopts its
socket, see :meth:`EchoMode.adopt`): its idle timeout is an entry in the listener's
:class:`~app.listeners.idle.IdleDeadlines`, its close from the API a call into the loop.
Plain echo over UDP uses the UDP server's inlined loop. TLS (and any other stream) goes
through the one stream loop with an :class:`EchoSession`. With impairment options the work
moves to :mod:`app.listeners.modes.impair`.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any

import trio

from app.listeners.base import DatagramHandler, DatagramPort, Ended, EndReason, Listener, Mode
from app.listeners.idle import IdleDeadlines
from app.listeners.modes.impair import Impairment, impaired_datagram_handler, impaired_stream
from app.listeners.stream import Replies, Transport
from app.native import native
from app.readyloop import Done, NativePass, ReadyLoop, Served
from app.registry import Conn

# The compiled pass (app/native/_tcpecho.c), or None: then _on_ready serves every socket.
_tcpecho = native("tcpecho")


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


# No task waits for an adopted connection: they share one Done, which the loop sets and
# nobody awaits (an object less per connection).
_UNWAITED = Done()


class _EchoConn(Served):
    """One plain TCP connection served by the listener's socket loop, without a task.

    It is its own ``Conn.close_hook`` (calling it closes the connection, counted in
    ``closed_by_api``) and its own entry in the idle heap (ordered by ``idle_due``): two
    objects fewer per connection than a bound method and a heap tuple.
    """

    __slots__ = ("active_at", "conn", "ended", "idle_due", "mode", "pending")

    def __init__(
        self, mode: EchoMode, sock: socket.socket, conn: Conn, ended: Ended, now: float
    ) -> None:
        super().__init__(sock, _UNWAITED)
        self.mode = mode
        self.conn = conn
        self.ended = ended
        self.active_at = now  # trio time of its last traffic (app.listeners.idle)
        self.idle_due = now
        self.pending: memoryview | None = None  # what the kernel has not taken yet

    def __call__(self) -> None:
        """``Conn.close_hook``: the API closes the real socket."""
        self.mode._end(self, "api")

    def __lt__(self, other: _EchoConn) -> bool:
        return self.idle_due < other.idle_due


class EchoMode(Mode):
    """Reflect everything; a UDP reply is never larger than its request (it is the request)."""

    name = "echo"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        self.impairment = Impairment(spec) if Impairment.wanted(spec) else None
        self.udp_fast_echo = self.impairment is None
        # Plain TCP is served by the socket loop alone: no task, no cancel scope, no buffer
        # per connection (see adopt), which is what 10,000 idle connections feel.
        self.adopts_sockets = self.impairment is None
        # One read buffer for every plain TCP connection of this listener (see _on_ready).
        self._shared = bytearray(spec.max_message_size)
        self._view = memoryview(self._shared)
        self._loop: ReadyLoop[_EchoConn] = ReadyLoop(
            self._on_ready, self._on_error, native=self._native_pass if _tcpecho else None
        )
        items = self._loop.items
        self._idle = IdleDeadlines(
            spec.idle_timeout,
            min(spec.idle_timeout / 16, 1.0),
            lambda state: self._end(state, "idle"),
            lambda state: items.get(state.fd) is not state,
            items.values,
        )

    async def run(self) -> None:
        if self.impairment is not None:
            await self.impairment.run()
        elif self.listener.spec.protocol == "tcp":
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._idle.run)
                    await self._loop.run()
            finally:
                # The listener stops: its connections end with it (not counted as idle or
                # closed by the API).
                for state in list(self._loop.items.values()):
                    self._end(state, "shutdown")

    def _native_pass(
        self,
        epfd: int,
        items: dict[int, _EchoConn],
        handler: Callable[[_EchoConn, int], None],
        on_error: Callable[[_EchoConn, Exception], object],
    ) -> NativePass[_EchoConn]:
        """The compiled pass of the socket loop: it does what :meth:`_on_ready` does for a
        readable connection with nothing pending, and calls it for everything else."""
        assert _tcpecho is not None
        size = self.listener.spec.max_message_size
        listener = self.listener
        echo_pass: NativePass[_EchoConn] = _tcpecho.EchoPass(
            epfd, items, handler, on_error, self._keep, listener, _EchoConn, Conn, size
        )
        return echo_pass

    def open_session(self) -> EchoSession:
        return EchoSession()

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        if self.impairment is not None:
            await impaired_stream(
                self.listener, self.impairment, conn, transport, scope, EchoSession()
            )
        else:
            await super().handle_stream(conn, transport, scope)

    def adopt(self, conn: Conn, sock: socket.socket, ended: Ended) -> None:
        """Serve a plain TCP connection from the listener's socket loop, with no task.

        The loop reads, echoes and counts (:meth:`_on_ready`); the idle deadlines close it
        when silent; ``conn.close_hook`` closes it from the API. However it ends,
        ``ended`` is called once, with why, and does the listener's bookkeeping.
        """
        state = _EchoConn(self, sock, conn, ended, trio.current_time())
        try:
            self._loop.add(state, native=True)
        except trio.ClosedResourceError:  # the listener is stopping
            ended(conn, sock, "shutdown", None)
            return
        except OSError as exc:  # epoll refused it (out of memory): this connection only
            self._end(state, "error", exc)
            return
        conn.close_hook = state
        self._idle.add(state)

    def _end(self, state: _EchoConn, why: EndReason, error: Exception | None = None) -> None:
        """End one connection (once: a later call for it does nothing)."""
        if self._loop.finish(state, error):
            state.pending = None
            state.ended(state.conn, state.sock, why, error)

    def _on_error(self, state: _EchoConn, exc: Exception) -> None:
        self._end(state, "error", exc)

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
            self._end(state, "eof")
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
            self._keep(state, bytes(view[sent:n]))
        conn.bytes_out += n
        conn.msgs_out += 1
        listener.bytes_out += n
        listener.msgs_out += 1
        if not conn.dirty:  # touch() once per snapshot: a call less per message after
            conn.touch()
        state.active_at = self._loop.now

    def _keep(self, state: _EchoConn, rest: bytes) -> None:
        """What the kernel did not take: sent when there is room, and nothing is read from
        the connection before (backpressure on a client that does not read)."""
        state.pending = memoryview(rest)
        self._loop.watch(state, select.EPOLLOUT)

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        assert self.impairment is not None  # plain echo uses the UDP server's own loop
        return impaired_datagram_handler(self.impairment, port)

    def details(self) -> dict[str, Any]:
        if self.impairment is None:
            return {}
        return {"impairment": self.impairment.to_dict()}
