"""The kernel's view (TCP_INFO) with 10,000 idle connections and a dashboard open.

Measures, against a real ``socketlab serve`` with one TCP echo listener:

- the event-loop time spent reading TCP_INFO per snapshot tick while a dashboard's
  WebSocket watches the connections table (its default page of 100 rows): every call of
  ``app.tcpinfo.refresh_all`` in the lab process is timed and summed per tick (budget:
  2 ms per tick);
- the lab process's RSS per connection (VmRSS after the connections opened, minus before,
  over their number), with the dashboard closed and after it watched; with ``--baseline
  REPO`` the same for another checkout (e.g. one from before TCP_INFO), so the two figures
  sit side by side (budget: within 0.5 KiB per connection).

Usage::

    python bench/tcpinfo_10k.py [--connections 10000] [--seconds 10] [--baseline REPO]

The client connections live in a child process (bench/dashboard_10k.py's clients), the
dashboard is a plain WebSocket subscriber (bench/ws_subscriber.py). Results print as lines
and go to bench/results/tcpinfo_10k-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICK_BUDGET_MS = 2.0
RSS_BUDGET_KIB = 0.5
TOKEN = "bench-tcpinfo-10k-token"


# ---- inside the lab process ----------------------------------------------------------------


def serve_timed(repo: str, stats_path: str, serve_args: list[str]) -> int:
    """Run ``socketlab serve`` from ``repo`` with ``refresh_all`` timed per tick; write the
    per-tick sums (ms) to ``stats_path`` when it stops. A checkout without app.tcpinfo
    runs untimed (the baseline)."""
    sys.path.insert(0, repo)
    ticks: dict[int, float] = {}
    interval = 0.25
    try:
        from app import tcpinfo
    except ImportError:
        tcpinfo = None  # type: ignore[assignment]
    if tcpinfo is not None:
        original = tcpinfo.refresh_all

        def timed(conns: Any, now: float, *, min_age: float = 0.0) -> bool:
            t0 = time.perf_counter()
            try:
                return original(conns, now, min_age=min_age)
            finally:
                key = int(now / interval)
                ticks[key] = ticks.get(key, 0.0) + (time.perf_counter() - t0) * 1000

        # Before the web layer imports it by name.
        tcpinfo.refresh_all = timed  # type: ignore[assignment]
    from app.cli import main

    try:
        code = main(["serve", *serve_args])
    finally:
        import app

        doc = {"timed": tcpinfo is not None, "ticks": ticks, "app": app.__file__}
        Path(stats_path).write_text(json.dumps(doc))
    return int(code or 0)


# ---- the driver --------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def api(web_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def start_lab(repo: Path, stats_path: Path, data: Path) -> tuple[subprocess.Popen[str], int, int]:
    """Start the timed lab from ``repo``; returns it, its web port and its listener's port."""
    from tests.helpers import _DASHBOARD, _LISTENER

    listen = "tcp://127.0.0.1:0?mode=echo&max_connections=100000&idle_timeout=86400"
    args = [
        sys.executable, __file__, "--lab", "--repo", str(repo), "--stats", str(stats_path), "--",
        "--web", "127.0.0.1:0", "--data", str(data), "--token", TOKEN, "--listen", listen,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SOCKETLAB_TOKEN", None)
    process = subprocess.Popen(
        args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    tcp_port = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        for _proto, port, _mode in _LISTENER.findall(line):
            tcp_port = tcp_port or int(port)
        match = _DASHBOARD.search(line)
        if match:
            return process, int(match.group(2)), tcp_port
    process.kill()
    raise SystemExit(f"the lab from {repo} did not start")


def measure(repo: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One lab from ``repo``: RSS per connection, and the sampling time per tick."""
    work = Path(tempfile.mkdtemp(prefix="socketlab-bench-tcpinfo-"))
    stats_path = work / "ticks.json"
    lab, web_port, tcp_port = start_lab(repo, stats_path, work / "data")
    clients: subprocess.Popen[str] | None = None
    subscriber: subprocess.Popen[str] | None = None
    result: dict[str, Any] = {"repo": str(repo), "connections": connections}
    try:
        time.sleep(1.0)  # the lab's start-up allocations settle before the first figure
        before = rss_kib(lab.pid)
        clients = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "dashboard_10k.py"), "--clients",
             "--port", str(tcp_port), "--connections", str(connections)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert clients.stdout is not None
        if not clients.stdout.readline().startswith("ready"):
            raise SystemExit("the clients did not connect")
        while api(web_port, "/api/connections?limit=1")["total"] < connections:
            time.sleep(0.1)
        time.sleep(1.0)
        idle = rss_kib(lab.pid)
        result["rss_per_connection_kib"] = round((idle - before) / connections, 3)
        subscriber = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "ws_subscriber.py"), "--port", str(web_port),
             "--token", TOKEN, "--duration", str(seconds)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        subscriber.communicate(timeout=seconds + 60)
        watched = rss_kib(lab.pid)
        result["rss_per_connection_watched_kib"] = round((watched - before) / connections, 3)
    finally:
        for child in (subscriber, clients):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
        lab.send_signal(signal.SIGTERM)
        lab.wait(60)
    stats = json.loads(stats_path.read_text())
    result["app"] = stats["app"]
    if stats["timed"]:
        per_tick = sorted(stats["ticks"].values())
        result["ticks_sampled"] = len(per_tick)
        if per_tick:
            result["sampling_ms_per_tick"] = {
                "p50": round(statistics.median(per_tick), 4),
                "p99": round(per_tick[min(len(per_tick) - 1, int(len(per_tick) * 0.99))], 4),
                "max": round(per_tick[-1], 4),
            }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long the dashboard watches"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare RSS with")
    parser.add_argument("--lab", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.lab:
        return serve_timed(args.repo, args.stats, [a for a in rest if a != "--"])
    sys.path.insert(0, str(REPO))
    from bench.dashboard_10k import raise_nofile

    raise_nofile(args.connections + 512)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    results["this"] = measure(REPO, args.connections, args.seconds)
    if args.baseline is not None:
        results["baseline"] = measure(args.baseline.resolve(), args.connections, args.seconds)
    this = results["this"]
    print(f"{args.connections} idle connections, a dashboard watching for {args.seconds:g} s")
    if "sampling_ms_per_tick" in this:
        tick = this["sampling_ms_per_tick"]
        verdict = "within" if tick["p99"] < TICK_BUDGET_MS else "OVER"
        print(
            f"TCP_INFO sampling per tick: p50 {tick['p50']} ms, p99 {tick['p99']} ms, "
            f"max {tick['max']} ms over {this['ticks_sampled']} ticks "
            f"({verdict} the {TICK_BUDGET_MS} ms budget)"
        )
    print(
        f"RSS per connection: {this['rss_per_connection_kib']} KiB idle, "
        f"{this['rss_per_connection_watched_kib']} KiB after the dashboard watched"
    )
    if "baseline" in results:
        base = results["baseline"]
        delta = this["rss_per_connection_kib"] - base["rss_per_connection_kib"]
        results["rss_delta_kib"] = round(delta, 3)
        verdict = "within" if abs(delta) <= RSS_BUDGET_KIB else "OVER"
        print(
            f"baseline {base['repo']}: {base['rss_per_connection_kib']} KiB per connection; "
            f"difference {delta:+.3f} KiB ({verdict} the {RSS_BUDGET_KIB} KiB budget)"
        )
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"tcpinfo_10k-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
