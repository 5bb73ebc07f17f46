"""The audit log: who asked for which run, when it ran and how it ended.

Its rows live in the lab's SQLite database (the ``audit`` table, created by
:data:`~app.store.MIGRATIONS`) and go through the store's write-behind queue, so an entry
never fails to be written: while SQLite cannot write it waits in memory and is retried.
Entries of refused requests carry no run id and may be dropped, and counted, when too many
wait. Retention: the newest :attr:`~app.store.StoreLimits.max_audit_entries` are kept, older
ones are deleted as new ones are inserted; a spec larger than :data:`MAX_AUDIT_SPEC_BYTES` is
kept as its target and pattern only.
"""

from __future__ import annotations

import json
from typing import Any

from app.store import Store
from app.writebehind import Write

# An audit entry keeps the spec it was asked with, unless that is larger than this: a
# refused request may carry a 64 KiB payload, and the audit is a log of who asked for what,
# not a copy of every payload (a started run's full spec is in its own row).
MAX_AUDIT_SPEC_BYTES = 2048

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


def _audit_spec(spec: Any) -> str:
    text = json.dumps(spec)
    if len(text) <= MAX_AUDIT_SPEC_BYTES or not isinstance(spec, dict):
        return text
    kept = {k: spec[k] for k in ("target", "pattern") if k in spec}
    return json.dumps({**kept, "elided_bytes": len(text)})


class AuditLog:
    """Who asked for which run, when it ran and how it ended; refused requests included.

    Entries never fail to be written: while the store cannot write they wait in memory
    (those of refused requests may be dropped, and counted, when too many wait).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, entry: dict[str, Any]) -> None:
        keys = [k for k in _AUDIT_COLUMNS if k != "seq" and k in entry]
        values = [_audit_spec(entry[k]) if k == "spec" else entry[k] for k in keys]
        marks = ", ".join("?" * len(keys))
        sql = f"INSERT INTO audit ({', '.join(keys)}) VALUES ({marks})"
        # seq only grows (AUTOINCREMENT), so the newest N are those above max(seq) - N.
        prune = "DELETE FROM audit WHERE seq <= (SELECT max(seq) FROM audit) - ?"
        keep = self.store.limits.max_audit_entries
        statements = ((sql, tuple(values)), (prune, (keep,)))
        await self.store.writes.submit(Write(statements, droppable=entry.get("run_id") is None))

    async def finish(
        self, run_id: str, started_at: float | None, ended_at: float, outcome: str
    ) -> None:
        sql = "UPDATE audit SET started_at = ?, ended_at = ?, outcome = ? WHERE run_id = ?"
        await self.store.writes.submit(Write(((sql, (started_at, ended_at, outcome, run_id)),)))

    async def entries(self, limit: int = 100) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit ORDER BY seq DESC LIMIT ?"
        rows = await self.store._read(lambda db: db.execute(sql, (limit,)).fetchall())
        items = []
        for row in rows:
            item = dict(zip(_AUDIT_COLUMNS, row, strict=True))
            if item["spec"] is not None:
                item["spec"] = json.loads(item["spec"])
            items.append(item)
        return items
