"""Mesh mode: this node measures every peer, and gathers the peers' rows into a matrix.

Theory of operation: the peers are the ``--peer`` URLs and the addresses the
``--peers-dns`` names resolve to (:mod:`app.mesh.discovery`, looked up again every
``resolve_interval``; a peer no longer found is dropped with its pair). For each peer a
task asks its API for its row (``GET /api/mesh/row``, every ``ROW_INTERVAL`` seconds or
more in a large mesh, through
:class:`~app.peerhttp.PeerClient`: bounded in time and bytes, checked against
:class:`~app.web.mesh_schemas.MeshRowDoc`). The first answer names the peer and its mesh
port; from then on a :class:`~app.mesh.pair.Pair` probes it. A URL that answers with this
node's own name is this node (a DNS name lists every node) and is not probed; a second URL
answering a name already measured is not measured twice.

Once a second every pair takes its figures (:meth:`Pair.tick`); this node's row is that list,
taken once, so the API, ``/metrics`` and the dashboard show the same numbers. The matrix
(:meth:`MeshManager.matrix`) is this row and the latest row of each peer; a peer whose row
cannot be fetched is ``unreachable`` and the pairs of its last row show ``failing``.

Error handling: a peer's bad or missing answer is that peer's row ``error``; nothing a
peer answers ends this node.
"""

from __future__ import annotations

import logging
import socket as stdsocket
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from app.errors import SocketlabError
from app.mesh.config import MeshSettings
from app.mesh.discovery import discover
from app.mesh.pair import SERIES_COLUMNS, Pair
from app.peerhttp import PeerClient, PeerLimits, one_line, peer_path
from app.peers import PeerConfig
from app.web.mesh_schemas import MeshRowDoc, MeshSeries

logger = logging.getLogger(__name__)

ROW_INTERVAL = 1.0
# Rows fetched a second at most, all peers together: a large mesh refreshes its copy of
# the others' rows more slowly (its own pairs still tick every second).
ROWS_PER_SECOND = 10.0
TICK = 1.0


@dataclass
class Target:
    """A peer's API, and what this node last learnt of it."""

    config: PeerConfig
    from_dns: bool
    name: str | None = None
    port: int | None = None
    status: str = "unknown"
    error: str | None = None
    since: float | None = None
    row: dict[str, Any] | None = None
    is_self: bool = False
    pair: Pair | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def mark(self, status: str, error: str | None) -> None:
        if status != self.status:
            self.since = time.time()
        self.status, self.error = status, error


class MeshManager:
    """Measures every peer and serves this node's row and the merged matrix.

    Args:
        mesh: What mesh mode does (rate, window, port, name, DNS names).
        peers: The ``--peer`` peers.
        limits: How a peer's answer is bounded (the lab's peer limits).
    """

    def __init__(
        self, mesh: MeshSettings, peers: list[PeerConfig], limits: PeerLimits, token: str | None
    ) -> None:
        self.mesh = mesh
        self.name = mesh.name or stdsocket.gethostname()
        self.static = peers
        self.limits = limits
        self.token = token
        self.targets: dict[str, Target] = {}
        self.ignored = 0
        self.port = mesh.port
        self.at: float | None = None
        self.client: PeerClient | None = None
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with PeerClient(self.limits) as client, trio.open_nursery() as nursery:
            self.client = client
            self._nursery = nursery
            nursery.start_soon(self._tick)
            await nursery.start(self._discover)
            task_status.started()

    async def _discover(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        while True:
            found, complete = await discover(self.static, self.mesh.peers_dns, self.token)
            self.update_targets(found, drop=complete)
            if not started:
                task_status.started()
                started = True
            if not self.mesh.peers_dns:
                return
            await trio.sleep(self.mesh.resolve_interval)

    def update_targets(self, found: list[tuple[PeerConfig, bool]], *, drop: bool = True) -> None:
        """Follow the peers found: start the new ones, drop (when ``drop``) those gone."""
        assert self._nursery is not None
        urls = {config.url for config, _ in found}
        gone = [u for u, t in self.targets.items() if t.from_dns and u not in urls] if drop else []
        for url in gone:
            logger.info("mesh peer %s is no longer found", url)
            self.targets.pop(url).scope.cancel()
        ignored = 0
        for config, from_dns in found:
            if config.url in self.targets:
                continue
            if len(self.targets) >= self.mesh.max_peers:
                ignored += 1
                continue
            target = Target(config, from_dns)
            self.targets[config.url] = target
            self._nursery.start_soon(self._follow, target)
        self.ignored = ignored

    async def _follow(self, target: Target) -> None:
        """Fetch the peer's row every ROW_INTERVAL; the first answer starts its pair."""
        assert self.client is not None
        config = target.config
        with target.scope:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        doc = await self.client.call(
                            config.url, "GET", "/api/mesh/row", MeshRowDoc, token=config.token
                        )
                    except SocketlabError as exc:
                        target.mark("unreachable", one_line(f"GET /api/mesh/row: {exc.message}"))
                    except Exception:  # the per-peer boundary: a bug must not end the lab
                        logger.exception("mesh peer %s: its row could not be used", config.url)
                        target.mark("unreachable", "its row could not be used (see the log)")
                    else:
                        self._learn(target, doc, nursery)
                        if target.is_self:
                            return
                    await trio.sleep(max(ROW_INTERVAL, len(self.targets) / ROWS_PER_SECOND))

    def _learn(self, target: Target, doc: dict[str, Any], nursery: trio.Nursery) -> None:
        name = doc["node"]
        if name == self.name:
            target.is_self = True
            return
        if not doc["enabled"] or doc["port"] is None:
            target.mark("unknown", "not in mesh mode (started without --mesh)")
            return
        pair = target.pair
        if pair is not None and (pair.dst, pair.port) != (name, doc["port"]):
            # Another node at that address now (a pod's IP given to a new pod), or the same
            # one started again on another port: a new pair, with figures of its own.
            pair.scope.cancel()
            target.pair = None
        target.name, target.port, target.row = name, doc["port"], doc
        target.mark("ok", None)
        if target.pair is None and not any(
            t.pair is not None and t.pair.dst == name for t in self.targets.values()
        ):
            target.pair = Pair(self.name, name, target.config.host, doc["port"], self.mesh)
            nursery.start_soon(target.pair.serve)

    async def _tick(self) -> None:
        while True:
            now, wall = trio.current_time(), time.time()
            for target in self.targets.values():
                if target.pair is not None:
                    target.pair.tick(now, wall, lambda t, n=now, w=wall: w - (n - t))
            self.at = wall
            await trio.sleep(TICK)

    def _pending(self, target: Target) -> dict[str, Any]:
        """A pair to a peer not measured yet: its row was never fetched."""
        return {
            "src": self.name,
            "dst": target.config.name,
            "address": target.config.url,
            "state": "failing" if target.status == "unreachable" else "unknown",
            "since": target.since,
            "last_error": target.error,
            "error_at": target.since if target.error else None,
            "udp": None,
            "tcp": None,
        }

    def row(self) -> dict[str, Any]:
        """This node's own row (``GET /api/mesh/row``)."""
        pairs = []
        for target in self.targets.values():
            if target.is_self:
                continue
            if target.pair is not None:
                if target.pair.doc:
                    pairs.append(target.pair.doc)
            elif target.name is None:
                pairs.append(self._pending(target))
        return {
            "node": self.name,
            "enabled": True,
            "port": self.port,
            "rate": self.mesh.rate,
            "window": self.mesh.window,
            "at": self.at,
            "ignored_peers": self.ignored,
            "pairs": sorted(pairs, key=lambda p: str(p["dst"])),
        }

    def matrix(self) -> dict[str, Any]:
        """This row and each peer's latest (``GET /api/mesh``)."""
        own = self.row()
        rows = [
            {
                "src": self.name,
                "url": None,
                "status": "ok",
                "error": None,
                "since": None,
                "at": own["at"],
                "pairs": own["pairs"],
            }
        ]
        seen = {self.name}
        for target in self.targets.values():
            if target.is_self or target.name is None or target.name in seen:
                continue
            seen.add(target.name)
            row = target.row or {"pairs": [], "at": None}
            pairs = row["pairs"]
            if target.status == "unreachable":
                why = f"no answer from {target.name}: {target.error}"
                pairs = [
                    {
                        **p,
                        "state": "failing",
                        "since": target.since,
                        "last_error": why,
                        "error_at": target.since,
                    }
                    for p in pairs
                ]
            rows.append(
                {
                    "src": target.name,
                    "url": target.config.url,
                    "status": target.status,
                    "error": target.error,
                    "since": target.since,
                    "at": row["at"],
                    "pairs": pairs,
                }
            )
        nodes = sorted({r["src"] for r in rows} | {p["dst"] for r in rows for p in r["pairs"]})
        return {"node": self.name, "enabled": True, "nodes": nodes, "rows": rows}

    def series(self, src: str, dst: str) -> dict[str, Any] | None:
        """A pair of this node's: its series; None when it measures no such pair."""
        if src != self.name:
            return None
        for target in self.targets.values():
            if target.pair is not None and target.pair.dst == dst:
                points = list(target.pair.series)
                return {"src": src, "dst": dst, "columns": SERIES_COLUMNS, "points": points}
        return None

    def url_of(self, name: str) -> PeerConfig | None:
        """The API of the peer called ``name``, once its row named it."""
        for target in self.targets.values():
            if target.name == name and not target.is_self:
                return target.config
        return None

    async def peer_series(self, src: str, dst: str) -> dict[str, Any] | None:
        """A pair of another node's, asked of that node (None: no such node known).

        Raises:
            SocketlabError: The node could not be asked or answered badly.
        """
        config = self.url_of(src)
        if config is None or self.client is None:
            return None
        path = peer_path("api", "mesh", "pairs", src, dst, "series")
        return await self.client.call(config.url, "GET", path, MeshSeries, token=config.token)
