"""Helpers for collector tests: stores that also keep every point and record they are given.

The collectors' stores (app/telemetry/series.py, logs.py) keep a bounded, shaped history;
these subclasses keep, besides, the exact points and records each ``add`` got, so a test
compares what a real client sent with what the parser made of it, whatever the store's
internals are.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from app.listeners.base import Listener
from app.listeners.manager import ListenerManager
from app.listeners.modes.collector import CollectorMode
from app.listeners.modes.syslog import SyslogMode
from app.telemetry.logs import LogStore
from app.telemetry.points import LogRecord, Point
from app.telemetry.series import SeriesStore
from tests.listener_fixtures import start

# Generous: the machine running the tests is shared and loaded.
WAIT = 30.0


class RecordingSeries(SeriesStore):
    """A series store that also keeps every point given to :meth:`add`."""

    def __init__(self, max_series: int) -> None:
        super().__init__(max_series=max_series)
        self.points: list[Point] = []

    def add(self, point: Point, now: float) -> None:
        self.points.append(point)
        super().add(point, now)


class RecordingLogs(LogStore):
    """A log store that also keeps every record given to :meth:`add`."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[LogRecord] = []

    def add(self, record: LogRecord, now: float) -> None:
        self.records.append(record)
        super().add(record, now)


def recording(listener: Listener) -> tuple[CollectorMode, RecordingSeries, RecordingLogs | None]:
    """Swap recording stores into ``listener``'s collector (before traffic arrives)."""
    mode = listener.mode
    assert isinstance(mode, CollectorMode)
    series = RecordingSeries(mode.series.max_series)
    mode.series = series
    logs = None
    if isinstance(mode, SyslogMode):
        logs = RecordingLogs()
        mode.logs = logs
    return mode, series, logs


def frames_of(mode: CollectorMode) -> list[bytes]:
    """Make ``mode`` keep every message it parses; returns the list it fills."""
    seen: list[bytes] = []
    consume = mode.consume

    def keeping(messages: Any) -> None:
        seen.extend(bytes(message) for message in messages)
        consume(messages)

    mode.consume = keeping  # type: ignore[method-assign]
    return seen


async def send_udp(port: int, datagrams: list[bytes], host: str = "127.0.0.1") -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            await sock.sendto(datagram, (host, port))


async def send_tcp(port: int, data: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)


async def collector(manager: ListenerManager, url: str) -> Listener:
    return await start(manager, url)
