"""Listeners clients asked for, kept in the store so that they come back after a restart.

The operator's listeners (config file, command line) come back because the operator gives
them again; those started through the API or the dashboard would be lost with the process.
Each one is kept here as its JSON form (:meth:`~app.listeners.spec.ListenerSpec.to_dict`,
with the port it bound, so clients pointed at it find it again), under a key of its own,
from its start until a client stops it. A lab that shuts down keeps them all.

The table is made by this module (``CREATE TABLE IF NOT EXISTS``) like the packet tool's
(:mod:`app.packets_store`), so the store's numbered migrations stay the run history's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from app.listeners.spec import ListenerSpec
from app.packets_store import OwnTables

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS saved_listeners (
        key TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
)


@dataclass(frozen=True, slots=True)
class SavedListener:
    """One kept listener: its key, its spec's JSON form and when it was first started."""

    key: str
    spec: dict[str, Any]
    created_at: float


class SavedListeners(OwnTables):
    """The ``saved_listeners`` table. Every method may raise ``StoreUnavailableError``."""

    schema = SCHEMA

    async def all(self) -> list[SavedListener]:
        """Every kept listener, oldest first (the order they are started again)."""
        await self.ensure()
        sql = "SELECT key, spec, created_at FROM saved_listeners ORDER BY created_at, key"
        rows = await self.store._read(lambda db: db.execute(sql).fetchall())
        return [SavedListener(key, json.loads(spec), created) for key, spec, created in rows]

    async def add(self, spec: ListenerSpec, now: float) -> str:
        """Keep ``spec`` (with its bound port); returns its new key."""
        await self.ensure()
        key = secrets.token_hex(6)
        sql = "INSERT INTO saved_listeners (key, spec, created_at) VALUES (?, ?, ?)"
        params = (key, json.dumps(spec.to_dict()), now)
        await self.store.writes.now(lambda db: db.execute(sql, params))
        return key

    async def replace(self, key: str, spec: ListenerSpec) -> None:
        """Keep ``spec`` under ``key`` instead of what was kept (an edit of its rules)."""
        await self.ensure()
        sql = "UPDATE saved_listeners SET spec = ? WHERE key = ?"
        params = (json.dumps(spec.to_dict()), key)
        await self.store.writes.now(lambda db: db.execute(sql, params))

    async def remove(self, key: str) -> bool:
        """Forget a kept listener; False when there was none under ``key``."""
        await self.ensure()
        sql = "DELETE FROM saved_listeners WHERE key = ?"
        return await self.store.writes.now(lambda db: db.execute(sql, (key,)).rowcount > 0)
