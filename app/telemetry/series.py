"""The series store: every collector's points, kept per series with a bounded history.

Theory of operation: a collector mode owns one :class:`SeriesStore` and calls :meth:`add`
for each parsed point (StatsD: for each metric at every flush). A series is (name, field,
tags). For each series the store keeps:

- its **last value** (the point with the newest time), kept however old it is, so a metric
  that stopped arriving still shows what it last said;
- up to ``max_points`` **raw points** (time, value), oldest first;
- beyond them, **buckets** of ``resolution`` seconds (aligned to multiples of it): count,
  sum, min, max and last value of the raw points that left, the newest ``max_buckets`` of
  them (a series that pauses keeps its older buckets: the gap shows on the chart).

So a series' memory is bounded by ``max_points`` + ``max_buckets`` entries, and the store's
by ``max_series`` of those: a point that would open a series past ``max_series`` is refused
and counted (``overflow``), never stored. A series stays until its collector stops: the
bound is what keeps a flood of distinct names from growing memory, not an expiry.

Strings and booleans (InfluxDB line protocol fields) are kept raw like numbers; their
buckets hold only the count and the last value (a sum of strings means nothing). A string
longer than :data:`MAX_STRING` characters is kept cut to that length, counted in
``strings_cut``, so one series' memory does not grow with what a client puts in a field.
A numeric raw point costs about 100 bytes and a bucket about 150: the worst case of a store
is ``max_series * (max_points * 100 + max_buckets * 150)`` bytes, plus the names and tags.

The interface (``add``, ``overflow``, ``series_count``) is what collectors rely on;
:meth:`SeriesStore.query` and :meth:`SeriesStore.history` are what the API reads.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass
from typing import Any, TypedDict

from app.telemetry.points import FieldValue, Point, Tags

SeriesKey = tuple[str, str, Tags]

# Defaults: at StatsD's 10 s flush, 120 raw points are 20 minutes, then an hour of
# one-minute buckets; a metric sent once stays raw until 120 newer points push it out.
DEFAULT_POINTS = 120
DEFAULT_RESOLUTION = 60.0
DEFAULT_BUCKETS = 60
# Longest string value kept, in characters (InfluxDB string fields can be 64 KiB).
MAX_STRING = 1024


def _numeric(value: FieldValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Bucket:
    """The raw points of one ``resolution``-long stretch of a series, folded."""

    __slots__ = ("count", "last", "max", "min", "start", "sum")

    def __init__(self, start: float, value: FieldValue) -> None:
        self.start = start
        self.count = 1
        self.last = value
        numeric = _numeric(value)
        self.sum: float | None = float(value) if numeric else None
        self.min: float | None = self.sum
        self.max: float | None = self.sum

    def fold(self, value: FieldValue) -> None:
        # Once per point past the raw ones (the hot path of a flood): no calls but float().
        self.count += 1
        self.last = value
        total, low, high = self.sum, self.min, self.max
        if (
            total is not None
            and low is not None
            and high is not None
            and isinstance(value, int | float)
            and value.__class__ is not bool
        ):
            number = float(value)
            self.sum = total + number
            if number < low:
                self.min = number
            elif number > high:
                self.max = number
        else:
            self.sum = self.min = self.max = None

    def to_dict(self) -> dict[str, Any]:
        mean = None if self.sum is None else self.sum / self.count
        return {
            "t": self.start,
            "count": self.count,
            "mean": mean,
            "min": self.min,
            "max": self.max,
            "last": self.last,
        }


def _at(point: tuple[float, FieldValue]) -> float:
    return point[0]


def _start(bucket: Bucket) -> float:
    return bucket.start


class Series:
    """One series' last value, raw points and buckets. Not shared between threads."""

    __slots__ = ("buckets", "last", "raw", "received")

    def __init__(self) -> None:
        self.raw: list[tuple[float, FieldValue]] = []
        self.buckets: list[Bucket] | None = None  # made when the first raw point leaves
        self.last: tuple[float, FieldValue] | None = None
        self.received = 0

    def add(self, at: float, value: FieldValue, store: SeriesStore) -> None:
        self.received += 1
        raw = self.raw
        point = (at, value)
        if not raw or at >= raw[-1][0]:
            raw.append(point)
        else:  # a client's own timestamp, out of order: keep the points in time order
            bisect.insort(raw, point, key=_at)
        last = self.last
        if last is None or at >= last[0]:
            self.last = point
        if len(raw) > store.max_points:
            self._fold(raw.pop(0), store)

    def _fold(self, point: tuple[float, FieldValue], store: SeriesStore) -> None:
        at, value = point
        start = math.floor(at / store.resolution) * store.resolution
        buckets = self.buckets
        if buckets is None:
            buckets = self.buckets = []
        if buckets and buckets[-1].start == start:
            buckets[-1].fold(value)
        else:
            index = bisect.bisect_left(buckets, start, key=_start)
            if index < len(buckets) and buckets[index].start == start:
                buckets[index].fold(value)
            else:
                buckets.insert(index, Bucket(start, value))
        while len(buckets) > store.max_buckets:
            buckets.pop(0)


class History(TypedDict):
    """One series' history, JSON-ready (:meth:`SeriesStore.history`)."""

    last: dict[str, Any] | None
    buckets: list[dict[str, Any]]
    points: list[list[Any]]


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """Which series to pick: every given part must match (None: any).

    ``tags`` must all be among the series' tags; ``text`` is a case-insensitive substring
    of the name, a field or a tag (the dashboard's search box).
    """

    name: str | None = None
    field: str | None = None
    tags: Tags = ()
    text: str | None = None

    def matches(self, key: SeriesKey) -> bool:
        name, field, tags = key
        if self.name is not None and name != self.name:
            return False
        if self.field is not None and field != self.field:
            return False
        if self.tags and not set(self.tags) <= set(tags):
            return False
        if self.text:
            needle = self.text.lower()
            haystack = [name, field, *(f"{k}={v}" for k, v in tags)]
            return any(needle in part.lower() for part in haystack)
        return True


class SeriesStore:
    """Series of one collector, bounded in number and in history.

    Args:
        max_series: Most series held; a point that would open one more is counted in
            ``overflow`` and not kept.
        max_points: Raw points kept per series.
        resolution: Seconds per bucket for the points older than the raw ones.
        max_buckets: Buckets kept per series.
    """

    def __init__(
        self,
        max_series: int = 10_000,
        max_points: int = DEFAULT_POINTS,
        *,
        resolution: float = DEFAULT_RESOLUTION,
        max_buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        if max_series < 1 or max_points < 1 or resolution <= 0 or max_buckets < 0:
            raise ValueError("max_series and max_points >= 1, resolution > 0, max_buckets >= 0")
        self.max_series = max_series
        self.max_points = max_points
        self.resolution = resolution
        self.max_buckets = max_buckets
        self.overflow = 0
        self.points_received = 0
        self.strings_cut = 0
        self._series: dict[SeriesKey, Series] = {}

    @property
    def series_count(self) -> int:
        return len(self._series)

    def add(self, point: Point, now: float) -> None:
        """Keep ``point``'s fields, at its own time or at ``now`` (arrival) if it had none."""
        at = point.time if point.time is not None else now
        self.points_received += 1
        for field, value in point.fields.items():
            key = (point.name, field, point.tags)
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series:
                    self.overflow += 1
                    continue
                series = self._series[key] = Series()
            if isinstance(value, str) and len(value) > MAX_STRING:
                value = value[:MAX_STRING]
                self.strings_cut += 1
            series.add(at, value, self)

    def get(self, key: SeriesKey) -> Series | None:
        """The series of ``key``, or None."""
        return self._series.get(key)

    def query(
        self, query: SeriesQuery, limit: int | None = None
    ) -> tuple[list[tuple[SeriesKey, Series]], int]:
        """The first ``limit`` series ``query`` picks (all without a limit), sorted by name,
        field and tags, and how many it picks in all."""
        found = [key for key in self._series if query.matches(key)]
        # The first few of 100,000 keys without sorting them all (the list is polled).
        first = sorted(found) if limit is None else heapq.nsmallest(limit, found)
        return [(key, self._series[key]) for key in first], len(found)

    def history(self, key: SeriesKey, since: float | None = None) -> History | None:
        """One series' history, JSON-ready: ``last`` ({t, value}), ``buckets`` (oldest first:
        t, count, mean, min, max, last) and ``points`` ([t, value], oldest first), only
        those at or after ``since`` (a bucket: that ends after it). None if unknown."""
        series = self._series.get(key)
        if series is None:
            return None
        raw = series.raw
        buckets = series.buckets or []
        if since is not None:
            raw = raw[bisect.bisect_left(raw, since, key=_at) :]
            buckets = [b for b in buckets if b.start + self.resolution > since]
        last = series.last
        return {
            "last": None if last is None else {"t": last[0], "value": last[1]},
            "buckets": [bucket.to_dict() for bucket in buckets],
            "points": [[at, value] for at, value in raw],
        }
