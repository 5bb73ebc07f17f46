"""Client connections for runs: plain TCP on raw trio sockets, TLS on ``trio.SSLStream``.

Both give the same two calls the patterns use per message, ``send_all(view)`` and
``recv_into(view, nbytes)``, so a pattern is written once for TCP and TLS. Plain TCP uses the
socket directly (``recv_into`` a preallocated buffer, no allocation per message); TLS pays
for one bytes object per read, as ``SSLStream`` gives no ``recv_into``.

Error handling: :func:`connect_stream` turns every failure into its error kind
(:func:`app.runs.error_kinds.error_kind`) via :class:`ConnectError`; the caller counts it.
"""

from __future__ import annotations

import socket as stdsocket
import ssl
from typing import Protocol

import trio

from app.runs.error_kinds import error_detail, error_kind
from app.sockio import DirectSocket
from app.tcpinfo import SupportsGetsockopt


class ConnectError(Exception):
    """A connection could not be made; ``kind`` is one of the error kinds, the message
    says why in words (:func:`~app.runs.error_kinds.error_detail`)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Channel(Protocol):
    async def send_all(self, data: memoryview) -> None: ...
    async def recv_into(self, view: memoryview, nbytes: int) -> int: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...
    def getsockname(self) -> object: ...
    def getpeername(self) -> object: ...
    @property
    def sock(self) -> SupportsGetsockopt:
        """The TCP socket underneath, for the kernel's view of it (app.tcpinfo)."""
        ...


class TlsChannel:
    """TLS over a trio socket stream."""

    def __init__(
        self, stream: trio.SSLStream[trio.SocketStream], sock: trio.socket.SocketType
    ) -> None:
        self.stream = stream
        self.raw = sock

    async def send_all(self, data: memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except trio.BrokenResourceError as exc:
            raise _unwrap(exc) from exc

    async def recv_into(self, view: memoryview, nbytes: int) -> int:
        try:
            data = await self.stream.receive_some(nbytes)
        except trio.BrokenResourceError as exc:
            raise _unwrap(exc) from exc
        n = len(data)
        view[:n] = data
        return n

    @property
    def sock(self) -> trio.socket.SocketType:
        return self.raw

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        self.raw.close()

    def getsockname(self) -> object:
        return self.raw.getsockname()

    def getpeername(self) -> object:
        return self.raw.getpeername()


def _unwrap(exc: BaseException) -> OSError:
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return cause
    return ConnectionResetError(str(exc))


def client_tls_context(insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def connect_stream(
    family: int,
    address: tuple[object, ...],
    connect_timeout: float,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Channel:
    """Connect to ``address`` (already resolved and checked) and return a channel.

    Raises:
        ConnectError: With the error kind (refused, timeout, unreachable, tls, ...).
    """
    sock = trio.socket.socket(family, stdsocket.SOCK_STREAM)
    try:
        with trio.fail_after(connect_timeout):
            await sock.connect(address)
            sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
            if tls is None:
                # From here on the socket is driven directly (see app.sockio).
                raw = stdsocket.socket(family, stdsocket.SOCK_STREAM, fileno=sock.detach())
                raw.setblocking(False)
                return DirectSocket(raw)
            stream = trio.SSLStream(trio.SocketStream(sock), tls, server_hostname=server_hostname)
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                failure = _unwrap(exc)  # an ssl.SSLError (an OSError) when the handshake failed
                raise ConnectError(error_kind(failure), error_detail(failure)) from exc
            return TlsChannel(stream, sock)
    except trio.TooSlowError as exc:
        sock.close()
        raise ConnectError("timeout", f"no connection within {connect_timeout:g} s") from exc
    except OSError as exc:
        sock.close()
        raise ConnectError(error_kind(exc), error_detail(exc)) from exc
    except BaseException:
        sock.close()
        raise
