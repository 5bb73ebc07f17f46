"""StatsD and DogStatsD line protocol: parsing and per-interval aggregation, without I/O.

Theory of operation: a datagram (or a chunk of a TCP stream cut at a newline) holds one
metric per line, ``name:value|type[|@rate][|#tag,tag:v][|c:container][|T1700000000]``.
:func:`parse_line` turns one line into a :class:`Metric` or raises :class:`StatsdError`;
:func:`parse_packet` splits on newlines and never raises, it returns the metrics and a count
of the lines it could not read, because one bad line must not cost the good ones next to it.

:class:`Aggregator` has two states per interval: *collecting* (``add`` folds metrics into
counters, gauges, timers and sets keyed by name plus sorted tags) and, at each ``flush(now)``,
*reporting*: it returns a JSON-ready snapshot, keeps it as ``last_flush`` and starts a new
interval. As in StatsD, counters, timers and sets start each interval empty; gauges keep
their value until changed. Every structure is bounded (keys, samples per timer, values per
set) so a flood of distinct names costs a counter, not memory.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from app.errors import ProtocolError

__all__ = [
    "METRIC_TYPES",
    "Aggregator",
    "CounterSnapshot",
    "Metric",
    "MetricType",
    "Snapshot",
    "StatsdError",
    "metric_key",
    "parse_line",
    "parse_packet",
]

MetricType = Literal["c", "g", "ms", "h", "d", "s"]
METRIC_TYPES: tuple[MetricType, ...] = ("c", "g", "ms", "h", "d", "s")
_TYPES: dict[str, MetricType] = {kind: kind for kind in METRIC_TYPES}

# DogStatsD packs several values into one line only for these types (protocol v1.1).
_PACKABLE = frozenset({"c", "ms", "h", "d"})
_TIMER_TYPES = frozenset({"ms", "h", "d"})

# Python's float() also takes "nan", "inf", "1_0" and surrounding spaces; the wire does not.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BAD_NAME_CHARS = re.compile(r"[\x00-\x20\x7f]")


class StatsdError(ProtocolError, ValueError):
    """A line that is not a StatsD metric.

    Args:
        message: What is wrong with the line.
        line: The offending line, as received.
    """

    def __init__(self, message: str, line: bytes) -> None:
        super().__init__(message, "line")
        self.line = line


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
        """The aggregation key: the name plus the sorted tags."""
        return metric_key(self.name, self.tags)


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
    external data ``|e:...``) are accepted and ignored.

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
    if _BAD_NAME_CHARS.search(name):
        raise StatsdError(f"metric name {name!r} has spaces or control characters", line)
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
    """Parse every line of a datagram or stream chunk.

    Empty lines are skipped; a line that does not parse is counted, never raised.

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
        try:
            metrics.append(parse_line(line))
        except StatsdError:
            bad += 1
    return metrics, bad


class CounterSnapshot(TypedDict):
    """A counter's total over the interval and its per-second rate (None if unknown)."""

    value: float
    rate: float | None


class Snapshot(TypedDict):
    """The JSON shape of :meth:`Aggregator.flush` and :meth:`Aggregator.current`."""

    counters: dict[str, CounterSnapshot]
    gauges: dict[str, float]
    timers: dict[str, dict[str, float]]
    sets: dict[str, int]
    flushed_at: float | None
    interval: float | None
    metrics_received: int
    bad_lines: int
    overflow: int


class _Timer:
    """Samples of one timer/histogram key: exact count, sum, min and max, plus a reservoir.

    Percentiles are exact over the reservoir, which holds every sample until ``max_samples``
    and a uniform random subset after that (Vitter's algorithm R).
    """

    __slots__ = ("count", "maximum", "minimum", "samples", "seen", "total")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.seen = 0
        self.count = 0.0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float, rate: float, max_samples: int, rng: random.Random) -> None:
        self.seen += 1
        self.count += 1.0 / rate
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if len(self.samples) < max_samples:
            self.samples.append(value)
        else:
            slot = rng.randrange(self.seen)
            if slot < max_samples:
                self.samples[slot] = value

    def summary(self, percentiles: Sequence[float]) -> dict[str, float]:
        ordered = sorted(self.samples)
        out = {
            "count": self.count,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.total / self.seen,
            "sum": self.total,
        }
        for pct in percentiles:
            # Nearest rank: always a sample that was really seen, as StatsD's upper_N.
            rank = max(math.ceil(pct / 100.0 * len(ordered)), 1)
            out[f"p{pct:g}"] = ordered[rank - 1]
        return out


class Aggregator:
    """Folds metrics into StatsD's per-interval aggregates.

    The snapshot (see :class:`Snapshot`) is JSON-ready::

        {
          "counters": {key: {"value": float, "rate": float | None}},
          "gauges":   {key: float},
          "timers":   {key: {"count", "min", "max", "mean", "sum", "p50", "p90", ...}},
          "sets":     {key: int},
          "flushed_at": float | None,   # the `now` of the flush (or of `current`)
          "interval": float | None,     # seconds since the previous flush
          "metrics_received": int, "bad_lines": int, "overflow": int   # totals since start
        }

    A key is the metric name plus its sorted tags (:func:`metric_key`). Timers, histograms
    (``h``) and distributions (``d``) share the ``timers`` section. A counter's ``value`` is
    scaled by 1/sample rate and its ``rate`` is per second over the interval; a timer's
    ``count`` is scaled the same way, while ``min``, ``max``, ``mean`` and ``sum`` are exact
    over the samples received and the percentiles exact over the kept samples. Rates are None
    when the interval is unknown (first flush without ``started_at``) or zero.

    Counters, timers and sets are removed at each flush, so an idle key frees its slot;
    gauges persist.

    Args:
        max_keys: Most keys held at once over all sections. A metric that would create a
            new key past this is dropped and counted in ``overflow``.
        percentiles: Percentiles reported for each timer, each in (0, 100].
        started_at: Clock reading at which the first interval starts.
        max_samples: Samples kept per timer key for percentiles.
        max_set_values: Distinct values kept per set key; further new values are dropped
            and counted in ``set_overflow``.
        rng: Random source for the sample reservoir (inject a seeded one in tests).

    Raises:
        ValueError: A bound is below 1 or a percentile is outside (0, 100].
    """

    def __init__(
        self,
        max_keys: int = 10_000,
        percentiles: Sequence[float] = (50, 90, 95, 99),
        *,
        started_at: float | None = None,
        max_samples: int = 10_000,
        max_set_values: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        if min(max_keys, max_samples, max_set_values) < 1:
            raise ValueError("max_keys, max_samples and max_set_values must be at least 1")
        for pct in percentiles:
            if not 0 < pct <= 100:
                raise ValueError(f"percentile {pct} is not in (0, 100]")
        self.max_keys = max_keys
        self.percentiles = tuple(percentiles)
        self.max_samples = max_samples
        self.max_set_values = max_set_values
        self._rng = rng if rng is not None else random.Random()
        self._interval_start = started_at
        self._counters: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._timers: dict[str, _Timer] = {}
        self._sets: dict[str, set[str]] = {}
        self.metrics_received = 0
        self.bad_lines = 0
        self.overflow = 0
        self.set_overflow = 0
        self.last_flush: Snapshot | None = None

    @property
    def keys(self) -> int:
        """How many keys are held now, over all sections."""
        return len(self._counters) + len(self._gauges) + len(self._timers) + len(self._sets)

    def _has_room(self, table: Mapping[str, object], key: str) -> bool:
        if key in table or self.keys < self.max_keys:
            return True
        self.overflow += 1
        return False

    def add(self, metric: Metric) -> None:
        """Fold one metric into the current interval.

        Error handling: a metric that would need a new key past ``max_keys`` is dropped and
        counted in ``overflow``; nothing raises.
        """
        self.metrics_received += 1
        key = metric.key
        value = metric.value
        if metric.type == "s":
            members = self._sets.get(key)
            if members is None:
                if not self._has_room(self._sets, key):
                    return
                members = self._sets[key] = set()
            member = str(value)
            if member not in members:
                if len(members) < self.max_set_values:
                    members.add(member)
                else:
                    self.set_overflow += 1
            return
        if isinstance(value, str):  # only sets carry strings; a hand-built Metric may lie
            return
        values = (value, *metric.packed)
        # parse_line only yields rates in (0, 1]; a hand-built Metric must not divide by 0.
        rate = metric.rate if 0.0 < metric.rate <= 1.0 else 1.0
        if metric.type == "c":
            if not self._has_room(self._counters, key):
                return
            self._counters[key] = self._counters.get(key, 0.0) + sum(values) / rate
        elif metric.type == "g":
            if not self._has_room(self._gauges, key):
                return
            if metric.delta:
                self._gauges[key] = self._gauges.get(key, 0.0) + sum(values)
            else:
                self._gauges[key] = values[-1]
        elif metric.type in _TIMER_TYPES:
            timer = self._timers.get(key)
            if timer is None:
                if not self._has_room(self._timers, key):
                    return
                timer = self._timers[key] = _Timer()
            for sample in values:
                timer.add(sample, rate, self.max_samples, self._rng)

    def feed(self, data: bytes) -> int:
        """Parse a datagram or stream chunk and add every metric in it.

        Bad lines are counted in ``bad_lines``.

        Returns:
            The number of metrics added (before any key-bound drop).
        """
        metrics, bad = parse_packet(data)
        self.bad_lines += bad
        for metric in metrics:
            self.add(metric)
        return len(metrics)

    def _snapshot(self, now: float | None) -> Snapshot:
        interval = None
        if now is not None and self._interval_start is not None:
            interval = max(now - self._interval_start, 0.0)
        per_second = interval if interval else None
        return {
            "counters": {
                key: {"value": value, "rate": value / per_second if per_second else None}
                for key, value in self._counters.items()
            },
            "gauges": dict(self._gauges),
            "timers": {key: timer.summary(self.percentiles) for key, timer in self._timers.items()},
            "sets": {key: len(members) for key, members in self._sets.items()},
            "flushed_at": now,
            "interval": interval,
            "metrics_received": self.metrics_received,
            "bad_lines": self.bad_lines,
            "overflow": self.overflow,
        }

    def current(self, now: float | None = None) -> Snapshot:
        """The not-yet-flushed state, in the shape of :meth:`flush`; nothing is reset.

        Args:
            now: Clock reading, to compute rates over the interval so far; without it
                ``interval`` and every counter ``rate`` are None.
        """
        return self._snapshot(now)

    def flush(self, now: float) -> Snapshot:
        """End the interval: return its snapshot, keep it as ``last_flush``, start anew.

        Counters, timers and sets are cleared; gauges keep their values.

        Args:
            now: Clock reading (any monotonic clock, the same one on every call).
        """
        snapshot = self._snapshot(now)
        self._counters.clear()
        self._timers.clear()
        self._sets.clear()
        self._interval_start = now
        self.last_flush = snapshot
        return snapshot
