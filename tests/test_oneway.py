"""One-way runs: at a peer's sink (both ends side by side), and warm-up left out at a sink
by every pattern that writes probe headers (pingpong, TCP bulk)."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import trio

from app.endpoint import Endpoint
from app.lab import Lab
from app.listeners.base import Listener
from app.listeners.parse import parse_listener
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import http, wait_for
from tests.test_openapi import openapi, response_validator


async def start_sink(lab: Lab, url: str) -> Listener:
    return await lab.listeners.start(parse_listener(url))


async def run_to_end(lab: Lab, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(30):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished", doc
    summary: dict[str, Any] = doc["summary"]
    return run.id, summary


async def peer_knows_sink(hub: Lab, sink: Listener) -> None:
    """Wait until the hub's poll of its peer shows the sink (a run then expects no replies)."""
    assert hub.peers is not None
    peers = hub.peers
    endpoint = Endpoint.parse(f"udp://127.0.0.1:{sink.port}", field="target")
    await wait_for(lambda: peers.sink_at(endpoint) is not None, timeout=10)


async def test_a_run_at_a_peers_sink_shows_what_the_peer_counted(hub_lab: Lab, edge: Lab) -> None:
    sink = await start_sink(edge, "udp://127.0.0.1:0?mode=sink")
    await peer_knows_sink(hub_lab, sink)
    spec = {
        "target": f"udp://127.0.0.1:{sink.port}",
        "pattern": "rate",
        "rate": 2000,
        "count": 200,
        "size": 100,
    }
    run_id, summary = await run_to_end(hub_lab, spec)
    # No replies were expected: the sending end claims no loss.
    assert (summary["sent"], summary["received"], summary["lost"]) == (200, 0, None)
    remote = summary["remote"]
    assert remote is not None, summary["remote_error"]
    assert summary["remote_error"] is None
    # What the peer's sink counted, equal to its listener's own counters.
    assert (sink.msgs_in, sink.bytes_in) == (200, 200 * 100)
    assert remote["received"] == sink.msgs_in == remote["sent"]
    assert (remote["lost"], remote["duplicates"], remote["reordered"]) == (0, 0, 0)
    # The same figures as the peer's API gives for the run's tag.
    tag = f"{zlib.crc32(run_id.encode()):08x}"
    assert edge.web_port is not None
    answer = await http(edge.web_port, "GET", f"/api/listeners/{sink.id}/probes/{tag}")
    assert answer.status == 200
    assert answer.json()["received"] == remote["received"]


async def test_a_peer_that_cannot_tell_leaves_remote_null_with_a_reason(
    hub_lab: Lab, edge: Lab
) -> None:
    sink = await start_sink(edge, "udp://127.0.0.1:0?mode=sink")
    await peer_knows_sink(hub_lab, sink)
    assert hub_lab.peers is not None
    # The peer refuses what the hub asks from now on (a token it does not know).
    hub_lab.peers.states["127.0.0.1"].config.token = "not-the-peers-token"
    spec = {"target": f"udp://127.0.0.1:{sink.port}", "pattern": "rate", "rate": 1000, "count": 50}
    _, summary = await run_to_end(hub_lab, spec)
    assert summary["sent"] == 50
    await wait_for(lambda: sink.msgs_in == 50)
    assert summary["lost"] is None and summary["remote"] is None
    assert summary["remote_error"].startswith("peer 127.0.0.1: GET /api/listeners/")


async def test_the_probe_route_answers_for_sinks_only_as_documented(lab: Lab) -> None:
    port = lab.web_port
    assert port is not None
    doc = await openapi(lab)
    path = "/api/listeners/{listener_id}/probes/{run_tag}"
    sink = await start_sink(lab, "udp://127.0.0.1:0?mode=sink")
    zeros = await http(port, "GET", f"/api/listeners/{sink.id}/probes/0000abcd")
    assert zeros.status == 200
    response_validator(doc, path, "get", 200).validate(zeros.json())
    assert (zeros.json()["received"], zeros.json()["lost"]) == (0, 0)
    tcp = await start_sink(lab, "tcp://127.0.0.1:0?mode=sink")
    unframed = await http(port, "GET", f"/api/listeners/{tcp.id}/probes/0000abcd")
    response_validator(doc, path, "get", 200).validate(unframed.json())
    assert unframed.json() == {
        "framed": False,
        "rx_bytes": 0,
        "rx_seconds": 0.0,
        "rx_bits_per_s": None,
        "rx_series": [],
    }
    echo = next(item for item in lab.listeners if item.port == listener_port(lab, "udp"))
    not_a_sink = await http(port, "GET", f"/api/listeners/{echo.id}/probes/0000abcd")
    assert not_a_sink.status == 404
    response_validator(doc, path, "get", 404).validate(not_a_sink.json())
    assert (await http(port, "GET", f"/api/listeners/{sink.id}/probes/xyz")).status == 422


async def test_tcp_bulk_warmup_is_left_out_at_the_sink(lab: Lab) -> None:
    sink = await start_sink(lab, "tcp://127.0.0.1:0?mode=sink&message_size=64")
    spec = {
        "target": f"tcp://127.0.0.1:{sink.port}",
        "pattern": "bulk",
        "size": 64,
        "warmup": 0.1,
        "duration": 0.1,
    }
    _, summary = await run_to_end(lab, spec)
    probe = sink.to_dict()["probe"]
    warmup = probe["warmup"]
    assert warmup > 0 and summary["sent"] > 0
    remote = summary["remote"]
    # The sink counted what was sent after the warm-up, and nothing else.
    assert remote["received"] == summary["sent"] == sink.msgs_in - warmup
    assert (remote["lost"], remote["duplicates"], remote["reordered"]) == (0, 0, 0)
    assert sink.bytes_in == 64 * (summary["sent"] + warmup)
    assert summary["bytes_sent"] == 64 * summary["sent"]


async def test_udp_pingpong_warmup_is_left_out_at_the_sink(lab: Lab) -> None:
    sink = await start_sink(lab, "udp://127.0.0.1:0?mode=sink")
    spec = {
        "target": f"udp://127.0.0.1:{sink.port}",
        "pattern": "pingpong",
        "in_flight": 16,
        "timeout": 0.05,
        "warmup": 0.1,
        "duration": 0.1,
    }
    _, summary = await run_to_end(lab, spec)
    warmup = sink.to_dict()["probe"]["warmup"]
    assert warmup > 0 and summary["sent"] > 0
    # Pingpong awaits its replies, but a sink answers none: the sender claims no loss.
    assert summary["lost"] is None
    remote = summary["remote"]
    # Counted datagrams are numbered from 0 after the warm-up: no gap, no false loss.
    assert remote["received"] == summary["sent"] == sink.msgs_in - warmup
    assert (remote["lost"], remote["duplicates"], remote["reordered"]) == (0, 0, 0)
    runs = sink.to_dict()["probe"]["runs"]
    assert [figures["lost"] for figures in runs.values()] == [0]


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_pingpong_with_warmup_still_matches_every_reply(lab: Lab, protocol: str) -> None:
    spec = {
        "target": f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}",
        "pattern": "pingpong",
        "in_flight": 4,
        "connections": 2,
        "warmup": 0.05,
        "duration": 0.1,
    }
    _, summary = await run_to_end(lab, spec)
    assert summary["sent"] > 0
    assert summary["received"] == summary["sent"]
    assert (summary["lost"], summary["late"], summary["duplicates"]) == (0, 0, 0)
