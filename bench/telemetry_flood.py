"""A flood of telemetry lines into one collector: every line accounted for, and ``/api/health``
latency meanwhile.

Usage::

    python -m bench.telemetry_flood statsd [--rate 100000] [--duration 10] [--transport udp]
    python -m bench.telemetry_flood influx|graphite|syslog ...

One ``socketlab serve`` (a child process, pinned to the server CPU when ``taskset`` is
there) runs a collector listener of that protocol; this process sends ``--rate`` lines per
second for ``--duration`` seconds (paced on an absolute schedule, several lines per datagram
where the protocol allows: syslog over UDP is one message per datagram, RFC 5426), one line
in ``--bad-every`` malformed on purpose, while ``bench/health_probe.py`` asks
``GET /api/health`` every 20 ms. When the collector's counts stop moving it prints:

- lines sent, received (parsed), bad, dropped by the kernel and dropped from the parse
  backlog (datagram drops times the lines per datagram), and whether they add up to what
  was sent (``accounted: yes``);
- the ``/api/health`` p50/p99/max during the flood (the target: p99 under 100 ms), and
  during the two seconds before it (what the machine gives without the flood).

Not a test: throughput on a shared, loaded machine says little; the accounting must hold
whatever the machine. A protocol whose mode this build does not have is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TOKEN = "flood-bench-token"
HEALTH_INTERVAL = 0.02
# Seconds of /api/health before the flood: the machine's own baseline, printed beside it.
IDLE_WINDOW = 2.0
SERVER_CPU, LOAD_CPU = "1", "0"

_DASHBOARD = re.compile(r"dashboard: http://[^\s]+?:(\d+)/")
_LISTENER = re.compile(r"(tcp|udp)://127\.0\.0\.1:(\d+)\?mode=(\w+)")


def statsd_line(i: int) -> bytes:
    return b"flood.k%d:1|c" % (i % 100)


def influx_line(i: int) -> bytes:
    return b"flood,host=h%d value=%di,ok=true,load=0.5 %d" % (i % 100, i, 1_800_000_000 + i)


def graphite_line(i: int) -> bytes:
    return b"flood.k%d %d %d" % (i % 100, i, 1_800_000_000)


def syslog_line(i: int) -> bytes:
    return b"<134>1 2027-01-15T08:00:00Z host%d flood %d - - message %d" % (i % 10, i % 1000, i)


# Each protocol: a good line, a malformed one, and how many lines one UDP datagram carries.
PROTOCOLS: dict[str, tuple[Callable[[int], bytes], bytes, int]] = {
    "statsd": (statsd_line, b"flood.bad:notanumber|c", 20),
    "influx": (influx_line, b"flood,host=h without_fields", 10),
    "graphite": (graphite_line, b"flood.bad notanumber 1800000000", 20),
    "syslog": (syslog_line, b"<999>not syslog", 1),
}


def _pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


def start_lab(data_dir: Path, url: str) -> tuple[subprocess.Popen[str], int, int]:
    """``socketlab serve`` with one listener ``url``: (process, web port, listener port)."""
    argv = [sys.executable, "-m", "app.cli", "serve", "--web", "127.0.0.1:0"]
    argv += ["--data", str(data_dir), "--token", TOKEN, "--listen", url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        _pinned(SERVER_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    assert process.stdout is not None
    port = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        for _proto, found, _mode in _LISTENER.findall(line):
            port = int(found)
        match = _DASHBOARD.search(line)
        if match and port is not None:
            return process, int(match.group(1)), port
    process.kill()
    _, err = process.communicate(timeout=10)
    raise SystemExit(f"socketlab serve did not start with {url}: {err.strip()[-400:]}")


def api(web_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def counts(web_port: int) -> dict[str, int]:
    """The collector's counts: received (parsed lines), bad, kernel and backlog drops."""
    [item] = api(web_port, "/api/telemetry")["items"]
    received = item.get("received", item.get("metrics_received", 0))
    return {
        "received": int(received or 0),
        "bad": int(item.get("bad_lines") or 0),
        "kernel_drops": int(item.get("kernel_drops") or 0),
        "backlog_drops": int(item.get("backlog_drops") or 0),
    }


def settled(web_port: int, timeout: float = 60.0) -> dict[str, int]:
    """Counts once they stop moving (what the socket buffer held is read)."""
    last: dict[str, int] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = counts(web_port)
        if now == last:
            return now
        last = now
        time.sleep(1.0)
    assert last is not None
    return last


def send(
    protocol: str, transport: str, port: int, rate: float, duration: float, bad_every: int
) -> dict[str, int]:
    """Send lines at ``rate`` for ``duration`` s; returns lines sent, bad ones, datagrams."""
    make, bad_line, per_datagram = PROTOCOLS[protocol]
    if transport == "tcp":
        per_datagram = 50  # a write of 50 lines; TCP frames by newline
    sent = bad = writes = 0
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
    else:
        sock = socket.create_connection(("127.0.0.1", port))
    try:
        t0 = time.perf_counter()
        end = t0 + duration
        while (now := time.perf_counter()) < end:
            # Every write due by now, in one tight loop (a clock read per write would cap a
            # one-message-per-datagram protocol, syslog over UDP, well below the rate).
            due = int((now - t0) * rate) - sent
            if due < per_datagram:
                time.sleep(min((per_datagram - due) / rate, 0.001))
                continue
            for _ in range(due // per_datagram):
                lines = []
                bad_here = 0
                for i in range(sent, sent + per_datagram):
                    if bad_every and i % bad_every == bad_every - 1:
                        lines.append(bad_line)
                        bad_here += 1
                    else:
                        lines.append(make(i))
                data = b"\n".join(lines)
                try:
                    if transport == "udp":
                        sock.send(data)
                    else:
                        sock.sendall(data + b"\n")
                except OSError:
                    break  # a send the kernel refused is not sent: not counted, retried
                sent += per_datagram
                bad += bad_here
                writes += 1
    finally:
        sock.close()
    return {"sent": sent, "bad_sent": bad, "writes": writes, "lines_per_write": per_datagram}


def health(samples: list[list[float]], t_from: float, t_to: float) -> dict[str, Any]:
    inside = sorted(1000 * s[1] for s in samples if t_from <= s[0] <= t_to and s[2] == 200)
    failed = sum(1 for s in samples if t_from <= s[0] <= t_to and s[2] != 200)

    def pct(p: float) -> float | None:
        return inside[int(p / 100 * (len(inside) - 1))] if inside else None

    return {"requests": len(inside) + failed, "failed": failed, "p50_ms": pct(50),
            "p99_ms": pct(99), "max_ms": inside[-1] if inside else None}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("protocol", choices=sorted(PROTOCOLS))
    parser.add_argument("--rate", type=float, default=100_000, help="lines per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--bad-every", type=int, default=1000, help="one bad line in N (0: none)")
    args = parser.parse_args()
    options = "rcvbuf=8388608&" if args.transport == "udp" else ""
    options += "flush_interval=1&" if args.protocol == "statsd" else ""
    url = f"{args.transport}://127.0.0.1:0?{options}mode={args.protocol}"
    with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
        lab, web_port, port = start_lab(Path(tmp) / "data", url)
        probe = None
        try:
            probe_argv = [sys.executable, str(BENCH / "health_probe.py"), "--port", str(web_port)]
            probe_argv += ["--interval", str(HEALTH_INTERVAL)]
            probe = subprocess.Popen(_pinned(LOAD_CPU, probe_argv), stdout=subprocess.PIPE)
            idle_from = time.time() + 0.5  # the probe's first request is made before this
            time.sleep(IDLE_WINDOW + 0.5)
            idle_to = t0 = time.time()
            sent = send(
                args.protocol, args.transport, port, args.rate, args.duration, args.bad_every
            )
            t1 = time.time()
            got = settled(web_port)
            probe.send_signal(signal.SIGINT)
            out, _ = probe.communicate(timeout=30)
            samples = json.loads(out)["samples"]
        finally:
            if probe is not None and probe.poll() is None:
                probe.kill()
                probe.wait()
            lab.send_signal(signal.SIGTERM)
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
    per_write = sent["lines_per_write"] if args.transport == "udp" else 0
    dropped = (got["kernel_drops"] + got["backlog_drops"]) * per_write
    accounted = got["received"] + got["bad"] + dropped
    figures = health(samples, t0, t1)
    idle = health(samples, idle_from, idle_to)
    achieved = sent["sent"] / max(t1 - t0, 1e-9)
    print(f"telemetry flood: {args.protocol} over {args.transport}, {args.duration:g} s")
    print(f"  lines sent       {sent['sent']:>12,}  ({achieved:,.0f}/s; {sent['bad_sent']:,} bad)")
    print(f"  received         {got['received']:>12,}")
    print(f"  bad              {got['bad']:>12,}")
    print(f"  kernel drops     {got['kernel_drops'] * per_write:>12,}  lines")
    print(f"  backlog drops    {got['backlog_drops'] * per_write:>12,}  lines")
    print(f"  accounted: {'yes' if accounted == sent['sent'] else 'NO'} ({accounted:,})")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    p99 = figures["p99_ms"]
    verdict = "pass" if p99 is not None and p99 < 100 else "FAIL"
    print(
        f"  /api/health      p50 {ms(figures['p50_ms'])}  p99 {ms(p99)}  max "
        f"{ms(figures['max_ms'])}  ({figures['requests']} requests, {figures['failed']} "
        f"failed): p99 < 100 ms {verdict}"
    )
    print(
        f"  (before the flood: p50 {ms(idle['p50_ms'])}  p99 {ms(idle['p99_ms'])}, the "
        "machine's own baseline)"
    )
    return 0 if accounted == sent["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
