"""A run fired from this process, outside any lab: what ``socketlab fire`` does."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from app.registry import Registry
from app.runs.engine import execute
from app.runs.outcome import Outcome, conclude
from app.runs.run import Run
from app.runs.spec import RunSpec
from app.runs.targets import TargetPolicy

_BAR = 30


def progress_text(live: dict[str, Any]) -> str:
    """One progress line from a run's live record (:meth:`Run.live`)."""
    p50 = live["rtt_p50_ms"]
    rtt = f"p50 {p50:.3f} ms" if p50 is not None else "p50 -"
    return (
        f"{live['progress'] * 100:5.1f}%  {live['received']:>10,} replies  "
        f"{per_s(live['msgs_per_s']):>10} msg/s  {rtt}  errors {live['errors']}"
    )


def _progress_line(run: Run) -> str:
    live = run.live()
    filled = int(live["progress"] * _BAR)
    bar = "#" * filled + "-" * (_BAR - filled)
    return f"\r[{bar}] {progress_text(live)}"


async def fire_in_process(
    spec: RunSpec, show_progress: bool, *, allow_multicast: bool = False
) -> dict[str, Any]:
    """Run ``spec`` to its end here and return the same document the API returns; a
    multicast group is a target only with ``allow_multicast`` (``--allow-multicast``)."""
    run = Run(spec)
    registry = Registry()
    outcome: Outcome | None = None
    run.started_at = time.time()
    async with trio.open_nursery() as nursery:
        if show_progress:

            async def draw() -> None:
                while True:
                    sys.stderr.write(_progress_line(run))
                    sys.stderr.flush()
                    await trio.sleep(0.2)

            nursery.start_soon(draw)
        try:
            # The user of the command line has the machine already: any target outside
            # the always-denied ranges is allowed.
            policy = TargetPolicy(allow_any=True, allow_multicast=allow_multicast)
            outcome = await execute(
                run.id,
                spec,
                run.endpoint,
                run.stats,
                registry,
                stop=run.cancel_scope,
                resolver=policy.resolve,
            )
        finally:
            nursery.cancel_scope.cancel()
    if outcome is None:  # the progress line raised: the run did not get to its end
        outcome = conclude(spec.pattern, run.stats, run.elapsed, stopped=True)
    run.end(outcome)
    if show_progress:
        sys.stderr.write(_progress_line(run) + "\n")
    return run.to_dict()


def ms_text(value: float | None) -> str:
    """Milliseconds with three decimals, or "-" when there is none."""
    return "-" if value is None else f"{value:.3f}"


def per_s(value: float) -> str:
    """A rate of messages with the digits it needs: 1,204 or 12.5 or 0.497, never a
    rounded "0" beside a bit rate that is not (a few messages over a long run)."""
    if value == 0 or value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def rate_text(bits: float) -> str:
    """A bit rate in its unit: "12.50 Mbit/s"."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:,.2f} {unit}"
    return f"{bits:,.0f} bit/s"


def lost_text(s: dict[str, Any]) -> str:
    """A summary's lost messages and their share, or why it has none."""
    if s["lost"] is None:
        return "- (no replies expected)"
    return f"{s['lost']:,} ({s['loss_pct']:.2f} %)"


def _scenario_lines(spec: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """A scenario run's sessions and its table of steps, with the replies that failed."""
    figures = s["scenario"] or {"sessions": 0, "sessions_failed": 0, "steps": []}
    lines = [
        f"  connections {spec['connections']}  sessions {figures['sessions']:,} "
        f"({figures['sessions_failed']:,} failed)  elapsed {s['elapsed']:.2f} s",
        "  step                 action      count     passed   failed   p50 ms   p99 ms",
    ]
    for row in figures["steps"]:
        latency = row["latency_ms"] or {}
        lines.append(
            f"  {row['step']:<20} {row['action']:<8} {row['count']:>9,} {row['passed']:>10,} "
            f"{row['failed']:>8,} {ms_text(latency.get('p50')):>8} {ms_text(latency.get('p99')):>8}"
        )
    if figures.get("worst_step"):
        lines.append(f"  failed most: {figures['worst_step']}")
    for row in figures["steps"]:
        for sample in row["samples"]:
            lines.append(f"  {row['step']} {sample['kind']}: got {sample['text']!r}")
    return lines


def format_result(doc: dict[str, Any]) -> str:
    """The human-readable result table of a run document."""
    s = doc["summary"]
    spec = doc["spec"]
    lines = [
        f"run {doc['id']}  {spec['pattern']} {spec['target']}  {doc['status']}"
        + (f" ({doc['error']})" if doc.get("error") else ""),
    ]
    if spec["pattern"] == "packet":
        reply = s["reply"]
        lines.append(f"  sent {s['bytes_sent']} B")
        if reply and reply.get("bytes"):
            lines.append(f"  reply {reply['bytes']} B in {ms_text(reply['rtt_ms'])} ms")
            lines.append(f"  hex   {reply['hex']}")
            lines.append(f"  text  {reply['text']}")
        elif reply:
            lines.append(f"  {reply.get('note', 'no reply')}")
    elif spec["pattern"] == "scenario":
        lines += _scenario_lines(spec, s)
    else:
        rtt = s["rtt_ms"]
        lines += [
            f"  connections {spec['connections']}  size {spec['size']}"
            + (f"-{spec['size_max']}" if spec.get("size_max") else "")
            + " B  "
            f"elapsed {s['elapsed']:.2f} s",
            f"  sent {s['sent']:,}  received {s['received']:,}  lost {lost_text(s)}  "
            f"duplicates {s['duplicates']:,}  "
            f"reordered {s['reordered']:,}  late {s['late']:,}  errors {s['errors']:,}",
            f"  throughput {per_s(s['sent_per_s'])} msg/s sent, {per_s(s['msgs_per_s'])} msg/s "
            f"received, {rate_text(s['bits_per_s'])}"
            + (f"  jitter {s['jitter_ms']:.3f} ms" if s["jitter_ms"] is not None else ""),
            "  RTT ms      min      p50      p90      p99    p99.9      max",
            "         "
            + " ".join(
                f"{ms_text(rtt[k]):>8}" for k in ("min", "p50", "p90", "p99", "p999", "max")
            ),
        ]
    lateness = s["send_lateness_ms"]
    if lateness:
        lines.append(
            f"  send lateness ms: mean {lateness['mean']:.3f}  max {lateness['max']:.3f}  "
            f"{lateness['late_sends']:,} sends 2 ms or more late"
        )
    if s["errors_by_kind"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors_by_kind"].items()))
        lines.append(f"  errors by kind: {kinds}")
    remote = s["remote"]
    if remote and "received" in remote:
        lines.append(
            f"  receiver side: received {remote['received']:,}  lost {lost_text(remote)}  "
            f"duplicates {remote['duplicates']:,}  reordered {remote['reordered']:,}  "
            f"jitter {remote['jitter_ms']:.3f} ms"
        )
    elif remote:
        lines.append("  receiver side: a TCP sink without message_size counts no messages")
    lines += receiver_lines(s.get("receivers"))
    reverse = s.get("reverse")
    if reverse:
        source = reverse["source"]
        lines.append(
            f"  reverse: received {reverse['received']:,} of "
            + ("?" if reverse["sent"] is None else f"{reverse['sent']:,}")
            + f" sent ({'the source' if source else 'requested'})  "
            f"lost {reverse.get('lost', 0):,}  duplicates {reverse['duplicates']:,}  "
            f"reordered {reverse['reordered']:,}  jitter {reverse['jitter_ms']:.3f} ms  "
            f"{reverse['rx_bytes']:,} B"
        )
    bottleneck = s["bottleneck"]
    if bottleneck and bottleneck.get("limited"):
        lines.append(f"  warning: socketlab was the bottleneck: {bottleneck['reason']}")
    return "\n".join(lines)


def receiver_lines(receivers: list[dict[str, Any]] | None) -> list[str]:
    """The table of a multicast run's receivers, one line each (none for other runs)."""
    if receivers is None:
        return []
    if not receivers:
        return ["  receivers: none known (a lab asks its own sinks on the group and its peers')"]
    lines = ["  receiver                    received       lost   loss %  dup  reord  jitter ms"]
    for row in receivers:
        name = f"{row['peer'] or 'this lab'} {row['listener']}"
        if row["received"] is None:
            lines.append(f"  {name:<26}  {row['error']}")
            continue
        lines.append(
            f"  {name:<26} {row['received']:>9,} {row['lost']:>10,} {row['loss_pct']:>8.2f} "
            f"{row['duplicates']:>4,} {row['reordered']:>6,} {row['jitter_ms']:>10.3f}"
        )
    return lines


def print_result(doc: dict[str, Any], *, as_json: bool) -> None:
    """Print a run document: as JSON, or as the result table."""
    print(json.dumps(doc, indent=2) if as_json else format_result(doc))
