"""SQLite storage: run specs, summaries and interval series, under the data directory.

Resource handling: one ``sqlite3`` connection, used from worker threads one call at a time
(a :class:`trio.Lock` makes the store its own single writer), in WAL mode with
``synchronous=FULL`` so that every write the API acknowledged survives a crash of the
process or the machine. Migrations are numbered and tracked with ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

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


class Store:
    """The lab's SQLite database in ``data_dir``. Open it with :func:`open_store`.

    Made without I/O, so the objects that use it can be given it at construction; its
    methods work once :func:`open_store` has opened (and migrated) the file.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self._db: sqlite3.Connection
        self._lock = trio.Lock()

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    async def _call(self, fn: Callable[[], T]) -> T:
        async with self._lock:
            return await trio.to_thread.run_sync(fn)

    def close(self) -> None:
        self._db.close()

    async def insert_run(self, run: dict[str, Any]) -> None:
        """Store a new run; returns once it is durable."""
        values = tuple(
            json.dumps(run.get(k)) if k in _JSON_COLUMNS and run.get(k) is not None else run.get(k)
            for k in _RUN_COLUMNS
        )
        sql = (
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(values))})"
        )
        await self._call(lambda: self._db.execute(sql, values))

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Update some columns of a stored run."""
        keys = [k for k in fields if k in _RUN_COLUMNS and k != "id"]
        values = [
            json.dumps(fields[k]) if k in _JSON_COLUMNS and fields[k] is not None else fields[k]
            for k in keys
        ]
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in keys)} WHERE id = ?"
        await self._call(lambda: self._db.execute(sql, [*values, run_id]))

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?"
        row = await self._call(lambda: self._db.execute(sql, (run_id,)).fetchone())
        return None if row is None else _row_to_run(row)

    async def list_runs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first, without the interval series (they can be large)."""
        columns = [c if c != "series" else "NULL" for c in _RUN_COLUMNS]
        sql = f"SELECT {', '.join(columns)} FROM runs ORDER BY created_at DESC LIMIT ? OFFSET ?"
        rows = await self._call(lambda: self._db.execute(sql, (limit, offset)).fetchall())
        return [_row_to_run(r) for r in rows]

    async def mark_interrupted(self, ended_at: float) -> int:
        """Runs left ``running`` by a process that died are stored as failed; returns how many."""
        sql = (
            "UPDATE runs SET status = 'failed', error = 'the lab stopped before the run ended', "
            "ended_at = ? WHERE status = 'running'"
        )
        cursor = await self._call(lambda: self._db.execute(sql, (ended_at,)))
        return cursor.rowcount

    async def list_presets(self) -> list[dict[str, Any]]:
        """Saved run presets, by name."""
        sql = "SELECT name, spec, created_at, updated_at FROM presets ORDER BY name"
        rows = await self._call(lambda: self._db.execute(sql).fetchall())
        return [
            {"name": name, "spec": json.loads(spec), "created_at": created, "updated_at": updated}
            for name, spec, created, updated in rows
        ]

    async def put_preset(self, name: str, spec: dict[str, Any], now: float) -> bool:
        """Save a preset under ``name``, replacing one of the same name; True when it is new."""

        def put() -> bool:
            exists = self._db.execute("SELECT 1 FROM presets WHERE name = ?", (name,)).fetchone()
            self._db.execute(
                "INSERT INTO presets (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
                "updated_at = excluded.updated_at",
                (name, json.dumps(spec), now, now),
            )
            return exists is None

        return await self._call(put)

    async def delete_preset(self, name: str) -> bool:
        """Delete a preset; False when there was none of that name."""
        sql = "DELETE FROM presets WHERE name = ?"
        cursor = await self._call(lambda: self._db.execute(sql, (name,)))
        return cursor.rowcount > 0


_AUDIT_COLUMNS = (
    "seq",
    "run_id",
    "principal",
    "client",
    "target",
    "spec",
    "requested_at",
    "started_at",
    "ended_at",
    "outcome",
)


class AuditLog:
    """Who asked for which run, when it ran and how it ended; refused requests included."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, entry: dict[str, Any]) -> None:
        keys = [k for k in _AUDIT_COLUMNS if k != "seq" and k in entry]
        values = [json.dumps(entry[k]) if k == "spec" else entry[k] for k in keys]
        marks = ", ".join("?" * len(keys))
        sql = f"INSERT INTO audit ({', '.join(keys)}) VALUES ({marks})"
        db = self.store._db
        await self.store._call(lambda: db.execute(sql, values))

    async def finish(
        self, run_id: str, started_at: float | None, ended_at: float, outcome: str
    ) -> None:
        sql = "UPDATE audit SET started_at = ?, ended_at = ?, outcome = ? WHERE run_id = ?"
        db = self.store._db
        await self.store._call(lambda: db.execute(sql, (started_at, ended_at, outcome, run_id)))

    async def entries(self, limit: int = 100) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit ORDER BY seq DESC LIMIT ?"
        db = self.store._db
        rows = await self.store._call(lambda: db.execute(sql, (limit,)).fetchall())
        items = []
        for row in rows:
            item = dict(zip(_AUDIT_COLUMNS, row, strict=True))
            if item["spec"] is not None:
                item["spec"] = json.loads(item["spec"])
            items.append(item)
        return items


@asynccontextmanager
async def open_store(data_dir: Path | Store) -> AsyncIterator[Store]:
    """Open (and create, migrating as needed) ``socketlab.sqlite3`` in a data directory,
    or the not yet opened ``Store`` given; closes it at the end."""
    store = data_dir if isinstance(data_dir, Store) else Store(data_dir)
    await trio.Path(store.data_dir).mkdir(parents=True, exist_ok=True)
    await trio.to_thread.run_sync(store._open)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            async with store._lock:
                await trio.to_thread.run_sync(store.close)
