"""StatsD and DogStatsD per-interval aggregation, without I/O (parsing: :mod:`.statsd_line`).

Theory of operation: :class:`Aggregator` has two states per interval: *collecting* (``add``
folds metrics into counters, gauges, timers and sets keyed by sanitized name plus sorted
tags; ``feed`` parses lines first, keeping DogStatsD events and service checks too) and, at
each flush, *reporting*: it returns a JSON-ready snapshot, keeps it as ``last_flush`` and
starts a new interval. As in etsy's StatsD, timers and sets start each interval empty,
gauges keep their value until changed and counters keep their key, flushed as 0 when idle
(``deleteCounters: false``; ``delete_counters=True`` drops idle ones instead).

A flush swaps the interval's tables for fresh ones at once and then summarizes the timers
in bounded steps (:meth:`Aggregator.begin_flush`, :class:`FlushJob`), so a caller on an
event loop can checkpoint between steps; :meth:`Aggregator.flush` runs them all at once.
Every structure is bounded (keys, samples per timer, values per set, events per interval)
so a flood of distinct names costs a counter, not memory.

This module also re-exports the parsing names of :mod:`app.wire.statsd_line`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

from app.errors import LineError
from app.wire.dogstatsd import DogstatsdError, Event, is_dogstatsd_line
from app.wire.statsd_line import (
    METRIC_TYPES,
    TIMER_TYPES,
    Metric,
    MetricType,
    StatsdError,
    metric_key,
    parse_dogstatsd,
    parse_line,
    parse_packet,
    sanitize_name,
)
from app.wire.statsd_summary import SummaryJob, TimerSamples, summarize

__all__ = [
    "METRIC_TYPES",
    "Aggregator",
    "CounterSnapshot",
    "FlushJob",
    "Metric",
    "MetricType",
    "SignedGauges",
    "Snapshot",
    "StatsdError",
    "metric_key",
    "parse_line",
    "parse_packet",
    "sanitize_name",
]

# Bad lines kept as samples (the newest), and how much of each.
MAX_BAD_SAMPLES = 10
# Distinct lines whose parse is remembered (about 200 bytes each): a sender's repeated
# lines stay in; a stream of ever-new lines (timer values) empties it every so often.
PARSED_LINES = 4096
MAX_BAD_SAMPLE_BYTES = 200

# How a gauge value with a sign is read: etsy's StatsD moves the gauge by it, the
# DogStatsD agent sets the gauge to it.
SignedGauges = Literal["delta", "set"]


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
    events: list[dict[str, Any]]
    service_checks: dict[str, dict[str, Any]]
    flushed_at: float | None
    interval: float | None
    metrics_received: int
    bad_lines: int
    overflow: int
    events_received: int
    service_checks_received: int


class FlushJob:
    """One flush in progress: the closed interval's tables, its timers summarized by steps.

    Made by :meth:`Aggregator.begin_flush`. When the last step is done, ``snapshot`` holds
    the interval's :class:`Snapshot` and the aggregator's ``last_flush`` is updated (unless
    a later flush finished first).
    """

    def __init__(self, owner: Aggregator, snapshot: Snapshot, timers: SummaryJob, seq: int):
        self._owner = owner
        self._partial = snapshot
        self._timers = timers
        self._seq = seq
        self.snapshot: Snapshot | None = None

    def step(self, budget: float) -> bool:
        """Summarize about ``budget`` timer samples (at least one timer); True when done."""
        if self.snapshot is None and self._timers.step(budget):
            self._partial["timers"] = self._timers.summaries
            self.snapshot = self._partial
            self._owner._publish(self.snapshot, self._seq)
        return self.snapshot is not None


class Aggregator:
    """Folds metrics into StatsD's per-interval aggregates.

    The snapshot (see :class:`Snapshot`) is JSON-ready::

        {
          "counters": {key: {"value": float, "rate": float | None}},
          "gauges":   {key: float},
          "timers":   {key: {"count", "min", "max", "mean", "sum", "p50", "p90", ...}},
          "sets":     {key: int},
          "events":   [{"title", "text", "alert_type", "tags", ...}],   # this interval's
          "service_checks": {key: {"name", "status", "status_name", "message", ...}},
          "flushed_at": float | None,   # the `now` of the flush (or of `current`)
          "interval": float | None,     # seconds since the previous flush
          "metrics_received": int, "events_received": int, "service_checks_received": int,
          "bad_lines": int, "overflow": int   # totals since start
        }

    A key is the sanitized metric name plus its sorted tags (:func:`metric_key`,
    :func:`sanitize_name`). Timers, histograms (``h``) and distributions (``d``) share the
    ``timers`` section. A counter's ``value`` is scaled by 1/sample rate and its ``rate`` is
    per second over the interval; a timer's ``count`` is scaled the same way, while ``min``,
    ``max``, ``mean`` and ``sum`` are exact over the samples received and each ``pN`` is
    etsy's ``upper_N`` over the kept samples (:func:`~app.wire.statsd_summary.summarize`).
    Rates are None when the interval is unknown (first flush without ``started_at``) or
    zero. A service check's key is its name plus sorted tags; the last run of the interval
    is kept.

    Args:
        max_keys: Most keys held at once over all sections. A metric that would create a
            new key past this is dropped and counted in ``overflow``.
        percentiles: Percentiles reported for each timer, each in (0, 100].
        started_at: Clock reading at which the first interval starts.
        max_samples: Samples kept per timer key for percentiles.
        max_set_values: Distinct values kept per set key; further new values are dropped
            and counted in ``set_overflow``.
        rng: Random source for the sample reservoir (inject a seeded one in tests).
        signed_gauges: ``delta`` (etsy): ``+3|g`` / ``-3|g`` move the gauge; ``set``
            (DogStatsD): they set it to 3 / -3.
        delete_counters: False (etsy's default): a counter idle for an interval is flushed
            as 0 and keeps its key; True: it is dropped at the flush, freeing its key.
        max_events: Events kept per interval (the rest are counted in ``overflow``).

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
        signed_gauges: SignedGauges = "delta",
        delete_counters: bool = False,
        max_events: int = 100,
    ) -> None:
        if min(max_keys, max_samples, max_set_values, max_events) < 1:
            raise ValueError(
                "max_keys, max_samples, max_set_values and max_events must be at least 1"
            )
        for pct in percentiles:
            if not 0 < pct <= 100:
                raise ValueError(f"percentile {pct} is not in (0, 100]")
        self.max_keys = max_keys
        self.percentiles = tuple(percentiles)
        self.max_samples = max_samples
        self.max_set_values = max_set_values
        self.max_events = max_events
        self.gauge_deltas = signed_gauges == "delta"
        self.delete_counters = delete_counters
        self._rng = rng if rng is not None else random.Random()
        self._interval_start = started_at
        self._counters: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._timers: dict[str, TimerSamples] = {}
        self._sets: dict[str, set[str]] = {}
        self._events: list[dict[str, Any]] = []
        self._checks: dict[str, dict[str, Any]] = {}
        # Lines seen before, with what they parsed to and their key: a sender repeats the
        # same lines (``hits:1|c``), which then cost a dict lookup instead of a parse.
        # Bounded: emptied when full (see PARSED_LINES).
        self._parsed: dict[bytes, tuple[Metric, str]] = {}
        self.metrics_received = 0
        self.events_received = 0
        self.service_checks_received = 0
        self.bad_lines = 0
        # The newest few lines that did not parse, with why: what a person needs to fix the
        # sender (bounded; only bad lines pay for it).
        self.bad_samples: deque[dict[str, str]] = deque(maxlen=MAX_BAD_SAMPLES)
        self.overflow = 0
        self.set_overflow = 0
        self.last_flush: Snapshot | None = None
        self._flush_seq = 0
        self._published_seq = 0

    @property
    def samples_held(self) -> int:
        """Timer samples kept in the open interval (what summarizing it would sort)."""
        return sum(len(timer.samples) for timer in self._timers.values())

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
        counted in ``overflow``; one whose name has no character StatsD keeps (``é€``) is
        counted in ``bad_lines``; nothing raises.
        """
        self._add(metric, metric.key)

    def _add(self, metric: Metric, key: str) -> None:
        if not key or key.startswith("|#"):
            self.bad_lines += 1
            return
        self.metrics_received += 1
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
            if metric.delta and self.gauge_deltas:
                self._gauges[key] = self._gauges.get(key, 0.0) + sum(values)
            else:
                self._gauges[key] = values[-1]
        elif metric.type in TIMER_TYPES:
            timer = self._timers.get(key)
            if timer is None:
                if not self._has_room(self._timers, key):
                    return
                timer = self._timers[key] = TimerSamples()
            for sample in values:
                timer.add(sample, rate, self.max_samples, self._rng)

    def _add_dogstatsd(self, line: bytes) -> None:
        try:
            item = parse_dogstatsd(line)
        except DogstatsdError as exc:
            self.bad_lines += 1
            self._sample_bad(line, exc)
            return
        if isinstance(item, Event):
            self.events_received += 1
            if len(self._events) < self.max_events:
                self._events.append(item.to_dict())
            else:
                self.overflow += 1
            return
        self.service_checks_received += 1
        key = metric_key(item.name, item.tags)
        if key in self._checks or len(self._checks) < self.max_keys:
            self._checks[key] = item.to_dict()
        else:
            self.overflow += 1

    def _sample_bad(self, line: bytes, exc: LineError) -> None:
        text = line[:MAX_BAD_SAMPLE_BYTES].decode("utf-8", "backslashreplace")
        self.bad_samples.append({"line": text, "error": exc.message})

    def feed_lines(self, lines: Iterable[bytes]) -> int:
        """Parse lines (metrics, events, service checks) and add each; count bad ones.

        Returns:
            The number of metrics added (before any key-bound drop).
        """
        added = 0
        parsed = self._parsed
        add = self._add
        for line in lines:
            known = parsed.get(line)
            if known is None:
                if not line.rstrip(b"\r"):
                    continue
                if is_dogstatsd_line(line):
                    self._add_dogstatsd(line)
                    continue
                try:
                    metric = parse_line(line)
                except StatsdError as exc:
                    self.bad_lines += 1
                    self._sample_bad(line, exc)
                    continue
                if len(parsed) >= PARSED_LINES:
                    parsed.clear()
                known = parsed[line] = (metric, metric.key)
            add(*known)
            added += 1
        return added

    def feed(self, data: bytes) -> int:
        """Parse a datagram or stream chunk and add everything in it (see :meth:`feed_lines`).

        Returns:
            The number of metrics added (before any key-bound drop).
        """
        return self.feed_lines(data.split(b"\n"))

    def _snapshot(self, now: float | None, timers: dict[str, dict[str, float]]) -> Snapshot:
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
            "timers": timers,
            "sets": {key: len(members) for key, members in self._sets.items()},
            "events": list(self._events),
            "service_checks": dict(self._checks),
            "flushed_at": now,
            "interval": interval,
            "metrics_received": self.metrics_received,
            "events_received": self.events_received,
            "service_checks_received": self.service_checks_received,
            "bad_lines": self.bad_lines,
            "overflow": self.overflow,
        }

    def current(self, now: float | None = None, *, percentiles: bool = True) -> Snapshot:
        """The not-yet-flushed state, in the shape of :meth:`flush`; nothing is reset.

        Args:
            now: Clock reading, to compute rates over the interval so far; without it
                ``interval`` and every counter ``rate`` are None.
            percentiles: False leaves the timers' percentiles out (no sorting: cheap
                however many samples are held).
        """
        wanted = self.percentiles if percentiles else ()
        timers = {key: summarize(timer, wanted) for key, timer in self._timers.items()}
        return self._snapshot(now, timers)

    def begin_flush(self, now: float) -> FlushJob:
        """End the interval now; its timers are summarized by the job's steps.

        New metrics go to the next interval at once. Counters are reset to 0 (or dropped,
        with ``delete_counters``), timers, sets, events and service checks cleared; gauges
        keep their values.

        Args:
            now: Clock reading (any monotonic clock, the same one on every call).
        """
        snapshot = self._snapshot(now, {})
        timers = SummaryJob(self._timers, self.percentiles)
        if self.delete_counters:
            self._counters = {}
        else:
            self._counters = dict.fromkeys(self._counters, 0.0)
        self._timers = {}
        self._sets = {}
        self._events = []
        self._checks = {}
        self._interval_start = now
        self._flush_seq += 1
        return FlushJob(self, snapshot, timers, self._flush_seq)

    def _publish(self, snapshot: Snapshot, seq: int) -> None:
        if seq > self._published_seq:
            self._published_seq = seq
            self.last_flush = snapshot

    def flush(self, now: float) -> Snapshot:
        """End the interval: return its snapshot, keep it as ``last_flush``, start anew.

        The whole flush at once; see :meth:`begin_flush` for one in steps.

        Args:
            now: Clock reading (any monotonic clock, the same one on every call).
        """
        job = self.begin_flush(now)
        job.step(math.inf)
        assert job.snapshot is not None
        return job.snapshot
