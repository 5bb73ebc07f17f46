"""Graphite mode: a collector of Graphite's plaintext protocol (carbon's port 2003) over
UDP and TCP.

Every ``path[;tag=value...] value timestamp`` line (a datagram holds one or more; TCP is
cut at newlines) is parsed by :mod:`app.wire.graphite` and stored as the series ``path``
with its tags, field ``value``. Limits, counters and forwarding are the collectors'
(:mod:`app.listeners.modes.collector`).
"""

from __future__ import annotations

from app.listeners.modes.collector import CollectorMode, Framer
from app.wire.graphite import parse_line
from app.wire.lines import LineFramer


class GraphiteMode(CollectorMode):
    """Collect Graphite plaintext."""

    name = "graphite"

    def take(self, message: bytes, now: float) -> None:
        self.series.add(parse_line(message), now)

    def framer(self) -> Framer:
        return LineFramer(self.listener.spec.max_message_size)
