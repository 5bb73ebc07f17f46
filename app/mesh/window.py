"""A probe flow's figures over a sliding window of time (sans-IO: no trio, no sockets).

Theory of operation: a flow sends numbered probes; :meth:`ProbeWindow.sent` records each
with the time it left, :meth:`ProbeWindow.reply` the time its echo came back. A probe is
*pending* until its reply or its ``timeout``; :meth:`ProbeWindow.expire` turns the pending
probes older than that into losses. Every decided probe (answered or lost) and every
duplicate or reordered reply is an event with its time; the figures of
:meth:`ProbeWindow.figures` are those of the events younger than ``window`` seconds, so a
fault shows while it lasts and fades ``window`` seconds after it ends.

- RTT p50/p99: nearest-rank percentiles of the answered probes' round trips;
- loss: probes with no reply within ``timeout``, over the decided probes;
- duplicates: a reply for a probe already answered (a set of the answered sequence numbers
  of the window is kept for it);
- reordered: a reply whose number is lower than one already answered;
- jitter: RFC 3550's estimator (``J += (|D| - J) / 16``) over the round trips in the order
  the replies came, where D is the difference of consecutive round trips;
- retransmits: for TCP, the kernel's count (``tcpi_total_retrans``) at each sample; the
  figure is its growth within the window (connections that closed keep their count).

A reply that comes after its probe was counted lost stays lost (``late`` counts it): the
sender had given up on it, as an application would have.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

# What an event is: (time, kind, value). Kinds below; value is the RTT in seconds for
# "answered", 0 otherwise.
_ANSWERED, _LOST, _DUPLICATE, _REORDERED = 0, 1, 2, 3


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of a sorted list; None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class ProbeWindow:
    """The figures of one probe flow over the last ``window`` seconds.

    Args:
        window: Seconds of events the figures cover.
        timeout: Seconds after which a probe with no reply is lost.
    """

    def __init__(self, window: float, timeout: float) -> None:
        self.window = window
        self.timeout = timeout
        self.pending: dict[int, float] = {}
        self.events: deque[tuple[float, int, float]] = deque()
        self.answered: dict[int, float] = {}  # seq -> when (for duplicates), within the window
        self.highest = -1
        self.total_sent = 0
        self.total_received = 0
        self.late = 0
        self.last_reply: float | None = None
        self.retrans: deque[tuple[float, int]] = deque()

    def sent(self, seq: int, now: float) -> None:
        self.pending[seq] = now
        self.total_sent += 1

    def reply(self, seq: int, now: float) -> None:
        """A reply for probe ``seq`` arrived at ``now``."""
        sent_at = self.pending.pop(seq, None)
        if sent_at is None:
            if seq in self.answered:
                self.events.append((now, _DUPLICATE, 0.0))
            elif 0 <= seq < self.next_expected():
                self.late += 1
            return
        self.total_received += 1
        self.last_reply = now
        if seq < self.highest:
            self.events.append((now, _REORDERED, 0.0))
        self.highest = max(self.highest, seq)
        self.answered[seq] = now
        self.events.append((now, _ANSWERED, now - sent_at))

    def next_expected(self) -> int:
        return self.total_sent

    def expire(self, now: float) -> None:
        """Count as lost the probes whose reply is overdue; forget what left the window."""
        overdue = [seq for seq, at in self.pending.items() if now - at > self.timeout]
        for seq in overdue:
            del self.pending[seq]
            self.events.append((now, _LOST, 0.0))
        horizon = now - self.window
        events = self.events
        while events and events[0][0] < horizon:
            events.popleft()
        stale = [seq for seq, at in self.answered.items() if at < horizon]
        for seq in stale:
            del self.answered[seq]
        retrans = self.retrans
        # One sample older than the window stays: the growth is counted from it.
        while len(retrans) > 1 and retrans[1][0] < horizon:
            retrans.popleft()

    def retransmits(self, now: float, total: int) -> None:
        """The kernel's cumulative retransmit count of the flow, read at ``now``."""
        self.retrans.append((now, total))

    def overdue_since(self, now: float) -> float | None:
        """When the oldest probe still waiting was sent, if it waits longer than a timeout."""
        if not self.pending:
            return None
        oldest = min(self.pending.values())
        return oldest if now - oldest > self.timeout else None

    def figures(self, tcp: bool) -> dict[str, Any]:
        """The window's figures (see the module's docstring); ``retransmits`` for TCP only."""
        rtts: list[float] = []
        jitter = 0.0
        previous: float | None = None
        lost = duplicates = reordered = 0
        for _, kind, value in self.events:
            if kind == _ANSWERED:
                rtts.append(value)
                if previous is not None:
                    jitter += (abs(value - previous) - jitter) / 16
                previous = value
            elif kind == _LOST:
                lost += 1
            elif kind == _DUPLICATE:
                duplicates += 1
            else:
                reordered += 1
        received = len(rtts)
        decided = received + lost
        rtts.sort()
        p50, p99 = percentile(rtts, 0.5), percentile(rtts, 0.99)
        doc: dict[str, Any] = {
            "sent": decided,
            "received": received,
            "lost": lost,
            "loss_pct": round(100.0 * lost / decided, 3) if decided else None,
            "duplicates": duplicates,
            "reordered": reordered,
            "rtt_p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "rtt_p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "jitter_ms": round(jitter * 1000, 3) if received > 1 else None,
            "retransmits": None,
        }
        if tcp:
            retrans = self.retrans
            doc["retransmits"] = retrans[-1][1] - retrans[0][1] if retrans else 0
        return doc
