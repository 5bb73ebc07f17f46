"""Echo mode: every byte (TCP, TLS) or datagram (UDP) goes back to its sender.

Plain echo over TCP is the lab's hottest path: it reads into one preallocated buffer with
``recv_into`` and sends from a memoryview of it, touching only counters. Plain echo over UDP
uses the UDP server's inlined loop. With impairment options the work moves to
:mod:`app.listeners.modes.impair`.
"""

from __future__ import annotations

from typing import Any

import trio

from app.listeners.base import FIRST_READ_SIZE, DatagramHandler, Listener, Mode, Transport
from app.listeners.modes.impair import Impairment, impaired_datagram_handler, impaired_stream
from app.registry import Conn


class EchoMode(Mode):
    """Reflect everything; a UDP reply is never larger than its request (it is the request)."""

    name = "echo"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        spec = listener.spec
        self.impairment = Impairment(spec) if Impairment.wanted(spec) else None
        self.udp_fast_echo = self.impairment is None

    async def run(self) -> None:
        if self.impairment is not None:
            await self.impairment.run()

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        if self.impairment is not None:
            await impaired_stream(self.listener, self.impairment, conn, transport, scope)
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

    def datagram_handler(self, sock: Any) -> DatagramHandler:
        assert self.impairment is not None  # plain echo uses the UDP server's own loop
        return impaired_datagram_handler(self.listener, self.impairment, sock)

    def details(self) -> dict[str, Any]:
        if self.impairment is None:
            return {}
        return {"impairment": self.impairment.to_dict()}
