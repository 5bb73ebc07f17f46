"""Newline framing of a line protocol's TCP stream (InfluxDB, Graphite), without I/O.

Theory of operation: :class:`LineFramer` is fed a connection's bytes as they arrive and
returns the lines they complete (without the newline) and the raw bytes those lines took,
newlines included, so a forwarder can pass the stream on unchanged. Feeding a stream whole,
byte by byte or in any chunks returns the same lines. An unterminated line longer than
``max_line`` raises :class:`~app.wire.rules.FrameTooLongError` (the stream cannot be cut
past it: the connection ends); :meth:`LineFramer.close` returns the last line at EOF even
without its newline. :class:`~app.wire.syslog_framing.SyslogFramer` has the same interface.
"""

from __future__ import annotations

from app.wire.rules import FrameTooLongError

__all__ = ["LineFramer"]


class LineFramer:
    """Cuts one stream at newlines.

    Args:
        max_line: Longest unterminated tail kept.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._pending = bytearray()

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Add received bytes; returns the complete lines and the raw bytes they took.

        Raises:
            FrameTooLongError: The unterminated tail outgrew ``max_line``; its ``lines``
                are the lines completed before it.
        """
        cut = data.rfind(b"\n")
        pending = self._pending
        if cut < 0:
            pending += data
            if len(pending) > self.max_line:
                pending.clear()
                raise FrameTooLongError(self.max_line)
            return [], b""
        if pending:
            pending += data[: cut + 1]
            raw = bytes(pending)
            pending.clear()
        else:
            raw = data[: cut + 1]
        pending += data[cut + 1 :]
        lines = raw[:-1].split(b"\n")
        if len(pending) > self.max_line:
            pending.clear()
            raise FrameTooLongError(self.max_line, lines)
        return lines, raw

    def close(self) -> tuple[list[bytes], bytes]:
        """End of stream: the unterminated last line (if any) and its bytes."""
        if not self._pending:
            return [], b""
        raw = bytes(self._pending)
        self._pending.clear()
        return [raw], raw
