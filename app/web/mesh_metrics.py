"""Prometheus: the mesh's per-pair figures with ``src`` and ``dst`` labels.

Each node exports its own outgoing row only (``src`` is always this node), so scraping
every node gives every pair once. The figures are the row's, taken once a second
(:meth:`app.mesh.manager.MeshManager.row`): the same numbers ``/api/mesh`` shows. Window
figures are gauges (they cover the last ``window`` seconds); probe counts since start are
counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from app.mesh.manager import MeshManager

_PAIR = ["src", "dst"]
_FLOW = ["src", "dst", "protocol"]
_STATES = ("unknown", "ok", "failing")

# (metric name without prefix, figure key, scale, help text)
_FLOW_GAUGES = (
    (
        "rtt_p50_seconds",
        "rtt_p50_ms",
        1e-3,
        "Median round trip of the pair's probes over the window",
    ),
    ("rtt_p99_seconds", "rtt_p99_ms", 1e-3, "99th percentile round trip over the window"),
    ("jitter_seconds", "jitter_ms", 1e-3, "RFC 3550 jitter of the round trips over the window"),
    ("loss_ratio", "loss_pct", 1e-2, "Probes lost over probes decided in the window (0 to 1)"),
    ("probes_window", "sent", 1, "Probes decided (answered or lost) in the window"),
    ("lost_window", "lost", 1, "Probes lost in the window"),
    ("duplicates_window", "duplicates", 1, "Duplicate echoes in the window"),
    ("reordered_window", "reordered", 1, "Echoes out of order in the window"),
)


class MeshCollector(Collector):
    """Reads the mesh's row on every scrape."""

    def __init__(self, mesh: MeshManager) -> None:
        self.mesh = mesh

    def collect(self) -> Iterator[Metric]:
        row = self.mesh.row()
        pairs: list[dict[str, Any]] = row["pairs"]
        at = GaugeMetricFamily(
            "socketlab_mesh_row_timestamp_seconds",
            "When this node's mesh figures were taken (Unix time)",
            labels=["src"],
        )
        if row["at"] is not None:
            at.add_metric([row["node"]], row["at"])
        yield at
        state = GaugeMetricFamily(
            "socketlab_mesh_pair_state",
            "1 for the pair's state (ok: both flows echo; failing; unknown: not yet known)",
            labels=[*_PAIR, "state"],
        )
        up = GaugeMetricFamily("socketlab_mesh_pair_up", "1 while the pair is ok", labels=_PAIR)
        for pair in pairs:
            labels = [pair["src"], pair["dst"]]
            up.add_metric(labels, 1 if pair["state"] == "ok" else 0)
            for name in _STATES:
                state.add_metric([*labels, name], 1 if pair["state"] == name else 0)
        yield up
        yield state
        for name, key, scale, documentation in _FLOW_GAUGES:
            family = GaugeMetricFamily(f"socketlab_mesh_{name}", documentation, labels=_FLOW)
            for pair in pairs:
                for protocol in ("udp", "tcp"):
                    figures = pair[protocol]
                    if figures is not None and figures[key] is not None:
                        labels = [pair["src"], pair["dst"], protocol]
                        family.add_metric(labels, figures[key] * scale)
            yield family
        retrans = GaugeMetricFamily(
            "socketlab_mesh_tcp_retransmits_window",
            "TCP segments the kernel retransmitted on the pair's probe flow in the window",
            labels=_PAIR,
        )
        for pair in pairs:
            if pair["tcp"] is not None and pair["tcp"]["retransmits"] is not None:
                retrans.add_metric([pair["src"], pair["dst"]], pair["tcp"]["retransmits"])
        yield retrans
        sent = CounterMetricFamily(
            "socketlab_mesh_probes_sent", "Probes sent to the pair's echo since start", labels=_FLOW
        )
        for target in self.mesh.targets.values():
            if target.pair is not None and target.pair.doc:
                for protocol, flow in (("udp", target.pair.udp), ("tcp", target.pair.tcp)):
                    sent.add_metric(
                        [self.mesh.name, target.pair.dst, protocol], flow.window.total_sent
                    )
        yield sent
