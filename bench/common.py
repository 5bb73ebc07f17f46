"""What every section shares: the run context, raw records, and a socketlab session."""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import LOAD_CPU, Skip, log


@dataclass
class Context:
    """Settings of this benchmark run and the records it has produced so far."""

    reps: int
    duration: float
    outdir: Path
    only: set[str] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    _data_n: int = 0

    @property
    def logdir(self) -> Path:
        return self.outdir / "logs"

    @property
    def raw_path(self) -> Path:
        return self.outdir / "raw.jsonl"

    def wanted(self, name: str) -> bool:
        """Whether the server or client ``name`` is measured in this run (``--only``)."""
        return self.only is None or name in self.only

    def datadir(self) -> Path:
        """A fresh data directory for one socketlab start."""
        self._data_n += 1
        return self.outdir / "data" / str(self._data_n)

    def emit(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record, ts=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.records.append(record)
        with open(self.raw_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def skip(self, section: str, what: str, reason: str) -> None:
        """Record and print that a measurement could not run, and why."""
        if any(
            r.get("section") == section and r.get("skipped") and r.get("what") == what
            for r in self.records
        ):
            return
        self.emit({"section": section, "what": what, "skipped": reason})
        log(f"[{section}] skipped: {what}: {reason}")


def med(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def pct(xs: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by the nearest-rank method netbench uses."""
    if not xs:
        return None
    s = sorted(xs)
    return s[int(p / 100 * (len(s) - 1))]


def health_stats(samples: list[list[float]], t_from: float, t_to: float) -> dict[str, Any]:
    """``bench/health_probe.py`` samples that started in [t_from, t_to]: p50, p99, max (ms)
    of the answered ones, and how many failed."""
    inside = [s for s in samples if t_from <= s[0] <= t_to]
    ms = [1000 * s[1] for s in inside if s[2] == 200]
    return {
        "requests": len(inside),
        "failed": sum(1 for s in inside if s[2] != 200),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


def fmt(x: float | None, nd: int = 0) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def progress(section: str, rep: int, ctx: Context, what: str, r: dict[str, Any]) -> None:
    """One line per measurement."""
    if r.get("error"):
        log(f"[{section} {rep + 1}/{ctx.reps}] {what}: ERROR {str(r['error'])[:200]}")
        return
    parts = [f"[{section} {rep + 1}/{ctx.reps}] {what}:"]
    if r.get("rtt_per_s") is not None:
        parts.append(f"{fmt(r['rtt_per_s'])} rtt/s")
    if r.get("p50_us") is not None:
        parts.append(f"p50 {fmt(r['p50_us'], 1)} µs p99 {fmt(r.get('p99_us'), 1)} µs")
    if r.get("gbit_per_s") is not None:
        parts.append(f"{r['gbit_per_s']:.2f} Gbit/s")
    if r.get("lost"):
        parts.append(f"lost {int(r['lost'])}")
    if r.get("server_cpu_pct") is not None:
        parts.append(f"server CPU {r['server_cpu_pct']:.0f}%")
    if (r.get("others_pct") or 0) > 5:
        parts.append(f"(other processes took {r['others_pct']:.0f}% of a CPU meanwhile)")
    log(" ".join(parts))


# --- socketlab with a dashboard subscriber ------------------------------------------------


class Subscriber:
    """bench/ws_subscriber.py running on the load CPU against a lab's /ws."""

    def __init__(self, lab: harness.Lab) -> None:
        argv = [sys.executable, str(harness.BENCH / "ws_subscriber.py"), "--port"]
        argv += [str(lab.web_port)]
        if lab.token:
            argv += ["--token", lab.token]
        self.p = harness.start_load(argv)
        self.result: dict[str, Any] | None = None

    def wait_connected(self, timeout: float = 5.0) -> None:
        """Give the subscriber time to receive its first (full) state."""
        time.sleep(min(timeout, 1.0))

    def stop(self) -> dict[str, Any]:
        if self.result is None:
            out, err = harness.interrupt(self.p)
            try:
                self.result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.result = {"connected": False, "messages": [], "error": err[-300:]}
        return self.result


def periodic_kind(messages: list[list[Any]]) -> str | None:
    """The message type the server sends on its timer: the most frequent one."""
    kinds = Counter(m[1] for m in messages if m[1] != "full")
    return kinds.most_common(1)[0][0] if kinds else None


def ws_stats(
    messages: list[list[Any]], t_from: float = 0.0, t_to: float = float("inf")
) -> dict[str, Any]:
    """Messages, bytes and snapshot period in [t_from, t_to].

    The period is the gap (ms) between messages of the periodic type (snapshots, "tick"),
    so other messages sent in between (pages of the connection table) do not halve it.
    """
    inside = [m for m in messages if t_from <= m[0] <= t_to]
    kind = periodic_kind(messages)
    ticks = [m for m in inside if m[1] == kind]
    gaps = [1000 * (b[0] - a[0]) for a, b in itertools.pairwise(ticks)]
    span = inside[-1][0] - inside[0][0] if len(inside) > 1 else 0.0
    diff_bytes = sum(m[2] for m in inside[1:])
    return {
        "ws_messages": len(inside),
        "ws_full_states": sum(1 for m in inside if m[1] == "full"),
        "ws_bytes": sum(m[2] for m in inside),
        "ws_kbytes_per_s": diff_bytes / span / 1000 if span else None,
        "ws_periodic_type": kind,
        "ws_period_ms_p50": pct(gaps, 50),
        "ws_period_ms_p99": pct(gaps, 99),
        "ws_period_ms_max": max(gaps) if gaps else None,
    }


@contextlib.contextmanager
def lab_session(
    ctx: Context, name: str, listen: list[str], subscribe: bool = True
) -> Iterator[tuple[harness.Lab, Subscriber | None]]:
    """socketlab serving ``listen`` with (optionally) one dashboard subscriber connected.

    Raises:
        Skip: socketlab refused a listener URL (a mode it does not have yet).
    """
    lab = harness.start_lab(name, listen, ctx.logdir, ctx.datadir())
    sub = None
    try:
        if subscribe:
            sub = Subscriber(lab)
            sub.wait_connected()
        yield lab, sub
    finally:
        if sub is not None:
            sub.stop()
        lab.stop()


def subscriber_fields(sub: Subscriber | None) -> dict[str, Any]:
    if sub is None:
        return {"subscriber": False}
    res = sub.stop()
    return {
        "subscriber": bool(res.get("connected")),
        "subscriber_error": res.get("error"),
        **ws_stats(res.get("messages", [])),
    }


__all__ = [
    "LOAD_CPU",
    "Context",
    "Skip",
    "Subscriber",
    "fmt",
    "health_stats",
    "lab_session",
    "med",
    "pct",
    "progress",
    "subscriber_fields",
    "ws_stats",
]
