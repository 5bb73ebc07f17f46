"""TCP listener: accept loop plus one handler task per connection.

Error handling: an exception in one connection's handler is logged with the connection id and
ends that connection only (trio's ``serve_listeners`` would let it kill the server). Running
out of file descriptors pauses accepting briefly instead of crashing, as trio does.

Resource handling: the listening socket and every connection socket are closed when the
listener's cancel scope is cancelled; closing a row from the API cancels that connection's own
scope, which closes the real socket.
"""

from __future__ import annotations

import errno
import logging
import socket as stdsocket
from typing import NoReturn

import trio

from app.listeners.base import Listener
from app.registry import Registry

logger = logging.getLogger(__name__)

# Errors from accept() that mean "out of resources, try again soon" (trio's list).
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# A backlog as large as the kernel allows: connection bursts wait in the kernel, not in SYN
# retries (trio's backlog essay).
_BACKLOG = 65535


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


async def serve_tcp_listener(
    listener: Listener,
    registry: Registry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``listener`` forever; reports the bound port through ``task_status``."""
    lsock = await bind_tcp(listener.host, listener.port)
    with lsock:
        listener.port = lsock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(listener.port)
            while True:
                try:
                    sock, remote = await lsock.accept()
                except OSError as exc:
                    if exc.errno in _RESOURCE_ERRNOS:
                        listener.errors += 1
                        logger.error(
                            "listener %s: accept failed, pausing", listener.id, exc_info=True
                        )
                        await trio.sleep(0.1)
                        continue
                    raise
                listener.accepted += 1
                if listener.connections >= listener.spec.max_connections:
                    # Documented policy: accept, then close at once, so the client sees EOF
                    # right away instead of hanging in the backlog.
                    listener.rejected += 1
                    sock.close()
                    continue
                nursery.start_soon(handle_tcp_echo, listener, registry, sock, remote)
    raise AssertionError("unreachable")  # pragma: no cover


async def handle_tcp_echo(
    listener: Listener, registry: Registry, sock: trio.socket.SocketType, remote: object
) -> None:
    """Echo every byte back until EOF, an error, the idle timeout or a close from the API."""
    listener.connections += 1
    conn = registry.open("tcp", sock.getsockname(), remote, listener_id=listener.id)
    scope = trio.CancelScope()
    conn.close_hook = scope.cancel
    size = listener.spec.max_message_size
    buf = bytearray(size)
    view = memoryview(buf)
    idle = listener.spec.idle_timeout
    try:
        with sock, scope:
            sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
            scope.deadline = trio.current_time() + idle
            while True:
                n = await sock.recv_into(buf, size)
                if not n:
                    break
                conn.bytes_in += n
                conn.msgs_in += 1
                listener.bytes_in += n
                listener.msgs_in += 1
                sent = 0
                while sent < n:
                    sent += await sock.send(view[sent:n])
                conn.bytes_out += n
                conn.msgs_out += 1
                listener.bytes_out += n
                listener.msgs_out += 1
                conn.touch()
                scope.deadline = trio.current_time() + idle
    except OSError as exc:
        # Resets and broken pipes are what clients do; they end this connection only.
        listener.errors += 1
        logger.debug("connection %s ended: %s", conn.id, exc)
    except Exception:
        listener.errors += 1
        logger.exception("connection %s: handler failed", conn.id)
    finally:
        listener.connections -= 1
        registry.close(conn)
