"""What 10,000 idle TCP echo connections cost, in figures other processes hardly move.

Usage::

    python -m bench.idle_10k [--connections 10000] [--trace] [--mode echo]
    python -m bench.idle_10k --lab [--connections 10000] [--window 3]

The first form serves a plain TCP listener (echo, or ``--mode``) in this process (a
ListenerManager over a Registry, as the lab has them) and opens the connections from a
child process, then prints per connection: RSS (KiB), the server's CPU to accept and
adopt it (µs), the objects the garbage collector tracks and how long one full collection
takes with them open (a full collection walks every tracked object: it is the pause the
whole lab feels). ``--trace`` adds the Python heap per connection by allocation site
(tracemalloc; slower, and RSS grows with tracemalloc's own bookkeeping).

``--lab`` starts ``socketlab serve`` (the code on ``PYTHONPATH``, else the installed one)
with the connections open to its echo listener and prints the server's CPU per
``GET /api/connections`` (a page of 500 rows) and its wall time, then the server's CPU per
round trip of 10 active connections (netbench on the load CPU) alone and beside the idle
ones, counted by the listener itself over ``--window`` seconds of steady state.

Nothing here fails: these are figures for the note, measured with CPU time and counts so a
busy machine skews them less than rates.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The child process that holds the client ends open until its stdin closes.
CLIENT = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count, port = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("ready", flush=True)
sys.stdin.read()
"""


def open_clients(port: int, count: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(count), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit("the client process did not connect")
    return child


def close_clients(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait(30)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def in_process(count: int, trace: bool, mode: str) -> None:
    import trio

    from app.listeners.manager import ListenerManager
    from app.listeners.parse import parse_listener
    from app.registry import Registry

    async def main() -> None:
        registry = Registry()
        manager = ListenerManager(registry)
        url = f"tcp://127.0.0.1:0?mode={mode}&max_connections={2 * count}&idle_timeout=86400"

        async def settle(open_now: int) -> None:
            # The registry has no event for it; polling is fine in a measurement.
            while len(registry) != open_now:  # noqa: ASYNC110
                await trio.sleep(0.05)
            registry.take_diff()

        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            listener = await manager.start(parse_listener(url))
            # A first round warms up every code path and cache, then goes away.
            warm = await trio.to_thread.run_sync(open_clients, listener.port, 200)
            await settle(200)
            close_clients(warm)
            await settle(0)
            gc.collect()
            objects0 = len(gc.get_objects())
            if trace:
                tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot() if trace else None
            rss0 = rss_kib()
            cpu0 = time.process_time()
            child = await trio.to_thread.run_sync(open_clients, listener.port, count)
            await settle(count)
            cpu1 = time.process_time()
            gc.collect()
            rss1 = rss_kib()
            objects1 = len(gc.get_objects())
            t0 = time.perf_counter()
            gc.collect()
            full_ms = 1000 * (time.perf_counter() - t0)
            print(
                f"{count} idle {mode} connections: RSS {(rss1 - rss0) / count:.2f} KiB/conn; "
                f"accept and adopt {1e6 * (cpu1 - cpu0) / count:.1f} µs CPU/conn; "
                f"{(objects1 - objects0) / count:.1f} GC-tracked objects/conn "
                f"({objects1} in all; a full collection {full_ms:.1f} ms)"
            )
            if snap0 is not None:
                stats = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
                total = sum(stat.size_diff for stat in stats)
                print(f"Python heap {total / count:.0f} B/conn, by allocation site:")
                for stat in stats[:12]:
                    print(f"  {stat.size_diff / count:7.1f} B  {stat.traceback[0]}")
            close_clients(child)
            await settle(0)
            manager.stop_accepting()
            nursery.cancel_scope.cancel()

    trio.run(main)


def with_lab(count: int, window: float) -> None:
    from bench import harness

    harness.build_tools()
    tmp = Path(tempfile.mkdtemp(prefix="socketlab-idle10k-"))
    url = f"tcp://127.0.0.1:0?mode=echo&max_connections={2 * count + 20}"
    lab = harness.start_lab("idle10k", [url], tmp, tmp / "data")
    port = lab.ports["tcp:echo"]

    def total() -> int:
        return int(lab.get("/api/connections?limit=1")[2]["total"])

    def msgs_in() -> int:
        return int(lab.get("/api/listeners")[2]["items"][0]["msgs_in"])

    def per_rtt(idle: int) -> float:
        """Server CPU µs per echoed message of 10 active connections in steady state."""
        argv = [str(harness.NB), "tcp-pingpong", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--conns", "10", "--size", "64", "--duration", str(window + 4)]
        argv += ["--idle", str(idle)] if idle else []
        load = harness.start_load(argv)
        try:
            while total() < idle + 10:
                time.sleep(0.1)
            time.sleep(1.0)
            c0, m0 = harness.cpu_seconds(lab.pid), msgs_in()
            time.sleep(window)
            c1, m1 = harness.cpu_seconds(lab.pid), msgs_in()
        finally:
            harness.finish(load, timeout=window + 120)
        while total() > 0:
            time.sleep(0.1)
        return 1e6 * (c1 - c0) / max(m1 - m0, 1)

    try:
        alone = [per_rtt(0), per_rtt(0)]
        child = open_clients(port, count)
        try:
            while total() < count:
                time.sleep(0.2)
            time.sleep(1.0)
            walls: list[float] = []
            c0 = harness.cpu_seconds(lab.pid)
            for _ in range(20):
                walls.append(1000 * lab.get("/api/connections")[0])
            cpu_ms = 1000 * (harness.cpu_seconds(lab.pid) - c0) / 20
        finally:
            close_clients(child)
        while total() > 0:
            time.sleep(0.1)
        beside = [per_rtt(count), per_rtt(count)]
    finally:
        lab.stop()
    print(
        f"GET /api/connections at {count} connections: server CPU {cpu_ms:.1f} ms/request, "
        f"wall median {statistics.median(walls):.1f} ms, max {max(walls):.1f} ms"
    )
    a, b = statistics.median(alone), statistics.median(beside)
    print(
        f"10 active connections: server CPU {a:.2f} µs/rtt alone, {b:.2f} µs/rtt beside "
        f"{count} idle ({a / b:.2f}x the rate the CPU allows alone)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--trace", action="store_true", help="Python heap by allocation site")
    parser.add_argument("--mode", default="echo", help="the listener's mode (without --lab)")
    parser.add_argument("--lab", action="store_true", help="measure a running socketlab serve")
    parser.add_argument("--window", type=float, default=3.0, help="seconds per CPU window")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 512:  # each process holds one end of each connection
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low")
    if args.lab:
        with_lab(args.connections, args.window)
    else:
        in_process(args.connections, args.trace, args.mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
