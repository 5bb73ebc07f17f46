"""StatsD and DogStatsD line protocol: parsing one line or one packet, without I/O.

Theory of operation: a datagram (or a chunk of a TCP stream cut at a newline) holds one
metric per line, ``name:value|type[|@rate][|#tag,tag:v][|c:container][|T1700000000]``.
:func:`parse_line` turns one line into a :class:`Metric` or raises :class:`StatsdError`;
:func:`parse_packet` splits on newlines and never raises, it returns the metrics and a count
of the lines it could not read, because one bad line must not cost the good ones next to it.

Events and service checks (``_e{…}``, ``_sc|…``) are parsed by :mod:`app.wire.dogstatsd`;
:func:`parse_packet` skips them without counting them as bad.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from app.errors import LineError
from app.wire.dogstatsd import (
    DogstatsdError,
    Event,
    ServiceCheck,
    is_dogstatsd_line,
    parse_event,
    parse_service_check,
)

__all__ = [
    "METRIC_TYPES",
    "TIMER_TYPES",
    "Metric",
    "MetricType",
    "StatsdError",
    "metric_key",
    "parse_dogstatsd",
    "parse_line",
    "parse_packet",
    "sanitize_name",
]

MetricType = Literal["c", "g", "ms", "h", "d", "s"]
METRIC_TYPES: tuple[MetricType, ...] = ("c", "g", "ms", "h", "d", "s")
_TYPES: dict[str, MetricType] = {kind: kind for kind in METRIC_TYPES}

# DogStatsD packs several values into one line only for these types (protocol v1.1).
_PACKABLE = frozenset({"c", "ms", "h", "d"})
TIMER_TYPES = frozenset({"ms", "h", "d"})

# Python's float() also takes "nan", "inf", "1_0" and surrounding spaces; the wire does not.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# etsy's StatsD sanitizes bucket names: whitespace runs to "_", "/" to "-", then drops
# anything but letters, digits, "_", "-" and ".".
_CLEAN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_SPACES = re.compile(r"\s+")
_ODD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class StatsdError(LineError):
    """A line that is not a StatsD metric."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One parsed metric line.

    Attributes:
        name: Metric name, as sent.
        value: The (first) value: a float, or the member string of a set.
        type: One of ``c g ms h d s``.
        rate: Sample rate in (0, 1]; a counter adds ``value / rate``.
        tags: DogStatsD tags in the order sent.
        delta: True for a gauge whose value had a sign: it changes the gauge, not sets it.
        packed: Further values of a DogStatsD packed line (``name:1:2:3|h`` has value 1.0
            and packed ``(2.0, 3.0)``).
    """

    name: str
    value: float | str
    type: MetricType
    rate: float = 1.0
    tags: tuple[str, ...] = ()
    delta: bool = False
    packed: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        """The aggregation key: the sanitized name plus the sorted tags."""
        return metric_key(sanitize_name(self.name), self.tags)


def sanitize_name(name: str) -> str:
    """A bucket name as etsy's StatsD keeps it: ``a/b`` -> ``a-b``, ``a b`` -> ``a_b``,
    every character but letters, digits, ``_``, ``-`` and ``.`` dropped (``é``, ``,``, ``=``).
    """
    if _CLEAN_NAME.fullmatch(name):  # the common case costs one match
        return name
    return _ODD_CHARS.sub("", _SPACES.sub("_", name).replace("/", "-"))


def metric_key(name: str, tags: Iterable[str] = ()) -> str:
    """Build the aggregation key of a metric: ``name`` or ``name|#tag_a,tag_b`` (tags sorted).

    Tags are sorted and deduplicated, so the order a client sends them in does not matter.
    """
    unique = sorted(set(tags))
    return f"{name}|#{','.join(unique)}" if unique else name


def _number(text: str, line: bytes, what: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise StatsdError(f"{what} {text!r} is not a number", line)
    number = float(text)
    if not math.isfinite(number):
        raise StatsdError(f"{what} {text!r} is out of range", line)
    return number


def parse_line(line: bytes) -> Metric:
    """Parse one metric line (a trailing ``\\r\\n`` or ``\\n`` is ignored).

    Unknown ``|x...`` sections (DogStatsD container ids ``|c:...``, timestamps ``|T...``,
    external data ``|e:...``) are accepted and ignored. The name is kept as sent (spaces
    and ``/`` included); the aggregation key sanitizes it (:func:`sanitize_name`), and the
    aggregator counts a name with no character StatsD keeps as a bad line.

    Args:
        line: One line of a StatsD packet.

    Returns:
        The metric.

    Raises:
        StatsdError: The line is not UTF-8, or a part of it is missing or malformed; the
            message says which.
    """
    try:
        text = line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError:
        raise StatsdError("line is not UTF-8", line) from None
    name, colon, rest = text.partition(":")
    if not colon:
        raise StatsdError("no ':' between name and value", line)
    if not name:
        raise StatsdError("empty metric name", line)
    sections = rest.split("|")
    if len(sections) < 2:
        raise StatsdError("no '|type' after the value", line)
    raw_value, kind = sections[0], sections[1]
    metric_type = _TYPES.get(kind)
    if metric_type is None:
        raise StatsdError(f"unknown metric type {kind!r}", line)

    rate = 1.0
    seen_rate = False
    tags: tuple[str, ...] = ()
    seen_tags = False
    for section in sections[2:]:
        if section.startswith("@"):
            if seen_rate:
                raise StatsdError("sample rate given twice", line)
            seen_rate = True
            rate = _number(section[1:], line, "sample rate")
            if not 0.0 < rate <= 1.0:
                raise StatsdError(f"sample rate {section[1:]} is not in (0, 1]", line)
        elif section.startswith("#"):
            if seen_tags:
                raise StatsdError("tags given twice", line)
            seen_tags = True
            tags = tuple(tag for tag in section[1:].split(",") if tag)
        # Anything else is an extension we do not use (container id, timestamp, ...).

    if metric_type == "s":
        if not raw_value:
            raise StatsdError("empty set member", line)
        # A set member is any string, colons included: "users:a:b|s" counts "a:b".
        return Metric(name, raw_value, metric_type, rate, tags)

    parts = raw_value.split(":")
    if len(parts) > 1 and metric_type not in _PACKABLE:
        raise StatsdError(f"packed values are not allowed for type {metric_type!r}", line)
    values = [_number(part, line, "value") for part in parts]
    delta = metric_type == "g" and raw_value[:1] in ("+", "-")
    return Metric(name, values[0], metric_type, rate, tags, delta, tuple(values[1:]))


def parse_packet(data: bytes) -> tuple[list[Metric], int]:
    """Parse every metric line of a datagram or stream chunk.

    Empty lines are skipped, and so are DogStatsD events and service checks (they are not
    metrics; :meth:`Aggregator.feed` keeps them); a line that does not parse is counted,
    never raised.

    Args:
        data: Newline-separated metric lines.

    Returns:
        The metrics in order, and the number of bad lines.
    """
    metrics: list[Metric] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.rstrip(b"\r"):
            continue
        if is_dogstatsd_line(line):
            try:
                parse_dogstatsd(line)
            except DogstatsdError:
                bad += 1
            continue
        try:
            metrics.append(parse_line(line))
        except StatsdError:
            bad += 1
    return metrics, bad


def parse_dogstatsd(line: bytes) -> Event | ServiceCheck:
    """Parse an event or service check line (see :func:`~app.wire.dogstatsd.is_dogstatsd_line`).

    Raises:
        DogstatsdError: It is not well formed.
    """
    return parse_event(line) if line.startswith(b"_e{") else parse_service_check(line)
