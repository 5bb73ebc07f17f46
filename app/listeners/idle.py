"""Idle timeouts of many connections that have no task (and no cancel scope) of their own.

Theory of operation: a connection served by a listener's socket loop records when it last
had traffic (``active_at``: one float store per message, the only hot-path cost). The
:class:`IdleDeadlines` heap holds one entry per connection, never later than its real
deadline (``active_at + idle_timeout``). When the earliest entry comes due, the sweep looks
at its connection: one that had traffic since goes back into the heap at its real deadline;
one that did not is expired (``expire(item)``: the loop closes it and counts it in
``idle_closed``); one that has ended already is dropped. So a busy connection costs one heap
push per idle period, a silent one its expiry, and a sweep touches only the entries that
came due: its cost does not grow with the number of connections open.

Sweeps run at most every ``granularity`` seconds, so a silent connection is closed between
``idle_timeout`` and ``idle_timeout + granularity`` after its last byte (never before). A
sweep looks at :data:`SWEEP_BATCH` entries, then checkpoints before the next batch: the work
between two turns of the rest of the lab is bounded whatever the number that came due.

Resource handling: the entries of connections that ended stay in the heap until they come
due; when they outnumber the live ones (twice as many, plus a slack), the heap is rebuilt
from the live connections, so its size stays proportional to what is open, as trio's own
deadline heap does.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import trio

# Stale entries tolerated beyond twice the live ones before the heap is rebuilt.
_PRUNE_SLACK = 1024
# Entries one sweep looks at before it lets the rest of the lab run: closing a connection
# (a TCP_INFO read, a close) is some 20 µs, so a batch is about 5 ms.
SWEEP_BATCH = 256


class Idling(Protocol):
    """What the sweep reads and writes of a connection.

    The heap holds the connections themselves, ordered by ``idle_due`` (``__lt__``): no
    entry object per connection. ``idle_due`` is the heap's, written only by
    :class:`IdleDeadlines` (a connection is in the heap once, from :meth:`~IdleDeadlines.add`
    until the sweep pops it).
    """

    active_at: float  # trio time of its last traffic
    idle_due: float  # when the sweep looks at it next

    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=Idling)


class IdleDeadlines(Generic[T]):
    """The idle deadlines of a listener's task-less connections, and the task that sweeps.

    Args:
        idle_timeout: Seconds of silence after which a connection is expired.
        granularity: The least time between two sweeps (seconds).
        expire: Called with each connection found silent for ``idle_timeout``; it ends it.
        ended: Whether a connection has ended already (its entry is then dropped).
        live: The connections served now (to rebuild the heap from).
    """

    def __init__(
        self,
        idle_timeout: float,
        granularity: float,
        expire: Callable[[T], object],
        ended: Callable[[T], bool],
        live: Callable[[], Collection[T]],
    ) -> None:
        self._idle = idle_timeout
        self._granularity = granularity
        self._expire = expire
        self._ended = ended
        self._live = live
        self._heap: list[T] = []
        self._wake: trio.CancelScope | None = None  # the sweeper's sleep, while it sleeps
        self._not_before = -math.inf  # the earliest time the next sweep may run

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, item: T) -> None:
        """Start watching ``item``, silent since ``item.active_at``."""
        deadline = item.idle_due = item.active_at + self._idle
        heap = self._heap
        heapq.heappush(heap, item)
        wake = self._wake
        if wake is not None and wake.deadline == math.inf:
            # The sweeper slept with nothing to watch. Otherwise its deadline is early
            # enough already: every connection has the same timeout and time only grows.
            wake.deadline = max(deadline, self._not_before)
        if len(heap) > 2 * len(self._live()) + _PRUNE_SLACK:
            self._rebuild()

    def sweep(self, now: float, limit: int | None = None) -> int:
        """Expire the connections silent for the idle timeout at ``now``.

        Looks at ``limit`` entries at most (all that are due when ``None``); returns how
        many it looked at.
        """
        heap = self._heap
        idle = self._idle
        looked = 0
        while heap and heap[0].idle_due <= now and looked != limit:
            looked += 1
            item = heapq.heappop(heap)
            if self._ended(item):
                continue
            deadline = item.active_at + idle
            if deadline > now:
                item.idle_due = deadline
                heapq.heappush(heap, item)
                continue
            self._expire(item)
        return looked

    def _rebuild(self) -> None:
        idle = self._idle
        heap = list(self._live())
        for item in heap:
            item.idle_due = item.active_at + idle
        heapq.heapify(heap)
        self._heap = heap

    async def run(self) -> NoReturn:
        """Sweep whenever the earliest deadline comes due, forever (cancel to stop)."""
        while True:
            with trio.CancelScope() as wake:
                heap = self._heap
                wake.deadline = max(heap[0].idle_due, self._not_before) if heap else math.inf
                self._wake = wake
                try:
                    await trio.sleep_forever()
                finally:
                    self._wake = None
            now = trio.current_time()
            self._not_before = now + self._granularity
            # Thousands of connections may come due at once (a burst opened together):
            # each batch ends with a checkpoint, so the rest of the lab keeps its turn.
            while self.sweep(now, SWEEP_BATCH) == SWEEP_BATCH:
                await trio.lowlevel.checkpoint()
