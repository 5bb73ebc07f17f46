"""``socketlab fire --both`` on a lossy path: TCP retransmits and loses nothing, UDP loses
its share, for 1 % and 20 % kernel loss (5 % is the dashboard's case,
tests/test_browser_compare.py).

Everything runs inside a network namespace of the test's own, so the nftables rules of
``kernel_loss`` never touch the host's ruleset. One ``socketlab listen`` serves TCP and UDP
echo on the same port number, both dropping N % of the packets they receive, and a lossless
TCP echo beside them; ``fire --both`` runs 1,000 msg/s for 10 s over TCP and UDP at once,
while a plain TCP run at the lossless listener sees the same machine load. The latency tail
is printed, never asserted (p99 against the lossless p99 is a bench figure:
bench/kernelloss.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns import namespace, needs_netns

pytestmark = needs_netns

ROOT = Path(__file__).resolve().parent.parent
LOSSY, CLEAN = 9000, 9001  # inside the test's own namespace: nothing else listens there
# TCP delivers every message, late: at 20 % loss the kernel's retransmission backoff can
# hold a segment for seconds on a loaded machine, so the replies get a generous timeout.
LOAD = ("--pattern", "rate", "--rate", "1000", "--duration", "10", "--timeout", "10")
START_TIMEOUT = 30.0


@pytest.fixture
def netns() -> Iterator[str]:
    with namespace("slcmp") as name:
        yield name


def socketlab(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def listening(process: subprocess.Popen[str], count: int) -> None:
    assert process.stdout is not None
    seen = 0
    deadline = time.monotonic() + START_TIMEOUT
    while seen < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line.startswith("listening ")
    if seen < count:
        process.kill()
        process.wait()
        raise AssertionError("socketlab listen did not bind its listeners")


def document(process: subprocess.Popen[str]) -> Any:
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0, out
    return json.loads(out)


@pytest.mark.parametrize("loss", [1, 20])
def test_fire_both_on_a_lossy_path_tcp_retransmits_and_udp_loses_its_share(
    netns: str, loss: int
) -> None:
    lossy = f"?mode=echo&kernel_loss={loss}"
    lab = socketlab(
        netns,
        "listen",
        f"tcp://127.0.0.1:{LOSSY}{lossy}",
        f"udp://127.0.0.1:{LOSSY}{lossy}",
        f"tcp://127.0.0.1:{CLEAN}?mode=echo",
    )
    try:
        listening(lab, 3)
        both = socketlab(netns, "fire", f"127.0.0.1:{LOSSY}", "--both", *LOAD, "--json")
        clean = socketlab(netns, "fire", f"tcp://127.0.0.1:{CLEAN}", *LOAD, "--json")
        doc, lossless = document(both), document(clean)["summary"]
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.communicate(timeout=60)

    assert doc["status"] == "finished"
    assert doc["transports"] == ["tcp", "udp"]
    tcp, udp = doc["runs"]["tcp"]["summary"], doc["runs"]["udp"]["summary"]
    assert doc["runs"]["tcp"]["spec"]["target"] == f"tcp://127.0.0.1:{LOSSY}"
    assert doc["runs"]["udp"]["spec"]["target"] == f"udp://127.0.0.1:{LOSSY}"
    # TCP: every message delivered, late, because the kernel retransmitted.
    assert tcp["sent"] == tcp["received"] == 10_000 and tcp["lost"] == 0
    assert tcp["tcp"]["retransmits"] > 0
    # UDP: with inbound drops only, each dropped request is a lost round trip.
    assert udp["sent"] == 10_000
    assert loss - 1 <= udp["loss_pct"] <= loss + 1
    ratio = tcp["rtt_ms"]["p99"] / lossless["rtt_ms"]["p99"]
    print(
        f"\n{loss} %: tcp p99 {tcp['rtt_ms']['p99']:.3f} ms (lossless "
        f"{lossless['rtt_ms']['p99']:.3f} ms, x{ratio:.1f})"
        f" p99.9 {tcp['rtt_ms']['p999']:.3f} ms max {tcp['rtt_ms']['max']:.3f} ms, "
        f"retransmits {tcp['tcp']['retransmits']}; udp loss {udp['loss_pct']} % "
        f"jitter {udp['jitter_ms']:.3f} ms"
    )
