"""One run as the lab keeps it: its spec, its live statistics and, once ended, its outcome.

A run's status, error and summary have one source each: ``running`` (or ``paused``, see
:mod:`app.runs.control`) and the live summary until :meth:`Run.end` records the
:class:`~app.runs.outcome.Outcome`, the outcome's after.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import trio

from app.runs.control import RunControl
from app.runs.outcome import Outcome
from app.runs.spec import RunSpec
from app.runs.stats import RunStats

# The statuses of a run that has not ended (what the store keeps of one is "running").
LIVE_STATUSES = ("running", "paused")


class Run:
    """One run: its spec, its live statistics and, once it has ended, its outcome.

    Only the manager (or ``socketlab fire``) ends a run, with :meth:`end`; until then its
    status is ``running`` (``paused`` while paused) and its summary is the live one.
    """

    def __init__(self, spec: RunSpec, *, run_id: str | None = None, followed: bool = False) -> None:
        self.id = run_id or secrets.token_hex(6)
        # A copy of a run that another node fires: its traffic is not this node's.
        self.followed = followed
        self.spec = spec
        self.endpoint = spec.target
        self.created_at = time.time()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.stats = RunStats()
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()
        self.outcome: Outcome | None = None
        # Live edits: rate, connections, pause (followed runs are edited on their peer).
        self.control = RunControl(spec)
        if followed:
            self.control.editable = ()

    @property
    def status(self) -> str:
        if self.outcome is not None:
            return self.outcome.status
        return "paused" if self.control.paused else "running"

    @property
    def going(self) -> bool:
        """Not ended yet: running or paused."""
        return self.outcome is None

    @property
    def error(self) -> str | None:
        return None if self.outcome is None else self.outcome.error

    def end(self, outcome: Outcome) -> float:
        """Record how the run ended (once); returns when it ended."""
        self.outcome = outcome
        self.ended_at = ended_at = time.time()
        return ended_at

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.time()
        return end - self.started_at

    @property
    def progress(self) -> float:
        """Fraction done, 0 to 1."""
        if not self.going:
            return 1.0
        spec = self.spec
        if spec.pattern == "packet":
            return 0.0
        if spec.count:
            s = self.stats
            return min(1.0, max(s.sent, s.received + s.lost + s.error_count) / spec.count)
        duration = (spec.effective_duration or 1.0) + spec.warmup
        return min(1.0, self.elapsed / duration)

    def summary(self) -> dict[str, Any]:
        """The run's summary: live while it runs, the outcome's once it has ended; the same
        keys either way (see :meth:`RunStats.summary`)."""
        if self.outcome is not None:
            return self.outcome.summary
        return self.stats.summary(self.elapsed, final=False)

    def live(self) -> dict[str, Any]:
        """The small live record the dashboard and CLI show while a run goes: counters from
        the summary, rates and RTT from the last closed second."""
        s = self.summary()
        last = self.latest_point()
        return {
            "id": self.id,
            "status": self.status,
            "target": self.spec.target.url,
            "progress": round(self.progress, 4),
            "elapsed": round(self.elapsed, 3),
            "sent": s["sent"],
            "received": s["received"],
            "errors": s["errors"],
            "msgs_per_s": last["msgs_per_s"] if last else s["msgs_per_s"],
            "rtt_p50_ms": last["rtt_ms"]["p50"] if last else None,
            "rtt_p99_ms": last["rtt_ms"]["p99"] if last else None,
            "pattern": self.spec.pattern,
            "control": self.control.doc(),
        }

    def latest_point(self) -> dict[str, Any] | None:
        """The newest closed 1 s interval, or ``None`` before the first one."""
        series = self.stats.series
        return series[-1] if series else None

    def to_dict(self, *, series: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "spec": self.spec.model_dump(),
            "summary": self.summary(),
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "progress": round(self.progress, 4),
            "control": self.control.doc(),
        }
        if series:
            doc["series"] = list(self.stats.series)
        return doc
