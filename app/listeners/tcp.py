"""TCP and TLS listeners: accept loop plus one handler task per connection, or none.

Tasks: a connection gets a handler task of its own (its cancel scope, its error boundary),
except plain TCP to a mode that serves sockets from a loop of its own (echo,
``Mode.adopts_sockets``): that mode adopts the socket and serves it with no task, no cancel
scope, no coroutine frames, and tells the server when it ended (:func:`_adopted_ends` does
the same bookkeeping as the task's boundary). An idle connection then costs its socket and
its rows, not a task: about a fifth of the memory.

Limits: at most ``max_connections`` connections are served at once. The policy for the next
one is *accept and close at once*: the client sees EOF (or a reset, if it has sent data)
immediately, instead of hanging in the kernel's backlog until its own timeout, and the
listener counts it in ``rejected``. Connections already open are not disturbed. A connection
silent for ``idle_timeout`` seconds is closed and counted in ``idle_closed``; for TLS the
handshake must finish within that time too.

Descriptors: every listener connection is counted against the process's descriptor budget
(:mod:`app.descriptors`). When the listeners' share is used up, the listener stops
accepting until a connection ends (clients wait in the backlog, as when ``accept`` fails
with ``EMFILE``) and counts the pause in ``accept_failures``: the reserve stays for the web
server, so the API answers while listeners are flooded with idle connections.

Error handling: an exception in one connection's handler is logged with the connection id and
ends that connection only (trio's ``serve_listeners`` would let it kill the server). Resets,
broken pipes and failed TLS handshakes are what clients do: they are counted in ``errors``
and logged at debug level. Running out of file descriptors pauses accepting briefly instead
of crashing, as trio does.

Resource handling: the listening socket and every connection socket are closed when the
listener's cancel scope is cancelled; closing a row from the API cancels that connection's own
scope (or, for an adopted one, ends it in its mode's loop), which closes the real socket.
"""

from __future__ import annotations

import logging
import socket as stdsocket
import ssl
from typing import Any, NoReturn

import trio

from app.descriptors import ACCEPT_CAPACITY_ERRNOS, DESCRIPTORS
from app.listeners.base import Ended, EndReason, Listener
from app.listeners.stream import Transport
from app.registry import Conn, Registry
from app.sockio import DirectSocket
from app.tcpinfo import SupportsGetsockopt

logger = logging.getLogger(__name__)

# A backlog as large as the kernel allows: connection bursts wait in the kernel, not in SYN
# retries (trio's backlog essay).
_BACKLOG = 65535
# What a misbehaving client causes; the connection ends, the listener goes on.
_CLIENT_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def is_client_error(exc: BaseException) -> bool:
    """Whether ``exc`` is what clients do (a reset, a broken pipe), also when a mode's own
    nursery (an impaired stream's delay line) raised it as a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_client_error(inner) for inner in exc.exceptions)
    return isinstance(exc, _CLIENT_ERRORS)


async def bind_tcp(host: str, port: int) -> trio.socket.SocketType:
    """Bind and listen on ``host:port`` (IPv4 or IPv6), returning the listening socket."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = trio.socket.socket(family, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        if family == stdsocket.AF_INET6:
            sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
        await sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class StreamTransport:
    """Adapts a trio ``Stream`` (an ``SSLStream``, a memory stream in tests) to
    :class:`~app.listeners.stream.Transport`. Costs one copy per read, which plain TCP avoids
    by handing modes the socket itself."""

    __slots__ = ("stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def recv_into(self, buffer: bytearray, nbytes: int = 0, /) -> int:
        data = await self.stream.receive_some(nbytes or len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    async def send(self, data: memoryview, /) -> int:
        await self.stream.send_all(data)
        return len(data)


async def _serve_connection(
    listener: Listener, registry: Registry, conn: Conn, transport: Transport
) -> None:
    """Run the listener's mode on one connection: the per-connection error boundary.

    The connection gets its own cancel scope: the API closes it through
    ``conn.close_hook``, the idle timeout through its deadline (the mode moves it after each
    read). Whatever ends the connection is counted on the listener (``closed_by_api``,
    ``idle_closed``, ``errors``) and its row leaves the registry; the caller closes the
    transport.
    """
    scope = trio.CancelScope()
    by_api = False

    def close_from_api() -> None:
        nonlocal by_api
        by_api = True
        scope.cancel()

    conn.close_hook = close_from_api
    scope.deadline = trio.current_time() + listener.spec.idle_timeout
    try:
        with scope:
            await listener.mode.handle_stream(conn, transport, scope)
        if scope.cancelled_caught:
            if by_api:
                listener.closed_by_api += 1
            elif not listener.cancel_scope.cancel_called:
                listener.idle_closed += 1
    except Exception as exc:
        listener.errors += 1
        if is_client_error(exc):
            logger.debug("connection %s ended: %r", conn.id, exc)
        else:
            logger.exception("connection %s: handler failed", conn.id)
    finally:
        registry.close(conn)


def _plain_socket(
    listener: Listener, sock: trio.socket.SocketType, remote: Any
) -> tuple[stdsocket.socket, Any] | None:
    """The stdlib non-blocking socket behind an accepted one, and its local address.

    ``None`` (``sock`` closed, counted in ``errors``) when the client reset the connection
    before it was served.
    """
    try:
        local = sock.getsockname()
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
    except OSError as exc:
        sock.close()
        listener.errors += 1
        logger.debug("connection from %s gone before serving: %r", remote, exc)
        return None
    raw = stdsocket.socket(sock.family, sock.type, fileno=sock.detach())
    raw.setblocking(False)
    return raw, local


async def handle_tcp_socket(
    listener: Listener, registry: Registry, sock: trio.socket.SocketType, remote: Any
) -> None:
    """Serve one plain TCP connection with the listener's mode; closes ``sock`` at the end.

    The mode reads with ``recv_into`` on the socket itself (see :mod:`app.sockio`): no
    stream wrapper, no copy, one scheduler round per request.
    """
    plain = _plain_socket(listener, sock, remote)
    if plain is None:
        return
    raw, local = plain
    # The first read waits for data before it takes a buffer (app.listeners.stream): a
    # connection that stays silent holds none.
    transport = DirectSocket(raw)
    try:
        conn = registry.open("tcp", local, remote, listener_id=listener.id, sock=raw)
        await _serve_connection(listener, registry, conn, transport)
    finally:
        transport.close()


def _adopted_ends(listener: Listener, registry: Registry) -> Ended:
    """The bookkeeping of a connection the mode serves without a task, when it ends: what
    :func:`_serve_connection` and :func:`_serve_one` do for a connection with a task."""

    def ended(conn: Conn, sock: stdsocket.socket, why: EndReason, error: Exception | None) -> None:
        if why == "api":
            listener.closed_by_api += 1
        elif why == "idle":
            listener.idle_closed += 1
        elif error is not None:
            listener.errors += 1
            if is_client_error(error):
                logger.debug("connection %s ended: %r", conn.id, error)
            else:
                logger.error("connection %s: handler failed", conn.id, exc_info=error)
        registry.close(conn)
        sock.close()
        listener.connections -= 1
        DESCRIPTORS.give()

    return ended


def _adopt(
    listener: Listener, registry: Registry, sock: trio.socket.SocketType, remote: Any, ended: Ended
) -> None:
    """Hand one plain TCP connection to its mode's own loop (``Mode.adopts_sockets``)."""
    plain = _plain_socket(listener, sock, remote)
    if plain is None:
        listener.connections -= 1
        DESCRIPTORS.give()
        return
    raw, local = plain
    conn = registry.open("tcp", local, remote, listener_id=listener.id, sock=raw)
    try:
        listener.mode.adopt(conn, raw, ended)
    except Exception as exc:
        # The per-connection boundary of an adopted connection: a bug in the mode ends
        # this connection (counted, logged with its id), never the accept loop.
        ended(conn, raw, "error", exc)


async def handle_tcp_stream(
    listener: Listener,
    registry: Registry,
    stream: trio.abc.Stream,
    local: Any,
    remote: Any,
    protocol: str = "tcp",
    sock: SupportsGetsockopt | None = None,
) -> None:
    """Serve one connection given as a trio ``Stream``; closes ``stream`` at the end.

    This is the path of TLS connections (``stream`` is an ``SSLStream``; ``sock`` its TCP
    socket, for the kernel's view) and of tests that drive a handler over
    ``trio.testing.memory_stream_pair`` with a virtual clock.
    """
    try:
        conn = registry.open(protocol, local, remote, listener_id=listener.id, sock=sock)
        await _serve_connection(listener, registry, conn, StreamTransport(stream))
    finally:
        await trio.aclose_forcefully(stream)


async def _serve_one(
    listener: Listener,
    registry: Registry,
    sock: trio.socket.SocketType,
    remote: Any,
    context: ssl.SSLContext | None,
) -> None:
    try:
        if context is None:
            await handle_tcp_socket(listener, registry, sock, remote)
        else:
            local = sock.getsockname()
            stream = trio.SSLStream(trio.SocketStream(sock), context, server_side=True)
            await handle_tcp_stream(listener, registry, stream, local, remote, "tls", sock)
    finally:
        listener.connections -= 1
        DESCRIPTORS.give()


def _log_shortage(listener: Listener, reason: str | None, last_logged: float) -> float:
    """Log an accept failed or deferred at most once a second; returns when it last logged.

    A descriptor shortage lasts: the log must not fill up with it.
    """
    now = trio.current_time()
    if now - last_logged < 1.0:
        return last_logged
    logger.error(
        "listener %s: no descriptor for a new connection (%s), waiting; %d times so far",
        listener.id,
        reason,
        listener.accept_failures,
    )
    return now


async def serve_tcp_listener(
    listener: Listener,
    registry: Registry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``listener`` (TCP, or TLS when it has an SSL context) forever.

    Reports the bound port through ``task_status``. The connection slot and its descriptor
    are taken here, at accept time, so a burst of connects cannot overshoot
    ``max_connections`` or the listeners' share of descriptors.
    """
    context: ssl.SSLContext | None = None
    if listener.spec.protocol == "tls":
        from app.listeners.tls import server_context

        context = await server_context(listener)
    lsock = await bind_tcp(listener.host, listener.port)
    max_connections = listener.spec.max_connections
    budget = DESCRIPTORS
    budget.refresh()
    last_logged = -float("inf")
    # Plain TCP served by the mode's own loop (echo): no task per connection.
    adopts = context is None and listener.mode.adopts_sockets
    ended = _adopted_ends(listener, registry)
    with lsock:
        listener.port = lsock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.mode.run)
            task_status.started(listener.port)
            while True:
                if not budget.take_nowait():
                    # The rest of the descriptors are the web server's reserve: wait, as
                    # if the process had none left, until a listener connection ends.
                    listener.accept_failures += 1
                    last_logged = _log_shortage(listener, "descriptor reserve", last_logged)
                    await budget.acquire()
                try:
                    sock, remote = await lsock.accept()
                except OSError as exc:
                    budget.give()
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    listener.errors += 1
                    listener.accept_failures += 1
                    last_logged = _log_shortage(listener, exc.strerror, last_logged)
                    await trio.sleep(0.1)
                    continue
                except BaseException:
                    budget.give()
                    raise
                listener.accepted += 1
                if listener.connections >= max_connections:
                    # Documented policy: accept, then close at once, so the client sees EOF
                    # right away instead of hanging in the backlog.
                    listener.rejected += 1
                    sock.close()
                    budget.give()
                    continue
                listener.connections += 1
                # The descriptor taken above is given back when the connection ends.
                if adopts:
                    _adopt(listener, registry, sock, remote, ended)
                else:
                    nursery.start_soon(_serve_one, listener, registry, sock, remote, context)
    raise AssertionError("unreachable")  # pragma: no cover
