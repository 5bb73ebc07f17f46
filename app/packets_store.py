"""Saved packets and the packet tool's send log, in the lab's SQLite database.

Packet Sender keeps a list of named packets (target, payload as text or hex) and a log of
what was sent and what came back; this is socketlab's. The packet tool's sends are not runs:
they are logged here, not in the run history.

Theory of operation: the tables live in the store's database file, beside the runs, but are
made by this module (``CREATE TABLE IF NOT EXISTS`` when the lab starts, see
:meth:`PacketStore.ensure`) rather than by the store's numbered migrations, so the store's
schema version stays the run history's own. Every write goes through the store's one writer
(:meth:`~app.writebehind.WriteBehind.now`): refused with 503 while the store cannot write,
durable once answered.

Retention: the newest :attr:`PacketLimits.max_log_entries` log entries are kept; saving one
more packet past :attr:`PacketLimits.max_packets` is refused (409).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from app.errors import ConflictError
from app.store import Store

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS saved_packets (
        name TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        hex INTEGER NOT NULL,
        timeout REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS packet_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        name TEXT,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        hex INTEGER NOT NULL,
        status TEXT NOT NULL,
        reply_hex TEXT,
        reply_text TEXT,
        reply_bytes INTEGER,
        rtt_ms REAL,
        error TEXT,
        error_kind TEXT
    )
    """,
)

_PACKET_COLUMNS = ("name", "target", "payload", "hex", "timeout", "created_at", "updated_at")
_LOG_COLUMNS = (
    "seq",
    "at",
    "name",
    "target",
    "payload",
    "hex",
    "status",
    "reply_hex",
    "reply_text",
    "reply_bytes",
    "rtt_ms",
    "error",
    "error_kind",
)


@dataclass(frozen=True, slots=True)
class PacketLimits:
    """How much is kept.

    Attributes:
        max_packets: Saved packets at most; a new name past it is refused (409).
        max_log_entries: The newest log entries kept; older ones go as new ones come.
    """

    max_packets: int = 1_000
    max_log_entries: int = 1_000


class OwnTables:
    """Tables a module makes itself in the store's database (``schema``: ``CREATE TABLE IF
    NOT EXISTS`` statements), made on first use.

    Args:
        store: The lab's store (its writer and reader connections).
    """

    schema: tuple[str, ...] = ()

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ready = False

    async def ensure(self) -> None:
        """Make the tables if the database has none yet (idempotent).

        Raises:
            StoreUnavailableError: The store cannot write now (tried again on next use).
        """
        if not self._ready:
            await self.store.writes.now(self._create)
            self._ready = True

    def _create(self, db: sqlite3.Connection) -> None:
        for statement in self.schema:
            db.execute(statement)


class PacketStore(OwnTables):
    """Saved packets and the send log.

    Args:
        store: The lab's store.
        limits: How much is kept.
    """

    schema = SCHEMA

    def __init__(self, store: Store, limits: PacketLimits | None = None) -> None:
        super().__init__(store)
        self.limits = limits or PacketLimits()

    async def list_packets(self) -> list[dict[str, Any]]:
        """Saved packets, by name."""
        await self.ensure()
        sql = f"SELECT {', '.join(_PACKET_COLUMNS)} FROM saved_packets ORDER BY name"
        rows = await self.store._read(lambda db: db.execute(sql).fetchall())
        return [_packet(row) for row in rows]

    async def put_packet(self, packet: dict[str, Any], now: float) -> bool:
        """Save ``packet`` (``name``, ``target``, ``payload``, ``hex``, ``timeout``),
        replacing one of the same name; True when the name is new.

        Raises:
            ConflictError: A new name while ``max_packets`` are saved.
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        limit = self.limits.max_packets
        values = (
            packet["name"],
            packet["target"],
            packet["payload"],
            int(bool(packet["hex"])),
            float(packet["timeout"]),
            now,
            now,
        )

        def put(db: sqlite3.Connection) -> bool:
            name = packet["name"]
            exists = db.execute("SELECT 1 FROM saved_packets WHERE name = ?", (name,)).fetchone()
            if exists is None:
                (count,) = db.execute("SELECT count(*) FROM saved_packets").fetchone()
                if count >= limit:
                    raise ConflictError(
                        f"at most {limit} packets are saved; delete one first", "name"
                    )
            db.execute(
                f"INSERT INTO saved_packets ({', '.join(_PACKET_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "target = excluded.target, payload = excluded.payload, hex = excluded.hex, "
                "timeout = excluded.timeout, updated_at = excluded.updated_at",
                values,
            )
            return exists is None

        return await self.store.writes.now(put)

    async def delete_packet(self, name: str) -> bool:
        """Delete a saved packet; False when there was none of that name.

        Raises:
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        sql = "DELETE FROM saved_packets WHERE name = ?"
        return await self.store.writes.now(lambda db: db.execute(sql, (name,)).rowcount > 0)

    async def log_send(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one send and its reply (or error) to the log; returns it with its ``seq``.

        Raises:
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        keys = [k for k in _LOG_COLUMNS if k != "seq"]
        row = _log_row(entry)
        values = tuple(row[k] for k in keys)
        sql = f"INSERT INTO packet_log ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})"
        prune = "DELETE FROM packet_log WHERE seq <= (SELECT max(seq) FROM packet_log) - ?"
        keep = self.limits.max_log_entries

        def insert(db: sqlite3.Connection) -> int:
            seq = db.execute(sql, values).lastrowid
            db.execute(prune, (keep,))
            assert seq is not None
            return seq

        seq = await self.store.writes.now(insert)
        return _log_entry((seq, *values))

    async def log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` log entries, newest first."""
        await self.ensure()
        sql = f"SELECT {', '.join(_LOG_COLUMNS)} FROM packet_log ORDER BY seq DESC LIMIT ?"
        rows = await self.store._read(lambda db: db.execute(sql, (limit,)).fetchall())
        return [_log_entry(row) for row in rows]

    async def clear_log(self) -> int:
        """Delete every log entry; returns how many there were.

        Raises:
            StoreUnavailableError: The store cannot write now.
        """
        await self.ensure()
        return await self.store.writes.now(lambda db: db.execute("DELETE FROM packet_log").rowcount)


def _packet(row: tuple[Any, ...]) -> dict[str, Any]:
    packet = dict(zip(_PACKET_COLUMNS, row, strict=True))
    packet["hex"] = bool(packet["hex"])
    return packet


def _log_row(entry: dict[str, Any]) -> dict[str, Any]:
    reply = entry.get("reply") or {}
    return {
        "at": entry["at"],
        "name": entry.get("name"),
        "target": entry["target"],
        "payload": entry["payload"],
        "hex": int(bool(entry.get("hex"))),
        "status": entry["status"],
        "reply_hex": reply.get("hex"),
        "reply_text": reply.get("text"),
        "reply_bytes": reply.get("bytes"),
        "rtt_ms": reply.get("rtt_ms"),
        "error": entry.get("error"),
        "error_kind": entry.get("error_kind"),
    }


def _log_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    data = dict(zip(_LOG_COLUMNS, row, strict=True))
    reply = None
    if data["reply_hex"] is not None:
        reply = {
            "bytes": data["reply_bytes"],
            "hex": data["reply_hex"],
            "text": data["reply_text"],
            "rtt_ms": data["rtt_ms"],
        }
    return {
        "seq": data["seq"],
        "at": data["at"],
        "name": data["name"],
        "target": data["target"],
        "payload": data["payload"],
        "hex": bool(data["hex"]),
        "status": data["status"],
        "reply": reply,
        "error": data["error"],
        "error_kind": data["error_kind"],
    }
