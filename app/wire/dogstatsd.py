"""DogStatsD events (``_e{…}``) and service checks (``_sc|…``): parsing, without I/O.

Theory of operation: a DogStatsD client sends these on the same socket as metrics, one per
line::

    _e{<title bytes>,<text bytes>}:<title>|<text>|d:<ts>|h:<host>|k:<key>|p:<priority>
        |s:<source>|t:<alert type>|#<tag>,<tag>
    _sc|<name>|<status 0-3>|d:<ts>|h:<host>|#<tag>,<tag>|m:<message>

The lengths in an event's header are UTF-8 byte counts, so the title and text may hold
``|``. Newlines in a title, text or message travel escaped as ``\\n`` (and ``m:`` in a
message as ``m\\:``); both are unescaped here. Unknown ``|x:`` sections (container id,
cardinality) are ignored, as for metrics. A line that is not well formed raises
:class:`DogstatsdError`, which the caller counts as a bad line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.errors import LineError

__all__ = [
    "SERVICE_CHECK_STATUSES",
    "DogstatsdError",
    "Event",
    "ServiceCheck",
    "is_dogstatsd_line",
    "parse_event",
    "parse_service_check",
]

SERVICE_CHECK_STATUSES = ("ok", "warning", "critical", "unknown")
_HEADER = re.compile(rb"_e\{(\d{1,6}),(\d{1,6})\}:")


class DogstatsdError(LineError):
    """A line that starts as an event or service check but is not one."""


@dataclass(frozen=True, slots=True)
class Event:
    """One DogStatsD event; optional fields are None when not sent."""

    title: str
    text: str
    timestamp: int | None = None
    hostname: str | None = None
    aggregation_key: str | None = None
    priority: str | None = None
    source_type: str | None = None
    alert_type: str | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "text": self.text,
            "timestamp": self.timestamp,
            "hostname": self.hostname,
            "aggregation_key": self.aggregation_key,
            "priority": self.priority,
            "source_type": self.source_type,
            "alert_type": self.alert_type,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    """One DogStatsD service check run; ``status`` is 0 (ok) to 3 (unknown)."""

    name: str
    status: int
    timestamp: int | None = None
    hostname: str | None = None
    message: str | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "status_name": SERVICE_CHECK_STATUSES[self.status],
            "timestamp": self.timestamp,
            "hostname": self.hostname,
            "message": self.message,
            "tags": list(self.tags),
        }


def is_dogstatsd_line(line: bytes) -> bool:
    """True for a line that is an event or a service check rather than a metric."""
    return line.startswith((b"_e{", b"_sc|"))


def _text(raw: bytes, line: bytes) -> str:
    try:
        return raw.decode("utf-8").replace("\\n", "\n")
    except UnicodeDecodeError:
        raise DogstatsdError("line is not UTF-8", line) from None


def _timestamp(value: str, line: bytes) -> int:
    if not value.isascii() or not value.isdigit():
        raise DogstatsdError(f"timestamp {value!r} is not a whole number", line)
    return int(value)


def _tags(value: str) -> tuple[str, ...]:
    return tuple(tag for tag in value.split(",") if tag)


def parse_event(line: bytes) -> Event:
    """Parse ``_e{title_len,text_len}:title|text|...`` (a trailing newline is ignored).

    Raises:
        DogstatsdError: Bad header, lengths that do not fit the line, a bad field.
    """
    line = line.rstrip(b"\r\n")
    header = _HEADER.match(line)
    if header is None:
        raise DogstatsdError("an event starts with _e{<title length>,<text length>}:", line)
    title_len, text_len = int(header[1]), int(header[2])
    start = header.end()
    title_end = start + title_len
    text_start = title_end + 1
    text_end = text_start + text_len
    if title_len == 0:
        raise DogstatsdError("empty event title", line)
    if text_end > len(line) or line[title_end : title_end + 1] != b"|":
        raise DogstatsdError("event title and text lengths do not match the line", line)
    if text_end < len(line) and line[text_end : text_end + 1] != b"|":
        raise DogstatsdError("event text is longer than its length says", line)
    fields: dict[str, Any] = {}
    tags: tuple[str, ...] = ()
    for section in _text(line[text_end + 1 :], line).split("|") if text_end < len(line) else ():
        kind, _, value = section.partition(":")
        if section.startswith("#"):
            tags = _tags(section[1:])
        elif kind == "d":
            fields["timestamp"] = _timestamp(value, line)
        elif kind in ("h", "k", "p", "s", "t"):
            name = {
                "h": "hostname",
                "k": "aggregation_key",
                "p": "priority",
                "s": "source_type",
                "t": "alert_type",
            }
            fields[name[kind]] = value
    title = _text(line[start:title_end], line)
    text = _text(line[text_start:text_end], line)
    return Event(title, text, tags=tags, **fields)


def parse_service_check(line: bytes) -> ServiceCheck:
    """Parse ``_sc|name|status|...`` (a trailing newline is ignored).

    Raises:
        DogstatsdError: No name, a status that is not 0-3, a bad field.
    """
    line = line.rstrip(b"\r\n")
    sections = _text(line, line).split("|")
    if len(sections) < 3 or sections[0] != "_sc" or not sections[1]:
        raise DogstatsdError("a service check is _sc|<name>|<status>", line)
    name, status = sections[1], sections[2]
    if status not in ("0", "1", "2", "3"):
        raise DogstatsdError(f"service check status {status!r} is not 0, 1, 2 or 3", line)
    fields: dict[str, Any] = {}
    tags: tuple[str, ...] = ()
    for section in sections[3:]:
        kind, _, value = section.partition(":")
        if section.startswith("#"):
            tags = _tags(section[1:])
        elif kind == "d":
            fields["timestamp"] = _timestamp(value, line)
        elif kind == "h":
            fields["hostname"] = value
        elif kind == "m":
            fields["message"] = value.replace("m\\:", "m:")
    return ServiceCheck(name, int(status), tags=tags, **fields)
