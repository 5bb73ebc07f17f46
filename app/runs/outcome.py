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
        through (:func:`nothing_got_through`); ``failed`` when an error ended every flow
        before its end, or a UDP target's port became unreachable and answered nothing in
        the last second of sending (the target went away); ``finished`` otherwise. A
        failure's error names the kinds counted, with the reason of those a kind does not
        explain (a TLS handshake's: a self-signed certificate, a hostname mismatch).
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
            status = "failed"
            error = ", ".join(_with_reason(stats, kind, kind) for kind in sorted(stats.errors))
    elif nothing_got_through(stats):
        status, error = "failed", f"nothing got through; errors: {_kinds(stats)}"
    elif (stats.flows and stats.flows_failed >= stats.flows) or _unreachable_at_the_end(stats):
        status = "failed"
        if stats.expect_replies and not (stats.received or stats.bytes_received):
            error = f"nothing got through; errors: {_kinds(stats)}"  # it was never there
        elif set(stats.errors) <= _GONE:
            error = f"the target went away: errors: {_kinds(stats)}"
        else:
            error = f"an error ended every flow; errors: {_kinds(stats)}"
    return Outcome(status, error, stats.summary(elapsed, final=True))


# Errors that say nobody is there: nothing listens (a TCP refusal, an ICMP port unreachable
# for UDP), no route, a handshake that was refused. With no reply at all, not one message
# got through, whatever was written to a UDP socket.
_ABSENT = frozenset({"refused", "unreachable", "tls"})
# What a target that went away leaves behind: its connections reset or closed, its port
# refusing or unreachable.
_GONE = frozenset({"reset", "closed", "refused", "unreachable"})
# Kinds whose name does not say why: their first sample is shown with them.
_SAY_WHY = frozenset({"tls", "other", "internal"})


def nothing_got_through(stats: RunStats) -> bool:
    """No reply came back and errors were counted, and either nothing could be sent (no
    connection was made) or an error says nobody is there (a UDP port unreachable, as
    final as a TCP refusal)."""
    if stats.received or stats.bytes_received or not stats.error_count:
        return False
    return stats.bytes_sent == 0 or not _ABSENT.isdisjoint(stats.errors)


def _unreachable_at_the_end(stats: RunStats) -> bool:
    """A UDP target that went away: ports reported unreachable, and nothing came back in
    the run's last second of sending (UDP flows go on through ICMP errors, so they do not
    end as TCP connections do)."""
    if "unreachable" not in stats.errors:
        return False
    sending = [point for point in stats.series if point["sent"]]
    return bool(sending) and sending[-1]["received"] == 0


def _with_reason(stats: RunStats, kind: str, text: str) -> str:
    samples = stats.error_samples.get(kind)
    return f"{text} ({samples[0]})" if samples and kind in _SAY_WHY else text


def _kinds(stats: RunStats) -> str:
    return ", ".join(
        _with_reason(stats, kind, f"{kind} x{count}")
        for kind, count in sorted(stats.errors.items())
    )
