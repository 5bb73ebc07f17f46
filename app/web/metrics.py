"""Prometheus ``/metrics``: the lab's live state, read at scrape time.

Theory of operation: nothing here runs between scrapes. :class:`LabCollector` is a
prometheus-client custom collector; each scrape it reads the counters the listeners, the
registry, the run manager and the loop-lag monitor already keep, and builds metric families
from them. The hot paths therefore pay nothing for monitoring, and a listener or run that
goes away simply stops being reported.

Names follow Prometheus conventions: ``socketlab_`` prefix, base units (seconds, bytes),
``_total`` on counters. Listener series carry ``listener`` (its id), ``protocol``, ``mode``
and ``address``; run series are aggregated over every run by ``protocol`` and ``pattern``
(per-run labels would create a new series for each run). Run RTTs are exported as a
Prometheus histogram with fixed buckets computed from the runs' HDR histograms
(:mod:`app.runs.totals`). Every collector's series are re-exported as
``socketlab_telemetry_*`` (:mod:`app.web.telemetry_metrics`), and StatsD's cumulative
counters and timers as ``socketlab_statsd_*`` (:mod:`app.web.statsd_metrics`).

Auth: ``/metrics`` needs the lab's token like ``/api`` (``Authorization: Bearer TOKEN``;
Prometheus sends it with ``authorization: {credentials: ...}`` in a scrape config). The
factory's request guard enforces it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app, request

from app import __version__
from app.endpoint import host_port
from app.runs.totals import RTT_BUCKETS, BucketCounts
from app.web.mesh_metrics import MeshCollector
from app.web.openapi import document_text
from app.web.statsd_metrics import StatsdExporter
from app.web.telemetry_metrics import TelemetryExporter

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from app.web.deps import WebDeps

metrics = Blueprint("metrics", __name__)

_LISTENER_LABELS = ["listener", "protocol", "mode", "address"]
_RUN_LABELS = ["protocol", "pattern"]

# (metric name without prefix, listener attribute, help text)
_LISTENER_COUNTERS = (
    ("connections_accepted", "accepted", "TCP connections accepted or UDP flows seen"),
    ("connections_rejected", "rejected", "Connections refused by the max_connections limit"),
    ("bytes_received", "bytes_in", "Bytes received by the listener"),
    ("bytes_sent", "bytes_out", "Bytes sent by the listener"),
    ("messages_received", "msgs_in", "Reads (TCP) or datagrams (UDP) received"),
    ("messages_sent", "msgs_out", "Writes (TCP) or datagrams (UDP) sent"),
    ("errors", "errors", "Connection errors (resets, failed sends)"),
    ("messages_oversized", "oversized", "Datagrams dropped for exceeding max_message_size"),
)

# (metric name without prefix, PatternTotals attribute, help text)
_RUN_COUNTERS = (
    ("messages_sent", "sent", "Messages sent by runs"),
    ("messages_received", "received", "Replies received by runs"),
    ("bytes_sent", "bytes_sent", "Bytes sent by runs"),
    ("bytes_received", "bytes_received", "Bytes received by runs"),
    ("messages_lost", "lost", "Messages whose reply never came (timeout or UDP loss)"),
    ("messages_late", "late", "Replies that came after their timeout"),
    ("connections_opened", "connections_opened", "TCP connections or UDP flows opened by runs"),
)


def _histogram(
    name: str, documentation: str, labels: list[str]
) -> tuple[HistogramMetricFamily, list[str]]:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    return family, [_bound(b) for b in RTT_BUCKETS] + ["+Inf"]


def _bound(value: float) -> str:
    """A bucket's ``le`` label: Go-style float text, ``+Inf`` for the last one."""
    return "+Inf" if math.isinf(value) else repr(float(value))


def _add_buckets(
    family: HistogramMetricFamily, bounds: list[str], labels: list[str], data: BucketCounts
) -> None:
    family.add_metric(labels, list(zip(bounds, data.cumulative, strict=True)), data.sum)


class LabCollector(Collector):
    """Reads one lab's live state on every scrape. Register it in a per-lab registry."""

    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps
        self.statsd = StatsdExporter()
        self.statsd.attach_all(deps.listeners)
        self.telemetry = TelemetryExporter()

    def collect(self) -> Iterator[Metric]:
        yield from self._lab_metrics()
        yield from self._listener_metrics()
        yield from self._run_metrics()
        yield from self._loop_metrics()
        yield from self.statsd.collect(self.deps.listeners)
        yield from self.telemetry.collect(self.deps.listeners)

    def _lab_metrics(self) -> Iterator[Metric]:
        deps = self.deps
        info = GaugeMetricFamily(
            "socketlab_build_info", "socketlab version (always 1)", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "socketlab_start_time_seconds",
            "When the lab started, in seconds since the Unix epoch",
            value=deps.started_at,
        )
        inbound = outbound = 0
        for conn in deps.registry:
            if conn.run_id is None:
                inbound += 1
            else:
                outbound += 1
        open_conns = GaugeMetricFamily(
            "socketlab_connections_open",
            "Live TCP connections and UDP flows: inbound (to listeners) or outbound (runs)",
            labels=["direction"],
        )
        open_conns.add_metric(["inbound"], inbound)
        open_conns.add_metric(["outbound"], outbound)
        yield open_conns
        yield from self._tcp_metrics()
        yield GaugeMetricFamily(
            "socketlab_live_subscribers",
            "Dashboards and event streams subscribed to live updates",
            value=deps.hub.subscriber_count,
        )
        yield CounterMetricFamily(
            "socketlab_live_messages_published",
            "Live update messages published to subscribers",
            value=deps.hub.published,
        )

    def _tcp_metrics(self) -> Iterator[Metric]:
        """The kernel's retransmits (TCP_INFO) summed per direction: two series each, read
        where connections were looked at and at every close (see app.tcpinfo)."""
        registry = self.deps.registry
        sums = (("inbound", registry.tcp_inbound), ("outbound", registry.tcp_outbound))
        families = (
            ("socketlab_tcp_retransmits", "TCP segments the kernel retransmitted", "retransmits"),
            (
                "socketlab_tcp_retransmitted_bytes",
                "Bytes the kernel retransmitted",
                "bytes_retrans",
            ),
            (
                "socketlab_tcp_sampled_connections",
                "TCP connections whose TCP_INFO was read",
                "connections",
            ),
        )
        for name, documentation, attribute in families:
            family = CounterMetricFamily(name, documentation, labels=["direction"])
            for direction, tcp in sums:
                family.add_metric([direction], getattr(tcp, attribute))
            yield family

    def _listener_metrics(self) -> Iterator[Metric]:
        listeners = list(self.deps.listeners)
        rows = []
        for listener in listeners:
            labels = [listener.id, listener.spec.protocol, listener.spec.mode]
            rows.append((listener, [*labels, host_port(listener.host, listener.port)]))
        gauge = GaugeMetricFamily(
            "socketlab_listener_connections",
            "Open TCP connections or live UDP flows of the listener",
            labels=_LISTENER_LABELS,
        )
        for listener, labels in rows:
            gauge.add_metric(labels, listener.connections)
        yield gauge
        for name, attribute, documentation in _LISTENER_COUNTERS:
            family = CounterMetricFamily(
                f"socketlab_listener_{name}", documentation, labels=_LISTENER_LABELS
            )
            for listener, labels in rows:
                family.add_metric(labels, getattr(listener, attribute))
            yield family

    def _run_metrics(self) -> Iterator[Metric]:
        totals, counts = self.deps.runs.totals_snapshot()
        keys = sorted(totals)
        active = GaugeMetricFamily("socketlab_runs_running", "Runs going now", labels=_RUN_LABELS)
        for key in keys:
            active.add_metric(list(key), counts.get(key, 0))
        yield active
        ended = CounterMetricFamily(
            "socketlab_runs_ended",
            "Runs that ended, by final status (finished, stopped, failed)",
            labels=[*_RUN_LABELS, "status"],
        )
        errors = CounterMetricFamily(
            "socketlab_run_errors",
            "Run errors by kind (refused, reset, timeout, unreachable, dns, ...)",
            labels=[*_RUN_LABELS, "kind"],
        )
        for key in keys:
            for status, count in sorted(totals[key].ended.items()):
                ended.add_metric([*key, status], count)
            for kind, count in sorted(totals[key].errors.items()):
                errors.add_metric([*key, kind], count)
        yield ended
        yield errors
        for name, attribute, documentation in _RUN_COUNTERS:
            family = CounterMetricFamily(f"socketlab_run_{name}", documentation, labels=_RUN_LABELS)
            for key in keys:
                family.add_metric(list(key), getattr(totals[key], attribute))
            yield family
        rtt, bounds = _histogram(
            "socketlab_run_rtt_seconds",
            "Round-trip time of run messages (from HDR histograms, 0.1 % precision)",
            _RUN_LABELS,
        )
        for key in keys:
            _add_buckets(rtt, bounds, list(key), totals[key].rtt)
        yield rtt

    def _loop_metrics(self) -> Iterator[Metric]:
        monitor = self.deps.loop_lag
        lag = HistogramMetricFamily(
            "socketlab_event_loop_lag_seconds",
            f"How late the event loop woke a sleeping task (sampled every {monitor.interval:g} s)",
        )
        lag.add_metric(
            [],
            [(_bound(bound), count) for bound, count in monitor.cumulative_buckets()],
            monitor.total,
        )
        yield lag
        yield GaugeMetricFamily(
            "socketlab_event_loop_lag_last_seconds",
            "The latest event-loop lag sample",
            value=monitor.last,
        )
        stats = trio.lowlevel.current_statistics()
        yield GaugeMetricFamily(
            "socketlab_event_loop_tasks", "Trio tasks alive", value=stats.tasks_living
        )


def create_registry(deps: WebDeps) -> CollectorRegistry:
    """A registry of its own per lab (tests run several labs in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabCollector(deps))
    if deps.mesh is not None:
        registry.register(MeshCollector(deps.mesh))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def install_metrics(web: QuartTrio, deps: WebDeps) -> None:
    """Serve ``GET /metrics`` for the lab behind ``deps`` on ``web``."""
    web.extensions["socketlab_metrics"] = create_registry(deps)
    web.register_blueprint(metrics)


@metrics.get("/metrics")
@document_text("text/plain", "Prometheus text exposition format, version 0.0.4")
async def serve_metrics() -> Response:
    """Prometheus metrics of this lab (text exposition format; OpenMetrics when asked).

    Needs the token, as `Authorization: Bearer TOKEN`.
    """
    registry: CollectorRegistry = current_app.extensions["socketlab_metrics"]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), status=200, content_type=content_type)
