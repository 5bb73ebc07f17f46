"""Every collector's series re-exported for Prometheus, the same way for each.

Theory of operation: at each scrape, :class:`TelemetryExporter` reads every collector's
series store (:mod:`app.listeners.collectors`) and exports each numeric series' last value
as one sample of ``socketlab_telemetry_value``, labelled ``listener``, ``metric`` (the
series name), ``field`` and the series' tags as labels. Tag keys are sanitized to
Prometheus label names (``[a-zA-Z_][a-zA-Z0-9_]*``: other characters become ``_``; a key
that would clash with the fixed labels, start with a digit or with ``__`` gets a ``tag_``
prefix), so no client name can break the exposition. Two series that sanitize to the same
labels are exported once (the first by name) and counted in
``socketlab_telemetry_label_clashes``. Booleans are 0 or 1; strings are not exported (a
Prometheus sample is a number). The number of samples per listener is bounded by its
``max_series``, as the store is.

Beside the values: per listener, the series held and refused for the bound, the points
received, the collector's own counters (lines received, bad lines, kernel and backlog drops,
forwarded, ...), and for syslog the records per severity. StatsD keeps its cumulative
``socketlab_statsd_*`` families too (:mod:`app.web.statsd_metrics`): a Prometheus counter
must only grow, and only those fold the flushed intervals in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.listeners.collectors import collectors, logs_of
from app.listeners.modes.statsd import StatsdMode
from app.telemetry.points import SEVERITIES, FieldValue, Tags
from app.telemetry.series import SeriesQuery

if TYPE_CHECKING:
    from app.listeners.base import Listener

_FIXED = ("listener", "metric", "field")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")

# The collector counters exported per listener: (family suffix, help, the keys a
# collector's document may name it by, first found wins).
_COUNTERS = (
    ("received", "Lines or records a collector received", ("received", "metrics_received")),
    ("bad_lines", "Lines a collector could not parse", ("bad_lines",)),
    ("kernel_drops", "Datagrams the kernel dropped for a collector", ("kernel_drops",)),
    ("backlog_drops", "Datagrams dropped: a collector's parse queue was full", ("backlog_drops",)),
    ("overflow", "Metrics a collector refused for its key bound", ("overflow",)),
    ("forwarded", "Lines or datagrams forwarded upstream", ("forwarded",)),
    ("forward_failed", "Lines or datagrams not forwarded upstream", ("forward_failed",)),
)  # fmt: skip


def label_name(key: str) -> str:
    """A tag key as a Prometheus label name that cannot clash with the fixed labels."""
    name = _NOT_LABEL.sub("_", key) or "_"
    if name in _FIXED or name[0].isdigit() or name.startswith("__"):
        name = f"tag_{name}"
    return name


def _labels(listener_id: str, name: str, field: str, tags: Tags) -> dict[str, str]:
    labels = {"listener": listener_id, "metric": name, "field": field}
    for key, value in tags:
        labels.setdefault(label_name(key), value)
    return labels


def _number(value: FieldValue) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _own_counters(listener: Listener) -> dict[str, Any]:
    mode = listener.mode
    if isinstance(mode, StatsdMode):
        counters: dict[str, Any] = mode.details()["statsd"]  # cheap: no open snapshot
        return counters
    own = getattr(mode, "telemetry", None)
    return dict(own()) if callable(own) else {}


class TelemetryExporter:
    """Builds the ``socketlab_telemetry_*`` families from every collector at a scrape."""

    def collect(self, listeners: Iterable[Listener]) -> Iterator[Metric]:
        found = list(collectors(listeners))
        if not found:
            return
        values = Metric(
            "socketlab_telemetry_value",
            "Last value of every numeric series a collector holds (labels: listener, metric, "
            "field and the series' tags)",
            "gauge",
        )
        held = GaugeMetricFamily(
            "socketlab_telemetry_series", "Series a collector holds", labels=["listener"]
        )
        refused = CounterMetricFamily(
            "socketlab_telemetry_series_overflow",
            "Points refused because the collector holds max_series series",
            labels=["listener"],
        )
        points = CounterMetricFamily(
            "socketlab_telemetry_points", "Points a collector's series store received",
            labels=["listener"],
        )  # fmt: skip
        clashes = CounterMetricFamily(
            "socketlab_telemetry_label_clashes",
            "Series not exported: their labels sanitized to another series' labels",
            labels=["listener"],
        )
        counters = {
            suffix: CounterMetricFamily(f"socketlab_telemetry_{suffix}", text, labels=["listener"])
            for suffix, text, _ in _COUNTERS
        }
        logs = CounterMetricFamily(
            "socketlab_telemetry_log_records",
            "Syslog records received, by severity",
            labels=["listener", "severity"],
        )
        for listener, series in found:
            seen: set[tuple[tuple[str, str], ...]] = set()
            clashed = 0
            listed, _ = series.query(SeriesQuery())
            for (name, field, tags), one in listed:
                value = None if one.last is None else _number(one.last[1])
                if value is None:
                    continue
                labels = _labels(listener.id, name, field, tags)
                identity = tuple(sorted(labels.items()))
                if identity in seen:
                    clashed += 1
                    continue
                seen.add(identity)
                values.add_sample("socketlab_telemetry_value", labels, value)
            held.add_metric([listener.id], series.series_count)
            refused.add_metric([listener.id], series.overflow)
            points.add_metric([listener.id], series.points_received)
            clashes.add_metric([listener.id], clashed)
            own = _own_counters(listener)
            for suffix, _, keys in _COUNTERS:
                number = next((own[key] for key in keys if isinstance(own.get(key), int)), None)
                if number is not None:
                    counters[suffix].add_metric([listener.id], number)
            store = logs_of(listener.mode)
            if store is not None:
                for severity, count in zip(SEVERITIES, store.by_severity, strict=True):
                    logs.add_metric([listener.id, severity], count)
        yield from (values, held, refused, points, clashes, *counters.values(), logs)
