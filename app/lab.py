"""The Lab supervisor: one root nursery that owns every listener, run and the web server.

Shutdown order (on SIGINT/SIGTERM or :meth:`Lab.request_shutdown`): listeners stop
accepting and close → runs stop and are stored as ``stopped`` → the web server drains (at
most ``graceful_timeout``) → everything left is cancelled → the store is closed.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from functools import partial
from typing import Any

import trio

from app.demo import serve_demo
from app.events import publish_connection_events, publish_run_end, publish_run_interval
from app.hub import Hub
from app.listeners.manager import ListenerManager
from app.looplag import LoopLagMonitor
from app.peers import PeerManager, parse_peer
from app.registry import Registry
from app.runs.manager import RunManager
from app.runs.targets import TargetPolicy
from app.settings import Endpoint, Settings, is_loopback
from app.store import AuditLog, Store, open_store
from app.timeseries import LabSeries

logger = logging.getLogger(__name__)


class Lab:
    """Everything one socketlab process runs. Start it with ``await nursery.start(lab.serve)``."""

    def __init__(self, settings: Settings, *, handle_signals: bool = False) -> None:
        self.settings = settings
        self.handle_signals = handle_signals
        self.registry = Registry()
        self.hub = Hub()
        self.listeners = ListenerManager(self.registry)
        # Built by serve() once the store is open: the manager gets every collaborator then.
        self.runs: RunManager
        self.store: Store
        self.shutdown = trio.Event()
        self.stopped = trio.Event()
        self.web_port: int | None = None
        self.started_at = time.time()
        peers = [parse_peer(p, settings.peer_token or settings.token) for p in settings.peers]
        names = [p.name for p in peers]
        for peer in peers:
            if names.count(peer.name) > 1:
                # Two peers on one host (a test bench, not compose): name them by host:port.
                peer.name = peer.url.split("://", 1)[1]
        self.peers: PeerManager | None = PeerManager(self, peers) if peers else None
        # Peers are allowed targets: the demo profile and users fire at them.
        self.run_policy = TargetPolicy(
            (*settings.allow_targets, *(p.host for p in peers)),
            allow_multicast=settings.allow_multicast,
        )
        self.events = Hub()
        self.loop_lag = LoopLagMonitor()
        self.series = LabSeries()
        self.conn_epoch = 0

    def request_shutdown(self) -> None:
        self.shutdown.set()

    def hub_events_subscription(self) -> Any:
        """Subscribe to the event stream; 256 lines of buffer, then drops for this reader."""
        return self.events.subscribe(max_buffer=256)

    def receiver_side(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        """One-way statistics that one of our own sink listeners kept for a run's probes.

        A run aimed at this lab's own sink shows both ends side by side: what it sent, and
        what arrived (loss, duplicates, reordering, jitter) as the sink counted it.
        """
        for listener in self.listeners:
            if listener.port != endpoint.port or listener.spec.protocol != endpoint.protocol:
                continue
            if not (listener.host == endpoint.host or is_loopback(endpoint.host)):
                continue
            probe_summary = getattr(listener, "probe_summary", None)
            if probe_summary is not None:
                result: dict[str, Any] | None = probe_summary(run_tag)
                return result
        return None

    async def serve(self, *, task_status: trio.TaskStatus[Lab] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the lab until shutdown is requested; reports itself once every port is bound."""
        from app.web.server import serve_web  # the web layer imports the lab's types

        settings = self.settings
        try:
            async with open_store(settings.data_dir) as store:
                interrupted = await store.mark_interrupted(time.time())
                if interrupted:
                    logger.warning("%d runs were interrupted by an earlier crash", interrupted)
                self.store = store
                self.runs = RunManager(
                    self.registry,
                    settings,
                    store=store,
                    audit=AuditLog(store),
                    policy=self.run_policy,
                    remote_lookup=self.receiver_side,
                    on_tick=partial(publish_run_interval, self.events),
                    on_end=partial(publish_run_end, self.events),
                )
                async with trio.open_nursery() as nursery:
                    if self.handle_signals:
                        nursery.start_soon(self._watch_signals)
                    await nursery.start(self.listeners.serve)
                    await nursery.start(self.runs.serve)
                    for spec in settings.listeners:
                        await self.listeners.start(spec)
                    nursery.start_soon(self._snapshot_loop)
                    if self.peers is not None:
                        await nursery.start(self.peers.serve)
                        if settings.demo:
                            nursery.start_soon(serve_demo, self)
                    nursery.start_soon(self.loop_lag.serve)
                    web_done = trio.Event()
                    self.web_port = await nursery.start(serve_web, self, web_done)
                    task_status.started(self)
                    await self.shutdown.wait()
                    await self._shut_down(web_done)
                    nursery.cancel_scope.cancel()
        finally:
            self.stopped.set()

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

    def full_state(self) -> dict[str, Any]:
        """What a new live subscriber needs first; ticks repeat it with ``type: "tick"``.

        Connection rows are not in it: each subscriber gets its own page of them (see
        :mod:`app.web.live`), so the size of this message does not grow with connections.
        """
        runs = []
        for run in self.runs.live.values():
            record = run.live()
            series = run.stats.series
            record["point"] = series[-1] if series else None
            runs.append(record)
        return {
            "type": "full",
            "t": time.time(),
            "total": len(self.registry),
            "listeners": [listener.to_dict() for listener in self.listeners],
            "runs": runs,
            "interval": self.settings.snapshot_interval,
        }

    async def _snapshot_loop(self) -> None:
        """Sample the lab's series and publish a tick a few times a second; never awaits a
        subscriber.

        ``conn_epoch`` goes up whenever a connection opened, closed or moved bytes since the
        previous tick: live subscribers recompute their page of the table only then.
        """
        interval = self.settings.snapshot_interval
        while True:
            await trio.sleep(interval)
            diff = self.registry.take_diff()
            if self.events.subscriber_count:
                publish_connection_events(self.events, diff)
            if diff["added"] or diff["updated"] or diff["removed"]:
                self.conn_epoch += 1
            point = self.series.maybe_sample(
                trio.current_time(), time.time(), self.listeners, len(self.registry)
            )
            if not self.hub.subscriber_count:
                continue
            message = self.full_state()
            message["type"] = "tick"
            if point is not None:
                message["point"] = point
            self.hub.publish(json.dumps(message, separators=(",", ":")))
