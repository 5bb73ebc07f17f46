"""The send request (app.wire.sendreq): table tests from the README's layout, and fuzzing:
any bytes decode or raise SendRequestError, whole or fed byte by byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.wire.sendreq import (
    REQUEST_SIZE,
    RequestReader,
    SendRequest,
    SendRequestError,
    decode,
    encode,
    is_request,
)

# The layout as the README gives it, written here again: the truth the module is held to.
LAYOUT = struct.Struct("!2sBBIIIIIIIII")


def raw(
    *,
    magic: bytes = b"SR",
    version: int = 1,
    pattern: int = 1,
    tag: int = 0xDEADBEEF,
    flow: int = 3,
    size: int = 64,
    rate_milli: int = 1_000_000,
    messages: int = 100,
    duration_ms: int = 0,
    warmup_ms: int = 0,
    burst: int = 0,
    interval_us: int = 0,
) -> bytes:
    return LAYOUT.pack(
        magic,
        version,
        pattern,
        tag,
        flow,
        size,
        rate_milli,
        messages,
        duration_ms,
        warmup_ms,
        burst,
        interval_us,
    )


def test_the_request_is_40_bytes() -> None:
    assert REQUEST_SIZE == LAYOUT.size == 40


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (raw(), SendRequest("rate", 0xDEADBEEF, 3, 64, 1000.0, 100, 0.0, 0.0, 0, 0.0)),
        (
            raw(pattern=0, rate_milli=0, messages=0, duration_ms=2500, warmup_ms=500),
            SendRequest("bulk", 0xDEADBEEF, 3, 64, 0.0, 0, 2.5, 0.5, 0, 0.0),
        ),
        (
            raw(pattern=2, rate_milli=0, burst=10, interval_us=50_000),
            SendRequest("burst", 0xDEADBEEF, 3, 64, 0.0, 100, 0.0, 0.0, 10, 0.05),
        ),
        (
            raw(size=1_048_576),
            SendRequest("rate", 0xDEADBEEF, 3, 1_048_576, 1000.0, 100, 0, 0, 0, 0),
        ),
        # Trailing bytes are the stream's, not the request's.
        (raw() + b"extra", SendRequest("rate", 0xDEADBEEF, 3, 64, 1000.0, 100, 0, 0, 0, 0)),
    ],
)
def test_requests_decode_by_the_layout(data: bytes, expected: SendRequest) -> None:
    assert decode(data) == expected
    assert encode(expected) == data[:REQUEST_SIZE]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "request"),
        (raw()[:39], "request"),
        (raw(magic=b"SL"), "magic"),
        (raw(version=2), "version"),
        (raw(pattern=3), "pattern"),
        (raw(size=0), "size"),
        (raw(size=1_048_577), "size"),
        (raw(messages=0, duration_ms=0), "count"),
        (raw(rate_milli=0), "rate"),
        (raw(pattern=2, burst=0, interval_us=1000), "burst"),
        (raw(pattern=2, burst=5, interval_us=0), "burst"),
    ],
)
def test_bad_requests_raise_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(SendRequestError) as caught:
        decode(data)
    assert caught.value.field == field


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(SendRequestError):
        encode(SendRequest("rate", 1, 1, 64, 0.0, 10, 0, 0, 0, 0))
    with pytest.raises(SendRequestError):
        encode(SendRequest("pingpong", 1, 1, 64, 1.0, 10, 0, 0, 0, 0))
    with pytest.raises(SendRequestError):
        encode(SendRequest("rate", 1 << 32, 1, 64, 1.0, 10, 0, 0, 0, 0))


def test_a_request_is_told_from_a_probe_header() -> None:
    assert is_request(raw())
    assert not is_request(b"SL\x01" + bytes(25))
    assert not is_request(b"SR")


@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_the_reader_puts_a_request_together_from_any_chunks(chunk: int) -> None:
    data = raw() + b"then the stream"
    reader = RequestReader()
    got = None
    for start in range(0, REQUEST_SIZE, chunk):
        assert got is None
        got = reader.feed(data[start : start + chunk])
    assert got == decode(data)


def test_the_reader_refuses_a_probe_stream_at_its_second_byte() -> None:
    reader = RequestReader()
    assert reader.feed(b"S") is None
    with pytest.raises(SendRequestError) as caught:
        reader.feed(b"L")
    assert caught.value.field == "magic"


@given(st.binary(max_size=80))
@example(raw())
@example(raw(pattern=2, burst=1, interval_us=1))
def test_any_bytes_decode_or_raise_our_error(data: bytes) -> None:
    try:
        request = decode(data)
    except SendRequestError:
        return
    assert encode(request) == data[:REQUEST_SIZE]


@given(st.binary(max_size=80))
@example(raw())
def test_any_bytes_fed_byte_by_byte_read_as_they_decode_whole(data: bytes) -> None:
    try:
        whole: SendRequest | None = decode(data)
    except SendRequestError:
        whole = None
    reader = RequestReader()
    got: SendRequest | None = None
    try:
        for i in range(min(len(data), REQUEST_SIZE)):
            got = reader.feed(data[i : i + 1])
    except SendRequestError:
        got = None
    assert got == whole
