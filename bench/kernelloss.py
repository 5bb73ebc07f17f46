"""TCP vs UDP on a lossy path: the figures of issue 16's first must-show, measured.

In a network namespace of its own (nothing on the host's ruleset is touched), one
``socketlab listen`` serves three echo listeners: TCP and UDP with ``kernel_loss=N`` on the
packets they receive, and a lossless TCP one. For each N, one run after another (never two
at once, so one does not load the other): ``socketlab fire --pattern rate --rate 1000
--duration 10`` at the lossless TCP listener, at the lossy TCP one, and at the lossy UDP one.
It prints one JSON line per N: TCP messages lost, TCP p99 lossy and lossless and their
ratio, UDP round-trip loss, and the packets the kernel dropped (nft's counters).

    sudo python bench/kernelloss.py                 # 5 %
    sudo python bench/kernelloss.py --loss 1 5 20 --rate 1000 --duration 10
    sudo python bench/kernelloss.py --both          # TCP and UDP at once: fire --both

With ``--both`` the lossy TCP and UDP listeners share one port number and are measured at
once by ``socketlab fire HOST:PORT --both`` (the compare-transports action), after the
lossless run; the figures printed are the same.

Targets (issue 16): TCP loses 0 messages with p99 >= 10 x the lossless p99; UDP loses
N % +- 1 %. Needs root, ``ip`` and ``nft``. Other load on the machine inflates the lossless
p99 most (it is the smallest figure), so the ratio is only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def ns_cmd(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def fire(ns: str, url: str, rate: int, duration: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "app.cli", "fire", url, "--pattern", "rate"]
    command += ["--rate", str(rate), "--duration", str(duration), "--json"]
    done = subprocess.run(
        ns_cmd(ns, *command), cwd=ROOT, capture_output=True, text=True, timeout=duration + 120
    )
    return dict(json.loads(done.stdout)["summary"])


def fire_both(ns: str, port: int, rate: int, duration: float) -> tuple[dict[str, Any], ...]:
    """TCP's and UDP's summaries of one ``fire --both`` at ``127.0.0.1:port``."""
    command = [sys.executable, "-m", "app.cli", "fire", f"127.0.0.1:{port}", "--both"]
    command += ["--pattern", "rate", "--rate", str(rate), "--duration", str(duration), "--json"]
    done = subprocess.run(
        ns_cmd(ns, *command), cwd=ROOT, capture_output=True, text=True, timeout=duration + 120
    )
    runs = json.loads(done.stdout)["runs"]
    return runs["tcp"]["summary"], runs["udp"]["summary"]


# With --both: the lossy TCP and UDP listeners' one port number, in the bench's namespace.
BOTH_PORT = 9000


def dropped(ns: str) -> dict[str, int]:
    done = subprocess.run(
        ns_cmd(ns, "nft", "-j", "list", "table", "inet", "socketlab"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    out: dict[str, int] = {}
    for item in json.loads(done.stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            out[rule["chain"]] = next(
                e["counter"]["packets"] for e in rule["expr"] if "counter" in e
            )
    return out


def measure(ns: str, loss: float, rate: int, duration: float, both: bool) -> dict[str, Any]:
    port = BOTH_PORT if both else 0
    urls = [
        f"tcp://127.0.0.1:{port}?mode=echo&kernel_loss={loss:g}",
        f"udp://127.0.0.1:{port}?mode=echo&kernel_loss={loss:g}",
        "tcp://127.0.0.1:0?mode=echo",
    ]
    lab = subprocess.Popen(
        ns_cmd(ns, sys.executable, "-m", "app.cli", "listen", *urls),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert lab.stdout is not None
    ports: list[int] = []
    while len(ports) < 3:
        line = lab.stdout.readline()
        if not line:
            raise SystemExit("socketlab listen did not start")
        ports.append(int(line.split("://127.0.0.1:")[1].split("?")[0]))
    try:
        clean = fire(ns, f"tcp://127.0.0.1:{ports[2]}", rate, duration)
        if both:
            tcp, udp = fire_both(ns, BOTH_PORT, rate, duration)
        else:
            tcp = fire(ns, f"tcp://127.0.0.1:{ports[0]}", rate, duration)
            udp = fire(ns, f"udp://127.0.0.1:{ports[1]}", rate, duration)
        kernel = dropped(ns)
    finally:
        lab.terminate()
        lab.communicate(timeout=60)
    return {
        "kernel_loss_pct": loss,
        "mode": "both" if both else "one after another",
        "tcp_sent": tcp["sent"],
        "tcp_lost": tcp["lost"],
        "tcp_p99_ms": tcp["rtt_ms"]["p99"],
        "tcp_lossless_p99_ms": clean["rtt_ms"]["p99"],
        "tcp_p99_ratio": round(tcp["rtt_ms"]["p99"] / clean["rtt_ms"]["p99"], 1),
        "tcp_p999_ms": tcp["rtt_ms"]["p999"],
        "tcp_max_ms": tcp["rtt_ms"]["max"],
        "tcp_retransmits": (tcp.get("tcp") or {}).get("retransmits"),
        "udp_sent": udp["sent"],
        "udp_lost": udp["lost"],
        "udp_loss_pct": udp["loss_pct"],
        "kernel_dropped": kernel,
        "lossless_loop_lag_p99_ms": clean["bottleneck"]["loop_lag_ms_p99"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", type=float, nargs="+", default=[5.0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--both", action="store_true", help="TCP and UDP at once on one port (fire --both)"
    )
    args = parser.parse_args()
    ns = f"slbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(ns_cmd(ns, "ip", "link", "set", "lo", "up"), check=True)
        for loss in args.loss:
            print(json.dumps(measure(ns, loss, args.rate, args.duration, args.both)), flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
