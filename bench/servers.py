"""Server-side sections: (a) TCP echo, (b) UDP echo, (c) TCP sink, (e) 10,000 idle connections.

Within one rep every server runs back to back under the same load, so the ratios of the
report are taken per rep (socketlab ÷ bare trio of the same rep) and then the median.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import harness
from bench.common import Context, lab_session, progress, subscriber_fields, ws_stats
from bench.harness import NB, REF, REFPY, Skip, log

Argv = Callable[[str], list[str]]

TCP_REFS: dict[str, Argv] = {
    "c": lambda p: [str(NB), "echo-server", "--port", p],
    "trio": lambda p: [str(REFPY), str(REF / "trio_echo.py"), p],
    "asyncio-streams": lambda p: [str(REFPY), str(REF / "asyncio_streams_echo.py"), p],
    "asyncio-protocol": lambda p: [str(REFPY), str(REF / "asyncio_protocol_echo.py"), p],
    "uvloop-protocol": lambda p: [
        str(REFPY),
        str(REF / "asyncio_protocol_echo.py"),
        p,
        "--uvloop",
    ],
}
UDP_REFS: dict[str, Argv] = {
    "c": lambda p: [str(NB), "echo-server", "--port", p, "--udp"],
    "trio": lambda p: [str(REFPY), str(REF / "trio_udp_echo.py"), p],
    "asyncio": lambda p: [str(REFPY), str(REF / "asyncio_udp_echo.py"), p],
    "uvloop": lambda p: [str(REFPY), str(REF / "asyncio_udp_echo.py"), p, "--uvloop"],
}
SINK_REFS: dict[str, Argv] = {
    "c": lambda p: [str(NB), "echo-server", "--port", p, "--discard"],
    "trio": lambda p: [str(REFPY), str(REF / "trio_echo.py"), p, "--sink"],
}

TCP_CONNS = (10, 100)
UDP_FLOWS = (10,)
IDLE = 10_000


def tcp_pingpong(port: int, conns: int, duration: float, idle: int = 0) -> list[str]:
    argv = [str(NB), "tcp-pingpong", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--conns", str(conns), "--size", "64", "--duration", str(duration)]
    return argv + (["--idle", str(idle)] if idle else [])


def udp_pingpong(port: int, flows: int, duration: float) -> list[str]:
    argv = [str(NB), "udp-pingpong", "--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--flows", str(flows), "--size", "64", "--duration", str(duration)]


def _measure(
    ctx: Context,
    section: str,
    rep: int,
    server: str,
    refs: dict[str, Argv],
    lab_url: str,
    udp: bool,
    loads: list[tuple[dict[str, Any], Callable[[int], list[str]]]],
) -> None:
    """Start one server (a reference or socketlab), run ``loads`` against it, stop it.

    A progress line is printed after each load; the records are written once the server
    has stopped, with what it reported (C totals, the dashboard subscriber's figures).
    """
    done: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def run_all(port: int, pid: int) -> None:
        for meta, mk in loads:
            r = harness.measure(mk(port), pid, timeout=ctx.duration + 120)
            progress(section, rep, ctx, _label(server, meta), r)
            done.append((meta, r))

    extra: dict[str, Any] = {}
    if server == "socketlab":
        try:
            with lab_session(ctx, f"{section}-socketlab-{rep}", [lab_url]) as (lab, sub):
                run_all(lab.ports[harness.listener_key(lab_url)], lab.pid)
                extra = subscriber_fields(sub)
        except Skip as exc:
            ctx.skip(section, f"socketlab {lab_url}", str(exc))
            return
    else:
        port = harness.free_port(udp)
        name = f"{section}-{server}-{rep}"
        try:
            srv = harness.start_ref(name, refs[server](str(port)), port, ctx.logdir, udp)
        except RuntimeError as exc:
            # One server that would not start costs its own figures, not the section's.
            log(f"[{section} {rep + 1}/{ctx.reps}] {server}: ERROR {exc}")
            ctx.emit({"section": section, "rep": rep, "server": server, "error": str(exc)})
            return
        try:
            run_all(port, srv.pid)
        finally:
            out = harness.stop_ref(srv).strip()
        if out:
            extra["server_out"] = out.splitlines()[-1]
    for meta, r in done:
        ctx.emit({"section": section, "rep": rep, "server": server, **r, **meta, **extra})


def _label(server: str, meta: dict[str, Any]) -> str:
    width = ", ".join(f"{v} {k}" for k, v in meta.items())
    return f"{server} ({width})" if width else server


def section_a(ctx: Context) -> None:
    """TCP echo ping-pong, 64 B, 10 and 100 connections; socketlab with a subscriber."""
    d = ctx.duration
    for rep in range(ctx.reps):
        for server in filter(ctx.wanted, [*TCP_REFS, "socketlab"]):
            loads: list[tuple[dict[str, Any], Callable[[int], list[str]]]] = [
                ({"conns": c}, lambda p, c=c: tcp_pingpong(p, c, d)) for c in TCP_CONNS
            ]
            _measure(ctx, "a", rep, server, TCP_REFS, "tcp://127.0.0.1:0?mode=echo", False, loads)


def section_b(ctx: Context) -> None:
    """UDP echo ping-pong, 64 B, 10 flows."""
    d = ctx.duration
    for rep in range(ctx.reps):
        for server in filter(ctx.wanted, [*UDP_REFS, "socketlab"]):
            loads: list[tuple[dict[str, Any], Callable[[int], list[str]]]] = [
                ({"flows": f}, lambda p, f=f: udp_pingpong(p, f, d)) for f in UDP_FLOWS
            ]
            _measure(ctx, "b", rep, server, UDP_REFS, "udp://127.0.0.1:0?mode=echo", True, loads)


def section_c(ctx: Context) -> None:
    """One TCP connection writing 128 KiB chunks into a sink: Gbit/s."""
    d = ctx.duration

    def bulk(p: int) -> list[str]:
        argv = [str(NB), "tcp-bulk", "--host", "127.0.0.1", "--port", str(p)]
        return [*argv, "--size", "131072", "--duration", str(d)]

    for rep in range(ctx.reps):
        for server in filter(ctx.wanted, [*SINK_REFS, "socketlab"]):
            _measure(
                ctx, "c", rep, server, SINK_REFS, "tcp://127.0.0.1:0?mode=sink", False, [({}, bulk)]
            )


def _idle_run(ctx: Context, port: int, pid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open IDLE silent connections plus 10 active ones; RSS before and while they are open.

    Returns the netbench result and the measurements taken while the connections were open.
    """
    harness.wait_quiet()
    rss0 = harness.rss_kib(pid)
    c0, t0 = harness.cpu_seconds(pid), time.time()
    p = harness.start_load(tcp_pingpong(port, 10, ctx.duration, IDLE))
    assert p.stderr is not None
    opened = p.stderr.readline()  # "netbench: N idle connections open"
    t_open = time.time() - t0
    # The server's CPU over the first part of the active phase, after the opening's
    # aftermath (a collection of the new objects, the tick that lists them) and before the
    # API is asked anything: per round trip (at the run's mean rate, so approximate), the
    # figure a busy machine moves least.
    settle = min(ctx.duration / 6, 1.0)
    time.sleep(settle)
    c_open, t_steady = harness.cpu_seconds(pid), time.time()
    time.sleep(min(ctx.duration / 2, 3.0) - settle)
    rss1 = harness.rss_kib(pid)
    extra = {
        "steady_cpu_s": harness.cpu_seconds(pid) - c_open,
        "steady_s": time.time() - t_steady,
        "idle": IDLE,
        "open_s": t_open,
        "open_line": opened.strip(),
        "rss0_kib": rss0,
        "rss1_kib": rss1,
        "rss_per_conn_kib": (rss1 - rss0) / IDLE,
    }
    return {"p": p, "c0": c0, "t0": t0}, extra


def _idle_finish(state: dict[str, Any], pid: int, ctx: Context) -> dict[str, Any]:
    out, err = harness.finish(state["p"], timeout=ctx.duration + 180)
    wall = time.time() - state["t0"]
    r = harness.last_kv(out) or {"error": err[-300:]}
    r["rc"] = state["p"].returncode
    r["server_cpu_pct"] = 100 * (harness.cpu_seconds(pid) - state["c0"]) / wall
    return r


def section_e(ctx: Context) -> None:
    """10,000 idle TCP connections: RSS per connection, active rate kept, API page latency."""
    d = ctx.duration
    for rep in range(ctx.reps):
        for server in filter(ctx.wanted, ("socketlab", "trio", "c")):
            if server == "socketlab":
                _idle_socketlab(ctx, rep, d)
                continue
            port = harness.free_port()
            srv = harness.start_ref(
                f"e-{server}-{rep}", TCP_REFS[server](str(port)), port, ctx.logdir
            )
            try:
                base = harness.measure(tcp_pingpong(port, 10, d), srv.pid)
                time.sleep(1)
                state, extra = _idle_run(ctx, port, srv.pid)
                r = _idle_finish(state, srv.pid, ctx)
            finally:
                harness.stop_ref(srv)
            _emit_idle(ctx, rep, server, base, extra, r)


def _idle_socketlab(ctx: Context, rep: int, d: float) -> None:
    url = f"tcp://127.0.0.1:0?mode=echo&max_connections={2 * IDLE}"
    with lab_session(ctx, f"e-socketlab-{rep}", [url]) as (lab, sub):
        port = lab.ports["tcp:echo"]
        base = harness.measure(tcp_pingpong(port, 10, d), lab.pid)
        time.sleep(1)
        state, extra = _idle_run(ctx, port, lab.pid)
        t_steady = time.time()
        # First page of the connections table, as the dashboard asks for it.
        lat, total, status = [], None, None
        for _ in range(5):
            try:
                s, status, doc = lab.get("/api/connections")
            except OSError as exc:
                status, doc, s = 0, str(exc), None
            if s is not None:
                lat.append(s)
            if isinstance(doc, dict):
                total = doc.get("total")
            time.sleep(0.2)
        time.sleep(1.0)
        t_end = time.time()
        r = _idle_finish(state, lab.pid, ctx)
        extra.update(
            api_connections_ms=[round(x * 1000, 2) for x in lat],
            api_connections_ms_max=max(lat) * 1000 if lat else None,
            api_connections_status=status,
            api_connections_total=total,
        )
        sub_res = sub.stop() if sub else {"messages": []}
    steady = ws_stats(sub_res.get("messages", []), t_steady, t_end)
    extra.update(
        subscriber=bool(sub_res.get("connected")),
        ws_kbytes_per_s_steady=steady["ws_kbytes_per_s"],
        ws_period_ms_p50_steady=steady["ws_period_ms_p50"],
    )
    _emit_idle(ctx, rep, "socketlab", base, extra, r)


def _emit_idle(
    ctx: Context,
    rep: int,
    server: str,
    base: dict[str, Any],
    extra: dict[str, Any],
    r: dict[str, Any],
) -> None:
    kept = (
        r["rtt_per_s"] / base["rtt_per_s"] if r.get("rtt_per_s") and base.get("rtt_per_s") else None
    )
    # Server CPU per round trip alone and beside the idle connections (the steady window
    # of _idle_run, its round trips at the run's mean rate).
    cpu_alone = (
        1e6 * base["server_cpu_s"] / base["rtt_total"]
        if base.get("server_cpu_s") is not None and base.get("rtt_total")
        else None
    )
    cpu_idle = (
        1e6 * extra["steady_cpu_s"] / (r["rtt_per_s"] * extra["steady_s"])
        if r.get("rtt_per_s") and extra.get("steady_s")
        else None
    )
    rec = ctx.emit(
        {
            "section": "e",
            "rep": rep,
            "server": server,
            "base_rtt_per_s": base.get("rtt_per_s"),
            "base_p99_us": base.get("p99_us"),
            "rate_kept": kept,
            "base_server_cpu_us_per_rtt": cpu_alone,
            "server_cpu_us_per_rtt_idle": cpu_idle,
            **extra,
            **r,
        }
    )
    api = rec.get("api_connections_ms_max")
    log(
        f"[e {rep + 1}/{ctx.reps}] {server}: {IDLE} idle open in {rec['open_s']:.1f} s, "
        f"RSS {rec['rss0_kib']} -> {rec['rss1_kib']} KiB = {rec['rss_per_conn_kib']:.2f} KiB/conn; "
        f"10 active {rec.get('rtt_per_s', 0):,.0f} rtt/s vs {rec.get('base_rtt_per_s') or 0:,.0f} "
        f"without idle ({(kept or 0):.2f}x); server CPU {cpu_alone or 0:.2f} µs/rtt alone, "
        f"{cpu_idle or 0:.2f} beside the idle ones"
        + (f"; GET /api/connections max {api:.1f} ms" if api is not None else "")
    )


__all__ = ["section_a", "section_b", "section_c", "section_e"]
