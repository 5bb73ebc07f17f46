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

from app.store import MIGRATIONS, AuditLog, open_store

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
