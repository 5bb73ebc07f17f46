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
from collections.abc import Callable
from typing import Any

from app.listeners.base import DatagramHandler, DatagramPort, Listener, Mode
from app.listeners.stream import Replies
from app.registry import Conn
from app.wire.rules import FrameTooLongError, LineFramer, Responder


class RespondSession:
    """The sans-IO half of one TCP connection: bytes in, replies out.

    Feeding a stream whole or byte by byte gives the same replies in line framing. As a
    :class:`~app.listeners.stream.StreamSession` it reads whole buffers (in read framing a
    read is the message) and takes the time for reply macros from ``clock``.
    """

    whole_reads = True

    def __init__(
        self,
        responder: Responder,
        framing: str,
        max_line: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.responder = responder
        self.framer = LineFramer(max_line) if framing == "line" else None
        self.messages = 0
        self._clock = clock

    def receive(self, view: memoryview, n: int) -> Replies:
        return self.feed(bytes(view[:n]), self._clock())

    def close(self) -> None:
        pass

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

    def open_session(self) -> RespondSession:
        spec = self.listener.spec
        return RespondSession(self.responder, spec.framing, spec.max_message_size)

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        respond = self.responder.respond
        send = port.reply

        def handle(view: memoryview, n: int, addr: Any, flow: Conn) -> None:
            reply = respond(view[:n].tobytes(), time.time())
            if reply is not None:
                send(flow, reply, addr, n)

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
