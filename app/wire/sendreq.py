"""The send request: what a run sends a socketlab source to start the reverse direction.

Theory of operation: a run that wants the far end to send (``fire --reverse``, ``--bidir``)
opens a TCP/TLS connection, or a UDP flow, to a listener in ``source`` mode and sends one
fixed 40-byte request. The source answers with probe-headed messages (:mod:`app.wire.probe`)
of the run's tag and flow, on the schedule the request describes, within the listener's
caps. Nothing here keeps state across requests or does I/O: :func:`decode` reads one
request, :class:`RequestReader` puts one together from the first bytes of a stream, fed in
any chunks.

Layout (network byte order, ``struct`` format ``!2sBBIIIIIIIII``):

| offset | size | field    | meaning                                                      |
| ------ | ---- | -------- | ------------------------------------------------------------ |
| 0      | 2    | magic    | ``b"SR"``                                                    |
| 2      | 1    | version  | ``1``                                                        |
| 3      | 1    | pattern  | 0 bulk (as fast as the caps allow), 1 rate, 2 burst          |
| 4      | 4    | run tag  | u32, written into every probe header sent                    |
| 8      | 4    | flow id  | u32, likewise                                                |
| 12     | 4    | size     | bytes per message, 1 to 1,048,576                            |
| 16     | 4    | rate     | rate and bulk: messages per second x 1000; 0 (bulk): no pace |
| 20     | 4    | messages | messages in all, warm-up included; 0: until the duration     |
| 24     | 4    | duration | ms of sending, warm-up included; 0: until the count          |
| 28     | 4    | warmup   | ms at the start whose messages carry the warm-up flag        |
| 32     | 4    | burst    | burst: messages per burst                                    |
| 36     | 4    | interval | burst: microseconds between bursts                           |

A request with neither a count nor a duration, a rate pattern without a rate, or a burst
without a burst size or interval is refused: every stream a source sends has an end.
Decoding raises :class:`SendRequestError` (naming the field) for anything else; never
another exception.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from app.errors import ProtocolError

__all__ = [
    "MAGIC",
    "MAX_SIZE",
    "PATTERNS",
    "REQUEST_SIZE",
    "VERSION",
    "RequestReader",
    "SendRequest",
    "SendRequestError",
    "decode",
    "encode",
    "is_request",
]

MAGIC = b"SR"
VERSION = 1
PATTERNS = ("bulk", "rate", "burst")
MAX_SIZE = 1_048_576
_REQUEST = struct.Struct("!2sBBIIIIIIIII")
REQUEST_SIZE = _REQUEST.size
assert REQUEST_SIZE == 40
_U32 = 0xFFFFFFFF


class SendRequestError(ProtocolError, ValueError):
    """Bytes that are not a send request this version can serve."""


class SendRequest(NamedTuple):
    """A decoded send request; times in seconds, rate in messages per second."""

    pattern: str
    run_tag: int
    flow: int
    size: int
    rate: float
    messages: int
    duration: float
    warmup: float
    burst: int
    interval: float

    def offset(self, index: int, max_rate: float) -> float:
        """Seconds after the start at which message ``index`` is due, no faster than
        ``max_rate`` messages per second."""
        if self.pattern == "burst":
            k = self.burst
            return max((index // k) * self.interval, index / max_rate)
        rate = min(self.rate, max_rate) if self.rate else max_rate
        return index / rate


def is_request(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like a send request (magic and version; it may be short)."""
    return len(data) >= 3 and data[0] == 0x53 and data[1] == 0x52 and data[2] == VERSION


def _ms(seconds: float) -> int:
    return min(round(seconds * 1000), _U32)


def encode(request: SendRequest) -> bytes:
    """The 40 bytes of ``request`` (rates and times rounded to the layout's units).

    Raises:
        SendRequestError: A field does not fit the layout (or :func:`decode` would refuse
            it), naming the field.
    """
    try:
        pattern = PATTERNS.index(request.pattern)
    except ValueError:
        raise SendRequestError(f"pattern must be one of {', '.join(PATTERNS)}", "pattern") from None
    try:
        data = _REQUEST.pack(
            MAGIC,
            VERSION,
            pattern,
            request.run_tag,
            request.flow,
            request.size,
            min(round(request.rate * 1000), _U32),
            request.messages,
            _ms(request.duration),
            _ms(request.warmup),
            request.burst,
            min(round(request.interval * 1e6), _U32),
        )
    except struct.error as exc:
        raise SendRequestError(f"a field does not fit: {exc}", "request") from None
    decode(data)  # the same checks the source makes
    return data


def decode(data: bytes | bytearray | memoryview) -> SendRequest:
    """Read the send request at the start of ``data`` (trailing bytes are ignored).

    Raises:
        SendRequestError: Too short, not a request, or a request no source can serve.
    """
    if len(data) < REQUEST_SIZE:
        raise SendRequestError(
            f"a send request is {REQUEST_SIZE} bytes, got {len(data)}", "request"
        )
    magic, version, pattern, tag, flow, size, rate, count, dur, warm, burst, gap = (
        _REQUEST.unpack_from(data, 0)
    )
    if magic != MAGIC:
        raise SendRequestError("not a send request (magic is not SR)", "magic")
    if version != VERSION:
        raise SendRequestError(f"send request version {version} is not {VERSION}", "version")
    if pattern >= len(PATTERNS):
        raise SendRequestError(f"pattern {pattern} is not 0, 1 or 2", "pattern")
    if not 1 <= size <= MAX_SIZE:
        raise SendRequestError(f"size must be 1 to {MAX_SIZE} bytes, got {size}", "size")
    if not count and not dur:
        raise SendRequestError("give a count or a duration: a stream must end", "count")
    name = PATTERNS[pattern]
    if name == "rate" and not rate:
        raise SendRequestError("a rate request needs a rate", "rate")
    if name == "burst" and (not burst or not gap):
        raise SendRequestError("a burst request needs a burst size and an interval", "burst")
    return SendRequest(
        name, tag, flow, size, rate / 1000, count, dur / 1000, warm / 1000, burst, gap / 1e6
    )


class RequestReader:
    """Puts together the request at the start of a stream, however its bytes arrive.

    :meth:`feed` returns ``None`` until :data:`REQUEST_SIZE` bytes came, then the request;
    bytes after it are the stream's and are not kept.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> SendRequest | None:
        """Take the next bytes of the stream.

        Raises:
            SendRequestError: As :func:`decode`; also as soon as the first bytes show that
                this is not a request.
        """
        buf = self._buf
        buf += data[: REQUEST_SIZE - len(buf)]
        head = bytes(buf[:3])
        if head != (MAGIC + bytes([VERSION]))[: len(head)]:
            decode(buf.ljust(REQUEST_SIZE, b"\0"))  # raises, naming magic or version
        if len(buf) < REQUEST_SIZE:
            return None
        return decode(buf)
