"""One source → destination pair of the mesh: its two flows, its state and its series.

Theory of operation: :meth:`Pair.tick` runs once a second (the manager's clock). It expires
overdue probes, decides the state and takes the pair's figures once; that one document is
what ``GET /api/mesh/row``, ``/api/mesh``, ``/metrics`` and the dashboard all show, and a
point of the pair's series.

The state is ``unknown`` until the first reply or ``fail_after`` seconds, ``ok`` while both
flows have had a reply within ``fail_after`` seconds and no error since, ``failing``
otherwise; ``since`` is when it became what it is. A broken TCP connection is ``failing``
at once (the next tick); a silent peer after ``fail_after`` seconds (3 s by default).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import trio

from app.endpoint import host_port
from app.mesh.config import MeshSettings
from app.mesh.probes import Flow, serve_tcp_flow, serve_udp_flow

PairState = Literal["unknown", "ok", "failing"]
# Points of a pair's series (one a second): ten minutes.
SERIES_POINTS = 600


class Pair:
    """The pair this node (``src``) measures to ``dst`` at ``host:port``."""

    def __init__(self, src: str, dst: str, host: str, port: int, mesh: MeshSettings) -> None:
        self.src, self.dst, self.host, self.port = src, dst, host, port
        self.mesh = mesh
        timeout = mesh.probe_timeout()
        self.udp = Flow(mesh.window, timeout, tcp=False)
        self.tcp = Flow(mesh.window, timeout, tcp=True)
        self.state: PairState = "unknown"
        self.since = trio.current_time()
        self.since_wall: float | None = None
        self.doc: dict[str, Any] = {}
        self.series: deque[list[float | None]] = deque(maxlen=SERIES_POINTS)
        self.scope = trio.CancelScope()

    async def serve(self) -> None:
        """Both flows, until cancelled (or ``scope`` is)."""
        mesh = self.mesh
        with self.scope:
            async with trio.open_nursery() as nursery:
                for serve, flow in ((serve_udp_flow, self.udp), (serve_tcp_flow, self.tcp)):
                    nursery.start_soon(serve, flow, self.host, self.port, mesh.rate, mesh.size)

    def _flow_state(self, flow: Flow, now: float) -> PairState:
        last = flow.window.last_reply
        if last is None:
            return "unknown" if now - flow.started <= self.mesh.fail_after() else "failing"
        if now - last > self.mesh.fail_after() or not flow.connected:
            return "failing"
        if flow.error_at is not None and flow.error_at > last:
            return "failing"
        return "ok"

    def tick(self, now: float, wall: float, wall_of: Any) -> dict[str, Any]:
        """Decide the state and take the figures (see the module's docstring).

        Args:
            now: trio's clock.
            wall: Unix time of ``now``.
            wall_of: Turns a trio clock time into Unix time.
        """
        states = {self._flow_state(self.udp, now), self._flow_state(self.tcp, now)}
        state: PairState = (
            "failing" if "failing" in states else "unknown" if "unknown" in states else "ok"
        )
        if state != self.state or self.since_wall is None:
            if state != self.state:
                self.since = now
            self.state = state
            self.since_wall = wall_of(self.since)
        for flow in (self.udp, self.tcp):
            flow.window.expire(now)
        udp, tcp = self.udp.window.figures(False), self.tcp.window.figures(True)
        errors = [f for f in (self.udp, self.tcp) if f.error_at is not None]
        newest = max(errors, key=lambda f: f.error_at or 0.0) if errors else None
        self.doc = {
            "src": self.src,
            "dst": self.dst,
            "address": host_port(self.host, self.port),
            "state": state,
            "since": self.since_wall,
            "last_error": None if newest is None else newest.error,
            "error_at": None
            if newest is None or newest.error_at is None
            else wall_of(newest.error_at),
            "udp": udp,
            "tcp": tcp,
        }
        self.series.append(
            [
                round(wall, 3),
                udp["rtt_p50_ms"],
                udp["rtt_p99_ms"],
                udp["loss_pct"],
                tcp["rtt_p50_ms"],
                tcp["rtt_p99_ms"],
                tcp["retransmits"],
            ]
        )
        return self.doc


SERIES_COLUMNS = [
    "t",
    "udp_rtt_p50_ms",
    "udp_rtt_p99_ms",
    "udp_loss_pct",
    "tcp_rtt_p50_ms",
    "tcp_rtt_p99_ms",
    "tcp_retransmits",
]
