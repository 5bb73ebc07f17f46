"""Syslog messages, RFC 5424 and RFC 3164, into a :class:`~app.telemetry.points.LogRecord`.

Theory of operation: :func:`parse_message` takes one message (a UDP datagram, or a frame
cut from a TCP stream by :mod:`app.wire.syslog_framing`) and returns one record or raises
:class:`SyslogError`; it never raises anything else. Both formats start with ``<PRI>``
(facility * 8 + severity, 0 to 191). After it, ``1 `` (the version) means RFC 5424:

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]

each header field ``-`` when absent (None in the record), structured data ``-`` or one or
more ``[SD-ID name="value" ...]`` whose values escape ``"``, ``\\`` and ``]`` with a
backslash (a backslash before anything else is itself), and MSG UTF-8 (a leading BOM is
dropped). Anything else after the PRI is read as RFC 3164, which is a convention more than a
grammar; this follows what rsyslog does:

    <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG

The timestamp (day padded with a space or a zero; an RFC 3339 timestamp is accepted too)
has no year and no zone: it is read as local time in the year of ``received_at``, or the
year before when that would put it more than a day ahead. Without a timestamp there is no
host either (Python's ``SysLogHandler`` sends ``<PRI>TAG: MSG`` or just ``<PRI>MSG``), and a
leading ``TAG:`` or ``TAG[PID]:`` still gives the app. A trailing NUL or newline (what
many senders append) is not part of the message.

:func:`format_rfc5424` writes a record back, so a valid RFC 5424 document round-trips.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from app.errors import LineError
from app.telemetry.points import LogRecord

__all__ = ["SyslogError", "format_rfc5424", "parse_message"]

_PRI = re.compile(rb"<(\d{1,3})>")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)
_BSD_TIME = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ 0-3]?\d) (\d\d):(\d\d):(\d\d)"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# TAG[PID]: as rsyslog reads it; the tag is at most 32 characters by RFC 3164, 48 in
# practice (RFC 5424's APP-NAME).
_TAG = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\]\s]{1,128})\])?: ?")
_SD_NAME = re.compile(r"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except = ] " and space
_BOM = "\ufeff"
# The longest each RFC 5424 header field may be (RFC 5424 section 6).
_HEADER_LIMITS = (("hostname", 255), ("app-name", 48), ("procid", 128), ("msgid", 32))
_SECONDS_PER_DAY = 86_400


class SyslogError(LineError):
    """A message that is not syslog."""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _pri(data: bytes) -> tuple[int, int, int]:
    match = _PRI.match(data)
    if match is None:
        raise SyslogError("no <PRI> at the start", data)
    value = int(match.group(1))
    if value > 191 or (len(match.group(1)) > 1 and match.group(1)[0:1] == b"0"):
        raise SyslogError(f"PRI {match.group(1).decode()} is not 0-191", data)
    return value >> 3, value & 7, match.end()


def parse_message(data: bytes, received_at: float | None = None) -> LogRecord:
    """Parse one syslog message.

    Args:
        data: The message, without any TCP framing.
        received_at: When it arrived (Unix time): the year of an RFC 3164 timestamp.

    Raises:
        SyslogError: No valid PRI, or an RFC 5424 header or structured data that does not
            parse; the message says which.
    """
    data = data.rstrip(b"\x00\n\r")
    facility, severity, start = _pri(data)
    if data[start : start + 2] == b"1 ":
        return _rfc5424(data, start + 2, facility, severity)
    return _rfc3164(data, start, facility, severity, received_at)


# RFC 5424


def _rfc5424(data: bytes, pos: int, facility: int, severity: int) -> LogRecord:
    # Five space-separated header fields (timestamp to msgid), then structured data and
    # the message: one split, one decode of the header (the common path of a flood).
    parts = data[pos:].split(b" ", 5)
    if len(parts) < 6:
        raise SyslogError("RFC 5424 header has fewer than six fields after the version", data)
    header = data[pos : len(data) - len(parts[5]) - 1]
    try:
        stamp_text, *fields = header.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise SyslogError("RFC 5424 header fields are printable ASCII", data) from None
    names = [None if value == "-" else value for value in fields]
    for value, (what, limit) in zip(names, _HEADER_LIMITS, strict=True):
        if value is not None and (len(value) > limit or not value.isprintable()):
            raise SyslogError(f"{what} is longer than {limit} or not printable", data)
    stamp = None if stamp_text == "-" else _rfc3339(stamp_text, data)
    rest = _decode(parts[5])
    structured, after = _structured(rest, data)
    if after and not after.startswith(" "):
        raise SyslogError("no space between the structured data and the message", data)
    message = after[1:]
    if message.startswith(_BOM):
        message = message[1:]
    return LogRecord(
        facility,
        severity,
        message,
        "rfc5424",
        host=names[0],
        app=names[1],
        procid=names[2],
        msgid=names[3],
        time=stamp,
        structured=structured,
    )


def _rfc3339(text: str, data: bytes) -> float:
    if not _RFC3339.fullmatch(text):
        raise SyslogError(f"timestamp {text[:40]!r} is not RFC 3339", data)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SyslogError(f"timestamp {text[:40]!r} is not a date", data) from None


def _structured(text: str, data: bytes) -> tuple[dict[str, dict[str, str]], str]:
    """The structured data at the start of ``text`` and what follows it."""
    if text.startswith("-"):
        return {}, text[1:]
    if not text.startswith("["):
        raise SyslogError("structured data is '-' or starts with '['", data)
    elements: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        match = _SD_NAME.match(text, pos + 1)
        if match is None:
            raise SyslogError("structured data element without an SD-ID", data)
        sd_id = match.group()
        if sd_id in elements:
            raise SyslogError(f"SD-ID {sd_id!r} given twice", data)
        params, pos = _params(text, match.end(), data)
        elements[sd_id] = params
    return elements, text[pos:]


def _params(text: str, pos: int, data: bytes) -> tuple[dict[str, str], int]:
    """The parameters of one element from ``pos``; returns them and the position after
    its closing ``]``."""
    params: dict[str, str] = {}
    end = len(text)
    while True:
        if pos >= end:
            raise SyslogError("structured data element is not closed with ']'", data)
        if text[pos] == "]":
            return params, pos + 1
        if text[pos] != " ":
            raise SyslogError("expected ' name=\"value\"' or ']' in structured data", data)
        match = _SD_NAME.match(text, pos + 1)
        if match is None or text[match.end() : match.end() + 2] != '="':
            raise SyslogError('structured data parameter is not name="value"', data)
        pos = match.end() + 2
        out: list[str] = []
        while True:
            if pos >= end:
                raise SyslogError("structured data value has no closing quote", data)
            char = text[pos]
            if char == "\\" and pos + 1 < end and text[pos + 1] in '"\\]':
                out.append(text[pos + 1])
                pos += 2
                continue
            if char == '"':
                pos += 1
                break
            out.append(char)
            pos += 1
        # A parameter may repeat (RFC 5424 6.3.3); the last value is kept.
        params[match.group()] = "".join(out)


# RFC 3164


def _bsd_time(match: re.Match[str], received_at: float | None) -> float | None:
    now = time.time() if received_at is None else received_at
    year = time.localtime(now).tm_year
    month = _MONTHS.index(match.group(1)) + 1
    day, hour, minute, second = (int(match.group(i)) for i in range(2, 6))
    for candidate in (year, year - 1):
        try:
            stamp = time.mktime((candidate, month, day, hour, minute, second, 0, 0, -1))
        except (OverflowError, ValueError):
            return None
        if stamp <= now + _SECONDS_PER_DAY:
            return stamp
    return None


def _rfc3164(
    data: bytes, pos: int, facility: int, severity: int, received_at: float | None
) -> LogRecord:
    text = _decode(data[pos:])
    host: str | None = None
    stamp: float | None = None
    bsd = _BSD_TIME.match(text)
    iso = None if bsd else _RFC3339.match(text.partition(" ")[0])
    if bsd or iso:
        if bsd:
            stamp = _bsd_time(bsd, received_at) if 1 <= int(bsd.group(2)) <= 31 else None
            text = text[bsd.end() :]
        else:
            assert iso is not None
            stamp = _rfc3339(iso.group(), data)
            text = text[iso.end() :]
        text = text[1:] if text.startswith(" ") else text
        word, space, after = text.partition(" ")
        # After the timestamp comes the host, unless the sender left it out and the next
        # word is already the tag ("app:" or "app[42]:").
        if space and word and not _TAG.fullmatch(word + " "):
            host, text = word, after
    app = procid = None
    tag = _TAG.match(text)
    if tag is not None:
        app, procid = tag.group(1), tag.group(2)
        text = text[tag.end() :]
    return LogRecord(
        facility, severity, text, "rfc3164", host=host, app=app, procid=procid, time=stamp
    )


# Writing


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(record: LogRecord) -> bytes:
    """Write ``record`` as an RFC 5424 message (no framing, no trailer).

    The timestamp is written in UTC with microseconds.
    """
    if record.time is None:
        stamp = "-"
    else:
        stamp = datetime.fromtimestamp(record.time, tz=UTC).isoformat().replace("+00:00", "Z")
    header = [
        value if value is not None else "-"
        for value in (record.host, record.app, record.procid, record.msgid)
    ]
    if record.structured:
        sd = "".join(
            f"[{sd_id}" + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
            for sd_id, params in record.structured.items()
        )
    else:
        sd = "-"
    pri = record.facility * 8 + record.severity
    line = f"<{pri}>1 {stamp} {' '.join(header)} {sd}"
    if record.message:
        line += " " + record.message
    return line.encode("utf-8")
