"""Per-second lab totals in a ring buffer, so the overview charts survive a reload.

Theory of operation: the lab's snapshot loop offers every tick (about 4 Hz) to
:meth:`LabSeries.maybe_sample`. Once a second has passed on the monotonic clock it reads the
cumulative counters of every listener and the number of live connections, turns the counter
deltas into per-second rates and appends one point to a deque of fixed length. A browser
that opens (or reloads) the dashboard reads the buffer with ``GET /api/series`` and then
extends its charts with the points the live feed carries, so two browsers draw the same
charts. Listener counters are only read here, never written: the hot path is untouched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

# Fifteen minutes at one point per second: a long enough look back for a lab session, and
# about 200 bytes a point, so the whole buffer stays well under a megabyte.
DEFAULT_CAPACITY = 900
SAMPLE_INTERVAL = 1.0


class ListenerCounters(Protocol):
    """What the series reads from a listener (see :class:`app.listeners.base.Listener`)."""

    @property
    def id(self) -> str: ...
    @property
    def connections(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def msgs_in(self) -> int: ...


class LabSeries:
    """A ring buffer of one point per second.

    A point is ``{"t": wall time, "connections": live rows, "bytes_in": B/s, "bytes_out": B/s,
    "msgs_in": msg/s, "listeners": {id: {"connections", "bytes_in", "bytes_out",
    "msgs_in"}}}``; the rates are averages over the second that ended at ``t``.

    Args:
        capacity: Points kept; the oldest is dropped first.
        interval: Seconds between points, on the clock passed to :meth:`maybe_sample`.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, interval: float = SAMPLE_INTERVAL):
        if capacity < 1 or interval <= 0:
            raise ValueError("capacity must be at least 1 and interval above 0")
        self.capacity = capacity
        self.interval = interval
        self._points: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._last: dict[str, tuple[int, int, int]] = {}
        self._last_clock: float | None = None
        self._due: float | None = None

    def __len__(self) -> int:
        return len(self._points)

    def maybe_sample(
        self,
        clock: float,
        wall: float,
        listeners: Iterable[ListenerCounters],
        connections: int,
    ) -> dict[str, Any] | None:
        """Append and return a point when one is due at ``clock``; otherwise return None.

        The first call only starts the clock; listeners count from zero, so the first point
        holds everything since they started. Points are due every
        ``interval``; a loop that fell far behind starts a fresh schedule instead of
        producing a burst of points.
        """
        if self._due is None or self._last_clock is None:
            self._due = clock + self.interval
            self._last_clock = clock
            return None
        if clock < self._due:
            return None
        elapsed = max(clock - self._last_clock, 1e-9)
        self._due += self.interval
        if self._due <= clock:
            self._due = clock + self.interval
        self._last_clock = clock
        per_listener: dict[str, dict[str, float | int]] = {}
        current: dict[str, tuple[int, int, int]] = {}
        total_in = total_out = total_msgs = 0.0
        for item in listeners:
            now = (item.bytes_in, item.bytes_out, item.msgs_in)
            current[item.id] = now
            # A listener new since the last point started from zero within this second.
            before = self._last.get(item.id, (0, 0, 0))
            rates = [max(a - b, 0) / elapsed for a, b in zip(now, before, strict=True)]
            per_listener[item.id] = {
                "connections": item.connections,
                "bytes_in": round(rates[0], 1),
                "bytes_out": round(rates[1], 1),
                "msgs_in": round(rates[2], 1),
            }
            total_in += rates[0]
            total_out += rates[1]
            total_msgs += rates[2]
        self._last = current
        point: dict[str, Any] = {
            "t": round(wall, 3),
            "connections": connections,
            "bytes_in": round(total_in, 1),
            "bytes_out": round(total_out, 1),
            "msgs_in": round(total_msgs, 1),
            "listeners": per_listener,
        }
        self._points.append(point)
        return point

    def points(self, seconds: float | None = None) -> list[dict[str, Any]]:
        """The buffered points, oldest first; only the last ``seconds`` worth when given."""
        if seconds is None:
            return list(self._points)
        count = max(int(seconds / self.interval), 0)
        if count == 0:
            return []
        return list(self._points)[-count:]
