"""The live feed: auth on the handshake, a full state first, then diffs."""

from __future__ import annotations

import pytest
import trio

from app.hub import Hub
from app.lab import Lab
from tests.conftest import listener_port
from tests.helpers import http, read_ndjson, websocket_handshake


async def test_websocket_without_token_is_refused_without_upgrade(lab: Lab) -> None:
    assert lab.web_port is not None
    with trio.fail_after(5):
        status, client, stream = await websocket_handshake(lab.web_port, token=None)
        async with stream:
            assert status == 401
            assert client is None


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost.evil.test"])
async def test_websocket_from_a_foreign_origin_is_refused(lab: Lab, origin: str) -> None:
    assert lab.web_port is not None
    with trio.fail_after(5):
        status, client, stream = await websocket_handshake(lab.web_port, origin=origin)
        async with stream:
            assert status == 403
            assert client is None


async def test_feed_sends_full_state_then_pages_with_a_new_connection(lab: Lab) -> None:
    assert lab.web_port is not None
    with trio.fail_after(10):
        status, client, stream = await websocket_handshake(
            lab.web_port, origin=f"http://127.0.0.1:{lab.web_port}"
        )
        async with stream:
            assert status == 101
            assert client is not None
            full = await client.receive_json()
            assert full["type"] == "full"
            assert {item["protocol"] for item in full["listeners"]} == {"tcp", "udp"}
            async with await trio.open_tcp_stream("127.0.0.1", listener_port(lab, "tcp")) as tcp:
                remote = f"127.0.0.1:{tcp.socket.getsockname()[1]}"
                while True:
                    message = await client.receive_json()
                    if message["type"] != "conns":
                        continue
                    rows = [
                        dict(zip(message["cols"], r, strict=True)) for r in message.get("rows", [])
                    ]
                    added = next((r for r in rows if r["remote"] == remote), None)
                    if added is not None:
                        break
            assert added["id"] in message["ids"]
            while True:
                message = await client.receive_json()
                if message["type"] == "conns" and added["id"] not in message.get(
                    "ids", [added["id"]]
                ):
                    break
            assert message["matched"] == message["total"] == 0


async def test_hub_drops_for_a_slow_subscriber_and_asks_it_to_resync() -> None:
    hub = Hub()
    async with hub.subscribe(max_buffer=2) as slow, hub.subscribe(max_buffer=100) as fast:
        for i in range(10):
            hub.publish(str(i))
        assert slow.dropped == 8
        assert slow.resync is True
        assert fast.dropped == 0
        assert [fast.receive_channel.receive_nowait() for _ in range(10)] == [
            str(i) for i in range(10)
        ]
        assert slow.drain_nowait() == 2
    assert hub.subscriber_count == 0


async def test_a_run_end_reaches_the_websocket_as_the_same_event_the_stream_gets(
    lab: Lab,
) -> None:
    assert lab.web_port is not None
    port = lab.web_port
    spec = {"target": f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}", "count": 20}
    with trio.fail_after(20):
        status, client, stream = await websocket_handshake(port)
        async with stream:
            assert (status, client is not None) == (101, True)
            assert client is not None
            assert (await client.receive_json())["type"] == "full"
            run_id = (await http(port, "POST", "/api/runs", body=spec)).json()["id"]
            while True:
                message = await client.receive_json()
                if message["type"] == "run.ended" and message["run_id"] == run_id:
                    break
        # The stream of a run that is over answers with its end from the store at once.
        streamed = await read_ndjson(port, f"/api/events?run={run_id}")
    assert message["status"] == "finished"
    assert message["summary"]["received"] == 20
    assert streamed == [message]
