"""The store's migrations, on real SQLite files: every older schema is brought up to date.

An older database is built by hand with ``sqlite3`` from the first migrations of the list,
as a previous release of the lab left it, with rows in every table it had; the store must
migrate it to the latest version, keep those rows, and end with exactly the schema of a
fresh database.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from app.audit import AuditLog
from app.errors import ConflictError, DataDirError, StoreUnavailableError
from app.store import MIGRATIONS, Store, StoreLimits, check_data_dir, open_store
from tests.helpers import wait_for

LATEST = len(MIGRATIONS)
DB_NAME = "socketlab.sqlite3"
RUN = {
    "id": "r1",
    "status": "finished",
    "spec": {"target": "udp://127.0.0.1:9000", "count": 10},
    "summary": {"sent": 10, "received": 9},
    "series": [{"t": 0.0, "sent": 10}],
    "error": None,
    "created_at": 1000.0,
    "started_at": 1000.5,
    "ended_at": 1002.0,
}


def build_database(path: Path, version: int) -> None:
    """A database at schema ``version``, made as that release made it, with a row per table."""
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[:version]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {version}")
        if version >= 1:
            db.execute(
                "INSERT INTO runs (id, status, spec, summary, series, error, created_at, "
                "started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    RUN["id"],
                    RUN["status"],
                    json.dumps(RUN["spec"]),
                    json.dumps(RUN["summary"]),
                    json.dumps(RUN["series"]),
                    None,
                    RUN["created_at"],
                    RUN["started_at"],
                    RUN["ended_at"],
                ),
            )
        if version >= 2:
            db.execute(
                "INSERT INTO presets (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?)",
                ("old preset", json.dumps({"count": 5}), 900.0, 950.0),
            )
        if version >= 3:
            db.execute(
                "INSERT INTO audit (run_id, principal, requested_at, outcome) VALUES (?, ?, ?, ?)",
                ("r1", "token", 999.0, "finished"),
            )
        db.commit()


def schema_of(path: Path) -> tuple[int, list[tuple[Any, ...]]]:
    """The user_version and every table and index definition, read by another connection."""
    with closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        objects = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    return version, objects


@pytest.fixture
async def fresh_schema(tmp_path: Path) -> list[tuple[Any, ...]]:
    async with open_store(tmp_path / "fresh"):
        pass
    version, objects = schema_of(tmp_path / "fresh" / DB_NAME)
    assert version == LATEST
    return objects


async def test_a_fresh_database_gets_the_latest_version_and_every_table(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "data") as store:
        assert await store.list_runs() == []
        assert await store.list_presets() == []
        assert await AuditLog(store).entries() == []
        (mode,) = store._db.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
    version, objects = schema_of(tmp_path / "data" / DB_NAME)
    assert version == LATEST
    assert {name for kind, name, _, _ in objects if kind == "table"} >= {
        "runs",
        "presets",
        "audit",
    }


@pytest.mark.parametrize("version", range(LATEST))
async def test_an_older_database_is_migrated_and_keeps_its_rows(
    tmp_path: Path, version: int, fresh_schema: list[tuple[Any, ...]]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    build_database(data / DB_NAME, version)
    async with open_store(data) as store:
        audit = AuditLog(store)
        if version >= 1:
            assert await store.get_run("r1") == RUN
        if version >= 2:
            (preset,) = await store.list_presets()
            assert (preset["name"], preset["spec"], preset["created_at"]) == (
                "old preset",
                {"count": 5},
                900.0,
            )
        if version >= 3:
            (entry,) = await audit.entries()
            assert (entry["run_id"], entry["principal"], entry["outcome"]) == (
                "r1",
                "token",
                "finished",
            )
        # Every table of the latest schema takes new rows, those the migration created too.
        await store.insert_run({**RUN, "id": "r2", "created_at": 2000.0})
        assert await store.put_preset("new preset", {"count": 1}, 2000.0) is True
        await audit.record(
            {"run_id": "r2", "principal": "token", "requested_at": 2000.0, "outcome": "running"}
        )
        old_runs = ["r1"] if version >= 1 else []
        old_audit = ["r1"] if version >= 3 else []
        assert [run["id"] for run in await store.list_runs()] == ["r2", *old_runs]
        assert [e["run_id"] for e in await audit.entries()] == ["r2", *old_audit]
    migrated_version, objects = schema_of(data / DB_NAME)
    assert migrated_version == LATEST
    assert objects == fresh_schema  # the same tables and indexes as a fresh database


async def test_a_current_database_is_opened_again_without_migrating(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with open_store(data) as store:
        await store.insert_run(RUN)
        await store.put_preset("p", {"count": 2}, 10.0)
    before = schema_of(data / DB_NAME)
    # A migration run again would fail on its CREATE TABLE (or change the schema).
    async with open_store(data) as store:
        assert await store.get_run("r1") == RUN
        assert [p["name"] for p in await store.list_presets()] == ["p"]
    assert schema_of(data / DB_NAME) == before


# The data directory: every way it can be wrong is one DataDirError naming it.


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    build_database(data / DB_NAME, LATEST)
    with closing(sqlite3.connect(data / DB_NAME)) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = schema_of(data / DB_NAME)
    with pytest.raises(DataDirError, match=f"schema version {LATEST + 1}, newer") as caught:
        check_data_dir(data)
    assert "\n" not in caught.value.message
    assert schema_of(data / DB_NAME) == before


def test_a_database_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / DB_NAME).write_bytes(b"this is not a database, " * 100)
    with pytest.raises(DataDirError, match="not a readable SQLite database"):
        check_data_dir(data)


def test_a_file_in_the_way_of_the_data_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a directory")
    with pytest.raises(DataDirError, match="a file is in the way"):
        check_data_dir(tmp_path / "data")
    with pytest.raises(DataDirError, match="a file is in the way"):
        check_data_dir(tmp_path / "data" / "below")


async def test_open_store_refuses_a_bad_data_directory_too(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file")
    with pytest.raises(DataDirError, match="a file is in the way"):
        async with open_store(tmp_path / "data"):
            pass


# Retention: the store keeps the newest runs and audit entries, and caps presets.


def run_row(run_id: str, created_at: float, status: str = "finished") -> dict[str, Any]:
    return {**RUN, "id": run_id, "created_at": created_at, "status": status}


async def test_the_newest_runs_are_kept_and_a_running_one_never_deleted(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", StoreLimits(max_stored_runs=3))
    async with open_store(store):
        await store.insert_run(run_row("old-running", 1.0, status="running"))
        for number in range(2, 8):
            await store.insert_run(run_row(f"r{number}", float(number)))
        ids = [run["id"] for run in await store.list_runs()]
    assert ids == ["r7", "r6", "r5", "old-running"]


async def test_the_newest_audit_entries_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", StoreLimits(max_audit_entries=3))
    async with open_store(store):
        audit = AuditLog(store)
        for number in range(6):
            await audit.record(
                {"run_id": f"r{number}", "principal": "t", "requested_at": 1.0, "outcome": "x"}
            )
        assert [e["run_id"] for e in await audit.entries()] == ["r5", "r4", "r3"]


async def test_a_preset_beyond_the_cap_is_refused_and_replacing_one_is_not(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "data", StoreLimits(max_presets=2))
    async with open_store(store):
        assert await store.put_preset("a", {"count": 1}, 1.0)
        assert await store.put_preset("b", {"count": 1}, 1.0)
        with pytest.raises(ConflictError, match="at most 2 presets"):
            await store.put_preset("c", {"count": 1}, 1.0)
        assert not await store.put_preset("a", {"count": 2}, 2.0)
        assert [p["name"] for p in await store.list_presets()] == ["a", "b"]


async def test_the_audit_elides_a_large_spec(tmp_path: Path) -> None:
    spec = {"target": "tcp://10.0.0.1:9", "pattern": "packet", "payload": {"text": "x" * 60_000}}
    async with open_store(tmp_path / "data") as store:
        audit = AuditLog(store)
        await audit.record(
            {
                "run_id": None,
                "principal": "t",
                "requested_at": 1.0,
                "outcome": "refused",
                "spec": spec,
            }
        )
        (entry,) = await audit.entries()
    assert entry["spec"]["target"] == "tcp://10.0.0.1:9"
    assert entry["spec"]["elided_bytes"] > 60_000
    assert "payload" not in entry["spec"]


# A store that cannot write: promised writes wait in memory, in order, and are stored later.


async def test_a_held_write_lock_keeps_writes_in_memory_until_it_is_released(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_store(data) as store, trio.open_nursery() as nursery:
        await nursery.start(store.writes.serve)
        audit = AuditLog(store)
        await store.insert_run(run_row("r1", 1.0, status="running"))
        store._db.execute("PRAGMA busy_timeout=50")  # fail fast: the test holds the lock
        with closing(sqlite3.connect(data / DB_NAME, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            await store.update_run("r1", status="finished", summary={"sent": 3}, ended_at=5.0)
            await audit.record(
                {"run_id": "r1", "principal": "t", "requested_at": 1.0, "outcome": "x"}
            )
            await audit.finish("r1", 1.0, 5.0, "finished")
            reason = store.degraded()
            assert reason is not None and "database locked" in reason
            assert "3 writes kept in memory" in reason
            # Readers see what waits in memory; a write that needs an answer is refused.
            stored = await store.get_run("r1")
            assert stored is not None and (stored["status"], stored["summary"]) == (
                "finished",
                {"sent": 3},
            )
            assert [r["status"] for r in await store.list_runs()] == ["finished"]
            with pytest.raises(StoreUnavailableError, match="database locked"):
                await store.insert_run(run_row("r2", 2.0))
            with pytest.raises(StoreUnavailableError):
                await store.put_preset("p", {"count": 1}, 1.0)
            holder.execute("ROLLBACK")
        await wait_for(lambda: store.degraded() is None and not store.writes.pending, 10)
        await store.insert_run(run_row("r2", 2.0))
        nursery.cancel_scope.cancel()
    with closing(sqlite3.connect(data / DB_NAME)) as db:
        runs = db.execute("SELECT id, status, ended_at FROM runs ORDER BY id").fetchall()
        entries = db.execute("SELECT run_id, outcome, ended_at FROM audit").fetchall()
    assert runs == [("r1", "finished", 5.0), ("r2", "finished", 1002.0)]
    assert entries == [("r1", "finished", 5.0)]  # recorded, then finished: in order


async def test_writes_left_in_memory_get_a_last_try_when_the_store_closes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_store(data) as store:
        await store.insert_run(run_row("r1", 1.0, status="running"))
        store._db.execute("PRAGMA busy_timeout=50")
        with closing(sqlite3.connect(data / DB_NAME, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            await store.update_run("r1", status="stopped")
            assert store.writes.pending == 1
            holder.execute("ROLLBACK")
        # No retry task here: closing the store commits what waits.
    with closing(sqlite3.connect(data / DB_NAME)) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("stopped",)]


async def test_a_hundred_refused_requests_with_large_payloads_stay_small_on_disk(
    tmp_path: Path,
) -> None:
    # The field report: 6.5 MB per 100 refused requests, each with a 64 KiB payload.
    spec = {"target": "tcp://10.0.0.1:9", "pattern": "packet", "payload": {"text": "é" * 65_000}}
    data = tmp_path / "data"
    async with open_store(data) as store:
        audit = AuditLog(store)
        for _ in range(100):
            entry = {"run_id": None, "principal": "t", "requested_at": 1.0, "spec": spec}
            await audit.record(entry | {"outcome": "refused: target not allowed"})
    size = sum(path.stat().st_size for path in data.iterdir())
    assert size < 400_000, size
