"""What a run may still send: the byte cap and the rate caps, charged per message.

Theory of operation: one :class:`Budget` per run, shared by its flows and built from the
lab's caps. Every write is charged *before* it goes out, so no cap is passed by what a
sampler would only notice later:

- The byte cap is a counter of bytes left. A write that does not fit is refused, and from
  then on every write is: the run stops sending within one write of the cap and never past
  it. :attr:`Budget.exhausted` says so, and ``on_exhausted`` (the run moves its send
  deadline to now) makes every flow stop at its next message and wait for its replies.
- The rate and bit-rate caps pace the patterns that set their own pace (pingpong and TCP
  bulk) with a virtual schedule (GCRA, a token bucket kept as one number): each message
  moves the schedule by ``max(1 / rate, 8 * size / bitrate)`` seconds, and a message may go
  while the schedule is at most :data:`PACE_SLACK` seconds ahead of now. When it may not,
  :meth:`Budget.take` answers the time at which it may; the caller waits until then (a task
  sleeps, the pingpong driver parks the flow and resumes it from its sweep). Open-loop
  patterns (rate, burst, UDP bulk) follow their own schedule, whose rate is checked against
  the caps before the run starts: they charge bytes only (:meth:`Budget.spend`).

A paused run (:mod:`app.runs.control`) moves the virtual schedule to infinity: every paced
message is held back and asked again :data:`PAUSE_POLL` seconds later (the flows park or
sleep as for a rate cap); a resume starts the schedule afresh. Only the branch that holds
a message back looks at it, so the hot path is as before.

So in any window of ``T`` seconds a paced run sends at most ``rate * (T + PACE_SLACK) + 1``
messages and ``bitrate / 8 * (T + PACE_SLACK)`` bytes plus one message (the caps' check
refuses messages larger than one second of the bit-rate cap).

Per message: a few float operations and comparisons, no clock read (the caller passes the
time it already has), no allocation. Sans-IO: times are plain floats (trio's clock).

The pingpong engine (app/native/_pingpong.c) charges a budget itself during each of its
calls, with :meth:`Budget.take`'s arithmetic on ``bytes_left``, ``_due``, ``_per_message``
and ``_per_byte`` (read at the start of the call, written back at its end): a change to
either must change both, and tests/test_budget_native.py holds the two equal over random
caps, messages, times and pauses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# How far ahead of now a paced run's schedule may run: a burst of at most this many
# seconds' worth of the caps. The pingpong driver resumes held-back flows from its sweep
# (every 0.1 s at most), so a slack of one sweep still lets a run reach its cap.
PACE_SLACK = 0.1
# How often a paused paced flow asks again: a resume takes effect within this (and within a
# sweep of the pingpong driver, which is at most as long).
PAUSE_POLL = 0.1


def _nothing() -> None:
    return None


class Budget:
    """The caps of one run, charged by its flows before each write.

    Args:
        max_bytes: Bytes the run may send in all (``None``: no byte cap).
        max_rate: Messages per second for the paced patterns (``None``: no cap).
        max_bitrate: Bits of payload per second for the paced patterns (``None``: no cap).
        on_exhausted: Called once, when the first write is refused by the byte cap.
    """

    __slots__ = (
        "_due",
        "_on_exhausted",
        "_per_byte",
        "_per_message",
        "bytes_left",
        "exhausted",
        "max_bytes",
    )

    def __init__(
        self,
        *,
        max_bytes: int | None = None,
        max_rate: float | None = None,
        max_bitrate: float | None = None,
        on_exhausted: Callable[[], None] = _nothing,
    ) -> None:
        self.max_bytes = max_bytes
        # A float so that "no cap" is infinity; byte counts stay exact below 2**53.
        self.bytes_left: float = math.inf if max_bytes is None else float(max_bytes)
        self.exhausted = False
        self._on_exhausted = on_exhausted
        self._per_message = 0.0 if max_rate is None else 1.0 / max_rate
        self._per_byte = 0.0 if max_bitrate is None else 8.0 / max_bitrate
        self._due = -math.inf  # the virtual schedule: when the next message is due

    def take(self, size: int, now: float) -> float:
        """Charge one message of ``size`` bytes that is about to be sent at ``now`` (trio's
        clock, never negative, so that a time to wait is never ``0.0``).

        Returns:
            ``0.0`` when it is charged: send it. Otherwise nothing is charged, and the
            answer is the time at which it may go (wait until then and ask again), or
            ``math.inf`` once the byte cap is reached (send nothing more).
        """
        if size > self.bytes_left:
            return self._exhaust()
        due = self._due
        if due < now:
            due = now  # idle: the schedule does not bank unused time beyond the slack
        elif due - PACE_SLACK > now:
            if due == math.inf:
                return now + PAUSE_POLL  # paused: ask again soon
            # Computed as the caller will compare it, so that at this time it may go.
            return due - PACE_SLACK
        cost = size * self._per_byte
        if cost < self._per_message:
            cost = self._per_message
        self._due = due + cost
        self.bytes_left -= size
        return 0.0

    def pause(self) -> None:
        """Hold back every paced message until :meth:`resume`."""
        self._due = math.inf

    def resume(self) -> None:
        """Pace afresh from now (the paused time is not banked)."""
        self._due = -math.inf

    def spend(self, size: int) -> bool:
        """Charge ``size`` bytes against the byte cap only (open-loop patterns, whose rate
        the caps' check has bounded already); False once the cap is reached."""
        if size > self.bytes_left:
            self._exhaust()
            return False
        self.bytes_left -= size
        return True

    def _exhaust(self) -> float:
        if not self.exhausted:
            self.exhausted = True
            # Every later write is refused too, so all flows stop, not just this one.
            self.bytes_left = 0.0
            self._on_exhausted()
        return math.inf
