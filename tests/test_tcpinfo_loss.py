"""Real TCP retransmits, counted: a run through a path where the kernel drops 5 % of the
segments the listener receives, in a network namespace of the test's own.

The namespace has its own loopback and its own (empty) nftables ruleset, so the drop rule
touches nothing of the host's. The outside truth is the namespace's own kernel counter of
retransmitted segments (``nstat TcpRetransSegs``): the run's count is what its connections
retransmitted, so it is above 0 and at most the namespace's total (the listener's
connections retransmit too, when a dropped ACK leaves a reply unacknowledged long enough).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from app import tcpinfo
from tests.netns import namespace

NEEDS = [shutil.which(tool) for tool in ("ip", "nft", "nstat")]
pytestmark = pytest.mark.skipif(
    tcpinfo.TCP_INFO is None or os.geteuid() != 0 or None in NEEDS,
    reason="needs Linux TCP_INFO, root, and the ip, nft and nstat commands",
)
PORT = 9000  # inside the test's own namespace: nothing else listens there


def in_netns(name: str, *command: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *command],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        **options,
    )


@pytest.fixture
def lossy_netns() -> Iterator[str]:
    """A namespace whose loopback drops 5 % of the TCP segments sent to port 9000."""
    with namespace("sltcpi") as name:
        in_netns(name, "nft", "add", "table", "inet", "loss")
        in_netns(
            name, "nft", "add", "chain", "inet", "loss", "input",
            "{ type filter hook input priority 0 ; }",
        )  # fmt: skip
        in_netns(
            name, "nft", "add", "rule", "inet", "loss", "input", "iif", "lo",
            "tcp", "dport", str(PORT), "numgen", "random", "mod", "100", "<", "5", "drop",
        )  # fmt: skip
        yield name


def retransmitted_segments(name: str) -> int:
    out = in_netns(name, "nstat", "-az", "TcpRetransSegs").stdout
    line = next(line for line in out.splitlines() if line.startswith("TcpRetransSegs"))
    return int(line.split()[1])


def test_a_run_through_a_lossy_path_counts_the_kernels_retransmits_per_second(
    lossy_netns: str,
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    listener = subprocess.Popen(
        ["ip", "netns", "exec", lossy_netns, sys.executable, "-m", "app.cli", "listen",
         f"tcp://127.0.0.1:{PORT}?mode=echo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert listener.stdout is not None
        assert f":{PORT}" in listener.stdout.readline()  # listening
        before = retransmitted_segments(lossy_netns)
        fired = in_netns(
            lossy_netns, sys.executable, "-m", "app.cli", "fire", f"tcp://127.0.0.1:{PORT}",
            "--pattern", "rate", "--rate", "500", "--duration", "3", "--connections", "2",
            "--json", env=env,
        )  # fmt: skip
        after = retransmitted_segments(lossy_netns)
    finally:
        listener.terminate()
        listener.communicate(timeout=30)
    doc = json.loads(fired.stdout)
    summary = doc["summary"]
    # TCP delivered everything, late: nothing lost, and the kernel retransmitted.
    assert summary["lost"] == 0 and summary["received"] == summary["sent"] > 0
    tcp = summary["tcp"]
    assert tcp["reason"] is None and tcp["sampled"] == 2
    assert 0 < tcp["retransmits"] <= after - before
    assert tcp["bytes_retrans"] > 0
    # Per second: the intervals add up to the run's count.
    per_second = [point["retransmits"] for point in doc["series"]]
    assert sum(per_second) == tcp["retransmits"]
    assert max(per_second) > 0
