"""Other socketlab nodes this one shows and can start runs on.

Theory of operation: each peer (``--peer URL``) is polled every ``POLL_INTERVAL`` seconds
through its own API: its listeners and the first page of its connections. The latest
answer (or what was wrong with it) is kept, so the dashboard and ``GET /api/peers`` show
peers without waiting on them. A run started on a peer through this node is forwarded to
the peer's ``POST /api/runs``; a watcher follows it until it ends and keeps a copy of its
result in this node's store, so it is visible on both nodes. That local copy is a run of
this node's :class:`~app.runs.manager.RunManager` whose executor follows the peer's run
instead of opening sockets: it counts against the same caps (concurrent runs) and is
audited like any other run.

A peer gets a token only when one is configured for it: ``--peer-token`` for every peer, or
its own in its URL (``http://:TOKEN@host:port``). This lab's own token is never sent unless
it is given that way.

Error handling: every call goes through :class:`~app.peerhttp.PeerClient`, which bounds the
answer in time, bytes and depth and checks it against the model the API documents. A peer
that cannot be reached is shown ``down``; one that answers badly is shown ``failing``, with
the reason in ``error``; a run followed there ends ``failed`` with the reason. Nothing a
peer answers goes further than that.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import trio
from pydantic import BaseModel

from app.endpoint import Endpoint, bracket, host_port
from app.errors import NotFoundError, SocketlabError, SpecError, StoreUnavailableError
from app.listeners.multicast import group_address
from app.peerhttp import (
    PeerAnswerError,
    PeerClient,
    PeerLimits,
    PeerUnreachableError,
    check_run_id,
    one_line,
    peer_path,
)
from app.runs.manager import RunManager
from app.runs.outcome import Outcome, conclude
from app.runs.run import LIVE_STATUSES, Run
from app.runs.spec import parse_run_spec
from app.web.listener_schemas import ListenerList, ProbeFigures
from app.web.run_schemas import RunDoc, RunRef
from app.web.schemas import ConnectionPage

logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
FOLLOW_INTERVAL = 0.5
# A remote run is followed at most this long after its expected end.
FOLLOW_SLACK = 60.0
# The first page of a peer's connections, as asked for (a peer may answer more).
CONNECTIONS_SHOWN = 100
# A token goes into an HTTP header: visible ASCII only, so it cannot add a header.
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")

PeerStatus = Literal["unknown", "up", "down", "failing"]


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
    """``http://host:port`` (or ``http://:TOKEN@host:port``) → :class:`PeerConfig`.

    Args:
        text: The peer's URL; a token in it is that peer's (``http://:@host`` for none).
        default_token: The token of peers whose URL has none (``--peer-token``), or None.

    Raises:
        SpecError: Not an http(s) URL with a host, a bad port, or a malformed token.
    """
    parts = urlsplit(text.strip())
    shown = f"{parts.scheme}://{parts.hostname or ''}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"peer {shown!r}: write http://host:port", "peer")
    try:
        port = parts.port
    except ValueError as exc:
        raise SpecError(f"peer {shown!r}: {exc}", "peer") from exc
    if parts.password is None and parts.username:
        raise SpecError(f"peer {shown!r}: write its token as http://:TOKEN@host:port", "peer")
    token = default_token if parts.password is None else unquote(parts.password)
    if token is not None and token != "" and _TOKEN.fullmatch(token) is None:
        raise SpecError(f"peer {shown!r}: a token is visible ASCII, no spaces", "peer")
    netloc = host_port(parts.hostname, port) if port else bracket(parts.hostname)
    return PeerConfig(f"{parts.scheme}://{netloc}", token or None, parts.hostname)


@dataclass
class PeerState:
    """What this lab last learnt of a peer."""

    config: PeerConfig
    status: PeerStatus = "unknown"
    error: str | None = None
    last_seen: float | None = None
    listeners: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    connection_total: int = 0

    def mark_up(self) -> None:
        if self.status != "up":
            logger.info("peer %s is up", self.config.name)
        self.status, self.error, self.last_seen = "up", None, time.time()

    def mark_failed(self, exc: SocketlabError, reason: str) -> None:
        """``down`` when it could not be reached, ``failing`` when it answered badly."""
        status: PeerStatus = "down" if isinstance(exc, PeerUnreachableError) else "failing"
        if (status, reason) != (self.status, self.error):
            logger.warning("peer %s is %s: %s", self.config.name, status, reason)
        self.status, self.error = status, reason

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
    """Polls peers, forwards runs to them, and follows those runs to their end.

    Args:
        runs: This lab's run manager (followed runs are its runs).
        peers: The peers, as configured.
        limits: How much of a peer's answer is read, and how long it is waited for.
    """

    def __init__(
        self, runs: RunManager, peers: list[PeerConfig], limits: PeerLimits | None = None
    ) -> None:
        self.runs = runs
        self.states = {p.name: PeerState(p) for p in peers}
        self.limits = limits or PeerLimits()
        self.client: PeerClient | None = None

    def get(self, name: str) -> PeerState:
        try:
            return self.states[name]
        except KeyError:
            raise NotFoundError(f"no peer {name!r}", "peer") from None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with PeerClient(self.limits) as client, trio.open_nursery() as nursery:
            self.client = client
            for state in self.states.values():
                nursery.start_soon(self._poll, state)
            task_status.started()
            await trio.sleep_forever()

    async def request(
        self,
        state: PeerState,
        method: str,
        path: str,
        model: type[BaseModel],
        body: Any = None,
        *,
        refusal_fails: bool = False,
    ) -> dict[str, Any]:
        """One API call to a peer; its answer as ``model`` (from app.web.schemas) has it.

        A bad answer or no answer marks the peer (``failing`` or ``down``) before it is
        raised; a documented refusal (a 4xx with an error document) only when
        ``refusal_fails`` (a poll: the peer refuses what it always answers).

        Raises:
            PeerUnreachableError: No connection (409).
            PeerAnswerError: A bad answer (502).
            PeerRefusedError: The peer's own 4xx, relayed.
        """
        assert self.client is not None
        config = state.config
        try:
            return await self.client.call(
                config.url, method, path, model, token=config.token, body=body
            )
        except SocketlabError as exc:
            reason = f"{method} {path}: {exc.message}"
            if refusal_fails or isinstance(exc, PeerUnreachableError | PeerAnswerError):
                state.mark_failed(exc, reason)
            exc.message = f"peer {config.name}: {reason}"
            exc.args = (exc.message,)
            raise

    async def _poll(self, state: PeerState) -> None:
        while True:
            try:
                await self._poll_once(state)
            except SocketlabError:
                pass  # the peer is marked down or failing, with the reason
            except Exception:  # the per-peer boundary: a bug here must not end the lab
                logger.exception("peer %s: its answer could not be used", state.config.name)
                reason = "its answer could not be used (see this lab's log)"
                state.mark_failed(PeerAnswerError(reason), reason)
            await trio.sleep(POLL_INTERVAL)

    async def _poll_once(self, state: PeerState) -> None:
        fetch = partial(self.request, state, "GET", refusal_fails=True)
        listeners = await fetch("/api/listeners", ListenerList)
        connections = await fetch(f"/api/connections?limit={CONNECTIONS_SHOWN}", ConnectionPage)
        state.listeners = listeners["items"]
        state.connections = connections["items"][:CONNECTIONS_SHOWN]
        state.connection_total = connections["total"]
        state.mark_up()

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
            ConflictError: The peer cannot be reached, this lab is shutting down, or too
                many runs are going here.
            PeerAnswerError: The peer answered badly (the peer is marked failing).
            PeerRefusedError: The peer refused the run (its status and message).
            SpecError: The spec is invalid or exceeds one of this lab's caps.
        """
        state = self.get(name)
        run_spec = parse_run_spec(spec)
        runs = self.runs
        # Refused here before the peer starts anything, and the place under this lab's
        # caps held until the copy is live: simultaneous requests cannot all get through.
        with runs.reserve(run_spec):
            created = await self.request(state, "POST", "/api/runs", RunRef, spec)
            try:
                remote_id = check_run_id(created["id"], "id")
            except SpecError as exc:
                reason = f"POST /api/runs: the answer's {exc.message}"
                error = PeerAnswerError(f"peer {name}: {reason}")
                state.mark_failed(error, reason)
                raise error from None
            local_id = f"{name}~{remote_id}"
            try:
                await runs.start_followed(
                    run_spec,
                    partial(self._follow, state, remote_id),
                    run_id=local_id,
                    principal=principal,
                    client=client,
                )
            except StoreUnavailableError:
                # Not followed here, so not left going there either.
                await self._stop_remote(state, remote_id)
                raise
        return {"id": local_id, "peer": name, "remote_id": remote_id, "status": "running"}

    async def _stop_remote(self, state: PeerState, remote_id: str) -> None:
        """Ask the peer to stop its run ``remote_id``; a failure is logged, not raised."""
        path = peer_path("api", "runs", remote_id, "stop")
        with trio.move_on_after(self.limits.answer_timeout):
            try:
                await self.request(state, "POST", path, RunRef, {})
            except SocketlabError as exc:
                logger.warning(
                    "run %s on peer %s was not stopped: %s",
                    remote_id,
                    state.config.name,
                    exc.message,
                )

    async def _follow(self, state: PeerState, remote_id: str, run: Run) -> Outcome:
        """The executor of a run followed on a peer: poll it until it ends, then end the
        same way here (a stop here stops it there too; a bad answer fails it here)."""
        path = peer_path("api", "runs", remote_id)
        doc: dict[str, Any] | None = None
        failure: str | None = None
        with run.cancel_scope, trio.move_on_after(86_400 + FOLLOW_SLACK):
            while True:
                await trio.sleep(FOLLOW_INTERVAL)
                try:
                    doc = await self.request(state, "GET", path, RunDoc)
                except PeerUnreachableError:
                    continue  # down for a while: its run may still be going
                except SocketlabError as exc:
                    failure = exc.message
                    break
                if doc["status"] not in LIVE_STATUSES:
                    break
        pattern = run.spec.pattern
        if run.cancel_scope.cancelled_caught:
            with trio.CancelScope(shield=True):
                await self._stop_remote(state, remote_id)
            return conclude(pattern, run.stats, run.elapsed, stopped=True)
        if failure is None and (doc is None or doc["status"] in LIVE_STATUSES):
            failure = f"lost track of run {remote_id} on peer {state.config.name}"
        if failure is not None:
            return conclude(pattern, run.stats, run.elapsed, failure=one_line(failure))
        assert doc is not None
        run.stats.series[:] = doc.get("series") or []
        return conclude(pattern, run.stats, run.elapsed, reported=doc)

    def _listener_at(self, endpoint: Endpoint) -> tuple[PeerState, dict[str, Any]] | None:
        for state in self.states.values():
            if state.config.host != endpoint.host:
                continue
            for item in state.listeners:
                if item["port"] == endpoint.port and item["protocol"] == endpoint.protocol:
                    return state, item
        return None

    def mode_at(self, endpoint: Endpoint) -> str | None:
        """The mode of the peer's listener a run's target is, from the last poll; None
        when it is no peer's listener."""
        found = self._listener_at(endpoint)
        return None if found is None else str(found[1]["mode"])

    def sink_at(self, endpoint: Endpoint) -> tuple[PeerState, str] | None:
        """The peer and listener id of the sink a run's target is, from the last poll:
        the peer's host, and a listener's port and protocol; None for anything else. A
        source counts what it receives as a sink does, and what it sent beside it."""
        found = self._listener_at(endpoint)
        if found is None or found[1]["mode"] not in ("sink", "source"):
            return None
        return found[0], found[1]["id"]

    async def receiving_end(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        """What a peer's sink counted of a run (``GET
        /api/listeners/{id}/probes/{run_tag}``), or None when the target is no peer's sink.

        Raises:
            SocketlabError: The peer could not be asked, answered badly or refused.
        """
        found = self.sink_at(endpoint)
        if found is None:
            return None
        state, listener_id = found
        return await self.probe_figures(state.config.name, listener_id, run_tag)

    def group_sinks(self, endpoint: Endpoint) -> list[tuple[str, str]]:
        """The peer and listener id of every peer's UDP sink on the multicast group and
        port of ``endpoint``, from the last poll of the peers that are up."""
        group = group_address(endpoint.host)
        if group is None:
            return []
        return [
            (state.config.name, str(item["id"]))
            for state in self.states.values()
            if state.status == "up"
            for item in state.listeners
            if item["protocol"] == "udp"
            and item["mode"] == "sink"
            and item["port"] == endpoint.port
            and group_address(str(item["host"])) == group
        ]

    async def probe_figures(
        self, name: str, listener_id: str, run_tag: int
    ) -> dict[str, Any] | None:
        """What peer ``name``'s sink ``listener_id`` counted of a run (``GET
        /api/listeners/{id}/probes/{run_tag}``).

        Raises:
            SocketlabError: The peer could not be asked, answered badly or refused.
        """
        path = peer_path("api", "listeners", listener_id, "probes", f"{run_tag:08x}")
        return await self.request(self.get(name), "GET", path, ProbeFigures)

    async def get_run(self, name: str, remote_id: str) -> dict[str, Any]:
        """A run as peer ``name`` reports it now.

        Raises:
            NotFoundError: No such peer.
            SpecError: ``remote_id`` is not a run id (it is never sent).
        """
        state = self.get(name)
        path = peer_path("api", "runs", check_run_id(remote_id))
        return await self.request(state, "GET", path, RunDoc)
