"""The lab's live events: small frozen classes, published once to the :class:`~app.hub.Hub`.

Like h11's events, they are plain values with no I/O: the lab and its run manager build
them, and each transport (the dashboard's ``/ws``, the ``/api/events`` NDJSON stream) turns
them into its own wire format once per event, whatever the number of its subscribers.
Every event has its wire ``TYPE`` and ``doc()``, the JSON document both transports write.

- :class:`ConnectionOpened` / :class:`ConnectionClosed`: from the registry's diff each tick;
- :class:`RunInterval`: a run closed a 1 s interval; :class:`RunEnded`: a run is over and
  stored (its final status, error and summary);
- :class:`ListenerChanged`: a listener started or stopped;
- :class:`Tick`: the dashboard's shared state, every snapshot interval; :class:`Full`: the
  same state, sent to one dashboard first and whenever it fell behind (:mod:`app.web.feed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from app.runs.manager import Run


# What a reader of the event stream can ask for: the part of an event's TYPE before the dot.
EVENT_KINDS = ("run", "connection", "listener")


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A connection or flow appeared; ``row`` is its registry row (``id``, ``remote``, ...)."""

    TYPE: ClassVar[str] = "connection.opened"
    row: dict[str, Any]

    def doc(self) -> dict[str, Any]:
        return {"type": self.TYPE, **self.row}


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    TYPE: ClassVar[str] = "connection.closed"
    id: str

    def doc(self) -> dict[str, Any]:
        return {"type": self.TYPE, "id": self.id}


@dataclass(frozen=True, slots=True)
class RunInterval:
    """A run's newest 1 s interval (``point``) and its live record."""

    TYPE: ClassVar[str] = "run.interval"
    run_id: str
    live: dict[str, Any]
    point: dict[str, Any]

    def doc(self) -> dict[str, Any]:
        return {"type": self.TYPE, "run_id": self.run_id, "live": self.live, "point": self.point}


@dataclass(frozen=True, slots=True)
class RunEnded:
    TYPE: ClassVar[str] = "run.ended"
    run_id: str
    status: str
    error: str | None
    summary: dict[str, Any] | None

    def doc(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "run_id": self.run_id,
            "status": self.status,
            "error": self.error,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class ListenerChanged:
    """The set of listeners changed; ``listeners`` is every listener now, as in a tick."""

    TYPE: ClassVar[str] = "listener.changed"
    listeners: list[dict[str, Any]]

    def doc(self) -> dict[str, Any]:
        return {"type": self.TYPE, "listeners": self.listeners}


@dataclass(frozen=True, slots=True)
class Tick:
    """The dashboard's shared state (see :func:`app.web.feed.feed_state`)."""

    TYPE: ClassVar[str] = "tick"
    state: dict[str, Any]

    def doc(self) -> dict[str, Any]:
        return {**self.state, "type": self.TYPE}


@dataclass(frozen=True, slots=True)
class Full:
    """The dashboard's shared state for one subscriber that starts or catches up."""

    TYPE: ClassVar[str] = "full"
    state: dict[str, Any]

    def doc(self) -> dict[str, Any]:
        return {**self.state, "type": self.TYPE}


Event = ConnectionOpened | ConnectionClosed | RunInterval | RunEnded | ListenerChanged | Tick | Full


def connection_events(diff: dict[str, list[Any]]) -> list[ConnectionOpened | ConnectionClosed]:
    """``ConnectionOpened`` / ``ConnectionClosed`` from one registry diff, in that order."""
    events: list[ConnectionOpened | ConnectionClosed] = [
        ConnectionOpened(row) for row in diff["added"]
    ]
    events.extend(ConnectionClosed(conn_id) for conn_id in diff["removed"])
    return events


def run_interval(run: Run) -> RunInterval | None:
    """The run's newest interval as an event, or ``None`` before its first one."""
    point = run.latest_point()
    return None if point is None else RunInterval(run.id, run.live(), point)


def run_ended(run: Run) -> RunEnded:
    return RunEnded(run.id, run.status, run.error, run.summary())
