"""Sections about the rest of the process: (f) the dashboard under load, (g) StatsD intake."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench import harness
from bench.common import Context, health_stats, lab_session, ws_stats
from bench.harness import STATSD_BLAST, Skip, log
from bench.servers import tcp_pingpong

# /api/health every 20 ms: a script or a dashboard polling hard, not a load of its own.
HEALTH_INTERVAL = 0.02
IDLE_WINDOW = 3.0
# The goal (100,000/s) and the stretch (300,000/s) of issue 20, each with 0 kernel drops.
STATSD_RATES = (100_000, 300_000)


def section_f(ctx: Context) -> None:
    """While 100 connections saturate the TCP echo: /api/health latency and WS period."""
    d = ctx.duration
    for rep in range(ctx.reps):
        try:
            with lab_session(ctx, f"f-socketlab-{rep}", ["tcp://127.0.0.1:0?mode=echo"]) as (
                lab,
                sub,
            ):
                assert sub is not None
                probe_argv = [sys.executable, str(harness.BENCH / "health_probe.py")]
                probe_argv += ["--port", str(lab.web_port), "--interval", str(HEALTH_INTERVAL)]
                harness.wait_quiet()
                probe = harness.start_load(probe_argv)
                t_idle = time.time()
                time.sleep(IDLE_WINDOW)
                t_load = time.time()
                r = harness.run_load(tcp_pingpong(lab.ports["tcp:echo"], 100, d), lab.pid)
                t_end = time.time()
                out, _ = harness.interrupt(probe)
                sub_res = sub.stop()
        except Skip as exc:
            ctx.skip("f", "dashboard under load", str(exc))
            return
        try:
            samples = json.loads(out.strip().splitlines()[-1])["samples"]
        except (ValueError, IndexError, KeyError):
            samples = []
        # Leave out the first and last half second: the load is starting or ending there.
        idle_h = health_stats(samples, t_idle + 0.5, t_load)
        load_h = health_stats(samples, t_load + 0.5, t_end - 0.5)
        msgs = sub_res.get("messages", [])
        idle_ws = ws_stats(msgs, t_idle, t_load)
        load_ws = ws_stats(msgs, t_load + 0.5, t_end - 0.5)
        rec = {
            "section": "f",
            "rep": rep,
            "server": "socketlab",
            "subscriber": bool(sub_res.get("connected")),
            "subscriber_error": sub_res.get("error"),
            "health_idle": idle_h,
            "health_load": load_h,
            "ws_idle": idle_ws,
            "ws_load": load_ws,
            **r,
        }
        ctx.emit(rec)
        log(
            f"[f {rep + 1}/{ctx.reps}] echo {r.get('rtt_per_s') or 0:,.0f} rtt/s (100 conns, "
            f"server CPU {r.get('server_cpu_pct') or 0:.0f}%): /api/health p50 "
            f"{load_h['p50_ms'] or 0:.1f} ms p99 {load_h['p99_ms'] or 0:.1f} ms max "
            f"{load_h['max_ms'] or 0:.1f} ms ({load_h['requests']} requests, idle p99 "
            f"{idle_h['p99_ms'] or 0:.1f} ms); WS period p50 "
            f"{load_ws['ws_period_ms_p50'] or 0:.0f} ms max {load_ws['ws_period_ms_max'] or 0:.0f}"
            f" ms (idle p50 {idle_ws['ws_period_ms_p50'] or 0:.0f} ms)"
        )


def listener_doc(lab: harness.Lab, port: int) -> dict[str, Any] | None:
    try:
        _, status, doc = lab.get("/api/listeners")
    except OSError:
        return None
    if status != 200 or not isinstance(doc, dict):
        return None
    for item in doc.get("items", []):
        if item.get("port") == port:
            return dict(item)
    return None


def section_g(ctx: Context) -> None:
    """100,000 and 300,000 single-metric StatsD datagrams/s for the run's duration."""
    for rep in range(ctx.reps):
        for rate in STATSD_RATES:
            if not _statsd_rep(ctx, rep, rate):
                return


def _statsd_rep(ctx: Context, rep: int, rate: int) -> bool:
    """One rep at ``rate``; False when socketlab has no StatsD listener (skipped)."""
    d = ctx.duration
    try:
        with lab_session(
            ctx, f"g-socketlab-{rep}-{rate}", ["udp://127.0.0.1:0?mode=statsd"], subscribe=False
        ) as (lab, _):
            port = lab.ports["udp:statsd"]
            before = listener_doc(lab, port) or {}
            drops0 = harness.udp_drops(port) or 0
            argv = [str(STATSD_BLAST), "--port", str(port), "--rate", str(rate)]
            r = harness.run_load([*argv, "--duration", str(d)], lab.pid, timeout=d + 60)
            time.sleep(2.0)  # a flush interval or two, so every line has been counted
            after = listener_doc(lab, port) or {}
            drops1 = harness.udp_drops(port) or 0
    except Skip as exc:
        ctx.skip("g", "StatsD intake", str(exc))
        return False
    datagrams = (after.get("msgs_in") or 0) - (before.get("msgs_in") or 0)
    st0, st1 = before.get("statsd") or {}, after.get("statsd") or {}
    # The collector's own count of metrics, else the datagrams the listener read.
    if "metrics_received" in st1:
        got = st1["metrics_received"] - (st0.get("metrics_received") or 0)
    else:
        got = datagrams
    app_drops = {
        k: (st1.get(k) or 0) - (st0.get(k) or 0)
        for k in ("bad_lines", "overflow", "set_overflow", "kernel_drops")
        if k in st1
    }
    rec = ctx.emit(
        {
            "section": "g",
            "rep": rep,
            "server": "socketlab",
            "rate": rate,
            "received": got,
            "datagrams_read": datagrams,
            "kernel_drops": drops1 - drops0,
            "app_drop_fields": app_drops,
            "listener_after": after,
            **r,
        }
    )
    log(
        f"[g {rep + 1}/{ctx.reps}] StatsD at {rate:,}/s: sent {int(rec.get('sent') or 0):,} "
        f"({rec.get('pps') or 0:,.0f}/s), socketlab counted {got:,}, kernel drops "
        f"{rec['kernel_drops']}, app {app_drops or '-'}"
    )
    return True
