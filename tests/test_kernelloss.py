"""kernel_loss against the real kernel: refusals without CAP_NET_ADMIN or nft, and inside a
network namespace of the test's own, real drops, real retransmissions and clean-up.

The lossy-path tests never touch the host's ruleset: the lab and its clients run in a fresh
namespace (``ip netns exec``), which is deleted afterwards with everything in it. The
refusal tests take CAP_NET_ADMIN away from a child (its bounding set, before exec) or
give it a PATH without ``nft``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import api_call, start_served_lab
from tests.netns import in_ns, namespace, needs_netns

ROOT = Path(__file__).resolve().parent.parent
PR_CAPBSET_DROP = 24
CAP_NET_ADMIN = 12
# Generous: a loaded 2-CPU machine may take seconds to start a Python process.
START_TIMEOUT = 30.0


def drop_net_admin() -> None:
    """In the child before exec: without CAP_NET_ADMIN in the bounding set, the program
    exec'd runs as uid 0 without it (a root in a container without NET_ADMIN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def path_without_nft(tmp_path: Path) -> str:
    """A PATH holding this Python but no nft."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


def socketlab(
    *args: str, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **popen,
    )


def test_cli_without_net_admin_refuses_kernel_loss_in_one_line() -> None:
    done = socketlab(
        "listen", "tcp://127.0.0.1:0?mode=echo&kernel_loss=5", preexec_fn=drop_net_admin
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "kernel_loss needs root (CAP_NET_ADMIN)" in done.stderr
    assert "listening" not in done.stdout


def test_cli_without_nft_refuses_kernel_loss_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without_nft(tmp_path)}
    done = socketlab("listen", "udp://127.0.0.1:0?mode=echo&kernel_loss=5", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "kernel_loss needs the nft command (Debian package nftables)" in done.stderr


def _refusal(tmp_path: Path, **popen: Any) -> tuple[int, dict[str, Any]]:
    served = start_served_lab(tmp_path / "data", **popen)
    try:
        body = {"url": "tcp://127.0.0.1:0?mode=echo", "kernel_loss": 5}
        with pytest.raises(urllib.error.HTTPError) as caught:
            api_call(served, "POST", "/api/listeners", body)
        answer = json.loads(caught.value.read())
        listeners = api_call(served, "GET", "/api/listeners")["items"]
        assert all("kernel_loss" not in item["options"] for item in listeners)
        return caught.value.code, answer
    finally:
        served.stop()
        served.close_stdout()


def test_api_without_net_admin_answers_422_with_the_reason(tmp_path: Path) -> None:
    code, answer = _refusal(tmp_path, preexec_fn=drop_net_admin)
    assert code == 422
    assert answer["field"] == "kernel_loss"
    assert answer["error"].startswith("kernel_loss needs root (CAP_NET_ADMIN)")


def test_api_without_nft_answers_422_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without_nft(tmp_path), "PYTHONUNBUFFERED": "1"}
    code, answer = _refusal(tmp_path, env=env)
    assert code == 422
    assert answer == {
        "error": "kernel_loss needs the nft command (Debian package nftables), and none is on PATH",
        "field": "kernel_loss",
    }


# ------------------------------------------------------------ inside a network namespace


@pytest.fixture
def netns() -> Iterator[str]:
    with namespace("slkl") as name:
        yield name


def nft_table(ns: str) -> list[dict[str, Any]]:
    """What nft lists of table inet socketlab in ``ns`` ([] when there is no table)."""
    done = subprocess.run(
        in_ns(ns, "nft", "-j", "list", "table", "inet", "socketlab"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        return []
    return [item for item in json.loads(done.stdout)["nftables"] if "metainfo" not in item]


def chains(ns: str) -> list[str]:
    return [item["chain"]["name"] for item in nft_table(ns) if "chain" in item]


def drops(ns: str, way: str = "in") -> dict[int, int]:
    """Packets dropped so far by the rules for direction ``way``, by the port they match
    (the destination port for ``in``, the source port for ``out``)."""
    field = "dport" if way == "in" else "sport"
    out: dict[int, int] = {}
    for item in nft_table(ns):
        rule = item.get("rule")
        if rule is None:
            continue
        for expr in rule["expr"]:
            left = expr.get("match", {}).get("left", {})
            if left.get("payload", {}).get("field") == field:
                out[expr["match"]["right"]] = next(
                    e["counter"]["packets"] for e in rule["expr"] if "counter" in e
                )
    return out


def start_listeners(ns: str, *urls: str) -> tuple[subprocess.Popen[str], list[int]]:
    """``socketlab listen URL... --json`` in ``ns``; returns once every listener is bound."""
    process = subprocess.Popen(
        in_ns(ns, sys.executable, "-m", "app.cli", "listen", *urls, "--json"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ports: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT
    while len(ports) < len(urls) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("listening "):
            ports.append(int(line.split("://127.0.0.1:")[1].split("?")[0]))
    if len(ports) < len(urls):
        process.kill()
        process.wait()
        raise AssertionError("socketlab listen did not bind its listeners")
    return process, ports


def fire(ns: str, url: str, *load: str) -> subprocess.Popen[str]:
    """A rate run (by default 1,000 msg/s for 10 s), from a process in ``ns``."""
    return subprocess.Popen(
        in_ns(
            ns,
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            url,
            "--pattern",
            "rate",
            *(load or ("--rate", "1000", "--duration", "10")),
            "--json",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=120)
    doc = json.loads(out)
    assert doc["status"] == "finished", doc
    return dict(doc["summary"])


@needs_netns
def test_five_percent_inbound_loss_tcp_retransmits_everything_udp_loses_its_share(
    netns: str,
) -> None:
    lab, (tcp_lossy, udp_lossy, tcp_clean) = start_listeners(
        netns,
        "tcp://127.0.0.1:0?mode=echo&kernel_loss=5",
        "udp://127.0.0.1:0?mode=echo&kernel_loss=5",
        "tcp://127.0.0.1:0?mode=echo",
    )
    try:
        assert len(chains(netns)) == 2
        assert set(drops(netns)) == {tcp_lossy, udp_lossy}
        # The three runs at once: the lossless one sees the same machine load.
        runs = [
            fire(netns, f"tcp://127.0.0.1:{tcp_lossy}"),
            fire(netns, f"udp://127.0.0.1:{udp_lossy}"),
            fire(netns, f"tcp://127.0.0.1:{tcp_clean}"),
        ]
        lossy, udp, clean = (summary(run) for run in runs)
        dropped = drops(netns)
    finally:
        lab.send_signal(signal.SIGTERM)
        out, _ = lab.communicate(timeout=60)
    assert lab.returncode == 0

    # TCP: the kernel dropped segments, and TCP delivered every message anyway, late.
    assert dropped[tcp_lossy] > 0
    assert lossy["sent"] == lossy["received"] == 10_000 and lossy["lost"] == 0
    assert clean["sent"] == clean["received"] == 10_000
    print(f"tcp p99 lossy {lossy['rtt_ms']['p99']} ms, lossless {clean['rtt_ms']['p99']} ms")
    assert lossy["rtt_ms"]["p99"] > clean["rtt_ms"]["p99"]

    # UDP: with inbound drops only, each dropped request is a lost round trip.
    assert udp["sent"] == 10_000
    assert 4.0 <= udp["loss_pct"] <= 6.0
    assert udp["lost"] >= dropped[udp_lossy] > 0

    # The listeners' documents report what the kernel counted; their chains are gone.
    docs = {doc["port"]: doc for doc in json.loads(out[out.index("[") :])}
    assert docs[udp_lossy]["kernel_loss"]["dropped"] == {"in": dropped[udp_lossy]}
    assert docs[tcp_lossy]["kernel_loss"]["dropped"]["in"] >= dropped[tcp_lossy]
    assert "kernel_loss" not in docs[tcp_clean]
    assert chains(netns) == []


@needs_netns
def test_both_directions_lose_requests_and_replies(netns: str) -> None:
    lab, (port,) = start_listeners(
        netns, "udp://127.0.0.1:0?mode=echo&kernel_loss=20&kernel_loss_direction=both"
    )
    try:
        run = summary(fire(netns, f"udp://127.0.0.1:{port}", "--rate", "1000", "--count", "3000"))
        requests, replies = drops(netns, "in")[port], drops(netns, "out")[port]
    finally:
        lab.send_signal(signal.SIGTERM)
        out, _ = lab.communicate(timeout=60)
    # A message is lost once: its request, or else its reply (1 - 0.8 ** 2 = 36 %).
    assert requests > 0 and replies > 0
    assert run["lost"] >= requests + replies
    assert 32.0 <= run["loss_pct"] <= 40.0
    doc = json.loads(out[out.index("[") :])[0]
    assert doc["kernel_loss"]["dropped"] == {"in": requests, "out": replies}
    assert doc["kernel_loss"]["direction"] == "both"


@needs_netns
def test_chains_left_by_a_crashed_lab_are_removed_at_the_next_start(netns: str) -> None:
    crashed, (port,) = start_listeners(netns, "udp://127.0.0.1:0?mode=echo&kernel_loss=20")
    assert drops(netns) == {port: 0}
    crashed.kill()
    crashed.communicate(timeout=30)
    assert len(chains(netns)) == 1  # nobody removed it: SIGKILL

    # A lab without any kernel loss cleans up before its listeners serve.
    after, (new_port,) = start_listeners(netns, f"udp://127.0.0.1:{port}?mode=echo")
    try:
        assert new_port == port
        assert chains(netns) == []
    finally:
        after.send_signal(signal.SIGTERM)
        after.communicate(timeout=60)
