"""Saved scenarios, in the lab's SQLite database beside the saved packets.

A scenario written in the dashboard or sent over the API is kept by name and can be named by
a run instead of being given inline (``POST /api/runs`` with ``"scenario": "name"``): the
run's stored spec then holds the steps it ran, so editing the saved one later changes no
stored run.

Theory of operation: the table is this module's own (:class:`~app.packets_store.OwnTables`:
``CREATE TABLE IF NOT EXISTS`` on first use), not one of the store's numbered migrations.
A scenario is kept as the JSON of its validated :class:`~app.wire.scenario.Scenario` model,
so what is read back validates again. Writes go through the store's one writer: refused
with 503 while the store cannot write, durable once answered.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from app.errors import ConflictError, NotFoundError
from app.packets_store import OwnTables
from app.store import Store

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS saved_scenarios (
        name TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
)

# Saved scenarios at most; a new name past it is refused (409).
MAX_SCENARIOS = 1_000

_COLUMNS = ("name", "scenario", "created_at", "updated_at")


class ScenarioStore(OwnTables):
    """Saved scenarios by name.

    Args:
        store: The lab's store.
        max_scenarios: How many may be saved.
    """

    schema = SCHEMA

    def __init__(self, store: Store, max_scenarios: int = MAX_SCENARIOS) -> None:
        super().__init__(store)
        self.max_scenarios = max_scenarios

    async def list(self) -> list[dict[str, Any]]:
        """Every saved scenario, by name."""
        await self.ensure()
        sql = f"SELECT {', '.join(_COLUMNS)} FROM saved_scenarios ORDER BY name"
        rows = await self.store._read(lambda db: db.execute(sql).fetchall())
        return [_saved(row) for row in rows]

    async def get(self, name: str) -> dict[str, Any] | None:
        """The saved scenario ``name``, or None."""
        await self.ensure()
        sql = f"SELECT {', '.join(_COLUMNS)} FROM saved_scenarios WHERE name = ?"
        row = await self.store._read(lambda db: db.execute(sql, (name,)).fetchone())
        return None if row is None else _saved(row)

    async def put(
        self, name: str, scenario: dict[str, Any], now: float, *, create: bool | None = None
    ) -> bool:
        """Save ``scenario`` (a validated document) as ``name``; True when the name is new.

        Args:
            name: Its name.
            scenario: The document, as the model dumps it.
            now: Unix time of the write.
            create: True: the name must be new; False: it must exist; None: either.

        Raises:
            ConflictError: A new name while ``max_scenarios`` are saved, or ``create`` is
                True and the name is taken.
            NotFoundError: ``create`` is False and there is no scenario ``name``.
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        limit = self.max_scenarios
        text = json.dumps(scenario, separators=(",", ":"))

        def put(db: sqlite3.Connection) -> bool:
            found = db.execute("SELECT 1 FROM saved_scenarios WHERE name = ?", (name,))
            exists = found.fetchone() is not None
            if create is True and exists:
                raise ConflictError(f"a scenario {name!r} is saved already", "name")
            if create is False and not exists:
                raise NotFoundError(f"no saved scenario {name!r}", "name")
            if not exists:
                (count,) = db.execute("SELECT count(*) FROM saved_scenarios").fetchone()
                if count >= limit:
                    message = f"at most {limit} scenarios are saved; delete one first"
                    raise ConflictError(message, "name")
            db.execute(
                "INSERT INTO saved_scenarios (name, scenario, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "scenario = excluded.scenario, updated_at = excluded.updated_at",
                (name, text, now, now),
            )
            return not exists

        return await self.store.writes.now(put)

    async def delete(self, name: str) -> bool:
        """Delete a saved scenario; False when there was none of that name.

        Raises:
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        sql = "DELETE FROM saved_scenarios WHERE name = ?"
        return await self.store.writes.now(lambda db: db.execute(sql, (name,)).rowcount > 0)


def _saved(row: tuple[Any, ...]) -> dict[str, Any]:
    saved = dict(zip(_COLUMNS, row, strict=True))
    saved["scenario"] = json.loads(saved["scenario"])
    return saved
