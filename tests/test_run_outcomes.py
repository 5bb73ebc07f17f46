"""How runs end against real targets: a closed UDP port fails like a TCP refusal, a target
that goes away mid-run is a failure with its real error kind, a TLS handshake says why it
failed, and a finished run's UDP flows leave the lab's listener at once.

The truth here is outside the run's code: a port the test closed, a listener the test
stops, the lab's own self-signed TLS listener, the registry rows of the listener that
served the run.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.listeners.base import Listener
from app.listeners.parse import parse_listener
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import http, wait_for

# Every pattern that sends many messages, as a body (the target added per test).
LOAD_PATTERNS: dict[str, dict[str, Any]] = {
    "pingpong": {"count": 5},
    "rate": {"pattern": "rate", "rate": 50, "count": 5},
    "burst": {"pattern": "burst", "burst": 5, "interval": 0.1, "count": 5},
    "bulk": {"pattern": "bulk", "rate": 50, "count": 5},
}
# What a target that went away may leave behind; never "internal" (a bug).
GONE_KINDS = {"reset", "closed", "refused", "unreachable"}


def closed_port(kind: int) -> int:
    """A port nothing listens on: bound by the test, then closed."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_to_end(lab: Lab, body: dict[str, Any]) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(body))
    with trio.fail_after(30):
        await run.done.wait()
    doc: dict[str, Any] = await lab.runs.get(run.id)
    stored = await lab.store.get_run(run.id)
    assert stored is not None and stored["status"] == doc["status"]
    return doc


@pytest.mark.parametrize("pattern", list(LOAD_PATTERNS))
async def test_udp_to_a_closed_port_fails_like_a_tcp_refusal(lab: Lab, pattern: str) -> None:
    body = {**LOAD_PATTERNS[pattern], "timeout": 0.3}
    udp_target = f"udp://127.0.0.1:{closed_port(socket.SOCK_DGRAM)}"
    udp = await run_to_end(lab, {"target": udp_target, **body})
    # A TCP bulk run goes as fast as it can: no rate.
    tcp_body = {k: v for k, v in body.items() if not (pattern == "bulk" and k == "rate")}
    tcp = await run_to_end(
        lab, {"target": f"tcp://127.0.0.1:{closed_port(socket.SOCK_STREAM)}", **tcp_body}
    )
    assert tcp["status"] == udp["status"] == "failed"
    assert udp["error"] is not None and udp["error"].startswith("nothing got through; errors: ")
    assert tcp["error"] is not None and tcp["error"].startswith("nothing got through; errors: ")
    assert set(udp["summary"]["errors_by_kind"]) == {"unreachable"}
    assert udp["summary"]["received"] == 0
    assert udp["summary"]["error_samples"]["unreachable"] == [
        "ICMP port unreachable: nothing listens at the target's port"
    ]


async def _stop_mid_run(lab: Lab, url: str, body: dict[str, Any]) -> dict[str, Any]:
    listener = await lab.listeners.start(parse_listener(url, "url"))
    target = f"{listener.spec.protocol}://127.0.0.1:{listener.port}"
    run = await lab.runs.start(parse_run_spec({"target": target, **body}))
    with trio.fail_after(30):
        # Something went both ways: the target was there when the run began.
        await wait_for(lambda: run.stats.received > 0 or run.stats.bytes_received > 0, 20)
        await lab.listeners.stop(listener.id)
        await run.done.wait()
    doc: dict[str, Any] = await lab.runs.get(run.id)
    return doc


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("tcp://127.0.0.1:0?mode=echo", {"duration": 20}),
        ("tcp://127.0.0.1:0?mode=echo", {"pattern": "rate", "rate": 200, "duration": 20}),
        ("tcp://127.0.0.1:0?mode=echo", {"pattern": "bulk", "duration": 20}),
        (
            "tls://127.0.0.1:0?mode=echo",
            {"pattern": "rate", "rate": 200, "duration": 20, "insecure": True},
        ),
        ("tls://127.0.0.1:0?mode=echo", {"duration": 20, "insecure": True}),
        ("udp://127.0.0.1:0?mode=echo", {"pattern": "rate", "rate": 200, "duration": 3}),
    ],
    ids=["tcp-pingpong", "tcp-rate", "tcp-bulk", "tls-rate", "tls-pingpong", "udp-rate"],
)
async def test_a_target_that_goes_away_fails_the_run_with_its_real_error_kind(
    lab: Lab, url: str, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        doc = await _stop_mid_run(lab, url, body)
    kinds = set(doc["summary"]["errors_by_kind"])
    assert kinds and kinds <= GONE_KINDS, doc["summary"]["errors_by_kind"]
    assert doc["status"] == "failed"
    assert doc["error"].startswith("the target went away: errors: ")
    # A reset seen by a flow is counted, not logged as a bug with a traceback.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def _reset_after_sending(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"x" * 1000 + b"\n")
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize(
    "url", ["tcp://127.0.0.1:0?mode=echo&delay=5ms", "tcp://127.0.0.1:0?mode=echo"]
)
async def test_a_client_reset_on_a_listener_is_counted_quietly(
    lab: Lab, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await lab.listeners.start(parse_listener(url, "url"))
    with caplog.at_level(logging.DEBUG, logger="app.listeners"), trio.fail_after(20):
        for _ in range(5):
            await trio.to_thread.run_sync(_reset_after_sending, listener.port)
        await wait_for(lambda: listener.errors == 5 and listener.connections == 0, 15)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []
    assert listener.errors == 5


def _listener_rows(lab: Lab, listener: Listener) -> list[str]:
    return [row.id for row in lab.registry if row.listener_id == listener.id]


@pytest.mark.parametrize(
    "body",
    [
        {"count": 30, "connections": 3},
        {"pattern": "rate", "rate": 100, "count": 20, "connections": 4},
        {"pattern": "packet", "payload": {"kind": "text", "text": "hi"}},
    ],
)
async def test_a_finished_runs_udp_flows_leave_the_open_connections_when_it_ends(
    lab: Lab, body: dict[str, Any]
) -> None:
    udp = next(item for item in lab.listeners if item.spec.protocol == "udp")
    port = listener_port(lab, "udp")
    run = await lab.runs.start(parse_run_spec({"target": f"udp://127.0.0.1:{port}", **body}))
    with trio.fail_after(20):
        # While it runs, the listener serves its flows (the idle timeout is 300 s).
        await wait_for(lambda: _listener_rows(lab, udp) or run.done.is_set(), 15)
        await run.done.wait()
    assert run.status == "finished"
    assert udp.accepted >= 1
    assert _listener_rows(lab, udp) == []
    assert udp.connections == 0
    # What the dashboard's "Open connections" shows: the API's total of rows.
    assert lab.web_port is not None
    page = (await http(lab.web_port, "GET", "/api/connections")).json()
    assert page["total"] == len(lab.registry) == 0


async def _tls_listener(lab: Lab) -> Listener:
    return await lab.listeners.start(parse_listener("tls://127.0.0.1:0?mode=echo", "url"))


async def test_a_tls_run_at_the_labs_own_listener_says_why_and_goes_with_insecure(
    lab: Lab,
) -> None:
    listener = await _tls_listener(lab)
    target = f"tls://127.0.0.1:{listener.port}"
    refused = await run_to_end(lab, {"target": target, "count": 3})
    assert refused["status"] == "failed"
    assert refused["summary"]["errors_by_kind"] == {"tls": 1}
    (sample,) = refused["summary"]["error_samples"]["tls"]
    assert sample.startswith("certificate verify failed: self-signed certificate")
    assert "insecure" in sample  # what to do about it
    assert sample in refused["error"]
    accepted = await run_to_end(lab, {"target": target, "count": 3, "insecure": True})
    assert accepted["status"] == "finished"
    assert accepted["summary"]["received"] == 3
    assert accepted["summary"]["errors_by_kind"] == {}


async def test_the_packet_tool_at_the_labs_own_tls_listener_says_why_and_goes_with_insecure(
    lab: Lab,
) -> None:
    listener = await _tls_listener(lab)
    assert lab.web_port is not None
    body = {"target": f"tls://127.0.0.1:{listener.port}", "payload": "hello"}
    refused = (await http(lab.web_port, "POST", "/api/send", body=body)).json()
    assert refused["status"] == "failed"
    assert refused["reply"] is None
    assert "self-signed certificate" in refused["error"]
    accepted = (
        await http(lab.web_port, "POST", "/api/send", body={**body, "insecure": True})
    ).json()
    assert accepted["status"] == "finished"
    assert accepted["reply"]["text"] == "hello"


@pytest.mark.parametrize("target", ["tcp://127.0.0.1:9", "udp://127.0.0.1:9"])
async def test_insecure_is_refused_for_a_target_without_a_certificate(
    lab: Lab, target: str
) -> None:
    assert lab.web_port is not None
    run = await http(lab.web_port, "POST", "/api/runs", body={"target": target, "insecure": True})
    assert (run.status, run.json()["field"]) == (422, "insecure")
    send = await http(
        lab.web_port,
        "POST",
        "/api/send",
        body={"target": target, "payload": "x", "insecure": True},
    )
    assert (send.status, send.json()["field"]) == (422, "insecure")
    assert await lab.runs.list() == []
