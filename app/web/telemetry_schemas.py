"""Models of the telemetry routes (:mod:`app.web.telemetry_api`): every collector's document,
the series query and the syslog log query, each defined once for the check, the route and
OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.telemetry.points import FACILITIES, SEVERITIES
from app.web.listener_schemas import StatsdSnapshot
from app.web.query import ASCII_INTEGER
from app.web.schemas import Strict

# The most series or records one answer holds.
MAX_LIMIT = 1000
# Past any sequence number a collector reaches (a day at 100,000 records a second) and
# any Unix time in seconds a query asks about (the year 2286).
MAX_SEQ = 9_999_999_999

JsonValue = bool | int | float | str
# What a query string may look for: printable, so a stray NUL or an empty value is a 422.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def _text(max_length: int, description: str | None = None) -> Any:
    return Field(
        None, min_length=1, max_length=max_length, pattern=_PRINTABLE, description=description
    )


class TelemetryQuery(Strict):
    listener: str | None = Field(None, max_length=64, description="only this listener (its id)")


class LastValue(Strict):
    t: float = Field(description="Unix time of the newest point")
    value: JsonValue


class SeriesRow(Strict):
    """A series without its history."""

    name: str
    field: str = Field(description="StatsD: counter, gauge, set, count, mean, pN, ...")
    tags: dict[str, str]
    received: int = Field(description="points received")
    last: LastValue | None = Field(description="kept when traffic stops")


class LogCounts(Strict):
    """A syslog collector's records: counted exactly, the newest ``max_records`` kept."""

    received: int
    kept: int
    max_records: int
    evicted: int = Field(description="records that left the store for newer ones")
    by_severity: dict[str, int] = Field(description="every severity, emerg to debug")
    by_facility: dict[str, int] = Field(description="facilities seen")


class _CollectorKeys(BaseModel):
    """The keys every collector's document has."""

    listener_id: str
    url: str
    protocol: Literal["tcp", "udp", "tls"]
    mode: str
    series_count: int
    max_series: int
    series_overflow: int = Field(description="points refused: max_series series are held")
    series_strings_cut: int = Field(description="string values kept cut to 1,024 characters")
    series: list[SeriesRow] = Field(description="the first 200 series by name")
    logs: LogCounts | None = Field(description="syslog collectors only")


class StatsdTelemetry(_CollectorKeys):
    """A StatsD collector: its counters, its open interval and its last flush."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["statsd"]
    metrics_received: int
    bad_lines: int
    overflow: int
    set_overflow: int
    keys: int
    max_keys: int
    kernel_drops: int | None = Field(description="datagrams the kernel dropped (UDP)")
    backlog_drops: int = Field(description="datagrams dropped: the parse queue was full")
    events_received: int
    service_checks_received: int
    flushes: int
    flush_interval: float
    last_flush_at: float | None
    forwarded: int = Field(0, description="forward: messages sent on to the upstream")
    forward_failed: int = Field(0, description="forward: messages that could not be sent on")
    forward: str | None = Field(None, description="forward: the upstream, host:port")
    forwarded_bytes: int | None = Field(None, description="forward: bytes sent on")
    current: StatsdSnapshot
    last_flush: StatsdSnapshot | None


class CollectorTelemetry(_CollectorKeys):
    """Another collector (InfluxDB line protocol, Graphite, syslog): the shared keys plus
    its own counters (received, bad_lines, kernel_drops, backlog_drops, overflow, ...)."""

    model_config = ConfigDict(extra="allow")


class TelemetryList(Strict):
    """Every collector (or the one asked for)."""

    items: list[StatsdTelemetry | CollectorTelemetry]


def split_tags(text: str) -> tuple[str, ...]:
    """``k:v,k2:v2`` → (``k:v``, ``k2:v2``). Tags as InfluxDB sends them may hold commas:
    ``\\,`` is a comma inside a tag and ``\\\\`` a backslash; any other backslash is itself
    (``path:C:\\temp`` as typed)."""
    tags: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(following if following in (",", "\\") else char + following)
        elif char == ",":
            tags.append("".join(current))
            current = []
        else:
            current.append(char)
    tags.append("".join(current))
    return tuple(tags)


def _split_tags(value: object) -> object:
    return split_tags(value) if isinstance(value, str) else value


class SeriesQueryArgs(Strict):
    """Which series: every given part must match."""

    listener: str | None = Field(None, max_length=64, description="only this collector")
    name: str | None = _text(512, "exact name")
    field: str | None = _text(256, "exact field")
    tag: tuple[str, ...] = Field(
        (),
        description=(
            "tags the series must have: k:v,k2:v2 (a tag without value: k:; a comma in a"
            " tag: \\, and a backslash: \\\\)"
        ),
    )
    q: str | None = _text(256, "text in the name, a field or a tag")
    since: Annotated[int, Field(ge=0, le=MAX_SEQ), ASCII_INTEGER] | None = Field(
        None, description="only history from this Unix time (whole seconds)"
    )
    history: bool = Field(True, description="false: the series without their points")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), ASCII_INTEGER] = 100

    _split = field_validator("tag", mode="before")(_split_tags)

    @field_validator("tag")
    @classmethod
    def _tags_have_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if ":" not in tag or not tag.partition(":")[0] or not re.match(_PRINTABLE, tag):
                raise ValueError(f"tag {tag!r} is not key:value (printable)")
        return value


class Bucket(Strict):
    t: float = Field(description="Unix time the bucket starts")
    count: int
    mean: float | None = Field(description="null for strings and booleans")
    min: float | None
    max: float | None
    last: JsonValue


class SeriesDoc(SeriesRow):
    """A series and its history: buckets (older) then raw points (newer), oldest first."""

    listener_id: str
    buckets: list[Bucket] | None = Field(None, description="absent with history=false")
    points: list[tuple[float, JsonValue]] | None = Field(None, description="[t, value]")


class SeriesList(Strict):
    """The series picked, sorted by name, field and tags (per collector)."""

    items: list[SeriesDoc]
    total: int = Field(description="series picked in all, before the limit")
    resolution: dict[str, float] = Field(description="bucket seconds per collector")


def _level(names: tuple[str, ...], what: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            if value.isascii() and value.isdigit() and len(value) < 4:
                return int(value)
            if value in names:
                return names.index(value)
            raise ValueError(f"{what} must be a number or one of {', '.join(names)}")
        return value

    return parse


class LogQueryArgs(Strict):
    """Which records: every given part must match."""

    listener: str | None = Field(None, max_length=64, description="only this collector")
    facility: int | None = Field(None, ge=0, le=23, description="a number or a name: local0")
    severity: int | None = Field(
        None, ge=0, le=7, description="this severity or worse: a number or a name (warning)"
    )
    host: str | None = _text(255)
    app: str | None = _text(255)
    q: str | None = _text(256, "text in the message")
    after: Annotated[int, Field(ge=0, le=MAX_SEQ), ASCII_INTEGER] = Field(
        0, description="only records with a greater seq (one collector's live view)"
    )
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), ASCII_INTEGER] = 200

    _facility = field_validator("facility", mode="before")(_level(FACILITIES, "facility"))
    _severity = field_validator("severity", mode="before")(_level(SEVERITIES, "severity"))


class LogEntry(Strict):
    """One syslog record as parsed."""

    listener_id: str
    seq: int = Field(description="per collector: 1, 2, ...")
    received_at: float
    facility: int
    facility_name: str
    severity: int
    severity_name: str
    format: Literal["rfc3164", "rfc5424"]
    host: str | None
    app: str | None
    procid: str | None
    msgid: str | None
    time: float | None = Field(description="the message's own timestamp")
    message: str
    structured: dict[str, dict[str, str]] = Field(description="RFC 5424 SD-ID: params")


class LogList(Strict):
    """The newest records picked (newest first) and every collector's exact counts."""

    items: list[LogEntry]
    counts: dict[str, LogCounts] = Field(description="per collector id")
