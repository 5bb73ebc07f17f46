"""Respond mode: rule-based replies, like Packet Sender's smart responses, with captures.

Each message is matched against the listener's rules (:class:`~app.wire.rules.Responder`,
first match wins, one hit counter per rule shared by all connections of the listener); the
reply template is rendered with its macros and sent back. No match and no ``default_reply``
means no reply.

Framing: UDP answers each datagram. TCP/TLS answers each ``\\n``-terminated line
(``framing=line``, the default: what ``nc`` and most line protocols send; a ``\\r`` before
the ``\\n`` is dropped, and the reply is sent exactly as rendered, so end a template with
``\\n`` for line-based clients) or each read (``framing=read``: whatever one ``recv``
returned, as Packet Sender does). A line longer than ``max_message_size`` is counted in
``oversized``; the lines before it are answered and the connection is closed.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from app.listeners.base import DatagramHandler, Listener, Mode, Transport, send_all
from app.listeners.udp import send_reply
from app.registry import Conn
from app.wire.rules import FrameTooLongError, LineFramer, Responder


class RespondSession:
    """The sans-IO half of one TCP connection: bytes in, replies out.

    Feeding a stream whole or byte by byte gives the same replies in line framing.
    """

    def __init__(self, responder: Responder, framing: str, max_line: int) -> None:
        self.responder = responder
        self.framer = LineFramer(max_line) if framing == "line" else None
        self.messages = 0

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """The replies to the messages ``data`` completes.

        Raises:
            FrameTooLongError: A line is too long; its ``lines`` attribute is replaced by the
                replies to the lines before it, which should still be sent.
        """
        if self.framer is None:
            messages = [data]
        else:
            try:
                messages = self.framer.feed(data)
            except FrameTooLongError as exc:
                exc.lines = self._replies(exc.lines, now)
                raise
        return self._replies(messages, now)

    def _replies(self, messages: list[bytes], now: float) -> list[bytes]:
        self.messages += len(messages)
        respond = self.responder.respond
        replies = []
        for message in messages:
            reply = respond(message, now)
            if reply is not None:
                replies.append(reply)
        return replies


class RespondMode(Mode):
    """Answer messages by rules."""

    name = "respond"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.responder = listener.spec.build_responder()

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        listener = self.listener
        spec = listener.spec
        size = spec.max_message_size
        idle = spec.idle_timeout
        session = RespondSession(self.responder, spec.framing, size)
        buf = bytearray(size)
        while True:
            n = await transport.recv_into(buf, size)
            if not n:
                return
            conn.bytes_in += n
            listener.bytes_in += n
            before = session.messages
            try:
                replies = session.feed(bytes(buf[:n]), time.time())
            except FrameTooLongError as exc:
                listener.oversized += 1
                await self._send(conn, transport, exc.lines)
                return
            done = session.messages - before
            conn.msgs_in += done
            listener.msgs_in += done
            await self._send(conn, transport, replies)
            conn.touch()
            scope.deadline = trio.current_time() + idle

    async def _send(self, conn: Conn, transport: Transport, replies: list[bytes]) -> None:
        listener = self.listener
        for reply in replies:
            await send_all(transport, reply)
            conn.bytes_out += len(reply)
            conn.msgs_out += 1
            listener.bytes_out += len(reply)
            listener.msgs_out += 1

    def datagram_handler(self, sock: Any) -> DatagramHandler:
        listener = self.listener
        respond = self.responder.respond

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            reply = respond(view[:n].tobytes(), time.time())
            if reply is not None:
                send_reply(listener, sock, flow, reply, addr, n)

        return handle

    def details(self) -> dict[str, Any]:
        responder = self.responder
        rules = [
            {**rule.to_dict(), "hits": hits}
            for rule, hits in zip(responder.rules, responder.hits(), strict=True)
        ]
        return {
            "respond": {
                "rules": rules,
                "default_reply": responder.default_reply,
                "default_hits": responder.default_hits,
                "framing": self.listener.spec.framing,
            }
        }
