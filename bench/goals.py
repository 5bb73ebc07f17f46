# ruff: noqa: RUF001 - the report is for people: the multiplication sign and en dash are meant
"""The goals of issue 20 (faster than uvloop; a generator that saturates what it measures).

One row per goal: the issue's figure of the run it was filed from, the goal, the stretch,
what this run measured (ratios taken per rep against the reference measured in the same
rep, then the median, as everywhere in the report) and the verdict: ``pass`` (goal met),
``pass (stretch)`` (stretch met too) or ``FAIL``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import fmt, med

Rec = dict[str, Any]


def _ok(rows: list[Rec]) -> list[Rec]:
    return [r for r in rows if r.get("rtt_per_s") and not r.get("error")]


def _sel(recs: list[Rec], section: str, **kw: Any) -> list[Rec]:
    return [
        r
        for r in recs
        if r.get("section") == section
        and not r.get("skipped")
        and all(r.get(k) == v for k, v in kw.items())
    ]


def _ratio(rows: list[Rec], refs: list[Rec], key: str) -> float | None:
    by_rep = {r["rep"]: r.get(key) for r in refs}
    return med([r[key] / by_rep[r["rep"]] for r in rows if r.get(key) and by_rep.get(r["rep"])])


def _row(
    name: str,
    today: str,
    goal: str,
    stretch: str,
    value: float | None,
    shown: str,
    meets: Callable[[float], bool],
    stretches: Callable[[float], bool],
) -> str:
    if value is None:
        return f"| {name} | {today} | {goal} | {stretch} | - | not measured |"
    verdict = ("pass (stretch)" if stretches(value) else "pass") if meets(value) else "FAIL"
    return f"| {name} | {today} | {goal} | {stretch} | {shown} | {verdict} |"


def _at_least(x: float) -> Callable[[float], bool]:
    return lambda v: v >= x


def _below(x: float) -> Callable[[float], bool]:
    return lambda v: v < x


def goals(recs: list[Rec]) -> list[str]:
    """The goal table of issue 20 for this run's records."""
    out = [
        "| measure | today (issue) | goal | stretch | measured | verdict |",
        "|---|---|---|---|---:|---|",
    ]
    for conns in (10, 100):
        lab = _ok(_sel(recs, "a", server="socketlab", conns=conns))
        uv = _ok(_sel(recs, "a", server="uvloop-protocol", conns=conns))
        x = _ratio(lab, uv, "rtt_per_s")
        out.append(
            _row(
                f"TCP echo vs uvloop-protocol, {conns} conns, dashboard subscribed",
                "≈ 0.85×",
                "≥ 1.0×",
                "≥ 1.2×",
                x,
                f"{fmt(x, 2)}×",
                _at_least(1.0),
                _at_least(1.2),
            )
        )
    lab = _ok(_sel(recs, "b", server="socketlab"))
    x = _ratio(lab, _ok(_sel(recs, "b", server="uvloop")), "rtt_per_s")
    c = _ratio(lab, _ok(_sel(recs, "b", server="c")), "rtt_per_s")
    out.append(
        _row(
            "UDP echo vs uvloop, 10 flows",
            "≈ 0.9×",
            "≥ 1.1×",
            "≥ 0.9× the C server",
            x,
            f"{fmt(x, 2)}× uvloop, {fmt(c, 2)}× C",
            _at_least(1.1),
            lambda v: c is not None and c >= 0.9,
        )
    )
    sink = [r for r in _sel(recs, "c") if r.get("gbit_per_s") and not r.get("error")]
    x = _ratio(
        [r for r in sink if r["server"] == "socketlab"],
        [r for r in sink if r["server"] == "c"],
        "gbit_per_s",
    )
    out.append(
        _row(
            "TCP sink vs the C sink, 128 KiB writes",
            "0.66×",
            "≥ 0.9×",
            "≥ 1.0×",
            x,
            f"{fmt(x, 2)}×",
            _at_least(0.9),
            _at_least(1.0),
        )
    )
    for proto, width, today, goal, stretch in (
        ("tcp", "100 conns", "≈ 0.45×", 0.7, 0.85),
        ("udp", "10 flows", "≈ 0.46×", 0.8, 0.9),
    ):
        x = _ratio(
            _ok(_sel(recs, "d", proto=proto, client="socketlab")),
            _ok(_sel(recs, "d", proto=proto, client="netbench")),
            "rtt_per_s",
        )
        out.append(
            _row(
                f"`fire` {proto.upper()} pingpong, {width}, vs the netbench client (C echo)",
                today,
                f"≥ {goal}×",
                f"≥ {stretch}×",
                x,
                f"{fmt(x, 2)}×",
                _at_least(goal),
                _at_least(stretch),
            )
        )
    lab_rss = med([r.get("rss_per_conn_kib") for r in _sel(recs, "e", server="socketlab")])
    trio_rss = med([r.get("rss_per_conn_kib") for r in _sel(recs, "e", server="trio")])
    out.append(
        _row(
            "RSS per idle TCP connection at 10,000, registry and TCP state included",
            "6.2 KiB (bare trio 5.1–5.3)",
            "≤ bare trio in the same run",
            "≤ 4 KiB",
            lab_rss if trio_rss is not None else None,
            f"{fmt(lab_rss, 2)} KiB (bare trio {fmt(trio_rss, 2)})",
            lambda v: trio_rss is not None and v <= trio_rss,
            lambda v: v <= 4.0,
        )
    )
    out.append(_statsd_row(recs))
    dash = _sel(recs, "f")
    x = med([r["health_load"]["p99_ms"] for r in dash if r.get("health_load")])
    out.append(
        _row(
            "`/api/health` p99 while the TCP echo is saturated",
            "12–19 ms",
            "< 5 ms",
            "< 2 ms",
            x,
            f"{fmt(x, 1)} ms",
            _below(5.0),
            _below(2.0),
        )
    )
    checks = [r for r in _sel(recs, "j") if "ok" in r]
    bad = [r for r in checks if not r["ok"]]
    out.append(
        _row(
            "Counters at full speed equal netbench's (section j)",
            "-",
            "every check equal",
            "-",
            (0.0 if bad else 1.0) if checks else None,
            f"{len(checks) - len(bad)} of {len(checks)} equal",
            lambda v: v == 1.0,
            lambda v: False,
        )
    )
    return out


def _statsd_row(recs: list[Rec]) -> str:
    """0 kernel drops and every datagram counted, for 10 s, at 100,000/s (goal) and at
    300,000/s (stretch): a rate passes when every rep at it does."""

    def clean(rate: int) -> bool | None:
        rows = [r for r in _sel(recs, "g") if (r.get("rate") or 100_000) == rate]
        if not rows:
            return None
        return all(
            r.get("kernel_drops") == 0
            and r.get("received") == r.get("sent")
            and (r.get("pps") or 0) >= rate * 0.99
            for r in rows
        )

    def worst(rate: int) -> str:
        rows = [r for r in _sel(recs, "g") if (r.get("rate") or 100_000) == rate]
        if not rows:
            return "-"
        sent = max(r.get("sent") or 0 for r in rows) or 1
        drops = max(r.get("kernel_drops") or 0 for r in rows)
        return f"{fmt(drops)} drops ({fmt(100 * drops / sent, 2)} %)"

    goal, stretch = clean(100_000), clean(300_000)
    return _row(
        "StatsD datagrams/s counted with 0 kernel drops, 10 s",
        "drops 4.5–34 % at 100,000/s",
        "0 at 100,000/s",
        "0 at 300,000/s",
        None if goal is None else float(goal),
        f"100k/s: {worst(100_000)}; 300k/s: {worst(300_000)}",
        lambda v: v == 1.0,
        lambda v: bool(stretch),
    )


__all__ = ["goals"]
