"""Events for scripts: run intervals and ends, connections opened and closed.

The lab publishes each event once, as one JSON line, to an event :class:`~app.hub.Hub`;
``GET /api/events`` streams them as NDJSON (``curl -N`` friendly). Publishing never awaits:
a reader that falls behind loses events and is told how many (a ``dropped`` event), which is
better than slowing the sockets down.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from app.hub import Hub

if TYPE_CHECKING:
    from app.runs.manager import Run


def _line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":")) + "\n"


def publish_connection_events(hub: Hub, diff: dict[str, list[Any]]) -> None:
    """``connection.opened`` / ``connection.closed`` from one registry diff."""
    for row in diff["added"]:
        hub.publish(_line({"type": "connection.opened", **row}))
    for conn_id in diff["removed"]:
        hub.publish(_line({"type": "connection.closed", "id": conn_id}))


def publish_run_interval(hub: Hub, run: Run) -> None:
    series = run.stats.series
    if series:
        hub.publish(
            _line(
                {"type": "run.interval", "run_id": run.id, "live": run.live(), "point": series[-1]}
            )
        )


def publish_run_end(hub: Hub, run: Run) -> None:
    hub.publish(
        _line(
            {
                "type": "run.ended",
                "run_id": run.id,
                "status": run.status,
                "error": run.error,
                "summary": run.summary(),
            }
        )
    )
