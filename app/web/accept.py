"""The web server's connections: a cap, and the idle ones closed first to make room.

Theory of operation: Hypercorn accepts whatever arrives and keeps an idle connection until
its ``keep_alive_timeout``; past the descriptor limit, ``accept`` fails and the API is
unreachable for as long as idle clients hold their connections. Here the web server's
listening socket is wrapped (:class:`GuardedListener`) and every connection is tracked
(:class:`WebConnections`):

- a connection is *idle* from its accept until its first request arrives, and again
  between two requests (Hypercorn's own notion, its ``Updated(idle=...)`` events, seen by
  :class:`TrackedServer`); it is *busy* while a request, an event stream or a WebSocket is
  being served;
- when ``max_connections`` are open, or when ``accept`` fails for lack of descriptors, the
  connection idle the longest is closed (its client sees EOF, as after a keep-alive
  timeout) and the new one is served;
- when every open connection is busy, the new one is accepted and closed at once
  (``refused``), like a listener past its ``max_connections``.

So idle connections, however many, never keep a request from being served, and a client
that sends its request at once is never the one closed.

``Connection: close`` is honoured at once: the socket is closed as soon as the response is
sent (see :meth:`TrackedServer.protocol_send` for why Hypercorn alone left it open for
``read_timeout``), and keep-alive connections keep their idle timer.

Resource handling: a connection closed here is closed through its trio socket, which wakes
Hypercorn's reader with ``ClosedResourceError``; Hypercorn then ends the connection as if
the client had gone.
"""

from __future__ import annotations

from typing import Any, cast

import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.tcp_server import TCPServer

from app.descriptors import ACCEPT_CAPACITY_ERRNOS

# How long closing a connection or restarting its keep-alive timer may take, shielded from
# the cancellation of the request's task (both are a few syscalls and a lock).
BOOKKEEPING_TIMEOUT = 1.0


class WebConnections:
    """The open web connections, and the idle ones in the order they went idle.

    Attributes:
        max_connections: Connections kept open at most.
        evicted: Idle connections closed to make room for a new one.
        refused: New connections closed at once because every open one was busy.
    """

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.evicted = 0
        self.refused = 0
        self._open: set[trio.SocketStream] = set()
        # Insertion order is the order the connections went idle: the first is the oldest.
        self._idle: dict[trio.SocketStream, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    @property
    def idle(self) -> int:
        """Open connections not serving a request now."""
        return len(self._idle)

    def opened(self, stream: trio.SocketStream) -> None:
        """A connection was accepted; it is idle until its first request."""
        self._open.add(stream)
        self._idle[stream] = None

    def closed(self, stream: trio.SocketStream) -> None:
        """A connection ended (served to the end, or closed here)."""
        self._open.discard(stream)
        self._idle.pop(stream, None)

    def set_idle(self, stream: trio.SocketStream, idle: bool) -> None:
        """Hypercorn says whether ``stream`` is between requests (idle) or serving one."""
        self._idle.pop(stream, None)
        if idle and stream in self._open:
            self._idle[stream] = None

    def full(self) -> bool:
        return len(self._open) >= self.max_connections

    def evict_one(self) -> bool:
        """Close the connection idle the longest; False when none is idle.

        The descriptor is free when this returns: the trio socket is closed at once.
        """
        if not self._idle:
            return False
        stream = next(iter(self._idle))
        self.closed(stream)
        stream.socket.close()
        self.evicted += 1
        return True


class GuardedListener(trio.abc.Listener[trio.SocketStream]):
    """A ``SocketListener`` that makes room (or refuses) before it hands out a connection.

    Error handling: an ``accept`` that fails for lack of descriptors closes an idle web
    connection and tries again at once; with none idle it raises, and
    ``trio.serve_listeners`` pauses 100 ms before the next try (its documented behaviour).
    """

    def __init__(self, inner: trio.SocketListener, connections: WebConnections) -> None:
        self.inner = inner
        self.connections = connections

    async def accept(self) -> trio.SocketStream:
        connections = self.connections
        while True:
            try:
                stream = await self.inner.accept()
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS and connections.evict_one():
                    continue
                raise
            if connections.full() and not connections.evict_one():
                connections.refused += 1
                stream.socket.close()
                continue
            # Counted here, not when its handler task starts: a burst of accepts then
            # cannot overshoot the cap.
            connections.opened(stream)
            return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


class TrackedServer(TCPServer):
    """Hypercorn's connection server, telling :class:`WebConnections` when it goes idle."""

    def __init__(
        self,
        connections: WebConnections,
        app: Any,
        config: Any,
        context: Any,
        state: Any,
        stream: trio.SocketStream,
    ) -> None:
        # Hypercorn annotates ``stream`` as an SSLStream but serves plain SocketStreams too
        # (its own worker passes them for http:// binds).
        super().__init__(app, config, context, state, cast(Any, stream))
        self._connections = connections
        self._socket_stream = stream

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData) and not event.data:
            # h11 ends every response with an empty write (the end of a body whose length
            # was given). Sending it costs nothing but a checkpoint, and under load each
            # checkpoint is a turn behind the listeners' socket passes: a request waits
            # for about eight of them, and this was one.
            return
        if isinstance(event, Updated):
            self._connections.set_idle(self._socket_stream, event.idle)
        elif not isinstance(event, Closed):
            await super().protocol_send(event)  # RawData: Hypercorn shields the send itself
            return
        # Closing the socket (after ``Connection: close``) and restarting the keep-alive
        # timer are sent from the request's task, which quart-trio cancels as soon as the
        # response is complete: unshielded, the close stopped at its first checkpoint and
        # the connection stayed open until ``read_timeout`` (30 s), and a keep-alive
        # connection could lose its idle timer. Both are quick; the deadline bounds them.
        with trio.move_on_after(BOOKKEEPING_TIMEOUT) as scope:
            scope.shield = True
            await super().protocol_send(event)
