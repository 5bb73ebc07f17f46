"""Write-behind for the store: writes that must not be lost wait in memory while SQLite fails.

Theory of operation: a write the lab has already promised (a run's result, an audit entry)
is appended to an in-memory queue *before* anything can fail or be cancelled, then the
queue is committed, oldest first, in one transaction. When SQLite cannot write (a full
disk, another process holding the write lock longer than the busy timeout, an I/O error)
the writes stay queued in order, the store reports itself *degraded* with the reason, and
a retry task commits them with exponential backoff once the store works again. Readers
overlay the queued columns on the stored rows, so a run whose write failed is still found.

Writes that need an answer now (a new run, a preset) are not queued: while the store is
degraded they are refused at once with :class:`~app.errors.StoreUnavailableError` (503),
so a 201 still means "on disk", and nothing is acknowledged that only lives in memory.

Resource handling: the queue is bounded by ``max_pending``. It only grows while the store
fails, and then new runs are refused, so what it holds is the end of runs already going
(bounded by the concurrent-run cap) plus the audit entries of refused requests: those are
*droppable*, and once the queue is full they are dropped and counted, never the results.

Error handling: only store failures (:func:`is_store_failure`) are queued and retried;
any other SQLite error is a bug and propagates.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from app.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite errors that say the store cannot write now, not that the statement is wrong:
# disk full, locked or busy past the busy timeout, I/O, read-only, cannot open, corrupt.
_FAILURES = frozenset(
    {
        "SQLITE_FULL",
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_IOERR",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_PROTOCOL",
    }
)


def is_store_failure(exc: BaseException) -> bool:
    """True for SQLite errors of the disk or of other processes, which a retry can outlive."""
    if not isinstance(exc, sqlite3.Error):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    # Extended codes (SQLITE_IOERR_WRITE, SQLITE_BUSY_SNAPSHOT) carry the primary as prefix.
    return any(name == code or name.startswith(code + "_") for code in _FAILURES)


def describe_failure(exc: BaseException, where: str) -> str:
    """One line for a person: what failed, in words first, SQLite's own message after."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL"):
        return f"disk full: no space left for the database in {where} ({exc})"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"database locked: another process holds the write lock on {where} ({exc})"
    if name.startswith("SQLITE_READONLY"):
        return f"read-only: the database in {where} cannot be written ({exc})"
    return f"store error on {where}: {exc}"


def run_in_transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(db)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back if anything fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
        db.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (SQLITE_FULL does): only roll back what is open.
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return result


def _rewrite_user_version(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    db.execute(f"PRAGMA user_version = {int(version)}")


@dataclass(frozen=True, slots=True)
class Write:
    """One queued write: statements committed together, and what readers see meanwhile.

    Attributes:
        statements: ``(sql, params)`` pairs, executed in order.
        run_id: The run whose stored row this changes, if any.
        fields: The run columns it sets, overlaid on the stored row while it waits.
        droppable: May be dropped (and counted) when the queue is full.
    """

    statements: tuple[tuple[str, Sequence[Any]], ...]
    run_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    droppable: bool = False


class WriteBehind:
    """The queue of writes and the store's health. Run :meth:`serve` in a nursery.

    Args:
        connection: Returns the store's writer connection (open once the store is).
        lock: The store's writer lock, held around every use of that connection.
        where: The data directory, for messages.
        max_pending: Writes kept at most (droppable ones are dropped beyond it).
        first_retry: Seconds before the first retry; doubled after each failure.
        max_retry: The longest wait between two retries.
    """

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        lock: trio.Lock,
        where: str,
        *,
        max_pending: int = 10_000,
        first_retry: float = 0.2,
        max_retry: float = 5.0,
    ) -> None:
        self._connection = connection
        self._lock = lock
        self._where = where
        self._pending: deque[Write] = deque()
        self._max_pending = max_pending
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._wake = trio.Event()
        self.failure: str | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        """How many writes wait in memory."""
        return len(self._pending)

    def degraded(self) -> str | None:
        """Why the store is degraded (with the count of waiting writes), or None when healthy."""
        if self.failure is None:
            return None  # writes may be in flight, but nothing failed
        reason = f"{self.failure}; {len(self._pending)} writes kept in memory, retrying"
        if self.dropped:
            reason += f"; {self.dropped} audit entries of refused requests dropped"
        return reason

    def overlay(self) -> dict[str, dict[str, Any]]:
        """The columns queued for each run, merged oldest first: what readers must show."""
        merged: dict[str, dict[str, Any]] = {}
        # list() of a deque copies it in one step under the GIL: the flush thread may pop.
        for write in list(self._pending):
            if write.run_id is not None:
                merged.setdefault(write.run_id, {}).update(write.fields)
        return merged

    async def submit(self, write: Write) -> None:
        """Queue ``write`` and try to commit the queue now; never raises for a store failure.

        The write is queued before the first checkpoint, so a cancellation (a shutdown, a
        time limit) cannot lose it: the retry task or the final flush commits it.
        """
        if write.droppable and len(self._pending) >= self._max_pending:
            self.dropped += 1
            logger.error("store: %d writes waiting; an audit entry was dropped", self.pending)
            return
        self._pending.append(write)
        if self.failure is not None:
            self._wake.set()
            return  # the retry task commits it, in order, after those before it
        try:
            async with self._lock:
                # A write that held the lock before us may have failed meanwhile: then the
                # retry task takes ours too, instead of this request waiting on the disk.
                if self.failure is None:
                    await trio.to_thread.run_sync(self._flush)
        finally:
            # Also when cancelled: the thread has finished by then (threads are not
            # abandoned), so what it left queued is known and the retry task takes it.
            if self._pending:
                self._wake.set()

    async def now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction and return its result, or refuse at once.

        Raises:
            StoreUnavailableError: The store is degraded, or this write failed.
        """
        self._refuse_if_degraded()
        try:
            async with self._lock:
                self._refuse_if_degraded()  # it may have failed while we waited
                return await trio.to_thread.run_sync(self._now, fn)
        finally:
            if self.failure is not None:
                self._wake.set()

    def _refuse_if_degraded(self) -> None:
        if self.failure is not None:
            raise StoreUnavailableError(f"the store cannot write now: {self.failure}")

    def _now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return run_in_transaction(self._connection(), fn)
        except sqlite3.Error as exc:
            if not is_store_failure(exc):
                raise
            self._failed(exc)
            raise StoreUnavailableError(f"the store cannot write now: {self.failure}") from exc

    def _failed(self, exc: BaseException) -> None:
        first = self.failure is None
        self.failure = describe_failure(exc, self._where)
        if first:
            logger.error("store degraded: %s", self.failure)

    def _flush(self) -> None:
        """Commit every queued write in one transaction (in a worker thread, under the lock)."""
        batch = list(self._pending)
        db = self._connection()
        try:
            if batch:

                def apply(db: sqlite3.Connection) -> None:
                    for write in batch:
                        for sql, params in write.statements:
                            db.execute(sql, params)

                run_in_transaction(db, apply)
            else:
                # Nothing queued: a write that needed an answer failed. Rewriting the schema
                # version with its own value takes the write lock and writes a page, so a
                # lock still held or a disk still full shows here, and nothing changes.
                run_in_transaction(db, _rewrite_user_version)
        except sqlite3.Error as exc:
            if not is_store_failure(exc):
                raise
            self._failed(exc)
            return
        # Only the committed ones leave; writes appended meanwhile stay, in order.
        for _ in batch:
            self._pending.popleft()
        if self.failure is not None:
            logger.warning("store recovered: %d waiting writes stored", len(batch))
            self.failure = None

    async def flush(self) -> None:
        """Try once to commit what is queued (at shutdown); logs what could not be stored."""
        if not self._pending:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self._flush)
        if self._pending:
            logger.error(
                "store: %d writes could not be stored before the lab stopped: %s",
                self.pending,
                self.failure,
            )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Retry failed writes with exponential backoff, until cancelled."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            delay = self._first_retry
            while self.failure is not None or self._pending:
                await trio.sleep(delay)
                async with self._lock:
                    await trio.to_thread.run_sync(self._flush)
                delay = min(delay * 2, self._max_retry)
