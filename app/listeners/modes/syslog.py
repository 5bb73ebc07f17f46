"""Syslog mode: a syslog collector, RFC 5424 and RFC 3164, over UDP (one message per
datagram, RFC 5426) and TCP (octet counting or newline framing, RFC 6587, told apart per
connection by :mod:`app.wire.syslog_framing`).

Every message is parsed by :mod:`app.wire.syslog` and kept in the collector's
:class:`~app.telemetry.logs.LogStore` (the newest records, exact counts per severity). Its
series store counts messages: the series ``syslog_messages`` with tags ``facility``,
``severity``, ``host`` and ``app`` (``-`` where the message had none) holds, field
``count``, how many such messages arrived so far, so a chart shows each source's rate.
Limits, counters and forwarding are the collectors' (:mod:`app.listeners.modes.collector`).
"""

from __future__ import annotations

from typing import Any

from app.listeners.base import Listener
from app.listeners.modes.collector import CollectorMode, Framer
from app.telemetry.logs import LogStore
from app.telemetry.points import FACILITIES, SEVERITIES, Point, Tags
from app.wire.syslog import parse_message
from app.wire.syslog_framing import SyslogFramer

SERIES_NAME = "syslog_messages"


class SyslogMode(CollectorMode):
    """Collect syslog messages."""

    name = "syslog"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.logs = LogStore()
        # Messages so far per series (the series store keeps values, not sums); bounded
        # like the store: a series it refuses is not counted here either.
        self._counts: dict[Tags, int] = {}

    def take(self, message: bytes, now: float) -> None:
        record = parse_message(message, now)
        self.logs.add(record, now)
        tags: Tags = (
            ("app", record.app or "-"),
            ("facility", FACILITIES[record.facility]),
            ("host", record.host or "-"),
            ("severity", SEVERITIES[record.severity]),
        )
        counts = self._counts
        count = counts.get(tags, 0) + 1
        if count > 1 or len(counts) < self.series.max_series:
            counts[tags] = count
        self.series.add(Point(SERIES_NAME, {"count": count}, tags), now)

    def skip(self, message: bytes) -> bool:
        return not message.strip(b"\x00\r\n\t ")

    def split_datagram(self, data: bytes) -> list[bytes]:
        return [data]

    def framer(self) -> Framer:
        return SyslogFramer(self.listener.spec.max_message_size)

    def counters(self) -> dict[str, Any]:
        """The collectors' counters plus ``by_severity`` ({name: count}, every message) and
        ``evicted`` (records that left the log store, oldest first)."""
        logs = self.logs
        return {
            **super().counters(),
            "by_severity": dict(zip(SEVERITIES, logs.by_severity, strict=True)),
            "evicted": logs.evicted,
        }
