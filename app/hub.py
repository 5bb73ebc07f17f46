"""Fan-out of live events to subscribers (browsers, event streams).

Theory of operation: the lab and the web layer call :meth:`Hub.publish` with one typed event
(:mod:`app.events`). Each subscriber names its transport's *encoder* when it subscribes;
publishing encodes an event at most once per encoder, however many subscribers share it, and
skips encoders that do not carry that kind of event. Publishing never awaits: each
subscriber has a small bounded buffer, filled with ``send_nowait``. When a buffer is full
the item is dropped for that subscriber only, its drop counter goes up and it is flagged
``resync``: its writer then discards what is queued and catches up (a full state for the
dashboard, a ``dropped`` line for a stream) instead of the events it missed. One stuck
reader therefore costs one bounded buffer and never slows the sockets or other readers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

# Four items is one second of snapshots at 4 Hz: a subscriber that is a second behind is
# better served by a fresh full state than by a backlog of stale diffs.
DEFAULT_BUFFER = 4


@dataclass(frozen=True, eq=False)
class Encoder:
    """How one transport writes events: ``encode(event)`` for every kind in ``kinds``.

    ``kinds`` empty means every kind, passed through as they are (tests, in-process readers).
    Encoders compare by identity: one instance per transport, shared by its subscribers.
    """

    encode: Callable[[Any], Any]
    kinds: frozenset[type] = frozenset()

    def carries(self, kind: type) -> bool:
        return not self.kinds or kind in self.kinds


RAW = Encoder(lambda event: event)


class Subscriber:
    """One consumer's bounded queue of encoded events, with its drop accounting."""

    def __init__(
        self, max_buffer: int, encoder: Encoder, accepts: Callable[[Any], bool] | None
    ) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[Any](max_buffer)
        self.encoder = encoder
        self.accepts = accepts
        self.dropped = 0
        self.resync = False

    def drain_nowait(self) -> int:
        """Discard every queued item; return how many were discarded."""
        count = 0
        while True:
            try:
                self.receive_channel.receive_nowait()
            except trio.WouldBlock:
                return count
            count += 1


class Hub:
    """Bounded, drop-for-slow broadcast of live events, encoded once per transport."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def wants(self, kind: type) -> bool:
        """Whether any subscriber's transport carries events of ``kind`` (so it is worth
        building them)."""
        return any(sub.encoder.carries(kind) for sub in self._subscribers)

    def publish(self, event: object) -> None:
        """Queue ``event`` for every subscriber that takes it, without ever blocking."""
        self.published += 1
        kind = type(event)
        encoded: dict[Encoder, Any] = {}
        for sub in self._subscribers:
            encoder = sub.encoder
            if not encoder.carries(kind) or (sub.accepts is not None and not sub.accepts(event)):
                continue
            try:
                item = encoded[encoder]
            except KeyError:
                item = encoded[encoder] = encoder.encode(event)
            try:
                sub.send_channel.send_nowait(item)
            except trio.WouldBlock:
                sub.dropped += 1
                sub.resync = True

    @asynccontextmanager
    async def subscribe(
        self,
        max_buffer: int = DEFAULT_BUFFER,
        *,
        encoder: Encoder = RAW,
        accepts: Callable[[Any], bool] | None = None,
    ) -> AsyncIterator[Subscriber]:
        """Register a subscriber for the duration of the ``async with`` block.

        Args:
            max_buffer: items queued for it before it drops and must resync.
            encoder: its transport's encoder (shared, so each event is encoded once).
            accepts: an optional filter of this subscriber's own (checked before queueing,
                so events it would skip never fill its buffer).
        """
        sub = Subscriber(max_buffer, encoder, accepts)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub.send_channel.close()
            sub.receive_channel.close()
