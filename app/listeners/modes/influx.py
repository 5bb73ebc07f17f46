"""Influx mode: an InfluxDB line protocol collector over UDP and TCP, as Telegraf's
``socket_listener`` takes it.

Every line (a datagram holds one or more; TCP is cut at newlines) is parsed by
:mod:`app.wire.influx` with the listener's timestamp ``precision`` and each of its fields
stored as a series of the collector's store (name: the measurement, tags: the line's tags).
Comment and blank lines are skipped. Limits, counters and forwarding are the collectors'
(:mod:`app.listeners.modes.collector`).
"""

from __future__ import annotations

from app.listeners.modes.collector import CollectorMode, Framer
from app.wire.influx import is_comment, parse_line
from app.wire.lines import LineFramer


class InfluxMode(CollectorMode):
    """Collect InfluxDB line protocol."""

    name = "influx"

    def take(self, message: bytes, now: float) -> None:
        self.series.add(parse_line(message, self.listener.spec.precision), now)

    def skip(self, message: bytes) -> bool:
        return is_comment(message)

    def framer(self) -> Framer:
        return LineFramer(self.listener.spec.max_message_size)
