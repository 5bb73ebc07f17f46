"""The collector listeners, seen through the one telemetry model.

A collector is any listener whose mode has a ``series``
(:class:`~app.telemetry.series.SeriesStore`): StatsD, InfluxDB line protocol, Graphite and
syslog alike; a syslog collector also has ``logs`` (:class:`~app.telemetry.logs.LogStore`).
The API, the Prometheus re-export and the dashboard read collectors only through this
module, so a new collector mode needs nothing here: it owns its stores and a
``telemetry()`` document of its counters (:func:`series_for` makes its series store as
the listener's options bound it).

:func:`collector_doc` is one item of ``GET /api/telemetry``: the mode's own document plus
the same keys for every collector (``mode``, ``series_count``, ``max_series``,
``series_overflow``, ``series_strings_cut``, the first :data:`MAX_LISTED` series with their
last value, and for syslog the counts per severity).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from app.errors import ConflictError
from app.listeners.base import Listener, Mode
from app.listeners.spec import ListenerSpec
from app.telemetry.logs import LogStore
from app.telemetry.points import FACILITIES, SEVERITIES, Tags
from app.telemetry.series import Series, SeriesKey, SeriesQuery, SeriesStore

# Series listed per collector in GET /api/telemetry (the series query has the rest).
MAX_LISTED = 200


def series_for(spec: ListenerSpec) -> SeriesStore:
    """A new collector's series store, bounded as its spec says: ``max_keys`` series,
    ``history_points`` raw points, ``history_buckets`` of ``history_resolution`` s."""
    return SeriesStore(
        max_series=spec.max_keys,
        max_points=spec.history_points,
        resolution=spec.history_resolution,
        max_buckets=spec.history_buckets,
    )


def series_of(mode: Mode | None) -> SeriesStore | None:
    """The mode's series store, or None for a mode that collects nothing."""
    series = getattr(mode, "series", None)
    return series if isinstance(series, SeriesStore) else None


def logs_of(mode: Mode | None) -> LogStore | None:
    """The mode's log store (syslog), or None."""
    logs = getattr(mode, "logs", None)
    return logs if isinstance(logs, LogStore) else None


def collectors(listeners: Iterable[Listener]) -> Iterator[tuple[Listener, SeriesStore]]:
    """Every collector among ``listeners``, with its series store."""
    for listener in listeners:
        series = series_of(listener.mode)
        if series is not None:
            yield listener, series


def collector(listener: Listener) -> SeriesStore:
    """``listener``'s series store.

    Raises:
        ConflictError: The listener collects no telemetry (field ``listener``).
    """
    series = series_of(listener.mode)
    if series is None:
        raise ConflictError(
            f"listener {listener.id} is not a telemetry collector "
            f"(its mode is {listener.spec.mode})",
            "listener",
        )
    return series


def tags_doc(tags: Tags) -> dict[str, str]:
    return dict(tags)


def series_row(key: SeriesKey, series: Series) -> dict[str, Any]:
    """One series without its history: name, field, tags, points received, last value."""
    name, field, tags = key
    last = series.last
    return {
        "name": name,
        "field": field,
        "tags": tags_doc(tags),
        "received": series.received,
        "last": None if last is None else {"t": last[0], "value": last[1]},
    }


def severity_counts(logs: LogStore) -> dict[str, int]:
    """Records received per severity name (``emerg`` ... ``debug``), exact."""
    return dict(zip(SEVERITIES, logs.by_severity, strict=True))


def logs_doc(logs: LogStore) -> dict[str, Any]:
    """A syslog collector's log counts: received, kept, evicted, per severity and facility."""
    return {
        "received": logs.received,
        "kept": len(logs),
        "max_records": logs.max_records,
        "evicted": logs.evicted,
        "by_severity": severity_counts(logs),
        "by_facility": {
            name: count for name, count in zip(FACILITIES, logs.by_facility, strict=True) if count
        },
    }


def collector_doc(listener: Listener, series: SeriesStore) -> dict[str, Any]:
    """One item of ``GET /api/telemetry``: the mode's own counters plus the shared keys."""
    mode = listener.mode
    own = getattr(mode, "telemetry", None)
    doc: dict[str, Any] = dict(own()) if callable(own) else {}
    doc.setdefault("listener_id", listener.id)
    doc.setdefault("url", listener.spec_url())
    doc.setdefault("protocol", listener.spec.protocol)
    doc["mode"] = mode.name if mode is not None else listener.spec.mode
    doc["series_count"] = series.series_count
    doc["max_series"] = series.max_series
    doc["series_overflow"] = series.overflow
    doc["series_strings_cut"] = series.strings_cut
    listed, _ = series.query(SeriesQuery(), MAX_LISTED)
    doc["series"] = [series_row(key, held) for key, held in listed]
    logs = logs_of(mode)
    doc["logs"] = None if logs is None else logs_doc(logs)
    return doc
