"""Per-step figures of a scenario run: count, passed, failed by kind, latency percentiles
(HDR, as every run's RTT), and a few replies that did not match, bounded.

A :class:`StepTable` is filled from the :class:`~app.wire.conversation.StepResult` s every
session produces (drained after each action, so the cost is per step, not per byte) and
summarised once per snapshot into the run's summary as ``steps``: one row per step in the
scenario's order, and ``worst_step``, the step that failed most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from app.runs.stats import new_histogram, rtt_summary
from app.wire.conversation import StepResult
from app.wire.payload import to_hex, to_text
from app.wire.scenario import Program

# Replies kept per step that did not match (or timed out with bytes), for the summary.
MAX_SAMPLES = 3


class StepFigures:
    """What one step did over every session."""

    __slots__ = ("action", "count", "failed", "kinds", "latency", "path", "samples")

    def __init__(self, path: str, action: str) -> None:
        self.path = path
        self.action = action
        self.count = 0
        self.failed = 0
        self.kinds: Counter[str] = Counter()
        self.latency = new_histogram()
        self.samples: list[dict[str, Any]] = []

    def add(self, result: StepResult) -> None:
        self.count += 1
        if result.kind is not None:
            self.failed += 1
            self.kinds[result.kind] += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(
                    {
                        "kind": result.kind,
                        "hex": to_hex(result.received),
                        "text": to_text(result.received),
                    }
                )
        elif result.latency is not None:
            self.latency.record_value(max(int(result.latency * 1e9), 1))

    def summary(self) -> dict[str, Any]:
        timed = self.latency.get_total_count() > 0
        return {
            "step": self.path,
            "action": self.action,
            "count": self.count,
            "passed": self.count - self.failed,
            "failed": self.failed,
            "errors_by_kind": dict(self.kinds),
            "latency_ms": rtt_summary(self.latency, with_mean=True) if timed else None,
            "samples": list(self.samples),
        }


def _action_of(instruction: Any) -> str:
    return type(instruction).__name__.lower()


class StepTable:
    """The figures of every step of ``program``, in its order."""

    # Bytes of each exchange the sessions keep in their step results (a subclass that
    # shows them, the dry run's transcript, keeps some; the figures need none).
    keep = 0

    def __init__(self, program: Program) -> None:
        self.sessions = 0
        self.sessions_failed = 0
        self._rows: dict[str, StepFigures] = {}
        for instruction in program.code:
            if instruction.path in program.steps and instruction.path not in self._rows:
                self._rows[instruction.path] = StepFigures(
                    instruction.path, _action_of(instruction)
                )

    def add(self, results: Iterable[StepResult]) -> None:
        rows = self._rows
        for result in results:
            row = rows.get(result.step)
            if row is not None:
                row.add(result)

    def action_of(self, path: str) -> str:
        """The action of the step at ``path`` (``send``, ``expect``, ...)."""
        row = self._rows.get(path)
        return row.action if row is not None else "step"

    def session_ended(self, ok: bool) -> None:
        self.sessions += 1
        if not ok:
            self.sessions_failed += 1

    def summary(self) -> dict[str, Any]:
        rows = [row.summary() for row in self._rows.values()]
        worst = max(self._rows.values(), key=lambda row: row.failed, default=None)
        return {
            "sessions": self.sessions,
            "sessions_failed": self.sessions_failed,
            "worst_step": worst.path if worst is not None and worst.failed else None,
            "steps": rows,
        }
