"""SQLite storage: run specs, summaries and interval series, under the data directory.

Resource handling: one writer connection, used from worker threads one call at a time (a
:class:`trio.Lock` makes the store its own single writer), in WAL mode with
``synchronous=FULL`` so that every write the API acknowledged survives a crash of the
process or the machine; a second, read-only connection serves readers, which WAL lets read
while a write waits for the disk or for another process's lock. Migrations are numbered and
tracked with ``PRAGMA user_version``; a database newer than :data:`MIGRATIONS` is refused.

Error handling: the store never ends the lab. Writes already promised (a run's result, an
audit entry) wait in a :class:`~app.writebehind.WriteBehind` queue while SQLite cannot write
and are retried; writes that need an answer (a new run, a preset) are refused with
:class:`~app.errors.StoreUnavailableError` (503) meanwhile. A data directory that cannot hold
the database at all is a :class:`~app.errors.DataDirError` at start-up, said in one line.

Retention (:class:`StoreLimits`): the newest runs and audit entries are kept, older ones are
deleted as new ones are inserted; presets are refused beyond their cap. The audit log's rows
are written by :class:`~app.audit.AuditLog`, over this store's connections and write-behind.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from app.datadir import check_directory, connect, data_error, newer_schema_error
from app.errors import ConflictError, StoreUnavailableError
from app.writebehind import Write, WriteBehind, describe_failure, is_store_failure

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        spec TEXT NOT NULL,
        summary TEXT,
        series TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL
    );
    CREATE INDEX runs_created ON runs (created_at);
    """,
    """
    CREATE TABLE presets (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT,
        principal TEXT NOT NULL,
        client TEXT,
        target TEXT,
        spec TEXT,
        requested_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX audit_run ON audit (run_id);
    """,
    # The run history (app/history.py): labels, and each ended run's HDR histogram.
    """
    ALTER TABLE runs ADD COLUMN rtt_hdr TEXT;
    CREATE TABLE run_labels (
        run_id TEXT NOT NULL,
        label TEXT NOT NULL,
        PRIMARY KEY (run_id, label)
    ) WITHOUT ROWID;
    CREATE INDEX run_labels_label ON run_labels (label);
    CREATE TRIGGER run_labels_follow_runs AFTER DELETE ON runs
    BEGIN
        DELETE FROM run_labels WHERE run_id = old.id;
    END;
    """,
)

_RUN_COLUMNS = (
    "id",
    "status",
    "spec",
    "summary",
    "series",
    "error",
    "created_at",
    "started_at",
    "ended_at",
)
_JSON_COLUMNS = ("spec", "summary", "series")


def _row_to_run(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip(_RUN_COLUMNS, row, strict=True))
    for key in _JSON_COLUMNS:
        if run[key] is not None:
            run[key] = json.loads(run[key])
    return run


DB_NAME = "socketlab.sqlite3"


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How much the store keeps.

    Attributes:
        max_stored_runs: The newest runs kept; older ended runs are deleted on insert.
        max_audit_entries: The newest audit entries kept; older ones are deleted on insert.
        max_presets: Presets at most; saving one more under a new name is refused (409).
    """

    max_stored_runs: int = 10_000
    max_audit_entries: int = 100_000
    max_presets: int = 1_000


def _encode(key: str, value: Any) -> Any:
    return json.dumps(value) if key in _JSON_COLUMNS and value is not None else value


class Store:
    """The lab's SQLite database in ``data_dir``. Open it with :func:`open_store`.

    Made without I/O, so the objects that use it can be given it at construction; its
    methods work once :func:`open_store` has opened (and migrated) the file. Run
    ``store.writes.serve`` in a nursery so that failed writes are retried.
    """

    def __init__(self, data_dir: Path, limits: StoreLimits | None = None) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self.limits = limits or StoreLimits()
        self._db: sqlite3.Connection
        self._reader: sqlite3.Connection
        self._lock = trio.Lock()
        self._read_lock = trio.Lock()
        self.writes = WriteBehind(lambda: self._db, self._lock, str(data_dir))

    def _open(self) -> None:
        """Create, check and migrate the database (blocking: call it in a thread).

        Raises:
            DataDirError: The directory or the file cannot hold the lab's database.
        """
        check_directory(self.data_dir, DB_NAME)
        try:
            self._db = connect(self.path)
        except sqlite3.Error as exc:
            raise data_error(self.data_dir, exc) from exc
        try:
            self._migrate()
            self._reader = connect(self.path)
            self._reader.execute("PRAGMA query_only=1")
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise data_error(self.data_dir, exc) from exc
            raise

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise newer_schema_error(self.data_dir, version, len(MIGRATIONS))
        self._db.execute("PRAGMA journal_mode=WAL")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    def degraded(self) -> str | None:
        """Why the store cannot write now (with how many writes wait), or None."""
        return self.writes.degraded()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader connection in a thread.

        Raises:
            StoreUnavailableError: SQLite cannot read now (locked, I/O error).
        """

        def read() -> T:
            try:
                return fn(self._reader)
            except sqlite3.Error as exc:
                if not is_store_failure(exc):
                    raise
                where = str(self.data_dir)
                message = f"the store cannot read now: {describe_failure(exc, where)}"
                raise StoreUnavailableError(message) from exc

        async with self._read_lock:
            return await trio.to_thread.run_sync(read)

    async def insert_run(self, run: dict[str, Any]) -> None:
        """Store a new run; returns once it is durable. Older ended runs beyond the
        retention limit are deleted in the same transaction.

        Raises:
            StoreUnavailableError: The store cannot write now (nothing was stored).
        """
        values = tuple(_encode(k, run.get(k)) for k in _RUN_COLUMNS)
        sql = (
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(values))})"
        )
        # Ended runs older than the newest max_stored_runs; a running one is never deleted.
        prune = (
            "DELETE FROM runs WHERE status != 'running' AND created_at < "
            "(SELECT created_at FROM runs ORDER BY created_at DESC LIMIT 1 OFFSET ?)"
        )
        keep = self.limits.max_stored_runs - 1

        def insert(db: sqlite3.Connection) -> None:
            db.execute(sql, values)
            db.execute(prune, (keep,))

        await self.writes.now(insert)

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Update some columns of a stored run. Never fails: while the store cannot write,
        the update waits in memory (readers see it) and is retried."""
        keys = [k for k in fields if k in _RUN_COLUMNS and k != "id"]
        values = [_encode(k, fields[k]) for k in keys]
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in keys)} WHERE id = ?"
        write = Write(((sql, (*values, run_id)),), run_id, {k: fields[k] for k in keys})
        await self.writes.submit(write)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?"
        row = await self._read(lambda db: db.execute(sql, (run_id,)).fetchone())
        if row is None:
            return None
        return _row_to_run(row) | self.writes.overlay().get(run_id, {})

    async def list_runs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first, without the interval series (they can be large)."""
        columns = [c if c != "series" else "NULL" for c in _RUN_COLUMNS]
        sql = f"SELECT {', '.join(columns)} FROM runs ORDER BY created_at DESC LIMIT ? OFFSET ?"
        rows = await self._read(lambda db: db.execute(sql, (limit, offset)).fetchall())
        overlay = self.writes.overlay()
        runs = []
        for row in rows:
            run = _row_to_run(row)
            run.update((k, v) for k, v in overlay.get(run["id"], {}).items() if k != "series")
            runs.append(run)
        return runs

    async def mark_interrupted(self, ended_at: float) -> int:
        """Runs left ``running`` by a process that died are stored as failed; returns how
        many (-1 when the store cannot write now: the update then waits and is retried)."""
        # Only runs created before now: queued, it must not touch runs this process starts.
        sql = (
            "UPDATE runs SET status = 'failed', error = 'the lab stopped before the run ended', "
            "ended_at = ? WHERE status = 'running' AND created_at < ?"
        )
        params = (ended_at, ended_at)
        try:
            return await self.writes.now(lambda db: db.execute(sql, params).rowcount)
        except StoreUnavailableError:
            await self.writes.submit(Write(((sql, params),)))
            return -1

    async def list_presets(self) -> list[dict[str, Any]]:
        """Saved run presets, by name."""
        sql = "SELECT name, spec, created_at, updated_at FROM presets ORDER BY name"
        rows = await self._read(lambda db: db.execute(sql).fetchall())
        return [
            {"name": name, "spec": json.loads(spec), "created_at": created, "updated_at": updated}
            for name, spec, created, updated in rows
        ]

    async def put_preset(self, name: str, spec: dict[str, Any], now: float) -> bool:
        """Save a preset under ``name``, replacing one of the same name; True when it is new.

        Raises:
            ConflictError: A new name while ``max_presets`` are saved already.
            StoreUnavailableError: The store cannot write now.
        """
        limit = self.limits.max_presets

        def put(db: sqlite3.Connection) -> bool:
            exists = db.execute("SELECT 1 FROM presets WHERE name = ?", (name,)).fetchone()
            if exists is None:
                (count,) = db.execute("SELECT count(*) FROM presets").fetchone()
                if count >= limit:
                    raise ConflictError(
                        f"at most {limit} presets are kept; delete one first", "name"
                    )
            db.execute(
                "INSERT INTO presets (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
                "updated_at = excluded.updated_at",
                (name, json.dumps(spec), now, now),
            )
            return exists is None

        return await self.writes.now(put)

    async def delete_preset(self, name: str) -> bool:
        """Delete a preset; False when there was none of that name.

        Raises:
            StoreUnavailableError: The store cannot write now.
        """
        sql = "DELETE FROM presets WHERE name = ?"
        return await self.writes.now(lambda db: db.execute(sql, (name,)).rowcount > 0)


def check_data_dir(data_dir: Path, limits: StoreLimits | None = None) -> None:
    """Open (creating and migrating) the database in ``data_dir`` and close it: the check a
    command makes before it starts, so a bad directory is one line, not a traceback.

    Raises:
        DataDirError: The directory or the database cannot be used.
    """
    store = Store(data_dir, limits)
    store._open()
    store.close()


@asynccontextmanager
async def open_store(data_dir: Path | Store) -> AsyncIterator[Store]:
    """Open (and create, migrating as needed) ``socketlab.sqlite3`` in a data directory,
    or the not yet opened ``Store`` given; at the end, writes still waiting get one last
    try and the store is closed.

    Raises:
        DataDirError: The directory or the database cannot be used.
    """
    store = data_dir if isinstance(data_dir, Store) else Store(data_dir)
    await trio.to_thread.run_sync(store._open)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                await store.writes.flush()
            with trio.move_on_after(5):
                async with store._lock:
                    await trio.to_thread.run_sync(store.close)


# The run history (app/history.py) reads run rows with the same columns as the store.


def run_select(*, series: bool) -> str:
    """The column list of a run row, ``series`` as NULL when not wanted (it can be large)."""
    return ", ".join(c if series or c != "series" else "NULL" for c in _RUN_COLUMNS)


def run_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A run document from a row selected with :func:`run_select`."""
    return _row_to_run(row)
