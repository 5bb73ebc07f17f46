"""Section i: what used to stall the event loop, and ``/api/health`` latency meanwhile.

One socketlab serves a respond listener (TCP, line framing) with backtracking-prone rules
(``(a+)+$`` and ``^(a|aa)+$``, matched by RE2) and a StatsD listener (UDP). While
``bench/health_probe.py`` asks ``GET /api/health`` every 20 ms from the load CPU, four
windows are measured:

1. ``idle``: nothing else (the baseline);
2. ``redos``: one client streams the 27-byte line of 26 ``a`` and a ``!`` (6 s per line with
   Python's backtracking ``re``, doubling per byte) as fast as the lab reads it;
3. ``flood``: one sender floods the StatsD listener with datagrams of 3,000 counter lines
   each, as fast as it can, for three times the section's duration (30 s by default);
4. ``flush``: 240 timer keys get 10,000 samples each (2.4 M samples, every one kept, sent
   in batches the lab counts before the next), then ``POST /api/listeners/{id}/flush``
   summarizes them; the window is the flush request and a quarter second either side.

The target (issue 14, points 6 and 7): ``/api/health`` p99 under 100 ms in each window. The
senders run in the harness process, pinned to the load CPU while they send.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench import harness
from bench.common import Context, fmt, health_stats, lab_session, med
from bench.harness import LOAD_CPU, Skip, log

HEALTH_INTERVAL = 0.02
IDLE_WINDOW = 2.0
STATSD_URL = "udp://127.0.0.1:0?mode=statsd&flush_interval=86400&max_keys=100000&rcvbuf=8388608"
REDOS_RULES = [
    {"match": "exact", "pattern": "PING", "reply": "PONG\\n"},
    {"match": "regex", "pattern": r"(a+)+$", "reply": "tail {1}\\n"},
    {"match": "regex", "pattern": r"^(a|aa)+$", "reply": "all a\\n"},
]
# 27 bytes: no rule matches it, so the lab sends no reply and the client only writes.
REDOS_LINE = b"a" * 26 + b"!\n"
REDOS_BATCH = 1_000
FLOOD_LINES = 3_000
FLUSH_KEYS = 240
SAMPLES_PER_KEY = 10_000
SAMPLES_PER_DATAGRAM = 2_000
WINDOWS = ("idle", "redos", "flood", "flush")


@contextlib.contextmanager
def _on_load_cpu() -> Iterator[None]:
    """Run the harness's own sending on the load CPU, away from the lab's."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _request(lab: harness.Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", lab.web_port, timeout=120)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _listener(lab: harness.Lab, listener_id: str) -> dict[str, Any]:
    status, doc = _request(lab, "GET", f"/api/listeners/{listener_id}")
    if status != 200:
        raise Skip(f"GET /api/listeners/{listener_id} answered {status}")
    return dict(doc)


def _statsd_id(lab: harness.Lab) -> str:
    _, doc = _request(lab, "GET", "/api/listeners")
    for item in doc.get("items", []):
        if item.get("mode") == "statsd":
            return str(item["id"])
    raise Skip("no statsd listener")


def redos(port: int, seconds: float) -> dict[str, Any]:
    """Stream the ReDoS line for ``seconds``; returns how many lines were sent."""
    batch = REDOS_LINE * REDOS_BATCH
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port)) as sock, _on_load_cpu():
        while time.monotonic() < deadline:
            sock.sendall(batch)
            sent += REDOS_BATCH
    return {"lines_sent": sent}


def flood(port: int, seconds: float) -> dict[str, Any]:
    """3,000-line StatsD datagrams as fast as one sender can, for ``seconds``."""
    datagram = b"\n".join(b"flood.k%d:1|c" % (i % 100) for i in range(FLOOD_LINES))
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, _on_load_cpu():
        while time.monotonic() < deadline:
            try:
                sock.sendto(datagram, ("127.0.0.1", port))
                sent += 1
            except OSError:
                time.sleep(0.001)
    return {"datagrams_sent": sent, "lines_sent": sent * FLOOD_LINES}


def _counted(lab: harness.Lab, listener_id: str) -> int:
    return int((_listener(lab, listener_id).get("statsd") or {}).get("metrics_received", 0))


def _settled(lab: harness.Lab, listener_id: str, timeout: float = 30.0) -> int:
    """Wait until the listener's count of metrics stops moving (what the flood left in the
    socket buffer is read); return it."""
    last = -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _counted(lab, listener_id)
        if now == last:
            break
        last = now
        time.sleep(0.3)
    return last


def fill_timers(lab: harness.Lab, listener_id: str, port: int) -> dict[str, Any]:
    """Send 2.4 M timer samples a few datagrams at a time, each batch once the lab has
    counted the previous one (so the kernel drops none); returns how many it counted."""
    start = _settled(lab, listener_id)
    total = FLUSH_KEYS * SAMPLES_PER_KEY
    sent = 0
    deadline = time.monotonic() + 120
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, _on_load_cpu():
        for key in range(FLUSH_KEYS):
            for first in range(0, SAMPLES_PER_KEY, SAMPLES_PER_DATAGRAM):
                values = range(first, first + SAMPLES_PER_DATAGRAM)
                sock.sendto(
                    b"\n".join(b"big.t%d:%d|ms" % (key, v) for v in values), ("127.0.0.1", port)
                )
                sent += SAMPLES_PER_DATAGRAM
            # This window measures the flush, not the intake: let the lab keep up.
            while _counted(lab, listener_id) - start < sent and time.monotonic() < deadline:
                time.sleep(0.01)
    return {"samples_sent": total, "samples_counted": _counted(lab, listener_id) - start}


def section_i(ctx: Context) -> None:
    """/api/health p50/p99/max during a ReDoS stream, a StatsD flood and a 2.4 M flush."""
    flood_s = 3 * ctx.duration
    for rep in range(ctx.reps):
        try:
            with lab_session(ctx, f"i-socketlab-{rep}", [STATSD_URL], subscribe=False) as (
                lab,
                _,
            ):
                status, doc = _request(
                    lab,
                    "POST",
                    "/api/listeners",
                    {"url": "tcp://127.0.0.1:0?mode=respond", "rules": REDOS_RULES},
                )
                if status != 201:
                    raise Skip(f"the respond listener was refused ({status}: {doc})")
                respond_id, respond_port = str(doc["id"]), int(doc["port"])
                statsd_id = _statsd_id(lab)
                statsd_port = lab.ports["udp:statsd"]
                probe_argv = [sys.executable, str(harness.BENCH / "health_probe.py")]
                probe_argv += ["--port", str(lab.web_port), "--interval", str(HEALTH_INTERVAL)]
                harness.wait_quiet()
                probe = harness.start_load(probe_argv)
                spans: dict[str, tuple[float, float]] = {}
                detail: dict[str, dict[str, Any]] = {}
                t0 = time.time()
                time.sleep(IDLE_WINDOW)
                spans["idle"] = (t0, time.time())
                t0 = time.time()
                detail["redos"] = redos(respond_port, ctx.duration)
                spans["redos"] = (t0, time.time())
                detail["redos"]["lines_read"] = _listener(lab, respond_id).get("msgs_in")
                t0 = time.time()
                detail["flood"] = flood(statsd_port, flood_s)
                spans["flood"] = (t0, time.time())
                detail["flush"] = fill_timers(lab, statsd_id, statsd_port)
                time.sleep(0.5)
                t0 = time.time()
                status, _ = _request(lab, "POST", f"/api/listeners/{statsd_id}/flush", {})
                t1 = time.time()
                # A flush may be shorter than the probe interval: the window reaches a
                # quarter second either side, and flush_s (the request) bounds any stall.
                spans["flush"] = (t0 - 0.25, t1 + 0.25)
                detail["flush"].update(flush_status=status, flush_s=t1 - t0)
                time.sleep(0.5)
                out, _ = harness.interrupt(probe)
        except Skip as exc:
            ctx.skip("i", "event loop stalls", str(exc))
            return
        try:
            samples = json.loads(out.strip().splitlines()[-1])["samples"]
        except (ValueError, IndexError, KeyError):
            samples = []
        rec: dict[str, Any] = {"section": "i", "rep": rep, "server": "socketlab"}
        for name, (t_from, t_to) in spans.items():
            rec[name] = {**health_stats(samples, t_from, t_to), **detail.get(name, {})}
        ctx.emit(rec)
        log(
            f"[i {rep + 1}/{ctx.reps}] /api/health p99: "
            + ", ".join(f"{w} {fmt(rec[w]['p99_ms'], 1)} ms" for w in WINDOWS)
        )


def stalls_table(recs: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "i" and not r.get("skipped")]
    out = [
        "| rep | window | load | /api/health p50 ms | p99 ms | max ms | requests | failed |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for w in WINDOWS:
            h = r.get(w) or {}
            out.append(
                f"| {r['rep'] + 1} | {w} | {_load(w, h)} | {fmt(h.get('p50_ms'), 1)} | "
                f"{fmt(h.get('p99_ms'), 1)} | {fmt(h.get('max_ms'), 1)} | "
                f"{h.get('requests', '-')} | {h.get('failed', '-')} |"
            )
    return out


def _load(window: str, h: dict[str, Any]) -> str:
    if window == "redos":
        return f"{fmt(h.get('lines_sent'))} lines sent, {fmt(h.get('lines_read'))} read"
    if window == "flood":
        return f"{fmt(h.get('datagrams_sent'))} datagrams of {FLOOD_LINES:,} lines"
    if window == "flush":
        return (
            f"{fmt(h.get('samples_counted'))} samples, flush {fmt(h.get('flush_s'), 2)} s "
            f"(HTTP {h.get('flush_status')})"
        )
    return "-"


def stalls_target(recs: list[dict[str, Any]]) -> tuple[float | None, str]:
    """The worst window's median p99 over reps, and which window it was."""
    rows = [r for r in recs if r.get("section") == "i" and not r.get("skipped")]
    worst: tuple[float | None, str] = (None, "-")
    for w in WINDOWS[1:]:
        x = med([(r.get(w) or {}).get("p99_ms") for r in rows])
        if x is not None and (worst[0] is None or x > worst[0]):
            worst = (x, w)
    return worst
