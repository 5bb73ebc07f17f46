"""TCP framings (app/wire/syslog_framing.py, app/wire/lines.py): RFC 6587 octet counting and
trailer framing told apart per connection, bounded; fed whole, byte by byte or in any
chunks they cut the same messages, and the raw bytes they return are the stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import LineError
from app.wire.lines import LineFramer
from app.wire.rules import FrameTooLongError
from app.wire.syslog_framing import SyslogFramer, SyslogFramingError


def _feed_all(framer: SyslogFramer | LineFramer, chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    messages: list[bytes] = []
    raw = b""
    for chunk in chunks:
        got, used = framer.feed(chunk)
        messages += got
        raw += used
    got, used = framer.close()
    return messages + got, raw + used


def _cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    return [*chunks, data[start:]]


def _counted(messages: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


def test_octet_counting_is_detected_and_cut() -> None:
    framer = SyslogFramer(1024)
    stream = _counted([b"<13>1 - - - - - - a b", b"<14>x\ny", b"<15>"])
    assert framer.feed(stream) == ([b"<13>1 - - - - - - a b", b"<14>x\ny", b"<15>"], stream)
    assert framer.framing == "octet-counting"


def test_trailer_framing_takes_newline_and_nul() -> None:
    framer = SyslogFramer(1024)
    messages, raw = framer.feed(b"<13>one\n<14>two\x00<15>three\r\n<16>tail")
    assert messages == [b"<13>one", b"<14>two", b"<15>three"]
    assert raw == b"<13>one\n<14>two\x00<15>three\r\n"
    assert framer.framing == "non-transparent"
    assert framer.close() == ([b"<16>tail"], b"<16>tail")


def test_a_message_longer_than_the_bound_raises_with_the_ones_before() -> None:
    framer = SyslogFramer(10)
    with pytest.raises(FrameTooLongError) as long:
        framer.feed(b"5 <13>a11 <13>abcdefg")
    assert long.value.lines == [b"<13>a"]
    trailed = SyslogFramer(10)
    with pytest.raises(FrameTooLongError):
        trailed.feed(b"<13>" + b"x" * 20)


def test_an_octet_count_that_is_not_a_number_raises_with_the_ones_before() -> None:
    framer = SyslogFramer(100)
    with pytest.raises(SyslogFramingError) as bad:
        framer.feed(b"5 <13>a05 <13>b")
    assert bad.value.messages == [b"<13>a"]
    with pytest.raises(SyslogFramingError):
        SyslogFramer(100).feed(b"12x <13>b")
    with pytest.raises(SyslogFramingError):
        SyslogFramer(100).feed(b"1234567890123 <13>b")


_messages = st.lists(st.binary(min_size=1, max_size=40), max_size=8)
_sizes = st.lists(st.integers(0, 30), max_size=20)


@given(_messages, _sizes)
def test_octet_counted_streams_cut_the_same_in_any_chunks(
    messages: list[bytes], sizes: list[int]
) -> None:
    stream = _counted(messages)
    assert _feed_all(SyslogFramer(64), _cuts(stream, sizes)) == (messages, stream)
    assert _feed_all(SyslogFramer(64), [bytes([b]) for b in stream]) == (messages, stream)


_lines = st.lists(
    st.binary(min_size=1, max_size=40).filter(lambda m: b"\n" not in m and b"\x00" not in m),
    max_size=8,
)


@given(_lines, _sizes)
def test_trailer_framed_streams_cut_the_same_in_any_chunks(
    lines: list[bytes], sizes: list[int]
) -> None:
    stream = b"".join(b"<1>" + line + b"\n" for line in lines)
    expected = [(b"<1>" + line).rstrip(b"\r") for line in lines]
    expected = [m for m in expected if m]
    assert _feed_all(SyslogFramer(64), _cuts(stream, sizes)) == (expected, stream)


@given(st.lists(st.binary(max_size=30), max_size=10), _sizes)
def test_any_stream_frames_or_raises_a_line_error(chunks: list[bytes], sizes: list[int]) -> None:
    framer = SyslogFramer(50)
    try:
        for chunk in _cuts(b"".join(chunks), sizes):
            framer.feed(chunk)
        framer.close()
    except (LineError, FrameTooLongError):
        pass


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=8), _sizes)
def test_line_framing_cuts_the_same_in_any_chunks(lines: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    assert _feed_all(LineFramer(64), _cuts(stream, sizes)) == (lines, stream)


def test_line_framing_keeps_an_unterminated_last_line_and_bounds_it() -> None:
    framer = LineFramer(8)
    assert framer.feed(b"a=1\nb=2") == ([b"a=1"], b"a=1\n")
    assert framer.close() == ([b"b=2"], b"b=2")
    with pytest.raises(FrameTooLongError) as long:
        framer.feed(b"ok\n" + b"x" * 9)
    assert long.value.lines == [b"ok"]
