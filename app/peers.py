"""Other socketlab nodes this one shows and can start runs on.

Theory of operation: each peer (``--peer URL``) is polled every ``POLL_INTERVAL`` seconds
through its own API with its token: health, listeners and the first page of connections.
The latest answer (or the error) is kept, so the dashboard and ``GET /api/peers`` show peers
without waiting on them. A run started on a peer through this node is forwarded to the
peer's ``POST /api/runs``; a watcher follows it until it ends and keeps a copy of its result
in this node's store, so it is visible on both nodes. That local copy is a run of this node's
:class:`~app.runs.manager.RunManager` whose executor follows the peer's run instead of
opening sockets: it counts against the same caps (concurrent runs) and is audited like any
other run.

Error handling: a peer that is down is shown as down with the error; every request has a
timeout; nothing a peer answers can take this node down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from app.endpoint import bracket, host_port
from app.errors import ConflictError, NotFoundError, SocketlabError, SpecError
from app.runs.manager import RunManager
from app.runs.outcome import Outcome, conclude
from app.runs.run import Run
from app.runs.spec import parse_run_spec

logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
REQUEST_TIMEOUT = 5.0
# A remote run is followed at most this long after its expected end.
FOLLOW_SLACK = 60.0


@dataclass
class PeerConfig:
    """A peer as configured: its base URL, token, and the name it is shown by."""

    url: str
    token: str | None
    name: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def parse_peer(text: str, default_token: str | None) -> PeerConfig:
    """``http://host:port`` (optionally ``http://:TOKEN@host:port``) → :class:`PeerConfig`."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"peer {text!r}: write http://host:port", "peer")
    try:
        port = parts.port
    except ValueError as exc:
        raise SpecError(f"peer {text!r}: {exc}", "peer") from exc
    token = parts.password or default_token
    netloc = host_port(parts.hostname, port) if port else bracket(parts.hostname)
    return PeerConfig(f"{parts.scheme}://{netloc}", token, parts.hostname)


@dataclass
class PeerState:
    config: PeerConfig
    status: str = "unknown"
    error: str | None = None
    last_seen: float | None = None
    listeners: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    connection_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "url": self.config.url,
            "status": self.status,
            "error": self.error,
            "last_seen": self.last_seen,
            "listeners": self.listeners,
            "connections": self.connections,
            "connection_total": self.connection_total,
        }


class PeerManager:
    """Polls peers, forwards runs to them, and follows those runs to their end."""

    def __init__(self, runs: RunManager, peers: list[PeerConfig]) -> None:
        self.runs = runs
        self.states = {p.name: PeerState(p) for p in peers}
        self._nursery: trio.Nursery | None = None
        self.client: httpx.AsyncClient | None = None

    def get(self, name: str) -> PeerState:
        try:
            return self.states[name]
        except KeyError:
            raise NotFoundError(f"no peer {name!r}", "peer") from None

    def headers(self, state: PeerState) -> dict[str, str]:
        token = state.config.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with (
            httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client,
            trio.open_nursery() as nursery,
        ):
            self.client = client
            self._nursery = nursery
            for state in self.states.values():
                nursery.start_soon(self._poll, state)
            task_status.started()
            await trio.sleep_forever()

    async def request(self, state: PeerState, method: str, path: str, body: Any = None) -> Any:
        """One API call to a peer. Raises :class:`ConflictError` when it cannot answer."""
        assert self.client is not None
        try:
            response = await self.client.request(
                method, state.config.url + path, json=body, headers=self.headers(state)
            )
        except httpx.HTTPError as exc:
            raise ConflictError(f"peer {state.config.name} is unreachable: {exc}", "peer") from exc
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.status_code >= 400:
            detail = doc.get("error") if isinstance(doc, dict) else None
            error = SocketlabError(
                f"peer {state.config.name}: {detail or response.text[:200]}",
                doc.get("field") if isinstance(doc, dict) else None,
            )
            error.status = response.status_code if response.status_code < 500 else 502
            raise error
        return doc

    async def _poll(self, state: PeerState) -> None:
        while True:
            try:
                listeners = await self.request(state, "GET", "/api/listeners")
                connections = await self.request(state, "GET", "/api/connections?limit=100")
                state.listeners = list(listeners.get("items", []))
                state.connections = list(connections.get("items", []))
                state.connection_total = int(connections.get("total", 0))
                state.status, state.error, state.last_seen = "up", None, time.time()
            except SocketlabError as exc:
                if state.status != "down":
                    logger.warning("peer %s is down: %s", state.config.name, exc.message)
                state.status, state.error = "down", exc.message
            except (ValueError, TypeError, AttributeError) as exc:
                state.status, state.error = "down", f"unexpected answer: {exc}"
            await trio.sleep(POLL_INTERVAL)

    async def start_run(
        self,
        name: str,
        spec: dict[str, Any],
        *,
        principal: str = "local",
        client: str | None = None,
    ) -> dict[str, Any]:
        """Start a run on peer ``name``; a local run of the same spec follows it to its end.

        Raises:
            NotFoundError: No such peer.
            ConflictError: The peer cannot answer, this lab is shutting down, or too many
                runs are going here.
            SpecError: The spec is invalid or exceeds one of this lab's caps.
        """
        state = self.get(name)
        run_spec = parse_run_spec(spec)
        runs = self.runs
        # Refused here before the peer starts anything; checked again when the copy starts.
        runs.admit(run_spec)
        created = await self.request(state, "POST", "/api/runs", spec)
        remote_id = str(created["id"])
        await runs.start_followed(
            run_spec,
            partial(self._follow, state, remote_id),
            run_id=f"{name}~{remote_id}",
            principal=principal,
            client=client,
        )
        return {
            "id": f"{name}~{remote_id}",
            "peer": name,
            "remote_id": remote_id,
            "status": "running",
        }

    async def _follow(self, state: PeerState, remote_id: str, run: Run) -> Outcome:
        """The executor of a run followed on a peer: poll it until it ends, then end the
        same way here (a stop here stops it there too)."""
        doc: dict[str, Any] | None = None
        with run.cancel_scope, trio.move_on_after(86_400 + FOLLOW_SLACK):
            while True:
                await trio.sleep(0.5)
                try:
                    doc = await self.request(state, "GET", f"/api/runs/{remote_id}")
                except SocketlabError:
                    continue
                assert doc is not None
                if doc.get("status") != "running":
                    break
        pattern = run.spec.pattern
        if run.cancel_scope.cancelled_caught:
            with trio.CancelScope(shield=True), trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    await self.request(state, "POST", f"/api/runs/{remote_id}/stop", {})
                except SocketlabError as exc:
                    logger.warning("run %s: the peer did not stop it: %s", run.id, exc.message)
            return conclude(pattern, run.stats, run.elapsed, stopped=True)
        if doc is None or doc.get("status") == "running":
            failure = f"lost track of run {remote_id} on peer {state.config.name}"
            return conclude(pattern, run.stats, run.elapsed, failure=failure)
        series = doc.get("series")
        if isinstance(series, list):
            run.stats.series[:] = series
        return conclude(pattern, run.stats, run.elapsed, reported=doc)

    async def get_run(self, name: str, remote_id: str) -> Any:
        return await self.request(self.get(name), "GET", f"/api/runs/{remote_id}")
