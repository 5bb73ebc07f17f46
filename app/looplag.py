"""Event-loop lag: how late the trio scheduler wakes a task that asked to sleep.

Theory of operation: :meth:`LoopLagMonitor.serve` sleeps until a deadline ``interval``
seconds ahead, then measures how far past that deadline it actually woke. On an idle loop
that is a few microseconds; when some task hogs the loop (a blocking call, a long
synchronous loop), every other task, the sockets included, waits that long, and the lag shows
it. Each sample goes into fixed Prometheus-style buckets (cumulative counts kept as plain
integers), so recording costs a handful of comparisons and no allocation, and ``/metrics``
exports the buckets as a histogram.

A stall shorter than ``interval`` is seen only if it overlaps a wake-up; one longer is always
seen. 100 ms keeps the monitor's own cost negligible (10 wake-ups a second).
"""

from __future__ import annotations

import bisect

import trio

# Seconds. Below 1 ms is a healthy loop; 1 s and more is a loop that is stuck.
LAG_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
DEFAULT_INTERVAL = 0.1


class LoopLagMonitor:
    """Samples the event loop's wake-up lag; read by the metrics collector.

    Attributes:
        bucket_counts: Samples whose lag was at most the matching :data:`LAG_BUCKETS` bound
            (not cumulative: ``bucket_counts[i]`` counts lags in ``(bound[i-1], bound[i]]``);
            the last entry counts lags above every bound.
        count: Samples taken.
        total: Sum of every lag, in seconds.
        last: The latest lag, in seconds.
        max: The largest lag seen since start, in seconds.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.bucket_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0
        self.last = 0.0
        self.max = 0.0

    def record(self, lag: float) -> None:
        """Add one sample (seconds; negative readings count as 0)."""
        lag = max(lag, 0.0)
        self.bucket_counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.count += 1
        self.total += lag
        self.last = lag
        self.max = max(self.max, lag)

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """``(upper bound, samples at most that)`` pairs, the last bound being ``inf``."""
        out = []
        running = 0
        for bound, count in zip((*LAG_BUCKETS, float("inf")), self.bucket_counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample forever; reports started at once. Cancel the enclosing scope to stop it."""
        task_status.started()
        while True:
            deadline = trio.current_time() + self.interval
            await trio.sleep_until(deadline)
            self.record(trio.current_time() - deadline)
