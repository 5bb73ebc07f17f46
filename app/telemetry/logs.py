"""The log store: a syslog collector's newest records and its counts per severity.

Theory of operation: a syslog mode owns one :class:`LogStore` and calls :meth:`add` for each
parsed record. The store keeps the newest ``max_records`` (older ones leave, counted in
``evicted``) and counts every record per severity, so the counts stay exact when the records
do not.

The interface (``add``, ``by_severity``, ``evicted``) is what the collector relies on; the
queries and filters belong to the store.
"""

from __future__ import annotations

from collections import deque

from app.telemetry.points import LogRecord


class LogStore:
    """The newest records of one syslog collector, with exact counts per severity."""

    def __init__(self, max_records: int = 10_000) -> None:
        self.max_records = max_records
        self.evicted = 0
        self.by_severity = [0] * 8
        self._records: deque[tuple[float, LogRecord]] = deque()

    def add(self, record: LogRecord, now: float) -> None:
        """Keep ``record``, received at ``now``."""
        self.by_severity[record.severity] += 1
        if len(self._records) >= self.max_records:
            self._records.popleft()
            self.evicted += 1
        self._records.append((now, record))
