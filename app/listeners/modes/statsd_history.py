"""A StatsD collector's history: each metric's value at every flush, and the last flush
that had traffic.

Theory of operation: every flush of a :class:`~app.listeners.modes.statsd.StatsdMode`
passes its snapshot to :meth:`TelemetryHistory.record`, which keeps one point per flush (the
newest :data:`MAX_POINTS`): counters' values, gauges, and timers' count, mean and
percentiles, for at most :data:`MAX_KEYS` keys of each section (the first by name), so the
history's memory is bounded whatever ``max_keys`` is. A flush in which no metric arrived
leaves :attr:`TelemetryHistory.last_active` as it was: when traffic stops, the page still
shows what the last real interval held. Flushes happen every ``flush_interval`` seconds, not
per datagram, so none of this is on the hot path.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from app.wire.statsd import Snapshot

# Flushes kept: at the default 10 s interval, twenty minutes.
MAX_POINTS = 120
# Keys of each section kept per point.
MAX_KEYS = 200


def _first(table: dict[str, Any]) -> list[str]:
    return sorted(table)[:MAX_KEYS]


class TelemetryHistory:
    """The flushes of one collector, as points per metric."""

    def __init__(self) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=MAX_POINTS)
        self.last_active: Snapshot | None = None
        self._received = 0

    def record(self, snapshot: Snapshot) -> None:
        """Keep one flush (its snapshot is not changed)."""
        counters = snapshot["counters"]
        gauges = snapshot["gauges"]
        timers = snapshot["timers"]
        self.points.append(
            {
                "t": snapshot["flushed_at"],
                "counters": {key: counters[key]["value"] for key in _first(counters)},
                "gauges": {key: gauges[key] for key in _first(gauges)},
                "timers": {key: dict(timers[key]) for key in _first(timers)},
                "sets": {key: snapshot["sets"][key] for key in _first(snapshot["sets"])},
            }
        )
        received = snapshot["metrics_received"]
        if received > self._received:
            self.last_active = snapshot
        self._received = received

    def to_dict(self) -> dict[str, Any]:
        """``points`` (oldest first: ``t``, ``counters``, ``gauges``, ``timers``, ``sets``)
        and ``last_active_flush`` (the last flush in which metrics arrived, or None)."""
        return {"points": list(self.points), "last_active_flush": self.last_active}
