"""The run history in the store: search, labels, delete, and the runs' RTT histograms.

Theory of operation: labels live in their own table (``run_labels``, one row per run and
label) and each ended run's HDR histogram in the ``rtt_hdr`` column of its row (migration 4
in :mod:`app.store`); a trigger deletes a run's labels with the run, so the retention that
prunes old runs prunes their labels too. Everything here reads and writes through the
store's connections and write-behind, like :class:`~app.audit.AuditLog`.

Error handling: label changes and deletes need an answer, so they are refused with
:class:`~app.errors.StoreUnavailableError` (503) while the store cannot write; a run's
histogram is a promised write that waits in memory and is retried (meanwhile the API shows
the summary's coarser rows).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from app.errors import ConflictError, NotFoundError
from app.store import Store, run_from_row, run_select
from app.writebehind import Write

# Labels a run may carry: enough to tag a baseline, a build and a host, not a database.
MAX_LABELS = 32


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a search returns; ``None`` (or empty) matches every run.

    Attributes:
        text: Found (case-insensitively) in the id, target, pattern or a label.
        target: Found (case-insensitively) in the target URL.
        pattern: The pattern, exactly.
        status: The status, exactly.
        label: A label the run carries, exactly.
    """

    text: str | None = None
    target: str | None = None
    pattern: str | None = None
    status: str | None = None
    label: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on ``runs`` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.text:
            clauses.append(
                "(instr(lower(id), lower(?)) OR instr(lower(json_extract(spec, '$.target')), "
                "lower(?)) OR instr(lower(json_extract(spec, '$.pattern')), lower(?)) OR "
                "EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = runs.id "
                "AND instr(lower(l.label), lower(?))))"
            )
            params += [self.text] * 4
        if self.target:
            clauses.append("instr(lower(json_extract(spec, '$.target')), lower(?))")
            params.append(self.target)
        if self.pattern:
            clauses.append("json_extract(spec, '$.pattern') = ?")
            params.append(self.pattern)
        if self.status:
            clauses.append("status = ?")
            params.append(self.status)
        if self.label:
            clauses.append(
                "EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = runs.id AND l.label = ?)"
            )
            params.append(self.label)
        return (" AND ".join(clauses) or "1"), params

    def matches(self, run: dict[str, Any], labels: list[str]) -> bool:
        """The same test on a run document (a running run not yet in the store's answer)."""
        spec = run.get("spec") or {}
        target, pattern = str(spec.get("target", "")), str(spec.get("pattern", ""))
        if self.text:
            text = self.text.lower()
            fields = [run["id"], target, pattern, *labels]
            if not any(text in f.lower() for f in fields):
                return False
        return (
            (not self.target or self.target.lower() in target.lower())
            and (not self.pattern or self.pattern == pattern)
            and (not self.status or self.status == run.get("status"))
            and (not self.label or self.label in labels)
        )


class RunHistory:
    """Search, labels, delete and stored histograms of the runs in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def search(self, where: RunFilter, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Stored runs that match, newest first, each with its ``labels`` and without its
        series (as :meth:`Store.list_runs`)."""
        condition, params = where.where()
        sql = (
            f"SELECT {run_select(series=False)}, (SELECT json_group_array(label) FROM "
            "(SELECT label FROM run_labels l WHERE l.run_id = runs.id ORDER BY label)) "
            f"FROM runs WHERE {condition} ORDER BY created_at DESC LIMIT ? OFFSET ?"
        )
        args = (*params, limit, offset)
        rows = await self.store._read(lambda db: db.execute(sql, args).fetchall())
        overlay = self.store.writes.overlay()
        runs = []
        for row in rows:
            run = run_from_row(row[:-1])
            run.update((k, v) for k, v in overlay.get(run["id"], {}).items() if k != "series")
            run["labels"] = json.loads(row[-1])
            runs.append(run)
        return runs

    async def labels(self, run_id: str) -> list[str]:
        """The labels of a run, sorted (none for a run the store does not hold)."""
        sql = "SELECT label FROM run_labels WHERE run_id = ? ORDER BY label"
        rows = await self.store._read(lambda db: db.execute(sql, (run_id,)).fetchall())
        return [label for (label,) in rows]

    async def add_label(self, run_id: str, label: str) -> list[str]:
        """Put ``label`` on a run (again is no change); returns its labels.

        Raises:
            NotFoundError: No stored run has that id.
            ConflictError: The run carries :data:`MAX_LABELS` labels already.
            StoreUnavailableError: The store cannot write now.
        """

        def add(db: sqlite3.Connection) -> list[str]:
            _require_run(db, run_id)
            have = _labels(db, run_id)
            if label not in have and len(have) >= MAX_LABELS:
                raise ConflictError(f"a run carries at most {MAX_LABELS} labels", "label")
            db.execute(
                "INSERT OR IGNORE INTO run_labels (run_id, label) VALUES (?, ?)", (run_id, label)
            )
            return _labels(db, run_id)

        return await self.store.writes.now(add)

    async def remove_label(self, run_id: str, label: str) -> list[str]:
        """Take ``label`` off a run; returns its labels.

        Raises:
            NotFoundError: No stored run has that id, or it does not carry the label.
            StoreUnavailableError: The store cannot write now.
        """

        def remove(db: sqlite3.Connection) -> list[str]:
            _require_run(db, run_id)
            sql = "DELETE FROM run_labels WHERE run_id = ? AND label = ?"
            if db.execute(sql, (run_id, label)).rowcount == 0:
                raise NotFoundError(f"run {run_id} has no label {label!r}", "label")
            return _labels(db, run_id)

        return await self.store.writes.now(remove)

    async def delete(self, run_id: str) -> None:
        """Delete an ended run: its row, summary, series, histogram and labels.

        Raises:
            NotFoundError: No stored run has that id.
            ConflictError: The run is still running (stop it first).
            StoreUnavailableError: The store cannot write now.
        """

        def delete(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r}", "id")
            if row[0] == "running":
                raise ConflictError(f"run {run_id} is running: stop it first", "id")
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

        if run_id in self.store.writes.overlay():
            # Its result still waits to be written: deleting now would let it come back.
            raise ConflictError(f"run {run_id} is still being stored; try again", "id")
        await self.store.writes.now(delete)

    async def keep_histogram(self, run_id: str, encoded: str | None) -> None:
        """Store an ended run's HDR histogram (:func:`app.runs.histogram.encode`). Never
        fails: while the store cannot write, the write waits and is retried."""
        if encoded is None:
            return
        sql = "UPDATE runs SET rtt_hdr = ? WHERE id = ?"
        await self.store.writes.submit(Write(((sql, (encoded, run_id)),)))

    async def histogram(self, run_id: str) -> str | None:
        """The stored HDR histogram of a run, or ``None`` (none kept, or no such run)."""
        sql = "SELECT rtt_hdr FROM runs WHERE id = ?"
        row = await self.store._read(lambda db: db.execute(sql, (run_id,)).fetchone())
        return None if row is None else row[0]


def _require_run(db: sqlite3.Connection, run_id: str) -> None:
    if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        raise NotFoundError(f"no run {run_id!r}", "id")


def _labels(db: sqlite3.Connection, run_id: str) -> list[str]:
    sql = "SELECT label FROM run_labels WHERE run_id = ? ORDER BY label"
    return [label for (label,) in db.execute(sql, (run_id,)).fetchall()]
