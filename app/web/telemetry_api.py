"""The telemetry routes, the same for every collector: ``GET /api/telemetry`` (each
collector's counters and its series), the series query and the syslog log query.

Collectors are found through :mod:`app.listeners.collectors` (a mode with ``series``, and
``logs`` for syslog), so a new collector mode shows here without a change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app
from quart_schema import document_querystring, document_response

from app.errors import ConflictError
from app.listeners.collectors import (
    collector,
    collectors,
    logs_doc,
    logs_of,
    series_row,
)
from app.telemetry.logs import LogQuery, LogStore
from app.telemetry.points import FACILITIES, SEVERITIES, tags_of
from app.telemetry.series import SeriesQuery, SeriesStore
from app.web.query import check_query, query_args
from app.web.schemas import document_errors
from app.web.telemetry_schemas import (
    LogList,
    LogQueryArgs,
    SeriesList,
    SeriesQueryArgs,
    TelemetryList,
    TelemetryQuery,
)

if TYPE_CHECKING:
    from app.listeners.base import Listener
    from app.listeners.manager import ListenerManager

telemetry_api = Blueprint("telemetry_api", __name__, url_prefix="/api")
telemetry_api.before_request(check_query)


def _listeners() -> ListenerManager:
    manager: ListenerManager = current_app.config["deps"].listeners
    return manager


@telemetry_api.get("/telemetry")
@document_querystring(TelemetryQuery)
@document_response(TelemetryList)
@document_errors(404, 409)
async def telemetry() -> dict[str, Any]:
    """Every telemetry collector (StatsD, InfluxDB line protocol, Graphite, syslog):
    ``{"items": [...]}``; ``?listener=ID`` picks one (409 if it collects nothing).

    Every item has ``listener_id``, ``url``, ``protocol``, ``mode``, ``series_count``,
    ``max_series``, ``series_overflow`` (points refused for the bound), ``series`` (the
    first 200 by name, each with ``name``, ``field``, ``tags``, ``received`` and ``last``:
    the newest value, kept when traffic stops) and ``logs`` (syslog: counts per severity),
    plus the collector's own counters. A StatsD item also has ``metrics_received``,
    ``bad_lines``, ``overflow``, ``set_overflow``, ``keys``, ``max_keys``,
    ``kernel_drops`` (datagrams the kernel dropped, read from the socket; null for TCP or
    where unknown), ``flushes``, ``flush_interval``, ``last_flush_at``, and ``current``
    and ``last_flush`` snapshots: ``counters`` ({key: {value, rate}}), ``gauges``
    ({key: value}), ``timers`` ({key: {count, min, max, mean, sum, p50, p90, p95, p99}}),
    ``sets`` ({key: distinct members}), ``flushed_at``, ``interval``. A StatsD key is
    the metric name, or ``name|#tag,tag`` with its sorted tags.
    """
    listener_id = query_args(TelemetryQuery).listener
    return {"items": await _listeners().telemetry(listener_id)}


def _picked(listener_id: str | None) -> list[tuple[Listener, SeriesStore]]:
    if listener_id is None:
        return list(collectors(_listeners()))
    listener = _listeners().get(listener_id)
    return [(listener, collector(listener))]


def _tags(texts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tags_of([(key, value) for key, _, value in (tag.partition(":") for tag in texts)])


@telemetry_api.get("/telemetry/series")
@document_querystring(SeriesQueryArgs)
@document_response(SeriesList)
@document_errors(404, 409, 422)
async def telemetry_series() -> dict[str, Any]:
    """Series of every collector (or ``listener``) by ``name``, ``field``, ``tag``
    (``k:v,k2:v2``, all required) and ``q`` (text in the name, a field or a tag), each
    with its ``last`` value and, unless ``history=false``, its history since ``since``:
    ``buckets`` (t, count, mean, min, max, last per ``resolution`` seconds: the points
    older than the raw ones) and ``points`` ([t, value], the newest raw points). At most
    ``limit`` series (``total`` says how many matched); 404 for an unknown listener, 409
    for one that collects nothing."""
    args = query_args(SeriesQueryArgs)
    query = SeriesQuery(name=args.name, field=args.field, tags=_tags(args.tag), text=args.q)
    items: list[dict[str, Any]] = []
    total = 0
    resolution = {}
    for listener, series in _picked(args.listener):
        resolution[listener.id] = series.resolution
        picked, count = series.query(query, args.limit)
        total += count
        for key, held in picked:
            if len(items) >= args.limit:
                break
            doc = {"listener_id": listener.id, **series_row(key, held)}
            if args.history:
                history = series.history(key, args.since)
                assert history is not None
                doc["buckets"] = history["buckets"]
                doc["points"] = history["points"]
            items.append(doc)
    return {"items": items, "total": total, "resolution": resolution}


def _log_entry(listener_id: str, seq: int, received_at: float, record: Any) -> dict[str, Any]:
    return {
        "listener_id": listener_id,
        "seq": seq,
        "received_at": received_at,
        "facility": record.facility,
        "facility_name": FACILITIES[record.facility],
        "severity": record.severity,
        "severity_name": SEVERITIES[record.severity],
        "format": record.format,
        "host": record.host,
        "app": record.app,
        "procid": record.procid,
        "msgid": record.msgid,
        "time": record.time,
        "message": record.message,
        "structured": record.structured,
    }


@telemetry_api.get("/telemetry/logs")
@document_querystring(LogQueryArgs)
@document_response(LogList)
@document_errors(404, 409, 422)
async def telemetry_logs() -> dict[str, Any]:
    """The newest syslog records (newest first) of every syslog collector (or
    ``listener``), filtered by ``facility`` (number or name), ``severity`` (that or worse:
    number or name), ``host``, ``app`` and ``q`` (text in the message); ``after`` leaves
    out records up to that ``seq``. ``counts`` has each collector's exact counts per
    severity (every record, also those no longer kept). 409 for a listener without logs."""
    args = query_args(LogQueryArgs)
    stores: list[tuple[str, LogStore]] = []
    for listener, _ in _picked(args.listener):
        logs = logs_of(listener.mode)
        if logs is not None:
            stores.append((listener.id, logs))
        elif args.listener is not None:
            raise ConflictError(f"listener {listener.id} keeps no log records", "listener")
    query = LogQuery(
        facility=args.facility,
        severity=args.severity,
        host=args.host,
        app=args.app,
        text=args.q,
        after=args.after,
    )
    entries = [
        _log_entry(listener_id, seq, at, record)
        for listener_id, logs in stores
        for seq, at, record in logs.query(query, args.limit)
    ]
    entries.sort(key=lambda entry: (entry["received_at"], entry["seq"]), reverse=True)
    return {
        "items": entries[: args.limit],
        "counts": {listener_id: logs_doc(logs) for listener_id, logs in stores},
    }
