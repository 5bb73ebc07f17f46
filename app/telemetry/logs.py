"""The log store: a syslog collector's newest records and its counts per severity.

Theory of operation: a syslog mode owns one :class:`LogStore` and calls :meth:`add` for each
parsed record. The store keeps the newest ``max_records`` (older ones leave, counted in
``evicted``) and counts every record per severity and per facility, so the counts stay
exact when the records do not. Each kept record has a sequence number (1, 2, ...), so a
live view asks only for what is newer than what it has (:attr:`LogQuery.after`).

The interface (``add``, ``by_severity``, ``evicted``) is what the collector relies on;
:meth:`LogStore.query` is what the API reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from app.telemetry.points import LogRecord

DEFAULT_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which records to pick: every given part must match (None: any).

    ``severity`` is the most severe bound: records of that severity *or worse* (a lower
    number), as syslog filters read it; ``text`` is a case-insensitive substring of the
    message; ``after`` leaves out records up to that sequence number.
    """

    facility: int | None = None
    severity: int | None = None
    host: str | None = None
    app: str | None = None
    text: str | None = None
    after: int = 0

    def matches(self, record: LogRecord) -> bool:
        if self.facility is not None and record.facility != self.facility:
            return False
        if self.severity is not None and record.severity > self.severity:
            return False
        if self.host is not None and record.host != self.host:
            return False
        if self.app is not None and record.app != self.app:
            return False
        return not self.text or self.text.lower() in record.message.lower()


class LogStore:
    """The newest records of one syslog collector, with exact counts per severity."""

    def __init__(self, max_records: int = DEFAULT_RECORDS) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self.evicted = 0
        self.received = 0
        self.by_severity = [0] * 8
        self.by_facility = [0] * 24
        self._records: deque[tuple[int, float, LogRecord]] = deque()

    def add(self, record: LogRecord, now: float) -> None:
        """Keep ``record``, received at ``now``."""
        self.received += 1
        self.by_severity[record.severity] += 1
        self.by_facility[record.facility] += 1
        if len(self._records) >= self.max_records:
            self._records.popleft()
            self.evicted += 1
        self._records.append((self.received, now, record))

    def __len__(self) -> int:
        return len(self._records)

    def query(self, query: LogQuery, limit: int) -> Iterator[tuple[int, float, LogRecord]]:
        """The newest ``limit`` records ``query`` picks, newest first: (seq, received at,
        record)."""
        found = 0
        for item in reversed(self._records):
            if found >= limit or item[0] <= query.after:
                return
            if query.matches(item[2]):
                found += 1
                yield item
