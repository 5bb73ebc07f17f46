"""StatsD metrics collected by ``statsd`` listeners, re-exported for Prometheus.

Theory of operation: as statsd_exporter does, StatsD counters become Prometheus counters that
only grow, gauges stay gauges and timers become summaries. A StatsD aggregator starts every
interval empty, so the cumulative part lives here: :class:`StatsdTotals` is chained onto the
listener's flush callback and folds each flushed interval in (counters; timer count and sum).
A scrape reports those totals plus the open interval, so a counter keeps its value across a
flush. Timer quantiles and set sizes are those of the last flushed interval (a summary's
quantiles cover a recent window; this is it). Gauges are the current values.

Families: ``socketlab_statsd_counted_total`` (counters), ``socketlab_statsd_value`` (gauges),
``socketlab_statsd_timer`` (summary), ``socketlab_statsd_set_members``, and per-listener
totals (metrics received, bad lines, overflow, flushes). Series carry labels ``listener``,
``metric`` (the StatsD name) and ``tags`` (sorted, comma-separated, as sent), so no StatsD
name can clash with socketlab's own metrics. The number of series per listener is bounded by
its ``max_keys``; keys past that are counted in ``socketlab_statsd_totals_overflow_total`` and
not exported.

Counting starts when the metrics endpoint first sees the listener (at start for listeners from
the config, at the next scrape for ones started later). StatsD allows negative counter values
(``-1|c``) and a Prometheus counter never goes down, so a counter is reported as the highest
running sum seen by a scrape: exact for counters that only count up, never decreasing for any.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.listeners.modes.statsd import StatsdMode
from app.wire.statsd import Snapshot

if TYPE_CHECKING:
    from app.listeners.base import Listener

_LABELS = ["listener", "metric", "tags"]


class StatsdTotals:
    """Everything that must add up across flushes for one StatsD listener."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.counters: dict[str, float] = {}
        self.reported: dict[str, float] = {}  # the highest value each counter was reported at
        self.timer_counts: dict[str, float] = {}
        self.timer_sums: dict[str, float] = {}
        self.overflow = 0

    def _room(self, table: dict[str, float], key: str) -> bool:
        if key in table or len(table) < self.max_keys:
            return True
        self.overflow += 1
        return False

    def fold(self, snapshot: Snapshot) -> None:
        """Add one flushed interval."""
        for key, counter in snapshot["counters"].items():
            if self._room(self.counters, key):
                self.counters[key] = self.counters.get(key, 0.0) + counter["value"]
        for key, timer in snapshot["timers"].items():
            if self._room(self.timer_counts, key):
                self.timer_counts[key] = self.timer_counts.get(key, 0.0) + timer["count"]
                self.timer_sums[key] = self.timer_sums.get(key, 0.0) + timer["sum"]


def split_key(key: str) -> tuple[str, str]:
    """``name|#a,b`` → (``name``, ``a,b``); a key without tags has ``""``."""
    name, sep, tags = key.partition("|#")
    return name, tags if sep else ""


def _quantile(stat: str) -> str | None:
    """``p99`` → ``0.99``; None for the other timer statistics."""
    if not stat.startswith("p"):
        return None
    try:
        return repr(float(stat[1:]) / 100)
    except ValueError:
        return None


class StatsdExporter:
    """Attaches :class:`StatsdTotals` to StatsD listeners and builds their metric families."""

    def __init__(self) -> None:
        self._totals: weakref.WeakKeyDictionary[StatsdMode, StatsdTotals] = (
            weakref.WeakKeyDictionary()
        )

    def attach(self, mode: StatsdMode) -> StatsdTotals:
        """Chain a totals folder onto ``mode``'s flush callback (once per mode)."""
        totals = self._totals.get(mode)
        if totals is None:
            totals = self._totals[mode] = StatsdTotals(mode.aggregator.max_keys)
            previous = mode.on_flush

            def on_flush(snapshot: Snapshot) -> None:
                totals.fold(snapshot)
                if previous is not None:
                    previous(snapshot)

            mode.on_flush = on_flush
        return totals

    def attach_all(self, listeners: Iterable[Listener]) -> None:
        for listener in listeners:
            if isinstance(listener.mode, StatsdMode):
                self.attach(listener.mode)

    def collect(self, listeners: Iterable[Listener]) -> Iterator[Metric]:
        sources = [
            (listener.id, listener.mode)
            for listener in listeners
            if isinstance(listener.mode, StatsdMode)
        ]
        if not sources:
            return
        counters = CounterMetricFamily(
            "socketlab_statsd_counted", "StatsD counters (scaled by sample rate)", labels=_LABELS
        )
        gauges = GaugeMetricFamily("socketlab_statsd_value", "StatsD gauges", labels=_LABELS)
        timers = Metric(
            "socketlab_statsd_timer",
            "StatsD timers, histograms and distributions, in the unit sent; quantiles over "
            "the last flush interval",
            "summary",
        )
        sets = GaugeMetricFamily(
            "socketlab_statsd_set_members",
            "Distinct members of StatsD sets in the last flush interval",
            labels=_LABELS,
        )
        per_listener = {
            "metrics_received": ("StatsD metrics received", "metrics_received"),
            "bad_lines": ("StatsD lines that did not parse", "bad_lines"),
            "overflow": ("StatsD metrics dropped for the max_keys bound", "overflow"),
        }
        families = {
            name: CounterMetricFamily(f"socketlab_statsd_{name}", text, labels=["listener"])
            for name, (text, _) in per_listener.items()
        }
        flushes = CounterMetricFamily(
            "socketlab_statsd_flushes", "StatsD flush intervals closed", labels=["listener"]
        )
        totals_overflow = CounterMetricFamily(
            "socketlab_statsd_totals_overflow",
            "StatsD keys not exported because the totals hold max_keys already",
            labels=["listener"],
        )
        for listener_id, mode in sources:
            totals = self.attach(mode)
            aggregator = mode.aggregator
            current = aggregator.current(percentiles=False)  # counts and sums only
            last = aggregator.last_flush
            open_counters = {k: c["value"] for k, c in current["counters"].items()}
            for key in sorted(totals.counters.keys() | open_counters.keys()):
                value = totals.counters.get(key, 0.0) + open_counters.get(key, 0.0)
                value = totals.reported[key] = max(totals.reported.get(key, 0.0), value)
                counters.add_metric([listener_id, *split_key(key)], value)
            for key, value in sorted(current["gauges"].items()):
                gauges.add_metric([listener_id, *split_key(key)], value)
            open_timers = current["timers"]
            recent = last["timers"] if last is not None else {}
            for key in sorted(totals.timer_counts.keys() | open_timers.keys()):
                name, tags = split_key(key)
                base = {"listener": listener_id, "metric": name, "tags": tags}
                for stat, value in sorted(recent.get(key, {}).items()):
                    quantile = _quantile(stat)
                    if quantile is not None:
                        timers.add_sample(
                            "socketlab_statsd_timer", {**base, "quantile": quantile}, value
                        )
                opened = open_timers.get(key)
                count = totals.timer_counts.get(key, 0.0) + (opened["count"] if opened else 0.0)
                total = totals.timer_sums.get(key, 0.0) + (opened["sum"] if opened else 0.0)
                timers.add_sample("socketlab_statsd_timer_count", base, count)
                timers.add_sample("socketlab_statsd_timer_sum", base, total)
            if last is not None:
                for key, size in sorted(last["sets"].items()):
                    sets.add_metric([listener_id, *split_key(key)], size)
            for name, (_, attribute) in per_listener.items():
                families[name].add_metric([listener_id], getattr(aggregator, attribute))
            flushes.add_metric([listener_id], mode.flushes)
            totals_overflow.add_metric([listener_id], totals.overflow)
        yield from (counters, gauges, timers, sets, *families.values(), flushes, totals_overflow)
