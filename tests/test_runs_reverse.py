"""Reverse and bidirectional runs against a socketlab source: what arrived equals what the
source counted, on this node, on a peer, and through the impairing relay."""

from __future__ import annotations

import json
import sys
import zlib
from functools import partial
from typing import Any

import pytest
import trio

from app.endpoint import Endpoint
from app.errors import SpecError
from app.lab import Lab
from app.listeners.modes.source import SourceMode
from app.listeners.parse import parse_listener
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import http, wait_for
from tests.relay import RCVBUF, Impairment, RelayLog, serve_udp_relay

LOADS: dict[str, dict[str, Any]] = {
    "bulk-tcp": {"pattern": "bulk", "count": 2000, "size": 1024},
    "bulk-udp": {"pattern": "bulk", "count": 300, "rate": 3000, "size": 512},
    "rate": {"pattern": "rate", "rate": 2000, "count": 200, "size": 64},
    "burst": {"pattern": "burst", "burst": 25, "interval": 0.05, "count": 200, "size": 100},
}


async def source_port(lab: Lab, protocol: str, query: str = "") -> int:
    listener = await lab.listeners.start(
        parse_listener(f"{protocol}://127.0.0.1:0?mode=source{query}")
    )
    return listener.port


async def finish(lab: Lab, spec: dict[str, Any]) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(60):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished", doc
    summary: dict[str, Any] = doc["summary"]
    return summary


def _load(name: str, protocol: str) -> dict[str, Any]:
    if name.startswith("bulk"):
        return LOADS["bulk-udp" if protocol == "udp" else "bulk-tcp"]
    return LOADS[name]


@pytest.mark.parametrize("protocol", ["tcp", "udp", "tls"])
@pytest.mark.parametrize("load", ["bulk", "rate", "burst"])
async def test_reverse_run_receives_what_the_source_counted(
    lab: Lab, protocol: str, load: str
) -> None:
    spec = _load(load, protocol)
    framing = f"&message_size={spec['size']}" if protocol != "udp" else ""
    port = await source_port(lab, protocol, framing)
    summary = await finish(
        lab,
        {"target": f"{protocol}://127.0.0.1:{port}", "reverse": True, **_trust(protocol), **spec},
    )
    reverse = summary["reverse"]
    source = reverse["source"]
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["sent"] == 0
    # The source's own count (read from its listener, as a peer would be asked).
    assert source["tx_messages"] == spec["count"]
    assert reverse["received"] == source["tx_messages"]
    assert reverse["rx_bytes"] == source["tx_bytes"] == spec["count"] * spec["size"]
    assert reverse["lost"] == 0 and reverse["duplicates"] == 0
    assert summary["received"] == reverse["received"]
    assert summary["bytes_received"] == reverse["rx_bytes"]


def _trust(protocol: str) -> dict[str, bool]:
    # The lab's own TLS source has a self-signed certificate; insecure is TLS's only.
    return {"insecure": True} if protocol == "tls" else {}


@pytest.mark.parametrize("protocol", ["tcp", "udp", "tls"])
@pytest.mark.parametrize("load", ["bulk", "rate", "burst"])
async def test_bidir_run_counts_both_directions(lab: Lab, protocol: str, load: str) -> None:
    spec = _load(load, protocol)
    framing = f"&message_size={spec['size']}" if protocol != "udp" else ""
    port = await source_port(lab, protocol, framing)
    summary = await finish(
        lab,
        {
            "target": f"{protocol}://127.0.0.1:{port}",
            "bidir": True,
            "connections": 2,
            **_trust(protocol),
            **spec,
        },
    )
    assert summary["errors"] == 0, summary["error_samples"]
    # Forward: what the source received as a sink equals what this end sent.
    remote = summary["remote"]
    assert summary["sent"] == spec["count"]
    assert (remote["received"], remote["lost"]) == (summary["sent"], 0)
    assert remote["rx_bytes"] == summary["bytes_sent"]
    # Reverse: what this end received equals what the source sent.
    reverse = summary["reverse"]
    assert reverse["source"]["tx_messages"] == spec["count"]
    assert reverse["received"] == reverse["source"]["tx_messages"]
    assert reverse["rx_bytes"] == reverse["source"]["tx_bytes"]
    assert summary["received"] == spec["count"]


async def test_reverse_at_a_listener_that_does_not_send_is_refused(lab: Lab) -> None:
    listener = await lab.listeners.start(parse_listener("udp://127.0.0.1:0?mode=sink"))
    spec = {"target": f"udp://127.0.0.1:{listener.port}", "reverse": True, **LOADS["rate"]}
    with pytest.raises(SpecError) as caught:
        await lab.runs.start(parse_run_spec(spec))
    assert caught.value.field == "reverse"
    assert "mode=source" in caught.value.message


async def test_reverse_udp_loss_through_the_relay_equals_its_log(
    lab: Lab, nursery: trio.Nursery
) -> None:
    log = RelayLog()
    upstream = await source_port(lab, "udp", f"&rcvbuf={RCVBUF}")
    relay = await nursery.start(
        partial(serve_udp_relay, replies=True),
        ("127.0.0.1", upstream),
        Impairment(loss=5, seed=105),
        log,
    )
    count = 400
    summary = await finish(
        lab,
        {
            "target": f"udp://127.0.0.1:{relay}",
            "pattern": "rate",
            "rate": 2000,
            "count": count,
            "connections": 2,
            "reverse": True,
            "timeout": 0.5,
        },
    )
    await wait_for(lambda: len(log.counted()) == count)
    dropped = log.count("dropped")
    assert dropped > 0
    reverse = summary["reverse"]
    # Behind the relay the lab cannot see its source: the requested count is the truth.
    assert reverse["source"] is None and reverse["sent"] == count
    assert reverse["lost"] == dropped
    assert reverse["received"] == count - dropped


async def peer_knows(hub: Lab, protocol: str, port: int) -> None:
    """Wait until the hub's poll of its peer shows the source."""
    peers = hub.peers
    assert peers is not None
    endpoint = Endpoint.parse(f"{protocol}://127.0.0.1:{port}", field="target")
    await wait_for(lambda: peers.mode_at(endpoint) == "source", timeout=10)


@pytest.mark.parametrize("direction", ["reverse", "bidir"])
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_a_run_at_a_peers_source_gets_the_peers_count(
    hub_lab: Lab, edge: Lab, protocol: str, direction: str
) -> None:
    spec = LOADS["rate"]
    framing = f"&message_size={spec['size']}" if protocol != "udp" else ""
    port = await source_port(edge, protocol, framing)
    await peer_knows(hub_lab, protocol, port)
    summary = await finish(
        hub_lab, {"target": f"{protocol}://127.0.0.1:{port}", direction: True, **spec}
    )
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["remote_error"] is None
    source = next(item for item in edge.listeners if item.port == port)
    mode = source.mode
    assert isinstance(mode, SourceMode)
    # The peer's own counters: what it sent is what arrived here, and the figures the
    # run got over the peer's API say the same.
    sent = sum(item.messages for item in mode.sent.values())
    sent_bytes = sum(item.bytes for item in mode.sent.values())
    reverse = summary["reverse"]
    assert sent == spec["count"]
    assert reverse["source"]["tx_messages"] == sent == reverse["received"]
    assert reverse["rx_bytes"] == sent_bytes == reverse["source"]["tx_bytes"]
    assert reverse["lost"] == 0
    if direction == "bidir":
        remote = summary["remote"]
        assert (remote["received"], remote["lost"]) == (summary["sent"], 0)
        assert summary["sent"] == spec["count"]


@pytest.mark.parametrize("direction", ["--reverse", "--bidir"])
async def test_fire_reverse_and_bidir_from_the_command_line(lab: Lab, direction: str) -> None:
    port = await source_port(lab, "udp")
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            f"udp://127.0.0.1:{port}",
            "--pattern",
            "rate",
            "--rate",
            "2000",
            "--count",
            "200",
            direction,
            "--json",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    summary = doc["summary"]
    source = next(item for item in lab.listeners if item.port == port)
    figures = source.receiving_end(zlib.crc32(doc["id"].encode()))
    assert figures is not None
    # What the source counted, read from it, equals what the command line received.
    assert figures["tx_messages"] == summary["reverse"]["received"] == 200
    assert figures["tx_bytes"] == summary["reverse"]["rx_bytes"]
    if direction == "--bidir":
        assert figures["received"] == summary["sent"] == 200
        assert figures["rx_bytes"] == summary["bytes_sent"]
    table = await trio.run_process(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            f"udp://127.0.0.1:{port}",
            "--pattern",
            "rate",
            "--rate",
            "2000",
            "--count",
            "100",
            direction,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert b"reverse: received 100 of 100 sent" in table.stdout, table.stdout


def test_reverse_is_refused_for_patterns_that_do_not_send_many() -> None:
    for pattern in ("pingpong", "packet"):
        with pytest.raises(SpecError) as caught:
            parse_run_spec({"target": "tcp://127.0.0.1:9", "pattern": pattern, "reverse": True})
        assert caught.value.field == "reverse"
        assert "rate, bulk and burst" in caught.value.message


async def test_the_api_refuses_reverse_at_a_listener_that_does_not_send(lab: Lab) -> None:
    port = listener_port(lab, "tcp")  # an echo listener of the lab
    assert lab.web_port is not None
    body = {"target": f"tcp://127.0.0.1:{port}", "pattern": "bulk", "bidir": True, "count": 5}
    answer = await http(lab.web_port, "POST", "/api/runs", body=body)
    assert answer.status == 422
    assert answer.json()["field"] == "bidir"
    assert "mode=source" in answer.json()["error"]


async def test_an_echo_server_the_lab_does_not_know_is_told_from_a_source(
    lab: Lab, nursery: trio.Nursery
) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    doc_run = await lab.runs.start(
        parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "reverse": True, **LOADS["rate"]})
    )
    with trio.fail_after(30):
        await doc_run.done.wait()
    summary = (await lab.runs.get(doc_run.id))["summary"]
    assert summary["errors_by_kind"] == {"other": 1}
    assert "not a socketlab source" in summary["error_samples"]["other"][0]
    assert summary["reverse"]["received"] == 0


async def test_a_reverse_run_leaves_the_sources_warm_up_out(lab: Lab) -> None:
    port = await source_port(lab, "udp")
    spec = {"pattern": "rate", "rate": 1000, "duration": 0.3, "warmup": 0.1, "size": 64}
    summary = await finish(lab, {"target": f"udp://127.0.0.1:{port}", "reverse": True, **spec})
    reverse = summary["reverse"]
    source = reverse["source"]
    assert source["tx_warmup"] > 0 and source["tx_messages"] > 0
    # Counted at both ends alike: the warm-up is in neither figure.
    assert reverse["received"] == source["tx_messages"] == summary["received"]
    assert reverse["lost"] == 0
