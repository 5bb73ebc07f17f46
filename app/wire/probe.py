"""The probe header carried at the start of every test message.

Theory of operation: a sender writes a fixed 28-byte header at offset 0 of each message it
sends, and whoever receives the message (our own sink, or the sender itself when any echo
server sends the bytes back unchanged) decodes it to learn which run and flow the message
belongs to, its sequence number and when it was sent. Nothing here keeps state or does I/O.

Layout (network byte order, ``struct`` format ``!2sBBIIQQ``):

| offset | size | field    | meaning                                                      |
| ------ | ---- | -------- | ------------------------------------------------------------ |
| 0      | 2    | magic    | ``b"SL"``                                                    |
| 2      | 1    | version  | ``1``                                                        |
| 3      | 1    | flags    | bit 0 :data:`FLAG_WARMUP`; other bits 0, ignored when set    |
| 4      | 4    | run tag  | u32 CRC-32 of the run id (:func:`run_tag_of`)                |
| 8      | 4    | flow id  | u32, one per connection or UDP flow within a run             |
| 12     | 8    | sequence | u64, per flow, starting at 0                                 |
| 20     | 8    | sent ns  | u64 send time in ns, the sender's ``time.perf_counter_ns()`` |

The payload follows the header; a message shorter than 28 bytes carries no probe.

The send time is when the sender really sent the message (read just before the send), in
the sender's monotonic clock domain, as iperf3 stamps its datagrams: jitter computed from it
is the network's, not the sender's own lateness. An open-loop sender that knows each
message's *intended* time derives it from the sequence number, so the header need not carry
it. A one-way receiver on another clock sees an unknown constant offset, which cancels out
of jitter but not out of latency.

Warm-up: a message sent during a run's warm-up has :data:`FLAG_WARMUP` set, so any socketlab
receiver (the sender reading its echoes, a sink) leaves it out of its figures. Warm-up
messages and counted messages are numbered separately, each from 0, so a receiver's
sequence numbers of counted messages start at 0 and loss is not charged for the warm-up.

Decoding never raises on foreign traffic: anything that is too short or lacks the magic
and version decodes to ``None``, because listeners routinely receive bytes that are not
ours (port scanners, a netcat session, a client of another tool).
"""

import struct
import zlib
from typing import NamedTuple

__all__ = [
    "FLAGS_OFFSET",
    "FLAG_WARMUP",
    "HEADER_SIZE",
    "MAGIC",
    "PEEK",
    "PREFIX",
    "SEQ_OFFSET",
    "STAMP",
    "VERSION",
    "ProbeHeader",
    "decode",
    "encode",
    "encode_into",
    "encode_numbered",
    "peek_seq",
    "run_tag_of",
]

MAGIC = b"SL"
VERSION = 1
FLAG_WARMUP = 0x01
"""Flags bit: sent during the run's warm-up; receivers leave the message out of figures."""

_HEADER = struct.Struct("!2sBBIIQQ")
_SEQ = struct.Struct("!Q")
_SEQ_OFFSET = 12
SEQ_OFFSET = _SEQ_OFFSET
FLAGS_OFFSET = 3
# For senders that write a flow's header once (encode_into) and then, per message, only
# what changes: ``STAMP.pack_into(buf, SEQ_OFFSET, seq, sent_ns)`` writes the sequence
# number and the send time in one call (a third of encode_numbered's cost), and the flags
# byte at FLAGS_OFFSET changes once, when the warm-up ends.
STAMP = struct.Struct("!QQ")
# For receivers matching replies by sequence number: ``word, seq = PEEK.unpack_from(buf)``
# in one call; the message is a probe when ``word >> 8 == PREFIX`` (magic and version), and
# ``word & 0xFF`` is its flags. Only for buffers of at least HEADER_SIZE bytes.
PEEK = struct.Struct("!I8xQ")
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == 28

_MAGIC_0, _MAGIC_1 = MAGIC
PREFIX = (_MAGIC_0 << 16) | (_MAGIC_1 << 8) | VERSION


class ProbeHeader(NamedTuple):
    """A decoded probe header (magic and version are checked, so not kept)."""

    flags: int
    run_tag: int
    flow: int
    seq: int
    sent_ns: int

    @property
    def warmup(self) -> bool:
        """Whether the message was sent during the run's warm-up (:data:`FLAG_WARMUP`)."""
        return bool(self.flags & FLAG_WARMUP)


def encode_into(
    buf: bytearray | memoryview,
    run_tag: int,
    flow: int,
    seq: int,
    sent_ns: int,
    *,
    flags: int = 0,
) -> None:
    """Write a probe header at the start of ``buf``, in place.

    This runs once per message sent, so it allocates nothing: keep one buffer per flow and
    rewrite its first :data:`HEADER_SIZE` bytes before each send.

    Args:
        buf: A writable buffer of at least :data:`HEADER_SIZE` bytes.
        run_tag: u32 tag of the run, from :func:`run_tag_of`.
        flow: u32 flow id.
        seq: u64 sequence number.
        sent_ns: u64 send time from ``time.perf_counter_ns()``.
        flags: u8 flags: :data:`FLAG_WARMUP` or 0.

    Raises:
        struct.error: ``buf`` is too short or a field does not fit its width. Both are
            programming errors, so they are not turned into a domain error.
    """
    _HEADER.pack_into(buf, 0, MAGIC, VERSION, flags, run_tag, flow, seq, sent_ns)


def encode_numbered(
    buf: bytearray | memoryview,
    run_tag: int,
    flow: int,
    seq: int,
    first_counted: int,
    sent_ns: int,
    counted: bool,
) -> None:
    """Write the header of a flow's message ``seq`` numbered as receivers expect it.

    For senders that number every message of a flow in one sequence (pingpong matches its
    replies by it): a counted message is numbered from ``first_counted`` (the flow's first
    message after the warm-up), a warm-up one is flagged :data:`FLAG_WARMUP` and keeps its
    number, so both series start at 0. The same cost as :func:`encode_into`.

    Args:
        buf: A writable buffer of at least :data:`HEADER_SIZE` bytes.
        run_tag: u32 tag of the run.
        flow: u32 flow id.
        seq: The message's number in the flow, warm-up included.
        first_counted: The number of the flow's first counted message (if ``counted``).
        sent_ns: u64 send time from ``time.perf_counter_ns()``.
        counted: Sent after the warm-up.
    """
    if counted:
        _HEADER.pack_into(buf, 0, MAGIC, VERSION, 0, run_tag, flow, seq - first_counted, sent_ns)
    else:
        _HEADER.pack_into(buf, 0, MAGIC, VERSION, FLAG_WARMUP, run_tag, flow, seq, sent_ns)


def encode(run_tag: int, flow: int, seq: int, sent_ns: int, *, flags: int = 0) -> bytes:
    """Return a probe header as new bytes; see :func:`encode_into` for the fields."""
    return _HEADER.pack(MAGIC, VERSION, flags, run_tag, flow, seq, sent_ns)


def decode(data: bytes | bytearray | memoryview) -> ProbeHeader | None:
    """Decode the probe header at the start of ``data``.

    Args:
        data: A received message (or its first bytes).

    Returns:
        The header, or ``None`` if ``data`` is shorter than :data:`HEADER_SIZE` or does
        not start with our magic and version. Trailing payload is ignored.
    """
    if len(data) < HEADER_SIZE:
        return None
    magic, version, flags, run_tag, flow, seq, sent_ns = _HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        return None
    return ProbeHeader(flags, run_tag, flow, seq, sent_ns)


def peek_seq(data: bytes | bytearray | memoryview) -> int | None:
    """Return the sequence number of a probe message without decoding the rest.

    Returns:
        The sequence number, or ``None`` where :func:`decode` would return ``None``.
    """
    if len(data) < HEADER_SIZE:
        return None
    if data[0] != _MAGIC_0 or data[1] != _MAGIC_1 or data[2] != VERSION:
        return None
    seq: int = _SEQ.unpack_from(data, _SEQ_OFFSET)[0]
    return seq


def run_tag_of(run_id: str) -> int:
    """Return the u32 tag of a run id: its CRC-32, stable across processes and versions.

    Distinct run ids can share a tag (1 in 2**32 per pair); the tag only filters out
    traffic from other runs, it does not prove identity.
    """
    return zlib.crc32(run_id.encode("utf-8", "surrogatepass"))
