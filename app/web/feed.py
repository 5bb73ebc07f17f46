"""The dashboard's shared live state and the tick loop that publishes it to the hub.

Theory of operation: :meth:`Feed.serve` wakes every ``snapshot_interval`` seconds, takes the
registry's diff (connection events for whoever streams them), samples the lab's per-second
series, and publishes one :class:`~app.events.Tick` when someone listens. It never awaits a
subscriber: the hub drops for slow ones. :meth:`Feed.full_state` is what a new dashboard
gets first, and again after it fell behind; ticks carry the same fields.

``conn_epoch`` goes up whenever a connection opened, closed or moved bytes since the
previous tick: each browser recomputes its page of the table (:mod:`app.web.live`) only then.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import trio

from app.events import (
    ConnectionClosed,
    ConnectionOpened,
    Full,
    ListenerChanged,
    RunEnded,
    Tick,
    connection_events,
)
from app.hub import Encoder

if TYPE_CHECKING:
    from app.web.deps import WebDeps


def dumps(doc: object) -> str:
    """Compact JSON, as every live message is written."""
    return json.dumps(doc, separators=(",", ":"))


def encode_ws(event: Tick | Full | RunEnded) -> str:
    """One ``/ws`` text frame."""
    return dumps(event.doc())


# The dashboard's transport: ticks (which carry listeners, runs and totals) and run ends.
# Connection rows reach a browser as its own page instead, so connection events are not sent;
# a Full is never published, each subscriber's writer sends its own.
WS_ENCODER = Encoder(encode_ws, frozenset({Tick, RunEnded}))


class Feed:
    """The dashboard's shared state over :class:`~app.web.deps.WebDeps`."""

    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps
        self.conn_epoch = 0
        self._listener_ids = tuple(listener.id for listener in deps.listeners)

    def full(self) -> Full:
        """What a new live subscriber gets first (and after it fell behind)."""
        return Full(self.full_state())

    def full_state(self) -> dict[str, Any]:
        """What a new live subscriber needs first; ticks repeat it with ``type: "tick"``.

        Connection rows are not in it: each subscriber gets its own page of them (see
        :mod:`app.web.live`), so the size of this message does not grow with connections.
        """
        deps = self.deps
        runs = []
        for run in deps.runs.live_runs():
            record = run.live()
            record["point"] = run.latest_point()
            runs.append(record)
        return {
            "type": "full",
            "t": time.time(),
            "total": len(deps.registry),
            "listeners": [listener.to_dict() for listener in deps.listeners],
            "runs": runs,
            "interval": deps.settings.snapshot_interval,
        }

    def tick(self) -> None:
        """One snapshot: connection events, the series sample, listener changes, a tick."""
        deps = self.deps
        hub = deps.hub
        events = hub.wants(ConnectionOpened) or hub.wants(ConnectionClosed)
        # The added rows are built only for an events subscriber (the feed's pages build
        # their own rows).
        diff = deps.registry.take_diff(rows=events)
        if events:
            for event in connection_events(diff):
                hub.publish(event)
        if diff["added"] or diff["updated"] or diff["removed"]:
            self.conn_epoch += 1
        point = deps.series.maybe_sample(
            trio.current_time(), time.time(), deps.listeners, len(deps.registry)
        )
        listener_ids = tuple(listener.id for listener in deps.listeners)
        if listener_ids != self._listener_ids:
            self._listener_ids = listener_ids
            if hub.wants(ListenerChanged):
                hub.publish(ListenerChanged([listener.to_dict() for listener in deps.listeners]))
        if not hub.wants(Tick):
            return
        state = self.full_state()
        if point is not None:
            state["point"] = point
        hub.publish(Tick(state))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick every snapshot interval until cancelled."""
        interval = self.deps.settings.snapshot_interval
        task_status.started()
        while True:
            await trio.sleep(interval)
            self.tick()
