"""Syslog over TCP: cutting a stream into messages (RFC 6587), without I/O.

Theory of operation: RFC 6587 describes two framings. *Octet counting* (3.4.1) sends
``MSG-LEN SP SYSLOG-MSG``, the length in decimal; *non-transparent framing* (3.4.2) ends
each message with a trailer, LF in practice, though some senders (Python's
``SysLogHandler`` over TCP) end them with NUL, so both are trailers here. A syslog message
starts with ``<``, a length with a digit, so the first byte of a connection tells which
framing it uses; :class:`SyslogFramer` decides there and keeps to it for the connection.

:meth:`SyslogFramer.feed` takes bytes as they arrive (whole, byte by byte, any chunks: the
same messages) and returns the messages they complete, plus the raw bytes that made them
(framing included), so a forwarder can pass the stream on unchanged. Bounds: a message
longer than ``max_length`` (a length field that says so, or a trailer that does not come)
raises :class:`~app.wire.rules.FrameTooLongError`; a length field that is not a number
raises :class:`SyslogFramingError`. After either, the stream cannot be cut again: the
connection ends. :meth:`SyslogFramer.close` returns an unterminated last message at EOF.
"""

from __future__ import annotations

from typing import Literal

from app.errors import LineError
from app.wire.rules import FrameTooLongError

__all__ = ["Framing", "SyslogFramer", "SyslogFramingError"]

Framing = Literal["octet-counting", "non-transparent"]
# The length field: up to this many digits (enough for any max_length a listener takes).
_MAX_DIGITS = 9
_TRAILERS = b"\n\x00"


class SyslogFramingError(LineError):
    """A stream that is neither octet-counted nor trailer-framed syslog.

    Args:
        message: What is wrong.
        line: The bytes at fault.
        messages: The messages completed before them in the same :meth:`SyslogFramer.feed`.
    """

    def __init__(self, message: str, line: bytes, messages: list[bytes] | None = None) -> None:
        super().__init__(message, line)
        self.messages = messages if messages is not None else []


class SyslogFramer:
    """Cuts one TCP connection's bytes into syslog messages.

    Args:
        max_length: Longest message (without its framing).

    Attributes:
        framing: The connection's framing, once its first byte arrived (else None).
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.framing: Framing | None = None
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Add received bytes.

        Returns:
            The messages they complete (without framing), and the raw bytes those took.

        Raises:
            FrameTooLongError: A message is longer than ``max_length``; its ``lines`` are
                the messages completed before it.
            SyslogFramingError: An octet count that is not a number (the stream is lost);
                its ``messages`` are those completed before it.
        """
        buffer = self._buffer
        buffer += data
        if self.framing is None:
            stripped = buffer.lstrip(_TRAILERS + b" \r")
            if not stripped:
                return [], b""
            self.framing = "octet-counting" if stripped[:1].isdigit() else "non-transparent"
        if self.framing == "octet-counting":
            messages, used = self._counted(buffer)
        else:
            messages, used = self._trailed(buffer)
        raw = bytes(buffer[:used])
        del buffer[:used]
        return messages, raw

    def _trailed(self, buffer: bytearray) -> tuple[list[bytes], int]:
        messages: list[bytes] = []
        start = 0
        end = len(buffer)
        while start < end:
            newline = buffer.find(b"\n", start)
            nul = buffer.find(b"\x00", start)
            cut = min(i for i in (newline, nul) if i >= 0) if newline >= 0 or nul >= 0 else -1
            if cut < 0:
                break
            if cut - start > self.max_length:
                raise FrameTooLongError(self.max_length, messages)
            message = bytes(buffer[start:cut]).rstrip(b"\r")
            if message:
                messages.append(message)
            start = cut + 1
        if end - start > self.max_length:
            raise FrameTooLongError(self.max_length, messages)
        return messages, start

    def _counted(self, buffer: bytearray) -> tuple[list[bytes], int]:
        messages: list[bytes] = []
        start = 0
        end = len(buffer)
        while start < end:
            # Trailers between frames are tolerated (some senders add LF anyway).
            while start < end and buffer[start] in b"\n\x00\r ":
                start += 1
            space = buffer.find(b" ", start, start + _MAX_DIGITS + 1)
            if space < 0:
                partial = bytes(buffer[start:end])
                if partial and (len(partial) > _MAX_DIGITS or not partial.isdigit()):
                    raise SyslogFramingError("octet count is not a number", partial[:20], messages)
                break
            digits = bytes(buffer[start:space])
            if not digits.isdigit() or digits.startswith(b"0"):
                raise SyslogFramingError("octet count is not a number", digits, messages)
            length = int(digits)
            if length > self.max_length:
                raise FrameTooLongError(self.max_length, messages)
            if space + 1 + length > end:
                break
            messages.append(bytes(buffer[space + 1 : space + 1 + length]))
            start = space + 1 + length
        return messages, start

    def close(self) -> tuple[list[bytes], bytes]:
        """End of stream: an unterminated last message (trailer framing), and its bytes.

        A partial octet-counted frame is not a message: it is dropped.
        """
        buffer = self._buffer
        if self.framing == "non-transparent" and buffer.strip(b"\r\n\x00 "):
            raw = bytes(buffer)
            buffer.clear()
            return [raw.rstrip(b"\r")], raw
        buffer.clear()
        return [], b""
