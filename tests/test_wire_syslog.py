"""Syslog parser (app/wire/syslog.py): the RFC 5424 and RFC 3164 examples, structured data
escapes, and Hypothesis: any bytes parse or raise SyslogError, a valid RFC 5424 record
round-trips, and the collector counts every message as received or bad."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.listeners.modes import create_listener
from app.listeners.modes.collector import CollectorMode
from app.listeners.parse import parse_listener
from app.telemetry.points import LogRecord
from app.wire.syslog import SyslogError, format_rfc5424, parse_message


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def test_rfc5424_examples_parse() -> None:
    # RFC 5424 section 6.5, examples 1 and 3.
    first = parse_message(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8"
    )
    assert first == LogRecord(
        facility=4,
        severity=2,
        message="'su root' failed for lonvick on /dev/pts/8",
        format="rfc5424",
        host="mymachine.example.com",
        app="su",
        msgid="ID47",
        time=_utc("2003-10-11T22:14:15.003+00:00"),
    )
    third = parse_message(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"\xef\xbb\xbfAn application event log entry..."
    )
    assert (third.facility, third.severity, third.app) == (20, 5, "evntslog")
    assert third.structured == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
    }
    assert third.message == "An application event log entry..."


def test_rfc5424_structured_data_escapes_and_several_elements() -> None:
    record = parse_message(
        b"<13>1 2003-08-24T05:14:15.000003-07:00 host app 8710 - "
        b'[a@1 q="say \\"hi\\"" b="back\\\\slash" c="close\\]" d="other\\x"][b@2 k="v"]'
    )
    assert record.structured == {
        "a@1": {"q": 'say "hi"', "b": "back\\slash", "c": "close]", "d": "other\\x"},
        "b@2": {"k": "v"},
    }
    assert record.message == "" and record.procid == "8710"
    assert record.time == _utc("2003-08-24T05:14:15.000003-07:00")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"no pri",
        b"<192>1 - - - - - -",
        b"<01>1 - - - - - -",
        b"<13>1 - - - -",
        b"<13>1 yesterday - - - - -",
        b"<13>1 2003-13-45T99:00:00Z - - - - -",
        b"<13>1 - - - - - x",
        b"<13>1 - - - - - [",
        b"<13>1 - - - - - [id",
        b'<13>1 - - - - - [id k="v"',
        b"<13>1 - - - - - [id k=v]",
        b'<13>1 - - - - - [id k="v]',
        b'<13>1 - - - - - [id k="v"][id k="w"]',
        b'<13>1 - - - - - [id k="v"]msg',
        b"<13>1 - " + b"h" * 256 + b" - - - -",
        b"<13>1 - - - - \xff -",
    ],
)
def test_malformed_rfc5424_raises_syslog_error(message: bytes) -> None:
    with pytest.raises(SyslogError):
        parse_message(message)


def test_rfc3164_examples_parse() -> None:
    # RFC 3164 section 5.4; the timestamp has no year: the year it arrived.
    received = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
    record = parse_message(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        received,
    )
    assert (record.facility, record.severity) == (4, 2)
    assert (record.host, record.app, record.procid) == ("mymachine", "su", None)
    assert record.message == "'su root' failed for lonvick on /dev/pts/8"
    assert record.time == time.mktime((2026, 10, 11, 22, 14, 15, 0, 0, -1))
    assert record.format == "rfc3164"
    daemon = parse_message(b"<13>Feb  5 17:32:18 10.0.0.99 sshd[1234]: Accepted key\n\x00")
    assert (daemon.host, daemon.app, daemon.procid) == ("10.0.0.99", "sshd", "1234")
    assert daemon.message == "Accepted key"


def test_rfc3164_year_is_the_one_before_when_the_date_would_be_ahead() -> None:
    received = time.mktime((2027, 1, 1, 0, 5, 0, 0, 0, -1))
    record = parse_message(b"<13>Dec 31 23:59:00 h app: x", received)
    assert record.time == time.mktime((2026, 12, 31, 23, 59, 0, 0, 0, -1))


@pytest.mark.parametrize(
    ("message", "host", "app", "text"),
    [
        (b"<14>hello world", None, None, "hello world"),
        (b"<14>myapp: hello", None, "myapp", "hello"),
        (b"<14>myapp[7]: hello", None, "myapp", "hello"),
        (b"<14>Oct  1 01:02:03 app[9]: no host", None, "app", "no host"),
        (b"<14>2026-01-02T03:04:05Z host app: iso", "host", "app", "iso"),
        (b"<14>", None, None, ""),
    ],
)
def test_rfc3164_without_every_part(
    message: bytes, host: str | None, app: str | None, text: str
) -> None:
    record = parse_message(message)
    assert (record.host, record.app, record.message) == (host, app, text)


@given(st.binary(max_size=300), st.none() | st.floats(0, 4e9))
def test_any_bytes_parse_or_raise_syslog_error(data: bytes, received: float | None) -> None:
    try:
        parse_message(data, received)
    except SyslogError:
        pass


@given(st.binary(max_size=200))
def test_any_bytes_after_a_pri_parse_or_raise_syslog_error(data: bytes) -> None:
    for head in (b"<13>", b"<13>1 ", b"<13>1 - - - - - ", b"<13>Oct 11 22:14:15 "):
        try:
            parse_message(head + data)
        except SyslogError:
            pass


_ascii = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
_sd_names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='=]" '),
    min_size=1,
    max_size=12,
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Co")), max_size=30)


@st.composite
def _records(draw: st.DrawFn) -> LogRecord:
    header = [draw(st.none() | _ascii.filter(lambda v: v != "-")) for _ in range(4)]
    message = draw(_text.filter(lambda m: not m.startswith("\ufeff")))
    return LogRecord(
        facility=draw(st.integers(0, 23)),
        severity=draw(st.integers(0, 7)),
        message=message.rstrip("\x00\n\r"),
        format="rfc5424",
        host=header[0],
        app=header[1],
        procid=header[2],
        msgid=header[3][:32] if header[3] else None,
        time=draw(st.none() | st.integers(0, 4_000_000_000).map(float)),
        structured=draw(
            st.dictionaries(_sd_names, st.dictionaries(_sd_names, _text, max_size=3), max_size=3)
        ),
    )


@given(_records())
def test_a_valid_rfc5424_record_round_trips(record: LogRecord) -> None:
    assert parse_message(format_rfc5424(record)) == record


@given(st.lists(st.binary(max_size=80), max_size=10))
def test_the_collector_counts_every_message_received_or_bad(messages: list[bytes]) -> None:
    listener = create_listener("l1", parse_listener("udp://127.0.0.1:0?mode=syslog"))
    mode = listener.mode
    assert isinstance(mode, CollectorMode)
    mode.consume(messages)
    counted = [m for m in messages if m.strip(b"\x00\r\n\t ")]
    assert mode.received + mode.bad_lines == len(counted)
    assert sum(mode.counters()["by_severity"].values()) == mode.received
    assert len(mode.bad_samples) == min(mode.bad_lines, 10)
