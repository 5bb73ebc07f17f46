# ruff: noqa: RUF001 - the report is for people: the multiplication sign and en dash are meant
"""Turn the raw records of one benchmark run into report.md: tables of medians and ratios.

A ratio is taken per rep (a server against the reference measured in the same rep) and the
report shows the median of those ratios, so drift between reps cancels out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import harness
from bench.common import fmt, med
from bench.counts import counts_table
from bench.goals import goals
from bench.stalls import stalls_table, stalls_target

Rec = dict[str, Any]


def _spread(xs: list[float]) -> str:
    return f"{fmt(min(xs))}–{fmt(max(xs))}" if xs else "-"


def ratio(rows: list[Rec], refs: list[Rec], key: str) -> float | None:
    """Median over reps of row[key] / ref[key] of the same rep."""
    by_rep = {r["rep"]: r.get(key) for r in refs}
    return med([r[key] / by_rep[r["rep"]] for r in rows if r.get(key) and by_rep.get(r["rep"])])


def _ok(rows: list[Rec]) -> list[Rec]:
    return [r for r in rows if r.get("rtt_per_s") and not r.get("error")]


def _cpu_per_rtt(g: list[Rec]) -> float | None:
    return med(
        [
            1e6 * r["server_cpu_s"] / r["rtt_total"]
            for r in g
            if r.get("rtt_total") and r.get("server_cpu_s") is not None
        ]
    )


def _client_cpu_per_rtt(g: list[Rec]) -> float | None:
    """CPU of the load generator per round trip: the client's cost, whatever its rate."""
    return med(
        [
            1e6 * r["load_cpu_s"] / r["rtt_total"]
            for r in g
            if r.get("rtt_total") and r.get("load_cpu_s") is not None
        ]
    )


def pingpong_table(recs: list[Rec], section: str, width: str) -> list[str]:
    out = [
        f"| server | {width} | rtt/s median | min–max | p50 µs | p99 µs | × bare trio | × C "
        "| server CPU % | server CPU µs/rtt | other processes % CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = _ok([r for r in recs if r.get("section") == section and not r.get("skipped")])
    order = list(dict.fromkeys(r["server"] for r in rows))
    for w in sorted({r[width] for r in rows}):
        at = [r for r in rows if r[width] == w]
        trio = [r for r in at if r["server"] == "trio"]
        c = [r for r in at if r["server"] == "c"]
        for s in order:
            g = [r for r in at if r["server"] == s]
            if not g:
                continue
            rps = [r["rtt_per_s"] for r in g]
            lost = sum(r.get("lost") or 0 for r in g)
            name = s + (f" (lost {int(lost)})" if lost else "")
            out.append(
                f"| {name} | {w:g} | {fmt(med(rps))} | {_spread(rps)} | "
                f"{fmt(med([r.get('p50_us') for r in g]), 1)} | "
                f"{fmt(med([r.get('p99_us') for r in g]), 1)} | "
                f"{fmt(ratio(g, trio, 'rtt_per_s'), 2)} | {fmt(ratio(g, c, 'rtt_per_s'), 2)} | "
                f"{fmt(med([r.get('server_cpu_pct') for r in g]))} | {fmt(_cpu_per_rtt(g), 1)} | "
                f"{fmt(med([r.get('others_pct') for r in g]))} |"
            )
    return out


def sink_table(recs: list[Rec]) -> list[str]:
    rows = [
        r for r in recs if r.get("section") == "c" and r.get("gbit_per_s") and not r.get("error")
    ]
    out = [
        "| receiver | Gbit/s median | min–max | × C sink | × bare trio | receiver CPU % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    c = [r for r in rows if r["server"] == "c"]
    trio = [r for r in rows if r["server"] == "trio"]
    for s in dict.fromkeys(r["server"] for r in rows):
        g = [r for r in rows if r["server"] == s]
        gb = [r["gbit_per_s"] for r in g]
        out.append(
            f"| {s} | {fmt(med(gb), 2)} | {min(gb):.2f}–{max(gb):.2f} | "
            f"{fmt(ratio(g, c, 'gbit_per_s'), 2)} | {fmt(ratio(g, trio, 'gbit_per_s'), 2)} | "
            f"{fmt(med([r.get('server_cpu_pct') for r in g]))} |"
        )
    return out


def client_table(recs: list[Rec]) -> list[str]:
    rows = _ok([r for r in recs if r.get("section") == "d"])
    out = [
        "| proto | client (vs C echo server) | rtt/s median | min–max | p50 µs | p99 µs "
        "| × netbench | × bare trio client | client CPU µs/rtt | C server CPU % "
        "| other processes % CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for proto in ("tcp", "udp"):
        at = [r for r in rows if r["proto"] == proto]
        nb = [r for r in at if r["client"] == "netbench"]
        trio = [r for r in at if r["client"] == "trio-client"]
        for client in dict.fromkeys(r["client"] for r in at):
            g = [r for r in at if r["client"] == client]
            rps = [r["rtt_per_s"] for r in g]
            lost = sum(r.get("lost") or 0 for r in g)
            name = client + (f" (lost {int(lost)})" if lost else "")
            width = "100 conns" if proto == "tcp" else "10 flows"
            out.append(
                f"| {proto} {width} | {name} | {fmt(med(rps))} | {_spread(rps)} | "
                f"{fmt(med([r.get('p50_us') for r in g]), 1)} | "
                f"{fmt(med([r.get('p99_us') for r in g]), 1)} | "
                f"{fmt(ratio(g, nb, 'rtt_per_s'), 2)} | {fmt(ratio(g, trio, 'rtt_per_s'), 2)} | "
                f"{fmt(_client_cpu_per_rtt(g), 1)} | "
                f"{fmt(med([r.get('server_cpu_pct') for r in g]))} | "
                f"{fmt(med([r.get('others_pct') for r in g]))} |"
            )
    return out


def idle_table(recs: list[Rec]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "e" and not r.get("skipped")]
    out = [
        "| server | RSS KiB/conn | open 10k s | 10 active rtt/s (no idle) | with 10k idle "
        "| kept | server CPU µs/rtt (no idle) | with 10k idle "
        "| GET /api/connections ms (max) | WS kB/s steady |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in dict.fromkeys(r["server"] for r in rows):
        g = [r for r in rows if r["server"] == s]
        out.append(
            f"| {s} | {fmt(med([r.get('rss_per_conn_kib') for r in g]), 2)} | "
            f"{fmt(med([r.get('open_s') for r in g]), 1)} | "
            f"{fmt(med([r.get('base_rtt_per_s') for r in g]))} | "
            f"{fmt(med([r.get('rtt_per_s') for r in g]))} | "
            f"{fmt(med([r.get('rate_kept') for r in g]), 2)} | "
            f"{fmt(med([r.get('base_server_cpu_us_per_rtt') for r in g]), 2)} | "
            f"{fmt(med([r.get('server_cpu_us_per_rtt_idle') for r in g]), 2)} | "
            f"{fmt(med([r.get('api_connections_ms_max') for r in g]), 1)} | "
            f"{fmt(med([r.get('ws_kbytes_per_s_steady') for r in g]), 1)} |"
        )
    return out


def dashboard_table(recs: list[Rec]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "f" and not r.get("skipped")]
    out = [
        "| rep | echo rtt/s (100 conns) | server CPU % | /api/health p50 ms | p99 ms | max ms "
        "| requests | idle p99 ms | WS period p50 ms | p99 ms | max ms | idle p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        h, hi, w, wi = r["health_load"], r["health_idle"], r["ws_load"], r["ws_idle"]
        out.append(
            f"| {r['rep'] + 1} | {fmt(r.get('rtt_per_s'))} | {fmt(r.get('server_cpu_pct'))} | "
            f"{fmt(h['p50_ms'], 1)} | {fmt(h['p99_ms'], 1)} | {fmt(h['max_ms'], 1)} | "
            f"{h['requests']} | {fmt(hi['p99_ms'], 1)} | {fmt(w['ws_period_ms_p50'])} | "
            f"{fmt(w['ws_period_ms_p99'])} | {fmt(w['ws_period_ms_max'])} | "
            f"{fmt(wi['ws_period_ms_p50'])} |"
        )
    return out


def statsd_table(recs: list[Rec]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "g" and not r.get("skipped")]
    out = [
        "| rep | rate/s | sent | sent/s | counted by socketlab | kernel drops | app drop fields |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rep'] + 1} | {fmt(r.get('rate') or 100_000)} | {fmt(r.get('sent'))} | "
            f"{fmt(r.get('pps'))} | "
            f"{fmt(r.get('received'))} | {r.get('kernel_drops')} | "
            f"{r.get('app_drop_fields') or '-'} |"
        )
    return out


def accuracy_tables(recs: list[Rec]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "h" and not r.get("skipped")]
    out: list[str] = []
    rates = [r for r in rows if r.get("what") == "rate"]
    if rates:
        out += [
            "| rate msg/s | delivered/s median | error % (median) | worst error % | p99 µs |",
            "|---:|---:|---:|---:|---:|",
        ]
        for rate in sorted({r["rate"] for r in rates}):
            g = [r for r in rates if r["rate"] == rate]
            errs = [r["rate_error_pct"] for r in g]
            out.append(
                f"| {rate:,} | {fmt(med([r['delivered_per_s'] for r in g]), 1)} | "
                f"{fmt(med(errs), 2)} | {fmt(max(errs, key=abs), 2)} | "
                f"{fmt(med([r.get('p99_us') for r in g]))} |"
            )
        out.append("")
    bulk = [r for r in rows if r.get("what") == "bulk"]
    if bulk:
        out += [
            "| bulk rep | socketlab reported bytes | C sink counted bytes | difference % |",
            "|---:|---:|---:|---:|",
        ]
        for r in bulk:
            out.append(
                f"| {r['rep'] + 1} | {fmt(r.get('bytes_sent'))} | {fmt(r.get('sink_bytes'))} | "
                f"{fmt(r.get('bulk_error_pct'), 3)} |"
            )
        out.append("")
    pp = [r for r in rows if r.get("what") == "pingpong"]
    if pp:
        out += [
            "| pingpong, 1 conn, vs C echo | rtt/s median | p50 µs median | p99 µs median |",
            "|---|---:|---:|---:|",
        ]
        for client in ("netbench", "socketlab"):
            g = [r for r in pp if r.get("client") == client]
            out.append(
                f"| {client} | {fmt(med([r.get('rtt_per_s') for r in g]))} | "
                f"{fmt(med([r.get('p50_us') for r in g]), 1)} | "
                f"{fmt(med([r.get('p99_us') for r in g]), 1)} |"
            )
    return out


# --- targets of the issues ----------------------------------------------------------------


def _target(name: str, value: float | None, ok: Callable[[float], bool], shown: str) -> str:
    if value is None:
        return f"| {name} | - | not measured |"
    return f"| {name} | {shown} | {'pass' if ok(value) else 'FAIL'} |"


def targets(recs: list[Rec]) -> list[str]:
    out = ["| target | measured | verdict |", "|---|---:|---|"]

    def sel(section: str, **kw: Any) -> list[Rec]:
        return _ok(
            [
                r
                for r in recs
                if r.get("section") == section and all(r.get(k) == v for k, v in kw.items())
            ]
        )

    for conns in (10, 100):
        lab, trio = sel("a", server="socketlab", conns=conns), sel("a", server="trio", conns=conns)
        x = ratio(lab, trio, "rtt_per_s")
        out.append(
            _target(
                f"TCP echo {conns} conns ≥ 1.0× bare trio (stretch 1.3×)",
                x,
                lambda v: v >= 1.0,
                f"{fmt(x, 2)}×",
            )
        )
        p_lab, p_trio = med([r.get("p99_us") for r in lab]), med([r.get("p99_us") for r in trio])
        out.append(
            _target(
                f"TCP echo {conns} conns p99 ≤ bare trio's",
                p_lab / p_trio if p_lab and p_trio else None,
                lambda v: v <= 1.0,
                f"{fmt(p_lab)} vs {fmt(p_trio)} µs",
            )
        )
    lab, trio = sel("b", server="socketlab"), sel("b", server="trio")
    x = ratio(lab, trio, "rtt_per_s")
    uv = ratio(lab, sel("b", server="uvloop"), "rtt_per_s")
    out.append(
        _target(
            "UDP echo 10 flows ≥ 2× bare trio (stretch: uvloop's)",
            x,
            lambda v: v >= 2.0,
            f"{fmt(x, 2)}× trio, {fmt(uv, 2)}× uvloop",
        )
    )
    sink = [r for r in recs if r.get("section") == "c" and r.get("gbit_per_s")]
    x = ratio(
        [r for r in sink if r["server"] == "socketlab"],
        [r for r in sink if r["server"] == "c"],
        "gbit_per_s",
    )
    out.append(_target("TCP sink ≥ 0.8× C sink", x, lambda v: v >= 0.8, f"{fmt(x, 2)}×"))
    for proto, want in (("tcp", 1.2), ("udp", 1.5)):
        x = ratio(
            sel("d", proto=proto, client="socketlab"),
            sel("d", proto=proto, client="trio-client"),
            "rtt_per_s",
        )
        out.append(
            _target(
                f"socketlab fire {proto} ≥ {want}× bare trio client",
                x,
                lambda v, want=want: v >= want,
                f"{fmt(x, 2)}×",
            )
        )
    idle = [r for r in recs if r.get("section") == "e" and r.get("server") == "socketlab"]
    x = med([r.get("rss_per_conn_kib") for r in idle])
    out.append(_target("10k idle: ≤ 8 KiB RSS/conn", x, lambda v: v <= 8.0, f"{fmt(x, 2)} KiB"))
    x = med([r.get("rate_kept") for r in idle])
    out.append(
        _target("10k idle: 10 active keep ≥ 0.9× rate", x, lambda v: v >= 0.9, f"{fmt(x, 2)}×")
    )
    x = med([r.get("api_connections_ms_max") for r in idle])
    out.append(
        _target("10k idle: GET /api/connections < 200 ms", x, lambda v: v < 200, f"{fmt(x, 1)} ms")
    )
    dash = [r for r in recs if r.get("section") == "f" and not r.get("skipped")]
    x = med([r["health_load"]["p99_ms"] for r in dash])
    out.append(
        _target("saturated: /api/health p99 < 100 ms", x, lambda v: v < 100, f"{fmt(x, 1)} ms")
    )
    periods = [
        r["ws_load"]["ws_period_ms_max"] / r["ws_idle"]["ws_period_ms_p50"]
        for r in dash
        if r["ws_load"]["ws_period_ms_max"] and r["ws_idle"]["ws_period_ms_p50"]
    ]
    x = max(periods) if periods else None
    out.append(
        _target(
            "saturated: WS snapshot period within 2× (worst gap ÷ idle period)",
            x,
            lambda v: v <= 2.0,
            f"{fmt(x, 2)}×",
        )
    )
    g = [
        r
        for r in recs
        if r.get("section") == "g"
        and not r.get("skipped")
        and (r.get("rate") or 100_000) == 100_000
    ]
    if g:
        good = all(
            r.get("kernel_drops") == 0
            and r.get("received") == r.get("sent")
            and (r.get("pps") or 0) >= 100_000 * 0.99
            for r in g
        )
        drops = max((r.get("kernel_drops") or 0) for r in g)
        missed = max((r.get("sent") or 0) - (r.get("received") or 0) for r in g)
        shown = f"worst rep: {fmt(missed)} not counted, {fmt(drops)} kernel drops"
        out.append(
            _target("StatsD ≥ 100k/s, 0 drops, all counted", 1.0 if good else 0.0, bool, shown)
        )
    x, window = stalls_target(recs)
    out.append(
        _target(
            "ReDoS, StatsD flood, 2.4 M flush: /api/health p99 < 100 ms",
            x,
            lambda v: v < 100,
            f"worst {fmt(x, 1)} ms ({window})",
        )
    )
    h = [r for r in recs if r.get("section") == "h" and not r.get("skipped")]
    errs = [abs(r["rate_error_pct"]) for r in h if r.get("what") == "rate"]
    x = max(errs) if errs else None
    out.append(_target("rate runs within ±2 %", x, lambda v: v <= 2.0, f"worst {fmt(x, 2)} %"))
    bulk = [abs(r["bulk_error_pct"]) for r in h if r.get("bulk_error_pct") is not None]
    x = max(bulk) if bulk else None
    out.append(
        _target("bulk bytes within 1 % of the sink", x, lambda v: v <= 1.0, f"{fmt(x, 3)} %")
    )
    pp = [r for r in h if r.get("what") == "pingpong"]
    nb = med([r.get("p50_us") for r in pp if r.get("client") == "netbench"])
    sl = med([r.get("p50_us") for r in pp if r.get("client") == "socketlab"])
    x = abs(sl / nb - 1) * 100 if nb and sl else None
    out.append(
        _target(
            "pingpong p50 within 20 % of netbench's",
            x,
            lambda v: v <= 20.0,
            f"{fmt(sl, 1)} vs {fmt(nb, 1)} µs ({fmt(x, 1)} %)",
        )
    )
    return out


SECTION_TITLES = {
    "a": "(a) TCP echo ping-pong, 64 B (netbench tcp-pingpong)",
    "b": "(b) UDP echo ping-pong, 64 B (netbench udp-pingpong)",
    "c": "(c) TCP bulk into a sink, 128 KiB writes (netbench tcp-bulk)",
    "d": "(d) Client side: load generators against the C echo server, 64 B",
    "e": "(e) 10,000 idle TCP connections plus 10 active",
    "f": "(f) Dashboard while the TCP echo listener is saturated (100 conns)",
    "g": "(g) StatsD intake, single-metric datagrams",
    "h": "(h) Measurement accuracy of socketlab fire",
    "i": "(i) Event loop stalls: /api/health during ReDoS lines, a StatsD flood, a big flush",
    "j": "(j) Counters at full speed: socketlab's listener counts against netbench's",
}


def render(recs: list[Rec], sections: list[str], header: list[str]) -> str:
    tables: dict[str, Callable[[], list[str]]] = {
        "a": lambda: pingpong_table(recs, "a", "conns"),
        "b": lambda: pingpong_table(recs, "b", "flows"),
        "c": lambda: sink_table(recs),
        "d": lambda: client_table(recs),
        "e": lambda: idle_table(recs),
        "f": lambda: dashboard_table(recs),
        "g": lambda: statsd_table(recs),
        "h": lambda: accuracy_tables(recs),
        "i": lambda: stalls_table(recs),
        "j": lambda: counts_table(recs),
    }
    measured = [r for r in recs if "others_pct" in r]
    limit = harness.MAX_OTHERS_PCT
    disturbed = [r for r in measured if r["others_pct"] > limit]
    retried = [r for r in measured if (r.get("attempt") or 1) > 1]
    lines = [
        *header,
        f"- other processes on the machine: {len(disturbed)} of {len(measured)} measurements "
        f"kept one where they took > {limit:g} % of a CPU; {len(retried)} were "
        "measured again because of them (see others_* and attempt in raw.jsonl)",
        "",
        "## Goals of issue 20 (ratios in this run)",
        "",
        *goals(recs),
        "",
        "## Targets of issue 8",
        "",
        *targets(recs),
        "",
    ]
    for s in sections:
        lines += [f"## {SECTION_TITLES[s]}", ""]
        skipped = [r for r in recs if r.get("section") == s and r.get("skipped")]
        lines += [f"- skipped: {r['what']}: {r['skipped']}" for r in skipped]
        if skipped:
            lines.append("")
        lines += tables[s]()
        lines.append("")
    return "\n".join(lines) + "\n"
