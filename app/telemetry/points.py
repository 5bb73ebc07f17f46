"""What a telemetry parser produces: points of series and log records, without I/O.

Theory of operation: every collector's parser (``app.wire.influx``, ``app.wire.graphite``,
``app.wire.syslog``; StatsD at each flush) turns what arrived into these immutable values,
and every store, API, Prometheus re-export and page reads only these. A *series* is a name
plus its tags; a point carries one or more fields of that series (InfluxDB line protocol
sends several, Graphite and StatsD one, named ``value``). Times are seconds since the epoch
as sent by the client, or None when the line had none (the store uses the arrival time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# A field's value: InfluxDB line protocol has floats, signed and unsigned integers, strings
# and booleans; Graphite and StatsD send floats.
FieldValue = float | int | str | bool

# Tags as sorted (key, value) pairs: hashable, so (name, tags) is a series key.
Tags = tuple[tuple[str, str], ...]


def tags_of(pairs: dict[str, str] | list[tuple[str, str]]) -> Tags:
    """Tags in the one canonical order (sorted by key, then value)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted(items))


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement: ``name`` and ``tags`` name the series, ``fields`` hold its values.

    ``time`` is the client's timestamp in seconds since the epoch (precision already
    applied), or None when the line carried none.
    """

    name: str
    fields: dict[str, FieldValue]
    tags: Tags = ()
    time: float | None = None


SyslogFormat = Literal["rfc3164", "rfc5424"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One syslog message, RFC 3164 or RFC 5424, as parsed.

    ``facility`` (0-23) and ``severity`` (0-7) come from the PRI; ``host``, ``app``,
    ``procid`` and ``msgid`` are None where the message had none (the RFC 5424 NILVALUE
    ``-`` is None too); ``structured`` maps each SD-ID to its parameters (RFC 5424 only).
    ``time`` is the message's timestamp in seconds since the epoch, or None.
    """

    facility: int
    severity: int
    message: str
    format: SyslogFormat
    host: str | None = None
    app: str | None = None
    procid: str | None = None
    msgid: str | None = None
    time: float | None = None
    structured: dict[str, dict[str, str]] = field(default_factory=dict)


FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
