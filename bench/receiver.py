"""Receiver-side TCP throughput of a bulk run beside iperf3's receiver figure, on one link.

Usage: python -m bench.receiver [--rates 100mbit,1gbit] [--duration 10] [-v]

Needs root, ``ip`` and ``tc`` (iproute2) and ``iperf3``. Makes a network namespace with a
veth pair (10.77.0.1 here, 10.77.0.2 inside) and shapes this side's egress with ``tc tbf``
at each rate in turn. Inside the namespace run a socketlab sink (``socketlab serve``, its
API on 10.77.0.2) and ``iperf3 -s``. From here, for each rate: a socketlab bulk run of
``--duration`` seconds at the sink in 128 KiB writes (iperf3's), then ``iperf3 -c`` for as
long; prints the sink's ``rx_bits_per_s`` (bytes the sink received over first to last
arrival) beside iperf3's ``sum_received.bits_per_second`` and their ratio. Nothing leaves
the two ends of the veth pair; the namespace is deleted at the end. A bench figure, not a
test: it does not fail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio

from app.runs.fire import fire_in_process
from app.runs.spec import parse_run_spec
from app.wire.probe import run_tag_of

NS = "slbench-rx"
HERE, THERE = "10.77.0.1", "10.77.0.2"
VETH = "slrx0"
SINK_PORT, WEB_PORT, IPERF_PORT = 5300, 8077, 5301
TOKEN = "bench-receiver-token"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def make_link() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "slrx1")
    sh("ip", "link", "set", "slrx1", "netns", NS)
    sh("ip", "addr", "add", f"{HERE}/30", "dev", VETH)
    sh("ip", "link", "set", VETH, "up")
    inside = ("ip", "netns", "exec", NS)
    sh(*inside, "ip", "addr", "add", f"{THERE}/30", "dev", "slrx1")
    sh(*inside, "ip", "link", "set", "slrx1", "up")
    sh(*inside, "ip", "link", "set", "lo", "up")


def shape(rate: str) -> None:
    sh("tc", "qdisc", "del", "dev", VETH, "root", check=False)
    # A bucket of a few milliseconds at the rate: the link's own burst, no more.
    sh("tc", "qdisc", "add", "dev", VETH, "root", "tbf", "rate", rate, "burst", "256kb",
       "latency", "50ms")  # fmt: skip


def api(path: str) -> Any:
    request = urllib.request.Request(
        f"http://{THERE}:{WEB_PORT}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def wait_for_api(deadline: float) -> None:
    while True:
        try:
            api("/api/health")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def socketlab_bulk(duration: float, verbose: bool) -> float | None:
    spec = parse_run_spec(
        {
            "target": f"tcp://{THERE}:{SINK_PORT}",
            "pattern": "bulk",
            "duration": duration,
            "size": 131072,  # iperf3's write size for TCP
        }
    )
    doc = trio.run(fire_in_process, spec, False)
    tag = f"{run_tag_of(doc['id']):08x}"
    sink = next(item for item in api("/api/listeners")["items"] if item["port"] == SINK_PORT)
    deadline = time.monotonic() + 10
    while True:  # until the sink has every byte the run sent
        figures = api(f"/api/listeners/{sink['id']}/probes/{tag}")
        if (
            figures.get("rx_bytes", 0) >= doc["summary"]["bytes_sent"]
            or time.monotonic() > deadline
        ):
            if verbose:
                sent = doc["summary"]["bits_per_s"] or 0
                series = " ".join(f"{bits / 1e6:.1f}" for bits in figures.get("rx_series", []))
                print(f"  sender {sent / 1e6:.2f} Mbit/s; receiver per second: {series}")
            value = figures.get("rx_bits_per_s")
            return None if value is None else float(value)
        time.sleep(0.2)


def iperf3_receiver(duration: float) -> float:
    out = sh("iperf3", "-c", THERE, "-p", str(IPERF_PORT), "-t", f"{duration:g}", "-J").stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100mbit,1gbit", help="tc rates, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each run")
    parser.add_argument("-v", action="store_true", help="also the sender's rate and the series")
    args = parser.parse_args(argv)
    inside = ["ip", "netns", "exec", NS]
    make_link()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lab = [
            *inside, sys.executable, "-m", "app.cli", "serve",
            "--web", f"{THERE}:{WEB_PORT}", "--token", TOKEN,
            "--data", f"/tmp/{NS}-data", "--allow-bind", f"{THERE}/32",
            "--listen", f"tcp://{THERE}:{SINK_PORT}?mode=sink",
        ]  # fmt: skip
        root = Path(__file__).resolve().parent.parent
        procs.append(subprocess.Popen(lab, cwd=root, stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen([*inside, "iperf3", "-s", "-p", str(IPERF_PORT)],
                                      stdout=subprocess.DEVNULL))  # fmt: skip
        wait_for_api(time.monotonic() + 30)
        print(f"{'link':>8}  {'socketlab receiver':>20}  {'iperf3 receiver':>16}  ratio")
        for rate in args.rates.split(","):
            shape(rate)
            ours = socketlab_bulk(args.duration, args.v)
            theirs = iperf3_receiver(args.duration)
            ratio = "-" if ours is None else f"{ours / theirs:.3f}"
            shown = "-" if ours is None else f"{ours / 1e6:.2f} Mbit/s"
            print(f"{rate:>8}  {shown:>20}  {theirs / 1e6:>11.2f} Mbit/s  {ratio}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        sh("ip", "link", "del", VETH, check=False)
        sh("ip", "netns", "del", NS, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
