"""The series store: every collector's points, kept per series with a bounded history.

Theory of operation: a collector mode owns one :class:`SeriesStore` and calls :meth:`add`
for each parsed point (StatsD: for each metric at every flush). A series is (name, field,
tags); the store keeps its last value and a bounded history of (time, value). A point that
would open a series past ``max_series`` is refused and counted (``overflow``), never stored.

The interface (``add``, ``overflow``, ``series_count``) is what collectors rely on; the
history's shape and the queries belong to the store.
"""

from __future__ import annotations

from collections import deque

from app.telemetry.points import FieldValue, Point, Tags

SeriesKey = tuple[str, str, Tags]


class SeriesStore:
    """Series of one collector, bounded in number and in history."""

    def __init__(self, max_series: int = 10_000, max_points: int = 720) -> None:
        self.max_series = max_series
        self.max_points = max_points
        self.overflow = 0
        self._series: dict[SeriesKey, deque[tuple[float, FieldValue]]] = {}

    @property
    def series_count(self) -> int:
        return len(self._series)

    def add(self, point: Point, now: float) -> None:
        """Keep ``point``'s fields, at its own time or at ``now`` (arrival) if it had none."""
        at = point.time if point.time is not None else now
        for field, value in point.fields.items():
            key = (point.name, field, point.tags)
            history = self._series.get(key)
            if history is None:
                if len(self._series) >= self.max_series:
                    self.overflow += 1
                    continue
                history = self._series[key] = deque(maxlen=self.max_points)
            history.append((at, value))
