import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.wire.probe import (
    FLAG_WARMUP,
    FLAGS_OFFSET,
    HEADER_SIZE,
    PEEK,
    PREFIX,
    SEQ_OFFSET,
    STAMP,
    ProbeHeader,
    decode,
    encode,
    encode_into,
    encode_numbered,
    peek_seq,
    run_tag_of,
)

U8 = st.integers(min_value=0, max_value=2**8 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)
U64 = st.integers(min_value=0, max_value=2**64 - 1)


def test_header_is_28_bytes_in_the_documented_layout() -> None:
    header = encode(run_tag=0x01020304, flow=0x05060708, seq=0x090A0B0C0D0E0F10, sent_ns=17)
    assert HEADER_SIZE == 28
    assert header == (
        b"SL"  # magic
        + b"\x01"  # version
        + b"\x00"  # flags
        + b"\x01\x02\x03\x04"  # run tag
        + b"\x05\x06\x07\x08"  # flow id
        + b"\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"  # sequence
        + b"\x00\x00\x00\x00\x00\x00\x00\x11"  # sent ns
    )


def test_encode_into_writes_only_the_header_and_keeps_the_payload() -> None:
    buf = bytearray(b"\xaa" * (HEADER_SIZE + 4))
    encode_into(buf, 1, 2, 3, 4)
    assert buf[:HEADER_SIZE] == encode(1, 2, 3, 4)
    assert buf[HEADER_SIZE:] == b"\xaa" * 4


def test_encode_into_writes_through_a_memoryview() -> None:
    buf = bytearray(HEADER_SIZE + 2)
    encode_into(memoryview(buf), 1, 2, 3, 4, flags=5)
    assert decode(buf) == ProbeHeader(flags=5, run_tag=1, flow=2, seq=3, sent_ns=4)


def test_encode_into_refuses_a_buffer_shorter_than_the_header() -> None:
    with pytest.raises(struct.error):
        encode_into(bytearray(HEADER_SIZE - 1), 1, 2, 3, 4)


@given(U32, U32, U64, U64, U8, st.binary(max_size=32))
def test_decode_returns_what_encode_into_wrote(
    run_tag: int, flow: int, seq: int, sent_ns: int, flags: int, payload: bytes
) -> None:
    buf = bytearray(HEADER_SIZE) + payload
    encode_into(buf, run_tag, flow, seq, sent_ns, flags=flags)
    expected = ProbeHeader(flags, run_tag, flow, seq, sent_ns)
    assert decode(bytes(buf)) == expected
    assert decode(memoryview(buf)) == expected
    assert peek_seq(bytes(buf)) == seq
    assert peek_seq(memoryview(buf)) == seq


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SL",
        encode(1, 2, 3, 4)[:-1],
        b"XL" + encode(1, 2, 3, 4)[2:],
        b"Sl" + encode(1, 2, 3, 4)[2:],
        b"SL\x02" + encode(1, 2, 3, 4)[3:],
        b"SL\x00" + encode(1, 2, 3, 4)[3:],
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    ],
    ids=[
        "empty",
        "magic-only",
        "short",
        "bad-magic",
        "magic-case",
        "version-2",
        "version-0",
        "http",
    ],
)
def test_foreign_traffic_decodes_to_none(data: bytes) -> None:
    assert decode(data) is None
    assert peek_seq(data) is None


@given(st.binary(max_size=64))
def test_decode_of_arbitrary_bytes_returns_a_header_or_none_never_raises(data: bytes) -> None:
    header = decode(data)
    assert header is None or isinstance(header, ProbeHeader)
    assert peek_seq(data) == (None if header is None else header.seq)


@given(st.binary(max_size=40))
def test_decode_of_bytes_with_our_magic_never_raises(tail: bytes) -> None:
    data = b"SL\x01" + tail
    header = decode(data)
    assert (header is None) == (len(data) < HEADER_SIZE)


@pytest.mark.parametrize(
    ("run_id", "tag"),
    [
        ("", 0),
        ("a", 0xE8B7BE43),
        ("123456789", 0xCBF43926),  # the CRC-32 check value
    ],
)
def test_run_tag_is_the_crc32_of_the_run_id(run_id: str, tag: int) -> None:
    assert run_tag_of(run_id) == tag


@given(st.text())
def test_run_tag_fits_in_the_header(run_id: str) -> None:
    tag = run_tag_of(run_id)
    assert 0 <= tag < 2**32
    assert decode(encode(tag, 0, 0, 0)) == ProbeHeader(0, tag, 0, 0, 0)


@pytest.mark.parametrize(
    ("flags", "warmup"), [(0, False), (1, True), (0x81, True), (0x80, False), (0xFE, False)]
)
def test_the_warmup_flag_is_bit_0_of_the_flags_byte(flags: int, warmup: bool) -> None:
    header = encode(1, 2, 3, 4, flags=flags)
    assert header[3] == flags
    decoded = decode(header)
    assert decoded is not None and decoded.warmup is warmup
    assert (decoded.flags & FLAG_WARMUP != 0) is warmup


@pytest.mark.parametrize(
    ("seq", "first_counted", "counted", "header"),
    [
        (0, 1 << 64, False, (FLAG_WARMUP, 0)),
        (6, 1 << 64, False, (FLAG_WARMUP, 6)),
        (7, 7, True, (0, 0)),
        (12, 7, True, (0, 5)),
        (3, 0, True, (0, 3)),  # no warm-up: the flow's own numbers
    ],
)
def test_a_flow_numbered_in_one_sequence_writes_both_series_from_0(
    seq: int, first_counted: int, counted: bool, header: tuple[int, int]
) -> None:
    buf = bytearray(64)
    encode_numbered(buf, 0xABCD, 2, seq, first_counted, 99, counted)
    decoded = decode(buf)
    assert decoded is not None
    assert (decoded.flags, decoded.seq) == header
    assert (decoded.run_tag, decoded.flow, decoded.sent_ns) == (0xABCD, 2, 99)


@given(U32, U32, U64, U64, U64, U64, st.booleans())
def test_a_stamped_header_is_the_one_encode_writes(
    tag: int, flow: int, seq0: int, seq: int, t0: int, t: int, warmup: bool
) -> None:
    # A sender writes a flow's header once, then per message only the sequence number and
    # send time (and the flags byte when the warm-up ends): the bytes are encode's.
    buf = bytearray(b"x" * 40)
    encode_into(buf, tag, flow, seq0, t0, flags=FLAG_WARMUP)
    STAMP.pack_into(buf, SEQ_OFFSET, seq, t)
    if not warmup:
        buf[FLAGS_OFFSET] = 0
    assert bytes(buf) == encode(tag, flow, seq, t, flags=FLAG_WARMUP if warmup else 0) + b"x" * 12
    word, peeked = PEEK.unpack_from(buf)
    assert word >> 8 == PREFIX
    assert word & 0xFF == (FLAG_WARMUP if warmup else 0)
    assert peeked == seq == peek_seq(buf)


@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE + 4))
def test_peek_tells_a_probe_as_peek_seq_does(data: bytes) -> None:
    word, seq = PEEK.unpack_from(data)
    assert (seq if word >> 8 == PREFIX else None) == peek_seq(data)
