"""Lab-wide run totals for monitoring: counters and RTT buckets that only ever grow.

Theory of operation: a run's own statistics live in :class:`~app.runs.stats.RunStats` and end
in the store. Prometheus wants counters that survive the run, so when a run ends the manager
calls :meth:`RunTotals.add`, which folds the run into one :class:`PatternTotals` per
(protocol, pattern): message and byte counts, errors by kind, runs by final status, and the
RTT distribution reduced to fixed :data:`RTT_BUCKETS`. At scrape time :meth:`RunTotals.snapshot`
adds the runs still going to a copy of those totals, so a run moves from "live" to "ended"
without a counter ever going down.

Reducing an HDR histogram to buckets (:func:`hdr_buckets`) sums slices of its counts array:
one pass over the recorded index range, well under a millisecond, and nothing on the hot
path. A value lands in bucket ``le`` when HDR cannot tell it from a value at or below ``le``
(3 significant digits: it may exceed ``le`` by at most 0.1 %).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from app.endpoint import Endpoint
from app.runs.stats import RunStats


def one_two_five(low_exp: int, high_exp: int) -> tuple[float, ...]:
    """Bounds 1, 2.5 and 5 times each power of ten from ``10**low_exp`` to ``10**high_exp``."""
    return tuple(
        round(m * 10.0**e, 12) for e in range(low_exp, high_exp + 1) for m in (1.0, 2.5, 5.0)
    )


# Seconds, 25 us to 10 s. Loopback RTTs are tens of microseconds, LAN ones about a
# millisecond, WAN ones tens to hundreds; a run's reply timeout is at most 60 s.
RTT_BUCKETS: tuple[float, ...] = one_two_five(-5, 1)[1:-2]


@dataclass
class BucketCounts:
    """A histogram in Prometheus form: cumulative counts per bound, then the total.

    Attributes:
        cumulative: ``cumulative[i]`` samples at most ``RTT_BUCKETS[i]``; the last entry
            (one more than the bounds) is every sample (the ``+Inf`` bucket).
        sum: Sum of the samples, in seconds.
    """

    cumulative: list[int] = field(default_factory=lambda: [0] * (len(RTT_BUCKETS) + 1))
    sum: float = 0.0

    @property
    def count(self) -> int:
        return self.cumulative[-1]

    def add(self, other: BucketCounts) -> None:
        for i, value in enumerate(other.cumulative):
            self.cumulative[i] += value
        self.sum += other.sum

    def copy(self) -> BucketCounts:
        return BucketCounts(list(self.cumulative), self.sum)


def hdr_buckets(hist: HdrHistogram, bounds: Iterable[float] = RTT_BUCKETS) -> BucketCounts:
    """Reduce an HDR histogram of nanoseconds to cumulative counts at ``bounds`` (seconds).

    The sum uses each recorded value's median equivalent, as HDR's own mean does.
    """
    bound_list = list(bounds)
    total = hist.get_total_count()
    if total == 0:
        return BucketCounts([0] * (len(bound_list) + 1), 0.0)
    counts = hist.counts
    last = hist.counts_len - 1
    low = min(hist.get_counts_array_index(hist.get_min_value()), last)
    high = min(hist.get_counts_array_index(hist.get_max_value()), last)
    if low > high:  # a minimum hdrh lost track of (it does after some adds): scan from 0
        low = 0
    window = counts[low : high + 1]
    cumulative = []
    running = 0
    done = low  # counts[low:done] are already in running
    for bound in bound_list:
        end = min(hist.get_counts_array_index(int(bound * 1e9)), high) + 1
        if end > done:
            running += sum(window[done - low : end - low])
            done = end
        cumulative.append(running)
    cumulative.append(total)
    value_sum = 0
    for offset, count in enumerate(window):
        if count:
            lowest = hist.get_value_from_index(low + offset)
            highest = hist.get_highest_equivalent_value(lowest)
            value_sum += count * (lowest + (highest - lowest + 1) // 2)
    return BucketCounts(cumulative, value_sum / 1e9)


@dataclass
class PatternTotals:
    """Everything counted for the runs of one (protocol, pattern)."""

    ended: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    lost: int = 0
    late: int = 0
    connections_opened: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rtt: BucketCounts = field(default_factory=BucketCounts)

    def add_run(self, summary: dict[str, Any], stats: RunStats) -> None:
        """Add a run's counters (read from its summary) and both of its histograms (the
        open interval included: the summary's percentiles are not buckets)."""
        self.sent += summary["sent"]
        self.received += summary["received"]
        self.bytes_sent += summary["bytes_sent"]
        self.bytes_received += summary["bytes_received"]
        self.lost += summary["lost"] or 0  # null: the run expected no replies
        self.late += summary["late"]
        self.connections_opened += summary["connections_opened"]
        for kind, count in summary["errors_by_kind"].items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.rtt.add(hdr_buckets(stats.total))
        self.rtt.add(hdr_buckets(stats.interval))

    def copy(self) -> PatternTotals:
        return PatternTotals(
            dict(self.ended),
            self.sent,
            self.received,
            self.bytes_sent,
            self.bytes_received,
            self.lost,
            self.late,
            self.connections_opened,
            dict(self.errors),
            self.rtt.copy(),
        )


class TotalledRun(Protocol):
    """What the totals read of a run (app.runs.manager.Run)."""

    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def spec(self) -> Any: ...
    @property
    def status(self) -> str: ...
    @property
    def stats(self) -> RunStats: ...
    def summary(self) -> dict[str, Any]: ...


def run_key(run: TotalledRun) -> tuple[str, str]:
    """(protocol, pattern) of a run: the labels its totals are kept under."""
    return run.spec.target.protocol, run.spec.pattern


class RunTotals:
    """Totals of every ended run, by (protocol, pattern). One trio loop writes and reads it."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], PatternTotals] = {}

    def add(self, run: TotalledRun) -> None:
        """Fold an ended run in; call once per run, after its outcome is recorded."""
        totals = self.by_key.setdefault(run_key(run), PatternTotals())
        totals.ended[run.status] = totals.ended.get(run.status, 0) + 1
        totals.add_run(run.summary(), run.stats)

    def snapshot(self, running: Iterable[TotalledRun]) -> dict[tuple[str, str], PatternTotals]:
        """Ended totals plus the runs still ``running`` (their live summaries), as copies."""
        out = {key: totals.copy() for key, totals in self.by_key.items()}
        for run in running:
            out.setdefault(run_key(run), PatternTotals()).add_run(run.summary(), run.stats)
        return out
