"""A run fired from this process, outside any lab: what ``socketlab fire`` does."""

from __future__ import annotations

import sys
import time
from typing import Any

import trio

from app.registry import Registry
from app.runs.manager import Run, execute
from app.runs.spec import RunSpec

_BAR = 30


def _progress_line(run: Run) -> str:
    live = run.live()
    filled = int(live["progress"] * _BAR)
    bar = "#" * filled + "-" * (_BAR - filled)
    p50 = live["rtt_p50_ms"]
    rtt = f"p50 {p50:.3f} ms" if p50 is not None else "p50 -"
    return (
        f"\r[{bar}] {live['progress'] * 100:5.1f}%  {live['received']:>10,} replies  "
        f"{live['msgs_per_s']:>10,.0f} msg/s  {rtt}  errors {live['errors']}"
    )


async def fire_in_process(spec: RunSpec, show_progress: bool) -> dict[str, Any]:
    """Run ``spec`` to its end here and return the same document the API returns."""
    run = Run(spec)
    registry = Registry()
    async with trio.open_nursery() as nursery:
        if show_progress:

            async def draw() -> None:
                while True:
                    sys.stderr.write(_progress_line(run))
                    sys.stderr.flush()
                    await trio.sleep(0.2)

            nursery.start_soon(draw)
        try:
            await execute(run, registry)
        finally:
            nursery.cancel_scope.cancel()
    if run.status == "running":
        run.status = "stopped"

    run.ended_at = time.time()
    run.finish()
    if show_progress:
        sys.stderr.write(_progress_line(run) + "\n")
    return run.to_dict()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_result(doc: dict[str, Any]) -> str:
    """The human-readable result table of a run document."""
    s = doc["summary"]
    rtt = s["rtt_ms"]
    spec = doc["spec"]
    lines = [
        f"run {doc['id']}  {spec['pattern']} {spec['target']}  {doc['status']}"
        + (f" ({doc['error']})" if doc.get("error") else ""),
        f"  connections {spec['connections']}  size {spec['size']} B  elapsed {s['elapsed']:.2f} s",
        f"  sent {s['sent']:,}  received {s['received']:,}  lost {s['lost']:,}  "
        f"late {s['late']:,}  errors {s['errors']:,}",
        f"  throughput {s['msgs_per_s']:,.0f} msg/s  {s['bits_per_s'] / 1e6:,.3f} Mbit/s",
        "  RTT ms    min      p50      p90      p99    p99.9      max",
        "         "
        + " ".join(f"{_ms(rtt[k]):>8}" for k in ("min", "p50", "p90", "p99", "p999", "max")),
    ]
    if s["errors_by_kind"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors_by_kind"].items()))
        lines.append(f"  errors by kind: {kinds}")
    return "\n".join(lines)
