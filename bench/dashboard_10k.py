"""The dashboard with 10,000 TCP connections open to one listener.

Measures, in Debian's Chromium driven by Playwright against a real ``socketlab serve``:

- the WebSocket's bytes per second at steady state, with the connections idle and with
  every connection sending small messages at a few rates (each phase one steady state);
- how long a filter typed into the connections section takes to show in the table: from
  the browser's ``input`` event to the end of the render of the page the server sent back
  for it (debounce, WebSocket round trip, server-side filter over every row, DOM update);
- the lab process's CPU while the browser watches.

Usage::

    python bench/dashboard_10k.py [--connections 10000] [--window 10] [--rates 0,0.2,1]

The client connections live in a child process (this file with ``--clients``) so that
neither side's event loop slows the other's; the lab gets the last CPU to itself and the
clients and the browser share the others (``--no-pin`` turns that off). Both processes
raise RLIMIT_NOFILE to its hard limit. Results print as lines and go to
bench/results/dashboard_10k-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Budgets from the dashboard's issue: the numbers this benchmark checks.
WS_BUDGET_BYTES_PER_S = 200_000
FILTER_BUDGET_MS = 500.0
MESSAGE = b"socketlab-dashboard-bench-32-by\n"  # 32 bytes


def raise_nofile(needed: int) -> int:
    """Raise the soft open-files limit to the hard one; fail clearly if that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if target < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# ---- the client side (a child process) ---------------------------------------------------


class Pace:
    """The message rate every client connection follows, changed by lines on stdin."""

    def __init__(self) -> None:
        import trio

        self.rate = 0.0
        self.changed = trio.Event()

    def set(self, rate: float) -> None:
        import trio

        self.rate = rate
        self.changed.set()
        self.changed = trio.Event()


async def run_clients(port: int, count: int) -> None:
    """Open ``count`` connections and print ``ready``; then each stdin line sets the rate
    (messages per second per connection, 0 for idle) at which every connection sends a
    32-byte message and reads its echo back."""
    import trio

    pace = Pace()
    opened = 0

    async def read_commands() -> None:
        stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buffer = b""
        async with stream:
            while chunk := await stream.receive_some(1024):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    pace.set(float(line))
        raise SystemExit(0)  # the parent closed our stdin: the benchmark is over

    async def one(index: int, limiter: trio.CapacityLimiter, task_status: Any) -> None:
        nonlocal opened
        async with limiter:
            with trio.fail_after(30):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
        opened += 1
        task_status.started()
        # Spread the connections over the period so the load is smooth, not a pulse, and so
        # that neighbours (the rows one page shows) send at different moments: the
        # golden-ratio sequence scatters consecutive indexes evenly.
        phase = (index * 0.6180339887) % 1.0
        async with stream:
            while True:
                rate = pace.rate
                if rate <= 0:
                    await pace.changed.wait()
                    continue
                period = 1.0 / rate
                next_send = trio.current_time() + period * phase
                while pace.rate == rate:
                    await trio.sleep_until(next_send)
                    await stream.send_all(MESSAGE)
                    got = 0
                    while got < len(MESSAGE):
                        data = await stream.receive_some(4096)
                        if not data:
                            return
                        got += len(data)
                    next_send += period

    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(256)
        for index in range(count):
            await nursery.start(one, index, limiter)
        print(f"ready {opened}", flush=True)
        nursery.start_soon(read_commands)


# ---- the lab and the browser -------------------------------------------------------------


def pin_cpus(lab_pid: int) -> dict[str, list[int]] | None:
    """Give the lab a CPU of its own, as netbench's baselines do: the lab on the last CPU,
    this process (and so the client process and the browser it starts) on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    lab_cpus, rest = {cpus[-1]}, set(cpus[:-1])
    os.sched_setaffinity(lab_pid, lab_cpus)
    for task in Path(f"/proc/{lab_pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), lab_cpus)
    os.sched_setaffinity(0, rest)
    return {"lab": sorted(lab_cpus), "clients_and_browser": sorted(rest)}


def api(web_port: int, token: str, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def feed_counters(page: Any) -> tuple[float, int, int]:
    """The page's clock (s), and the WebSocket bytes and messages it has received so far.

    Counted by the page itself (app's feed counts every frame's length; the JSON is ASCII),
    so the figure is what reached the browser, timed by the browser.
    """
    now, size, count = page.evaluate(
        "[performance.now() / 1000, window.socketlab.feed.bytes, window.socketlab.feed.messages]"
    )
    return float(now), int(size), int(count)


def feed_rate(before: tuple[float, int, int], after: tuple[float, int, int]) -> dict[str, float]:
    seconds = after[0] - before[0]
    return {
        "bytes_per_s": round((after[1] - before[1]) / seconds, 1),
        "messages_per_s": round((after[2] - before[2]) / seconds, 2),
        "seconds": round(seconds, 2),
    }


# Records the time of the last `input` event of the address filter, in the page's clock.
INSTALL_INPUT_CLOCK = """() => {
  window.__lastInput = 0;
  document.querySelector('#f-q').addEventListener('input', () => {
    window.__lastInput = performance.now();
  });
}"""
RENDERED_FOR = """([q, after]) => {
  const c = window.socketlab.connections;
  return c.view.q === q && c.timing.rendered.seq > after && c.timing.rendered.seq === c.view.seq;
}"""


def measure_filter(page: Any, query: str, *, typed: bool) -> dict[str, Any]:
    """Type (or paste) ``query`` into the address filter; time input → table rendered."""
    before = page.evaluate("window.socketlab.connections.view.seq")
    page.click("#f-q")
    if page.input_value("#f-q"):
        page.fill("#f-q", "")
        page.wait_for_function(RENDERED_FOR, arg=["", before], timeout=10_000)
    before = page.evaluate("window.socketlab.connections.view.seq")
    if typed:
        page.type("#f-q", query, delay=60)
    else:
        page.fill("#f-q", query)
    page.wait_for_function(RENDERED_FOR, arg=[query, before], timeout=10_000)
    result = page.evaluate(
        """() => ({
          ms: window.socketlab.connections.timing.rendered.at - window.__lastInput,
          matched: window.socketlab.connections.info().matched,
          rows: document.querySelectorAll('#conn-table tbody tr').length,
        })"""
    )
    return {"query": query, "typed": typed, **result}


def measure_click(page: Any, selector: str) -> dict[str, Any]:
    """Click a sort header or pager button; time click → table rendered for the new view."""
    before = page.evaluate("window.socketlab.connections.view.seq")
    start = page.evaluate("performance.now()")
    page.click(selector)
    page.wait_for_function(
        """(after) => {
          const c = window.socketlab.connections;
          return c.timing.rendered.seq > after && c.timing.rendered.seq === c.view.seq;
        }""",
        arg=before,
        timeout=10_000,
    )
    ms = page.evaluate("window.socketlab.connections.timing.rendered.at") - start
    return {"action": selector, "ms": ms}


def interactions(page: Any, ports: list[int]) -> dict[str, Any]:
    probes = [
        measure_filter(page, f"127.0.0.1:{ports[len(ports) // 2]}", typed=True),
        measure_filter(page, str(ports[len(ports) // 3]), typed=False),
        measure_filter(page, "127.0.0.1:4", typed=False),
        measure_filter(page, "10.9.9.9", typed=False),
        measure_filter(page, f"127.0.0.1:{ports[-1]}", typed=False),
    ]
    before = page.evaluate("window.socketlab.connections.view.seq")
    page.fill("#f-q", "")
    page.wait_for_function(RENDERED_FOR, arg=["", before], timeout=10_000)
    clicks = [
        measure_click(page, "#conn-table th[data-sort=remote] button"),
        measure_click(page, "#pg-next"),
        measure_click(page, "#pg-last"),
        measure_click(page, "#pg-first"),
        measure_click(page, "#conn-table th[data-sort=bytes_in] button"),
    ]
    every = [p["ms"] for p in probes] + [c["ms"] for c in clicks]
    return {
        "filters": probes,
        "clicks": clicks,
        "median_ms": round(statistics.median(every), 1),
        "max_ms": round(max(every), 1),
    }


def remote_ports(web_port: int, token: str, count: int) -> list[int]:
    ports: list[int] = []
    offset = 0
    while offset < count:
        page = api(web_port, token, f"/api/connections?offset={offset}&limit=5000")
        ports += [int(item["remote"].rsplit(":", 1)[1]) for item in page["items"]]
        if not page["items"]:
            break
        offset += len(page["items"])
    return ports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument(
        "--rates",
        default="0,0.2,1",
        help="phases: messages per second per connection, comma-separated (0 is idle)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the lab to the last CPU and the clients and browser to the others",
    )
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = raise_nofile(args.connections + 512)
    if args.clients:
        import trio

        trio.run(run_clients, args.port, args.connections)
        return 0

    from tests.browser import chromium_page
    from tests.helpers import start_served_lab

    token = "bench-dashboard-10k-token"
    data = Path(tempfile.mkdtemp(prefix="socketlab-bench-"))
    listen = "tcp://127.0.0.1:0?mode=echo&max_connections=100000&idle_timeout=86400"
    lab = start_served_lab(data, "--listen", listen, token=token)
    pinned = pin_cpus(lab.process.pid) if not args.no_pin else None
    clients: subprocess.Popen[str] | None = None
    results: dict[str, Any] = {
        "connections": args.connections,
        "nofile_limit": limit,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "phases": [],
        "pinned": pinned,
    }
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    try:
        started = time.monotonic()
        clients = subprocess.Popen(
            [sys.executable, __file__, "--clients", "--port", str(lab.listeners["tcp"]),
             "--connections", str(args.connections)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert clients.stdout is not None
        line = clients.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"the clients did not connect: {line!r}")
        while api(lab.web_port, token, "/api/connections?limit=1")["total"] < (args.connections):
            time.sleep(0.1)
        results["connect_s"] = round(time.monotonic() - started, 2)
        ports = remote_ports(lab.web_port, token, args.connections)
        print(f"{args.connections} connections open in {results['connect_s']} s")

        with chromium_page(1280, 800) as page:
            page.goto(lab.login_url)
            for rate in rates:
                assert clients.stdin is not None
                clients.stdin.write(f"{rate}\n")
                clients.stdin.flush()
                result = measure_phase(page, lab, token, rate, args, ports)
                results["phases"].append(result)
                print(
                    f"{result['phase']}: WebSocket {result['ws']['bytes_per_s'] / 1000:.1f}"
                    f" kB/s ({result['ws']['messages_per_s']} messages/s); table updated after"
                    f" input in median {result['interactions']['median_ms']} ms, max"
                    f" {result['interactions']['max_ms']} ms; lab CPU {result['lab_cpu_pct']} %,"
                    f" event-loop lag mean {result['loop_lag_ms']} ms; echoed"
                    f" {result['echo_msgs_per_s']:.0f} msg/s; load average"
                    f" {result['loadavg'][0]:.1f} on {os.cpu_count()} CPUs"
                )
                page.screenshot(path=str(data / f"dashboard-10k-{rate:g}.png"))
    finally:
        if clients is not None:
            if clients.stdin is not None:
                clients.stdin.close()
            clients.terminate()
            clients.wait(10)
        lab.stop()
    for result in results["phases"]:
        result["within_budget"] = (
            result["ws"]["bytes_per_s"] <= WS_BUDGET_BYTES_PER_S
            and result["interactions"]["max_ms"] < FILTER_BUDGET_MS
        )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dashboard_10k-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    verdicts = ", ".join(f"{r['phase']}: {r['within_budget']}" for r in results["phases"])
    print(f"within budget (<= 200 kB/s, < 500 ms) -- {verdicts}; details in {path}")
    return 0 if all(r["within_budget"] for r in results["phases"]) else 1


def loop_lag(web_port: int, token: str) -> tuple[float, float]:
    """The lab's event-loop lag histogram: (sum of lags in s, number of samples)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return 0.0, 0.0
    values = {}
    for line in text.splitlines():
        for name in (
            "socketlab_event_loop_lag_seconds_sum",
            "socketlab_event_loop_lag_seconds_count",
        ):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return (
        values.get("socketlab_event_loop_lag_seconds_sum", 0.0),
        values.get("socketlab_event_loop_lag_seconds_count", 0.0),
    )


def measure_phase(
    page: Any, lab: Any, token: str, rate: float, args: argparse.Namespace, ports: list[int]
) -> dict[str, Any]:
    """One steady state: WebSocket rate, lab CPU and lag over the window, then interactions."""
    # Each phase starts from a fresh page on its default view: the first 100 rows in
    # opening order, each of which changes whenever its connection sends.
    page.goto(f"http://127.0.0.1:{lab.web_port}/#connections")
    page.wait_for_selector("#status:text('live')", timeout=20_000)
    page.wait_for_function(
        f"window.socketlab.connections.info().total >= {args.connections}", timeout=30_000
    )
    page.evaluate(INSTALL_INPUT_CLOCK)
    page.wait_for_timeout(3000)  # let the phase settle: steady state, not its start

    def sample() -> tuple[float, float, tuple[float, int, int], tuple[float, float], int]:
        listener = api(lab.web_port, token, "/api/listeners")["items"][0]
        return (
            cpu_seconds(lab.process.pid),
            time.monotonic(),
            feed_counters(page),
            loop_lag(lab.web_port, token),
            int(listener["msgs_in"]),
        )

    cpu0, t0, feed0, lag0, msgs0 = sample()
    page.wait_for_timeout(args.window * 1000)
    cpu1, t1, feed1, lag1, msgs1 = sample()
    lags = lag1[1] - lag0[1]
    return {
        "phase": f"{rate:g} msg/s per connection",
        "rate_per_connection": rate,
        "loadavg": os.getloadavg(),
        "ws": feed_rate(feed0, feed1),
        "lab_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "loop_lag_ms": round(1000 * (lag1[0] - lag0[0]) / lags, 2) if lags else None,
        "echo_msgs_per_s": (msgs1 - msgs0) / (t1 - t0),
        "interactions": interactions(page, ports),
    }


if __name__ == "__main__":
    raise SystemExit(main())
