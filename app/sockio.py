"""A plain TCP socket driven directly: non-blocking system calls plus trio's readiness waits.

Theory of operation: each call tries the system call first and waits for readiness only
when the kernel says EAGAIN. A trio socket checkpoints after every successful call, so a
ping-pong round trip costs it three scheduler rounds; here it costs one (the wait for the
next message). When the last read did not fill its buffer, the kernel's buffer was drained,
so the next read waits first instead of paying for a recv that would only say EAGAIN (the
common case of request/reply). A budget forces a checkpoint every ``BUDGET`` calls that did
not wait, so one busy connection cannot starve the others and cancellation (a stop, a close
from the API, a deadline) still lands promptly.

Both ends use it: TCP listeners (``recv_into`` and ``send``, the listener modes' transport)
and the TCP flows of runs (``recv_into`` and ``send_all``).

:class:`app.readyloop.ReadyLoop` goes further for the hottest paths (plain TCP echo,
pingpong runs): one task serves many sockets, each registered once with a private epoll.
"""

from __future__ import annotations

import socket as stdsocket

import trio

BUDGET = 32


class DirectSocket:
    """A connected non-blocking stdlib socket; the caller closes it (:meth:`close`).

    Args:
        sock: Connected, non-blocking.
        more: Whether the first read may find data already there (a server's first read
            after accept usually does; a client's first read after its send does not).
    """

    __slots__ = ("_budget", "_more", "sock")

    def __init__(self, sock: stdsocket.socket, *, more: bool = False) -> None:
        self.sock = sock
        self._budget = BUDGET
        self._more = more

    async def _spent(self) -> None:
        self._budget -= 1
        if self._budget <= 0:
            self._budget = BUDGET
            await trio.lowlevel.checkpoint()

    async def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, /) -> int:
        sock = self.sock
        if not self._more:
            await trio.lowlevel.wait_readable(sock)
            self._budget = BUDGET
        while True:
            try:
                n = sock.recv_into(buffer, nbytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                self._budget = BUDGET
                continue
            self._more = n == (nbytes or len(buffer))
            await self._spent()
            return n

    @property
    def drained(self) -> bool:
        """Whether the next :meth:`recv_into` will wait for data first (the last read did
        not fill its buffer, so the kernel's was emptied)."""
        return not self._more

    async def wait_readable(self) -> None:
        """Wait until there is data (or the end) to read, without a buffer to read it into.

        The next :meth:`recv_into` then reads at once.
        """
        if not self._more:
            await trio.lowlevel.wait_readable(self.sock)
            self._budget = BUDGET
            self._more = True

    async def send(self, data: memoryview, /) -> int:
        """Send what the kernel takes now (waiting only while it takes nothing)."""
        sock = self.sock
        while True:
            try:
                return sock.send(data)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                self._budget = BUDGET

    async def send_all(self, data: memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        total = len(data)
        while sent < total:
            await trio.lowlevel.wait_writable(sock)
            self._budget = BUDGET
            try:
                sent += sock.send(data[sent:])
            except BlockingIOError:
                pass
        await self._spent()

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(stdsocket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    def getsockname(self) -> object:
        return self.sock.getsockname()

    def getpeername(self) -> object:
        return self.sock.getpeername()
