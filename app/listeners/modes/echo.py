"""Echo mode: every byte (TCP, TLS) or datagram (UDP) goes back to its sender.

Plain echo over TCP is the lab's hottest path: it reads into one preallocated buffer with
``recv_into`` and sends from a memoryview of it, touching only counters. Plain echo over UDP
uses the UDP server's inlined loop. With impairment options the work moves to
:mod:`app.listeners.modes.impair`.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from app.listeners.base import FIRST_READ_SIZE, DatagramHandler, Listener, Mode, Transport
from app.listeners.modes.impair import Impairment, impaired_datagram_handler, impaired_stream
from app.registry import Conn
from app.sockio import DirectSocket

# Reads that did not wait before a connection yields to the others.
_BUDGET = 32


async def _send_rest(sock: socket.socket, data: bytes) -> None:
    """Send what the kernel did not take at once, waiting for room as needed."""
    view = memoryview(data)
    while view:
        await trio.lowlevel.wait_writable(sock)
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            pass


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

    async def run(self) -> None:
        if self.impairment is not None:
            await self.impairment.run()

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        if self.impairment is not None:
            await impaired_stream(self.listener, self.impairment, conn, transport, scope)
            return
        if isinstance(transport, DirectSocket):
            await self._echo_socket(conn, transport.sock, scope)
            return
        listener = self.listener
        max_size = listener.spec.max_message_size
        idle = listener.spec.idle_timeout
        size = min(FIRST_READ_SIZE, max_size)
        buf = bytearray(size)
        view = memoryview(buf)
        recv_into = transport.recv_into
        send = transport.send
        current_time = trio.current_time
        while True:
            n = await recv_into(buf, size)
            if not n:
                return
            conn.bytes_in += n
            conn.msgs_in += 1
            listener.bytes_in += n
            listener.msgs_in += 1
            sent = 0
            while sent < n:
                sent += await send(view[sent:n])
            conn.bytes_out += n
            conn.msgs_out += 1
            listener.bytes_out += n
            listener.msgs_out += 1
            conn.touch()
            scope.deadline = current_time() + idle
            if n == size and size < max_size:
                size = min(size * 4, max_size)
                buf = bytearray(size)
                view = memoryview(buf)

    async def _echo_socket(self, conn: Conn, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Plain TCP echo, the lab's hottest path, on the non-blocking socket itself.

        Every connection reads into the listener's one shared buffer. That is sound because
        nothing awaits between a read and the send of what it read: a send the kernel takes
        only in part copies the rest out of the shared buffer before it waits. Readiness
        waits happen only when the last read did not fill the buffer (request/reply: the
        next request is not there yet), and a budget yields every 32 reads that did not
        wait, so a client that never pauses cannot starve the others.
        """
        listener = self.listener
        shared = self._shared
        view = memoryview(shared)
        size = len(shared)
        idle = listener.spec.idle_timeout
        current_time = trio.current_time
        wait_readable = trio.lowlevel.wait_readable
        recv_into = sock.recv_into
        send = sock.send
        budget = _BUDGET
        more = False
        # Moving a cancel scope's deadline costs about 1.5 µs (a heap push), a tenth of a
        # round trip here, so the idle deadline moves at most every ``refresh`` seconds: a
        # silent connection is closed between idle and idle + refresh after its last byte.
        refresh = min(idle / 16, 1.0)
        moved_at = current_time()
        while True:
            if not more:
                await wait_readable(sock)
                budget = _BUDGET
            elif budget <= 0:
                await trio.lowlevel.checkpoint()
                budget = _BUDGET
            try:
                n = recv_into(shared)
            except BlockingIOError:
                more = False
                continue
            if not n:
                return
            more = n == size
            budget -= 1
            conn.bytes_in += n
            conn.msgs_in += 1
            listener.bytes_in += n
            listener.msgs_in += 1
            try:
                sent = send(view[:n])
            except BlockingIOError:
                sent = 0
            if sent < n:
                # The shared buffer is the next reader's: keep the rest before waiting.
                await _send_rest(sock, bytes(view[sent:n]))
            conn.bytes_out += n
            conn.msgs_out += 1
            listener.bytes_out += n
            listener.msgs_out += 1
            conn.touch()
            now = current_time()
            if now - moved_at >= refresh:
                # + refresh: the last byte may come up to refresh later than this move.
                scope.deadline = now + idle + refresh
                moved_at = now

    def datagram_handler(self, sock: Any) -> DatagramHandler:
        assert self.impairment is not None  # plain echo uses the UDP server's own loop
        return impaired_datagram_handler(self.listener, self.impairment, sock)

    def details(self) -> dict[str, Any]:
        if self.impairment is None:
            return {}
        return {"impairment": self.impairment.to_dict()}
