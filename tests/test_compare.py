"""Compare transports: one load over TCP and UDP at once, through the API and the CLI.

The lab's own echo listeners, TCP and UDP on the same port number, are the targets; the
outside truth for each side is the run's own document (``GET /api/runs/{run_id}``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs.compare import fire_both_in_process, format_side_by_side, transport_specs
from tests.conftest import running_lab
from tests.helpers import http, wait_for_async

ROOT = Path(__file__).resolve().parent.parent
LOAD = {"pattern": "rate", "rate": 200, "count": 100, "size": 64}


def port_of(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def echo_pair(lab: Lab) -> int:
    """A TCP and a UDP echo listener on the same port number; returns the port."""
    for _ in range(5):
        tcp = await http(
            port_of(lab), "POST", "/api/listeners", body={"url": "tcp://127.0.0.1:0?mode=echo"}
        )
        assert tcp.status == 201, tcp.body
        port = int(tcp.json()["port"])
        udp = await http(
            port_of(lab),
            "POST",
            "/api/listeners",
            body={"url": f"udp://127.0.0.1:{port}?mode=echo"},
        )
        if udp.status == 201:
            return port
        # Someone holds that UDP port: try another number.
        await http(port_of(lab), "DELETE", f"/api/listeners/{tcp.json()['id']}")
    raise AssertionError("no port number free for both TCP and UDP")


async def ended(lab: Lab, compare_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        answer = await http(port_of(lab), "GET", f"/api/compare/{compare_id}")
        assert answer.status == 200, answer.body
        doc: dict[str, Any] = answer.json()
        return doc if doc["status"] != "running" else None

    doc: dict[str, Any] = await wait_for_async(done, timeout=60)
    return doc


async def test_compare_runs_one_load_over_tcp_and_udp_linked_by_one_id(lab: Lab) -> None:
    port = await echo_pair(lab)
    created = await http(
        port_of(lab), "POST", "/api/compare", body={"target": f"127.0.0.1:{port}", **LOAD}
    )
    assert created.status == 201, created.body
    ref = created.json()
    assert set(ref["runs"]) == {"tcp", "udp"}

    doc = await ended(lab, ref["id"])
    assert doc["status"] == "finished"
    assert doc["transports"] == ["tcp", "udp"]
    for transport, run_id in ref["runs"].items():
        side = doc["runs"][transport]
        assert side["id"] == run_id
        assert side["spec"]["target"] == f"{transport}://127.0.0.1:{port}"
        assert side["spec"]["rate"] == 200 and side["spec"]["count"] == 100
        assert side["labels"] == [f"compare-{ref['id']}"]
        assert "series" not in side
        # The side is the run's own document: the same summary GET /api/runs gives.
        run = (await http(port_of(lab), "GET", f"/api/runs/{run_id}")).json()
        assert side["summary"] == run["summary"]
        assert run["summary"]["sent"] == run["summary"]["received"] == 100
    # TCP has the kernel's figures, UDP has none (and a jitter).
    assert doc["runs"]["tcp"]["summary"]["tcp"]["retransmits"] is not None
    assert doc["runs"]["udp"]["summary"]["tcp"] is None
    assert doc["runs"]["udp"]["summary"]["jitter_ms"] is not None

    # The runs are in the history, found by the comparison's label.
    found = await http(port_of(lab), "GET", f"/api/runs?label=compare-{ref['id']}")
    assert sorted(item["id"] for item in found.json()["items"]) == sorted(ref["runs"].values())


async def test_a_scheme_on_the_target_is_replaced_and_one_transport_is_allowed(lab: Lab) -> None:
    port = await echo_pair(lab)
    body = {"target": f"udp://127.0.0.1:{port}", "transports": ["tcp"], **LOAD}
    created = await http(port_of(lab), "POST", "/api/compare", body=body)
    assert created.status == 201, created.body
    doc = await ended(lab, created.json()["id"])
    assert doc["transports"] == ["tcp"]
    assert doc["runs"]["tcp"]["spec"]["target"] == f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "127.0.0.1:9", "pattern": "packet"}, "pattern"),
        ({"target": "127.0.0.1:9", "pattern": "scenario"}, "pattern"),
        ({"target": "tls://127.0.0.1:9"}, "target"),
        ({"target": "127.0.0.1"}, "target"),
        ({"target": 9}, "target"),
        ({}, "target"),
        ({"target": "127.0.0.1:9", "transports": ["sctp"]}, "transports.0"),
        ({"target": "127.0.0.1:9", "transports": []}, "transports"),
        # A field one transport refuses is refused for the comparison (UDP's largest datagram).
        ({"target": "127.0.0.1:9", "size": 70_000}, "size"),
        ({"target": "127.0.0.1:9", "rate": 10}, "rate"),  # pingpong has no rate
    ],
)
async def test_bad_compare_bodies_are_422_naming_the_field_and_start_nothing(
    lab: Lab, body: dict[str, Any], field: str
) -> None:
    answer = await http(port_of(lab), "POST", "/api/compare", body=body)
    assert answer.status == 422, answer.body
    assert answer.json()["field"] == field
    assert (await http(port_of(lab), "GET", "/api/runs")).json()["items"] == []


async def test_a_comparison_is_all_or_nothing_under_the_concurrent_run_cap(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with running_lab(nursery, tmp_path / "data", max_concurrent_runs=1) as lab:
        port = await echo_pair(lab)
        body = {"target": f"127.0.0.1:{port}", **LOAD, "count": 100_000}
        answer = await http(port_of(lab), "POST", "/api/compare", body=body)
        assert answer.status == 409, answer.body
        # The TCP run that did start was stopped: no half comparison keeps going.
        runs = (await http(port_of(lab), "GET", "/api/runs")).json()["items"]
        assert [run["spec"]["target"] for run in runs] == [f"tcp://127.0.0.1:{port}"]

        async def stopped() -> bool:
            items = (await http(port_of(lab), "GET", "/api/runs")).json()["items"]
            return bool(items[0]["status"] == "stopped")

        await wait_for_async(stopped, timeout=30)


async def test_compare_needs_the_token_and_unknown_ids_are_404(lab: Lab) -> None:
    body = {"target": "127.0.0.1:9", **LOAD}
    assert (await http(port_of(lab), "POST", "/api/compare", body=body, token=None)).status == 401
    assert (await http(port_of(lab), "GET", "/api/compare/0123abcd", token=None)).status == 401
    for compare_id in ("0123abcd", "nope", "compare-0123abcd"):
        missing = await http(port_of(lab), "GET", f"/api/compare/{compare_id}")
        assert missing.status == 404
        assert missing.json()["field"] == "compare_id"


async def test_fire_both_prints_one_line_per_figure_side_by_side(lab: Lab) -> None:
    port = await echo_pair(lab)
    specs = transport_specs({"target": f"tcp://127.0.0.1:{port}", **LOAD})
    doc = await fire_both_in_process(specs)
    assert doc["status"] == "finished"
    runs = doc["runs"]
    text = format_side_by_side(runs)
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert lines[""].split() == ["TCP", "UDP"]
    assert lines["sent"].split()[1:] == ["100", "100"]
    assert lines["received"].split()[1:] == ["100", "100"]
    assert lines["lost"].split()[1:] == ["0", "(0.00", "%)", "0", "(0.00", "%)"]
    tcp_retransmits = runs["tcp"]["summary"]["tcp"]["retransmits"]
    assert lines["retransmits"].split()[1:] == [
        f"{tcp_retransmits:,}",
        "-",
        "(UDP",
        "does",
        "not",
        "retransmit)",
    ]
    for key, label in (("p99", "RTT p99 ms"), ("p999", "RTT p99.9 ms"), ("max", "RTT max ms")):
        shown = lines[label].split()[-2:]
        assert shown == [f"{runs[t]['summary']['rtt_ms'][key]:.3f}" for t in ("tcp", "udp")]


def test_fire_both_with_via_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            "127.0.0.1:9",
            "--both",
            "--via",
            "http://127.0.0.1:1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--both" in done.stderr


def test_fire_both_with_a_tls_target_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "fire", "tls://127.0.0.1:9", "--both"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "compare runs TCP and UDP" in done.stderr
