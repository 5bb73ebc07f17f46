"""What the web layer needs of a lab: a small interface, not the supervisor itself.

The Lab builds one :class:`WebDeps` when it serves and hands it to the web server
it was given (see :func:`app.web.server.serve_web`), the way hypercorn's ``TCPServer`` gets
a context and a config rather than the worker. Nothing here imports the web server, so the
Lab can depend on this module without depending on Quart or Hypercorn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trio

    from app.hub import Hub
    from app.listeners.manager import ListenerManager
    from app.looplag import LoopLagMonitor
    from app.mesh.manager import MeshManager
    from app.packets import PacketTool
    from app.peers import PeerManager
    from app.registry import Registry
    from app.runs.manager import RunManager
    from app.scenarios import ScenarioTool
    from app.settings import Settings
    from app.store import Store
    from app.timeseries import LabSeries


@dataclass(frozen=True, eq=False)
class WebDeps:
    """The collaborators of the web layer.

    Attributes:
        settings: the lab's settings (token, hosts, snapshot interval, ...).
        listeners: start, stop and list listeners.
        runs: start, stop, get and list runs (ask it, never its attributes).
        registry: live connections and flows.
        hub: the one hub of live events; the web layer publishes the dashboard's ticks.
        series: the lab's per-second totals, sampled by the web layer's tick loop.
        loop_lag: the event-loop lag monitor, for ``/metrics``.
        peers: the peer manager, or ``None`` on a lab without peers.
        store: the store (presets, and whether it is degraded, for ``/api/health``); open
            while the lab serves.
        packets: the packet tool: sends without runs, saved packets, the send log.
        scenarios: saved scenarios and the dry run of one session.
        shutdown: set when the lab shuts down; live feeds end and the server drains.
        started_at: when the lab started (Unix time).
        mesh: the mesh manager, or ``None`` when the lab is not in mesh mode.
    """

    settings: Settings
    listeners: ListenerManager
    runs: RunManager
    registry: Registry
    hub: Hub
    series: LabSeries
    loop_lag: LoopLagMonitor
    peers: PeerManager | None
    store: Store
    packets: PacketTool
    scenarios: ScenarioTool
    shutdown: trio.Event
    started_at: float
    mesh: MeshManager | None = None
