"""Client-side sections: (d) socketlab's generator vs reference clients, (h) accuracy.

Every client runs on the load CPU against the C netbench server on the server CPU, so the
server is never the limit and the client's own speed is what differs.
"""

from __future__ import annotations

import re
import time
from typing import Any

from bench import harness
from bench.common import Context, progress
from bench.harness import NB, REF, REFPY, SOCKETLAB, log
from bench.servers import tcp_pingpong, udp_pingpong

RATES = (100, 1000, 10_000)


def fire(url: str, *opts: str) -> list[str]:
    return [str(SOCKETLAB), "fire", url, *opts, "--json"]


def run_fire(argv: list[str], pid: int, timeout: float, retry: bool = True) -> dict[str, Any]:
    """``socketlab fire ... --json`` on the load CPU, flattened like netbench's output."""
    run = harness.measure if retry else harness.run_load
    res = run(argv, pid, timeout, json_out=True)
    out = harness.fire_summary(res)
    for key, value in res.items():
        if key not in ("doc", "error"):
            out[key] = value
    if res.get("error"):
        out["error"] = res["error"]
    return out


def _c_server(ctx: Context, name: str, *flags: str) -> tuple[harness.Server, int]:
    port = harness.free_port()
    argv = [str(NB), "echo-server", "--port", str(port), *flags]
    return harness.start_ref(name, argv, port, ctx.logdir), port


def section_d(ctx: Context) -> None:
    """TCP pingpong, 100 conns; UDP pingpong, 10 flows; each client against the C server."""
    d = ctx.duration
    for rep in range(ctx.reps):
        srv, port = _c_server(ctx, f"d-c-{rep}", "--udp")
        try:
            tcp_clients: dict[str, list[str]] = {
                "netbench": tcp_pingpong(port, 100, d),
                "trio-client": [
                    str(REFPY),
                    str(REF / "trio_pingpong_client.py"),
                    "--port",
                    str(port),
                    "--conns",
                    "100",
                    "--size",
                    "64",
                    "--duration",
                    str(d),
                ],
                "socketlab": fire(
                    f"tcp://127.0.0.1:{port}",
                    "--conns",
                    "100",
                    "--size",
                    "64",
                    "--duration",
                    str(d),
                ),
            }
            udp_clients: dict[str, list[str]] = {
                "netbench": udp_pingpong(port, 10, d),
                "trio-client": [
                    str(REFPY),
                    str(harness.BENCH / "ref_trio_udp_client.py"),
                    "--port",
                    str(port),
                    "--flows",
                    "10",
                    "--size",
                    "64",
                    "--duration",
                    str(d),
                ],
                "socketlab": fire(
                    f"udp://127.0.0.1:{port}",
                    "--conns",
                    "10",
                    "--size",
                    "64",
                    "--duration",
                    str(d),
                ),
            }
            for proto, clients in (("tcp", tcp_clients), ("udp", udp_clients)):
                for client, argv in clients.items():
                    if not ctx.wanted(client):
                        continue
                    if client == "socketlab":
                        r = run_fire(argv, srv.pid, d + 60)
                    else:
                        r = harness.measure(argv, srv.pid, timeout=d + 60)
                    width = "100 conns" if proto == "tcp" else "10 flows"
                    progress("d", rep, ctx, f"{proto} client {client} ({width})", r)
                    ctx.emit({"section": "d", "rep": rep, "proto": proto, "client": client, **r})
        finally:
            harness.stop_ref(srv)


def section_h(ctx: Context) -> None:
    """Rate accuracy, bulk byte count vs the C sink, pingpong p50 vs netbench's own."""
    d = ctx.duration
    help_text = harness.socketlab_fire_help()
    m = re.search(r"--pattern \{([^}]*)\}", help_text)
    patterns = set(m.group(1).split(",")) if m else set()
    for rep in range(ctx.reps):
        if "rate" in patterns:
            _rates(ctx, rep, d)
        else:
            ctx.skip("h", "rate accuracy", "socketlab fire has no --pattern rate")
        if "bulk" in patterns:
            _bulk(ctx, rep, d)
        else:
            ctx.skip("h", "bulk byte count", "socketlab fire has no --pattern bulk")
        _pingpong_p50(ctx, rep, d)


def _rates(ctx: Context, rep: int, d: float) -> None:
    srv, port = _c_server(ctx, f"h-rate-{rep}")
    try:
        for rate in RATES:
            argv = fire(f"tcp://127.0.0.1:{port}", "--pattern", "rate", "--rate", str(rate))
            # No repeats here: an open-loop schedule is what is measured, not a rate.
            harness.wait_quiet()
            r = run_fire([*argv, "--duration", str(d)], srv.pid, d + 60, retry=False)
            sent = r.get("sent") or 0
            r.update(
                rate=rate,
                delivered_per_s=sent / d,
                received_per_s=(r.get("rtt_total") or 0) / d,
                rate_error_pct=100 * (sent / d - rate) / rate,
            )
            log(
                f"[h {rep + 1}/{ctx.reps}] rate {rate}/s: sent {sent:,} in {d:g} s = "
                f"{r['delivered_per_s']:,.1f}/s ({r['rate_error_pct']:+.2f}%), "
                f"p99 {r.get('p99_us') or 0:,.0f} µs"
            )
            ctx.emit({"section": "h", "rep": rep, "what": "rate", **r})
    finally:
        harness.stop_ref(srv)


def _bulk(ctx: Context, rep: int, d: float) -> None:
    srv, port = _c_server(ctx, f"h-bulk-{rep}", "--discard")
    try:
        argv = fire(f"tcp://127.0.0.1:{port}", "--pattern", "bulk", "--size", "131072")
        r = run_fire([*argv, "--duration", str(d)], srv.pid, d + 60, retry=False)
        time.sleep(0.5)
    finally:
        out = harness.stop_ref(srv)
    kv = harness.last_kv(out) or {}
    sink = kv.get("tcp_rx_bytes")
    reported = r.get("bytes_sent")
    r.update(sink_bytes=sink, server_out=out.strip()[-300:])
    if sink and reported is not None:
        r["bulk_error_pct"] = 100 * (reported - sink) / sink
        log(
            f"[h {rep + 1}/{ctx.reps}] bulk: socketlab reported {reported:,} B, the C sink "
            f"counted {int(sink):,} B ({r['bulk_error_pct']:+.3f}%), "
            f"{(r.get('bits_per_s') or 0) / 1e9:.2f} Gbit/s"
        )
    else:
        log(f"[h {rep + 1}/{ctx.reps}] bulk: no byte count ({r.get('error') or out[-200:]})")
    ctx.emit({"section": "h", "rep": rep, "what": "bulk", **r})


def _pingpong_p50(ctx: Context, rep: int, d: float) -> None:
    """At 1 connection both clients are wake-up bound: compare latency there, not rate."""
    srv, port = _c_server(ctx, f"h-pp-{rep}")
    try:
        for client in ("netbench", "socketlab"):
            if client == "netbench":
                r = harness.measure(tcp_pingpong(port, 1, d), srv.pid)
            else:
                argv = fire(f"tcp://127.0.0.1:{port}", "--conns", "1", "--duration", str(d))
                r = run_fire(argv, srv.pid, d + 60)
            progress("h", rep, ctx, f"pingpong p50, client {client} (1 conn)", r)
            ctx.emit({"section": "h", "rep": rep, "what": "pingpong", "client": client, **r})
    finally:
        harness.stop_ref(srv)
