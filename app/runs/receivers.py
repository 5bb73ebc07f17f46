"""The receivers of a multicast run: what every socketlab sink on the group counted of it.

Theory of operation: a run to a group sends each datagram once and every member gets a
copy, so there is no one receiving end but a table of them. When the run has sent
everything, :func:`find_receivers` lists the sinks on the group and port: this lab's own
listeners, and the sink listeners of its peers as last polled (:mod:`app.peers`), and
:func:`gather` asks each of them what it counted of the run's probe tag, all at once, until
it has everything the run sent or the run's ``timeout`` has passed (what is still in flight
arrives meanwhile, as a sender waits for its last replies). Each answer is put beside what
the run sent (:func:`~app.runs.flowstats.one_way`), so each row has ``received``, ``lost``,
``loss_pct``, ``duplicates``, ``reordered`` and ``jitter_ms`` as that receiver saw them.

Error handling: a peer that cannot be asked, or answers badly, is a row with its
``error`` and no figures; the others are not held up by it beyond the timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from app.endpoint import Endpoint
from app.errors import SocketlabError
from app.listeners.multicast import group_address
from app.runs.flowstats import one_way

__all__ = ["MAX_RECEIVERS", "Receiver", "find_receivers", "gather"]

# Between two looks at a receiver still reading what is in flight.
_LOOK_INTERVAL = 0.01
# Receivers asked at most (the first found): each is a call, and a row of the summary.
MAX_RECEIVERS = 1000
_FIGURES = ("received", "lost", "loss_pct", "duplicates", "reordered", "jitter_ms")

Ask = Callable[[int], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Receiver:
    """One sink on the group: whose it is (``peer`` None: this lab's), and how to ask it.

    Args:
        peer: The peer's name, or None for a listener of this lab.
        listener: The listener's id there.
        ask: Gives what the sink counted of a run's probe tag (None: nothing yet).
    """

    peer: str | None
    listener: str
    ask: Ask


class LocalSink(Protocol):
    """A listener of this lab, as :func:`find_receivers` reads it."""

    id: str
    host: str
    port: int

    @property
    def spec(self) -> Any: ...

    def receiving_end(self, run_tag: int) -> dict[str, Any] | None: ...


class PeerSinks(Protocol):
    """The peers' sinks on a group (:class:`~app.peers.PeerManager`)."""

    def group_sinks(self, endpoint: Endpoint) -> list[tuple[str, str]]: ...

    async def probe_figures(
        self, name: str, listener_id: str, run_tag: int
    ) -> dict[str, Any] | None: ...


def _local_ask(listener: LocalSink) -> Ask:
    async def ask(run_tag: int) -> dict[str, Any] | None:
        return listener.receiving_end(run_tag)

    return ask


def _peer_ask(peers: PeerSinks, name: str, listener_id: str) -> Ask:
    async def ask(run_tag: int) -> dict[str, Any] | None:
        return await peers.probe_figures(name, listener_id, run_tag)

    return ask


def find_receivers(
    endpoint: Endpoint, listeners: Iterable[LocalSink], peers: PeerSinks | None
) -> list[Receiver]:
    """Every sink on ``endpoint``'s group and port: this lab's, then its peers' (at most
    :data:`MAX_RECEIVERS`)."""
    group = group_address(endpoint.host)
    if group is None:
        return []
    found = [
        Receiver(None, listener.id, _local_ask(listener))
        for listener in listeners
        if listener.spec.protocol == "udp"
        and listener.spec.mode == "sink"
        and listener.port == endpoint.port
        and group_address(listener.host) == group
    ]
    if peers is not None:
        found += [
            Receiver(name, listener_id, _peer_ask(peers, name, listener_id))
            for name, listener_id in peers.group_sinks(endpoint)
        ]
    return found[:MAX_RECEIVERS]


async def _ask_until_complete(
    receiver: Receiver, run_tag: int, sent: int, deadline: float, wait: bool
) -> dict[str, Any]:
    figures: dict[str, Any] | None = None
    error: str | None = None
    with trio.move_on_at(deadline):
        while True:
            try:
                figures = one_way(await receiver.ask(run_tag), sent)
            except SocketlabError as exc:
                error = exc.message
                break
            if not wait or figures is None or not figures.get("lost"):
                break
            await trio.sleep(_LOOK_INTERVAL)
    if figures is None and error is None:
        error = "it did not answer in time" if trio.current_time() >= deadline else None
    row: dict[str, Any] = {"peer": receiver.peer, "listener": receiver.listener}
    if figures is None or "received" not in figures:
        row.update(dict.fromkeys(_FIGURES))
        row["error"] = error or "it kept no figures of this run"
    else:
        row.update({name: figures[name] for name in _FIGURES})
        row["error"] = error
    return row


async def gather(
    receivers: list[Receiver], run_tag: int, sent: int, deadline: float, *, wait: bool = True
) -> list[dict[str, Any]]:
    """Each receiver's figures of the run tagged ``run_tag``, beside the ``sent`` datagrams.

    Args:
        receivers: From :func:`find_receivers`.
        run_tag: The run's probe tag.
        sent: Datagrams the run sent (warm-up left out).
        deadline: When the receivers are waited for no longer (``trio.current_time()``).
        wait: Look again until each has all of them (False: a stopped run, asked once).

    Returns:
        One row per receiver, in order: ``peer``, ``listener``, the figures, ``error``.
    """
    rows: list[dict[str, Any] | None] = [None] * len(receivers)

    async def one(index: int, receiver: Receiver) -> None:
        rows[index] = await _ask_until_complete(receiver, run_tag, sent, deadline, wait)

    async with trio.open_nursery() as nursery:
        for index, receiver in enumerate(receivers):
            nursery.start_soon(one, index, receiver)
    return [row for row in rows if row is not None]
