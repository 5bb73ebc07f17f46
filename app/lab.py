"""The Lab supervisor: one root nursery that owns every listener, run and the web server.

The Lab is handed its web server (``Lab(settings, web=serve_web)``) and gives it a
:class:`~app.web.deps.WebDeps`, never itself: it does not import the web layer's server,
and a lab without one (``web=None``) serves no HTTP at all.

Shutdown order (on SIGINT/SIGTERM or :meth:`Lab.request_shutdown`): listeners stop
accepting and close → runs stop and are stored as ``stopped`` → the web server drains (at
most ``graceful_timeout``) → everything left is cancelled → writes still waiting for the
store get a last try → the store is closed.

A data directory that cannot hold the database ends :meth:`Lab.serve` at once with a
:class:`~app.errors.DataDirError`; a store that fails later never ends the lab (see
:mod:`app.writebehind`).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from app.audit import AuditLog
from app.demo import serve_demo
from app.endpoint import Endpoint, host_port
from app.errors import BindError, ConflictError, StoreUnavailableError
from app.events import RunEnded, RunInterval, run_ended, run_interval
from app.hub import Hub
from app.listeners.manager import ListenerManager
from app.listeners.modes.source import policy_allows
from app.listeners.policy import ListenerPolicy, parse_bind_networks
from app.listeners.saved import SavedListeners
from app.looplag import LoopLagMonitor
from app.mesh.manager import MeshManager
from app.packets import PacketTool
from app.packets_store import PacketStore
from app.peerhttp import PeerLimits
from app.peers import PeerManager, parse_peer
from app.registry import Registry
from app.runs.caps import check_mesh_caps
from app.runs.manager import Run, RunManager
from app.runs.receivers import Receiver, find_receivers
from app.runs.targets import TargetPolicy
from app.scenarios import ScenarioTool
from app.scenarios_store import ScenarioStore
from app.settings import Settings, is_loopback, parse_listener_url
from app.store import Store, open_store
from app.timeseries import LabSeries
from app.web.deps import WebDeps

logger = logging.getLogger(__name__)

# The web server a lab is handed: ``web(deps, done, task_status=...)`` serves until
# ``deps.shutdown``, reports its port and sets ``done`` once drained (app.web.server).
WebServer = Callable[..., Awaitable[None]]


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError ``exc`` is, or that a group of them starts with (a server's binding)."""
    while isinstance(exc, BaseExceptionGroup):
        matched = exc.subgroup(OSError)
        if matched is None:
            return None
        exc = matched.exceptions[0]
    return exc if isinstance(exc, OSError) else None


class Lab:
    """Everything one socketlab process runs. Start it with ``await nursery.start(lab.serve)``."""

    def __init__(
        self, settings: Settings, *, web: WebServer | None = None, handle_signals: bool = False
    ) -> None:
        self.settings = settings
        self.web = web
        self.handle_signals = handle_signals
        self.registry = Registry()
        self.hub = Hub()
        self.listeners = ListenerManager(
            self.registry,
            ListenerPolicy(
                parse_bind_networks(settings.allow_binds), max_listeners=settings.max_listeners
            ),
        )
        self.shutdown = trio.Event()
        self.stopped = trio.Event()
        self.web_port: int | None = None
        self.started_at = time.time()
        # A peer gets a token only when one is configured for it (never this lab's own).
        peers = [parse_peer(p, settings.peer_token) for p in settings.peers]
        names = [p.name for p in peers]
        for peer in peers:
            if names.count(peer.name) > 1:
                # Two peers on one host (a test bench, not compose): name them by host:port.
                peer.name = peer.url.split("://", 1)[1]
        # Peers are allowed targets: the demo profile and users fire at them.
        policy = TargetPolicy(
            (*settings.allow_targets, *(p.host for p in peers)),
            allow_multicast=settings.allow_multicast,
        )
        # A source listener sends only where runs may (app.listeners.modes.source).
        self.listeners.send_policy = policy_allows(policy)
        # Opened by serve(); every collaborator of the run manager exists from here on.
        self.store = Store(settings.data_dir, settings.store_limits)
        # Listeners clients start are kept in the store and started again by serve().
        self.listeners.saved = SavedListeners(self.store)
        self.packets = PacketTool(
            PacketStore(self.store), self.registry, settings, policy, AuditLog(self.store), self
        )
        self.scenarios = ScenarioTool(
            ScenarioStore(self.store), self.registry, settings, policy, AuditLog(self.store), self
        )
        self.runs = RunManager(
            self.registry,
            settings,
            store=self.store,
            audit=AuditLog(self.store),
            policy=policy,
            receiving_end=self,
            on_tick=self._publish_interval,
            on_end=self._publish_end,
        )
        limits = PeerLimits.within(settings.peer_timeout)
        self.peers: PeerManager | None = PeerManager(self.runs, peers, limits) if peers else None
        self.mesh: MeshManager | None = None
        if settings.mesh.enabled:
            check_mesh_caps(settings)
            self.mesh = MeshManager(settings.mesh, peers, limits, settings.peer_token)
        self.loop_lag = LoopLagMonitor()
        self.series = LabSeries()

    def request_shutdown(self) -> None:
        self.shutdown.set()

    def _publish_interval(self, run: Run) -> None:
        # Built only when someone streams intervals: run.live() is not free at 1 Hz per run.
        if self.hub.wants(RunInterval):
            event = run_interval(run)
            if event is not None:
                self.hub.publish(event)

    def _publish_end(self, run: Run) -> None:
        if self.hub.wants(RunEnded):
            self.hub.publish(run_ended(run))

    def web_deps(self) -> WebDeps:
        """What the web layer gets of this lab."""
        return WebDeps(
            settings=self.settings,
            listeners=self.listeners,
            runs=self.runs,
            registry=self.registry,
            hub=self.hub,
            series=self.series,
            loop_lag=self.loop_lag,
            peers=self.peers,
            mesh=self.mesh,
            store=self.store,
            packets=self.packets,
            scenarios=self.scenarios,
            shutdown=self.shutdown,
            started_at=self.started_at,
        )

    def receiver_side(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        """One-way statistics that one of our own sink listeners kept for a run's probes.

        A run aimed at this lab's own sink shows both ends side by side: what it sent, and
        what arrived (loss, duplicates, reordering, jitter) as the sink counted it. For a
        sink that has none of the run's probes (yet) the counts are zeros, so a run asking
        before it starts learns that its target is a sink and expects no replies; a TCP sink
        without ``message_size`` counts no messages and says so (``framed``: false).
        Anything else (not ours, not a sink) is ``None``.
        """
        for listener in self.listeners:
            spec = listener.spec
            if listener.port != endpoint.port or spec.protocol != endpoint.protocol:
                continue
            if not (listener.host == endpoint.host or is_loopback(endpoint.host)):
                continue
            return listener.receiving_end(run_tag)
        return None

    def is_source(self, endpoint: Endpoint) -> bool | None:
        """Whether a run's target is a socketlab source (one of ours, or a peer's as last
        polled); None when it is no listener this lab knows of (a relay, another host)."""
        for listener in self.listeners:
            if listener.port != endpoint.port or listener.spec.protocol != endpoint.protocol:
                continue
            if listener.host == endpoint.host or is_loopback(endpoint.host):
                return listener.spec.mode == "source"
        if self.peers is None:
            return None
        mode = self.peers.mode_at(endpoint)
        return None if mode is None else mode == "source"

    def is_sink(self, endpoint: Endpoint) -> bool:
        """Whether a run's target is a socketlab sink: one of ours, or one of a peer's as
        last polled (:class:`~app.runs.engine.ReceivingEnd`)."""
        if self.receiver_side(endpoint, 0) is not None:
            return True
        return self.peers is not None and self.peers.sink_at(endpoint) is not None

    def receivers_of(self, endpoint: Endpoint) -> list[Receiver]:
        """The sinks on a multicast group: ours, and our peers' as last polled."""
        return find_receivers(endpoint, self.listeners, self.peers)

    async def figures(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        """What the receiving end counted of a run: one of our sinks (no await, as cheap
        as a dict lookup), else a peer's sink, asked over its API.

        Raises:
            SocketlabError: The peer could not be asked or answered badly.
        """
        local = self.receiver_side(endpoint, run_tag)
        if local is not None or self.peers is None:
            return local
        return await self.peers.receiving_end(endpoint, run_tag)

    async def serve(self, *, task_status: trio.TaskStatus[Lab] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the lab until shutdown is requested; reports itself once every port is bound."""
        settings = self.settings
        try:
            async with open_store(self.store) as store:
                interrupted = await store.mark_interrupted(time.time())
                if interrupted > 0:
                    logger.warning("%d runs were interrupted by an earlier crash", interrupted)
                async with trio.open_nursery() as nursery:
                    # Writes the store could not make wait in memory; this retries them.
                    await nursery.start(store.writes.serve)
                    if self.handle_signals:
                        nursery.start_soon(self._watch_signals)
                    await nursery.start(self.listeners.serve)
                    await nursery.start(self.runs.serve)
                    # The dashboard's port first: taken, it is the one line said at start-up
                    # (before any listener has logged that it serves).
                    web_done = trio.Event()
                    if self.web is None:
                        web_done.set()
                    else:
                        deps = self.web_deps()
                        self.web_port = await self._start_web(nursery, deps, web_done)
                        self.listeners.serving_web(settings.web_host, self.web_port)
                    for spec in settings.listeners:
                        try:
                            await self.listeners.start(spec)
                        except ConflictError as exc:
                            raise BindError(exc.message, "listen") from exc
                    if self.mesh is not None:
                        await self._start_mesh(nursery, self.mesh)
                    if self.peers is not None:
                        await nursery.start(self.peers.serve)
                        if settings.demo:
                            nursery.start_soon(serve_demo, self.peers, self.runs)
                    nursery.start_soon(self.loop_lag.serve)
                    await self._restore_listeners()
                    task_status.started(self)
                    await self.shutdown.wait()
                    await self._shut_down(web_done)
                    nursery.cancel_scope.cancel()
        finally:
            self.stopped.set()

    async def _start_mesh(self, nursery: trio.Nursery, mesh: MeshManager) -> None:
        """The mesh's echo listeners (TCP, then UDP on the port TCP bound), then its probes.

        Raises:
            BindError: The mesh port is taken (field ``mesh.port``).
        """
        where = host_port(self.settings.web_host, self.settings.mesh.port)
        port = self.settings.mesh.port
        for protocol in ("tcp", "udp"):
            spec = parse_listener_url(
                f"{protocol}://{host_port(self.settings.web_host, port)}?mode=echo"
            )
            try:
                listener = await self.listeners.start(spec)
            except ConflictError as exc:
                raise BindError(f"mesh echo on {where}: {exc.message}", "mesh.port") from exc
            port = listener.port
        mesh.port = port
        await nursery.start(mesh.serve)

    async def _restore_listeners(self) -> None:
        # After the web server is bound: the bind policy keeps listeners off its port.
        try:
            restored = await self.listeners.restore()
        except StoreUnavailableError as exc:
            logger.error("kept listeners not started again: %s", exc.message)
            return
        if restored or self.listeners.failed:
            logger.info(
                "%d kept listeners started again, %d failed", restored, len(self.listeners.failed)
            )

    async def _start_web(self, nursery: trio.Nursery, deps: WebDeps, done: trio.Event) -> int:
        """Start the web server; its port.

        Raises:
            BindError: Its address is taken or cannot be bound (field ``web``).
        """
        assert self.web is not None
        try:
            port: int = await nursery.start(self.web, deps, done)
        except BaseException as exc:
            failure = _os_error(exc)
            if failure is None:
                raise
            where = host_port(self.settings.web_host, self.settings.web_port)
            raise BindError(
                f"cannot serve the dashboard on {where}: {failure.strerror or failure}", "web"
            ) from exc
        return port

    async def _shut_down(self, web_done: trio.Event) -> None:
        logger.info("shutting down")
        self.listeners.stop_accepting()
        with trio.move_on_after(2.0):
            stopped = await self.runs.stop_all()
            if stopped:
                logger.info("%d runs stopped and stored", stopped)
        with trio.move_on_after(self.settings.graceful_timeout + 0.5):
            await web_done.wait()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                logger.info("received %s", signal.Signals(signum).name)
                self.request_shutdown()
                return
