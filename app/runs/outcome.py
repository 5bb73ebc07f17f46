"""How a run ended: the one place its final status is decided.

Theory of operation: whatever ends a run (its flows finishing, a stop, the byte cap, a
target that does not resolve, a bug, the lab shutting down) ends in :func:`conclude`, which
looks at what the run counted and returns an :class:`Outcome`: the final status, the error
shown beside it, and the final summary. The engine returns that outcome instead of writing
to the run, and the manager stores it; nothing else writes a run's status. No I/O here:
tests feed counters by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.runs.stats import RunStats

EndStatus = Literal["finished", "failed", "stopped"]
_END_STATUSES: dict[Any, EndStatus] = {s: s for s in ("finished", "failed", "stopped")}


@dataclass(frozen=True)
class Outcome:
    """A run's end: its status, the error shown with it, its final summary.

    Attributes:
        status: ``finished``, ``failed`` or ``stopped``.
        error: Why it failed or stopped (``None`` for a plain finish or stop).
        summary: The final summary (:meth:`RunStats.summary` with ``final=True``).
    """

    status: EndStatus
    error: str | None
    summary: dict[str, Any]


def conclude(
    pattern: str,
    stats: RunStats,
    elapsed: float,
    *,
    stopped: bool = False,
    failure: str | None = None,
    note: str | None = None,
    reported: dict[str, Any] | None = None,
) -> Outcome:
    """Decide how a run ended from what it counted.

    Args:
        pattern: The run's pattern (a packet run fails on any error).
        stats: The run's statistics; folded and summarised here, once.
        elapsed: Seconds the run took.
        stopped: The run was stopped before its end (by a user, a cap or the shutdown).
        failure: Why the run could not go at all (a target that did not resolve, a bug).
        note: Why it was stopped, when a cap stopped it.
        reported: For a run followed on a peer, the peer's document of its ended run: its
            status (one of ours, else ``failed``), error and summary are the run's.

    Returns:
        ``failed`` with ``failure`` when given; ``stopped`` (with ``note``) when stopped;
        the peer's outcome when ``reported``;
        for a packet run ``failed`` when any error was counted; ``failed`` when nothing got
        through and errors were counted; ``finished`` otherwise.
    """
    status: EndStatus = "finished"
    error: str | None = None
    if failure is not None:
        status, error = "failed", failure
    elif stopped:
        status, error = "stopped", note
    elif reported is not None:
        status = _END_STATUSES.get(reported.get("status"), "failed")
        error = reported.get("error")
        if status == "failed" and error is None:
            error = f"the peer reported {reported.get('status')!r}"
        summary = reported.get("summary")
        if isinstance(summary, dict):
            return Outcome(status, error, summary)
    elif pattern == "packet":
        if stats.error_count:
            status, error = "failed", ", ".join(sorted(stats.errors))
    elif stats.received == 0 and stats.bytes_sent == 0 and stats.error_count:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(stats.errors.items()))
        status, error = "failed", f"nothing got through; errors: {kinds}"
    return Outcome(status, error, stats.summary(elapsed, final=True))
