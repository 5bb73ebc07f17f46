"""Fan-out of live messages to subscribers (browsers, event streams).

Theory of operation: the lab's snapshot loop calls :meth:`Hub.publish` a few times a second
with one already-serialised message. Publishing never awaits: each subscriber has a small
bounded buffer, filled with ``send_nowait``. When a buffer is full the message is dropped for
that subscriber only, its drop counter goes up and it is flagged ``resync``: its writer then
discards what is queued and sends a full state instead of the diffs it missed. One stuck
browser therefore costs one bounded buffer and never slows the sockets or other browsers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

# Four messages is one second of snapshots at 4 Hz: a subscriber that is a second behind is
# better served by a fresh full state than by a backlog of stale diffs.
DEFAULT_BUFFER = 4


class Subscriber:
    """One consumer's bounded queue of messages, with its drop accounting."""

    def __init__(self, max_buffer: int) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[str](max_buffer)
        self.dropped = 0
        self.resync = False

    def drain_nowait(self) -> int:
        """Discard every queued message; return how many were discarded."""
        count = 0
        while True:
            try:
                self.receive_channel.receive_nowait()
            except trio.WouldBlock:
                return count
            count += 1


class Hub:
    """Bounded, drop-for-slow broadcast of live messages."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def publish(self, message: str) -> None:
        """Queue ``message`` for every subscriber without ever blocking."""
        self.published += 1
        for sub in self._subscribers:
            try:
                sub.send_channel.send_nowait(message)
            except trio.WouldBlock:
                sub.dropped += 1
                sub.resync = True

    @asynccontextmanager
    async def subscribe(self, max_buffer: int = DEFAULT_BUFFER) -> AsyncIterator[Subscriber]:
        """Register a subscriber for the duration of the ``async with`` block."""
        sub = Subscriber(max_buffer)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub.send_channel.close()
            sub.receive_channel.close()
