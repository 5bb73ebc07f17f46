"""The dashboard's server side: saved presets, the lab series, and a browser's page view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.web.server import serve_web
from tests.conftest import listener_port
from tests.helpers import WebSocketClient, http, lab_settings, wait_for, websocket_handshake


async def send_view(client: WebSocketClient, **view: object) -> None:
    from wsproto.events import TextMessage

    data = json.dumps({"type": "view", **view})
    await client.stream.send_all(client.ws.send(TextMessage(data=data)))


async def next_of(client: WebSocketClient, kind: str) -> Any:
    while True:
        message = await client.receive_json()
        if message["type"] == kind:
            return message


async def test_presets_are_saved_listed_replaced_and_deleted(lab: Lab) -> None:
    port = lab.web_port
    assert port is not None
    spec = {"target": "tcp://127.0.0.1:9000", "pattern": "pingpong", "connections": 4}
    created = await http(port, "POST", "/api/presets", body={"name": "four", "spec": spec})
    assert created.status == 201
    assert created.json() == {"name": "four", "spec": spec}
    spec2 = {**spec, "connections": 8, "duration": 2}
    replaced = await http(port, "POST", "/api/presets", body={"name": "four", "spec": spec2})
    assert replaced.status == 200
    listed = (await http(port, "GET", "/api/presets")).json()["items"]
    assert [(p["name"], p["spec"]) for p in listed] == [("four", spec2)]
    assert listed[0]["updated_at"] >= listed[0]["created_at"]
    assert (await http(port, "DELETE", "/api/presets/four")).status == 204
    missing = await http(port, "DELETE", "/api/presets/four")
    assert (missing.status, missing.json()["field"]) == (404, "name")
    assert (await http(port, "GET", "/api/presets")).json() == {"items": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "spec": {"target": "tcp://127.0.0.1:9"}}, "name"),
        ({"name": "a/b", "spec": {"target": "tcp://127.0.0.1:9"}}, "name"),
        ({"name": "x" * 81, "spec": {"target": "tcp://127.0.0.1:9"}}, "name"),
        ({"name": "ok"}, "spec"),
        ({"name": "ok", "spec": {"target": "ftp://127.0.0.1:9"}}, "target"),
        ({"name": "ok", "spec": {"target": "tcp://127.0.0.1:9", "size": 0}}, "size"),
        ({"name": "ok", "spec": {"target": "tcp://127.0.0.1:9"}, "extra": 1}, "extra"),
    ],
)
async def test_a_bad_preset_is_refused_naming_the_field(
    lab: Lab, body: dict[str, object], field: str
) -> None:
    assert lab.web_port is not None
    response = await http(lab.web_port, "POST", "/api/presets", body=body)
    assert response.status == 422
    assert response.json()["field"] == field
    assert (await http(lab.web_port, "GET", "/api/presets")).json() == {"items": []}


async def test_presets_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    spec = {"target": "udp://127.0.0.1:9000", "size": 100}
    for attempt in range(2):
        lab = Lab(lab_settings(tmp_path / "data"), web=serve_web)
        await nursery.start(lab.serve)
        assert lab.web_port is not None
        if attempt == 0:
            body = {"name": "udp 100", "spec": spec}
            assert (await http(lab.web_port, "POST", "/api/presets", body=body)).status == 201
        else:
            items = (await http(lab.web_port, "GET", "/api/presets")).json()["items"]
            assert [(p["name"], p["spec"]) for p in items] == [("udp 100", spec)]
        lab.request_shutdown()
        with trio.fail_after(10):
            await lab.stopped.wait()


async def test_series_has_a_point_a_second_with_the_bytes_a_client_sent(lab: Lab) -> None:
    assert lab.web_port is not None
    async with await trio.open_tcp_stream("127.0.0.1", listener_port(lab, "tcp")) as tcp:
        await tcp.send_all(b"x" * 1000)
        echoed = b""
        while len(echoed) < 1000:
            echoed += await tcp.receive_some(1000)

        def in_series() -> bool:
            points = lab.series.points()
            return bool(sum(p["bytes_in"] for p in points) > 0 and points[-1]["connections"] == 1)

        await wait_for(in_series, timeout=5)
    response = await http(lab.web_port, "GET", "/api/series?seconds=60")
    assert response.status == 200
    doc = response.json()
    assert doc["interval"] == 1.0
    tcp_id = next(item.id for item in lab.listeners if item.spec.protocol == "tcp")
    carried = sum(p["listeners"][tcp_id]["bytes_in"] for p in doc["points"])
    # A rate over a second that lasted a little more or less than one: close to, not exactly, 1000.
    assert 950 <= carried <= 1050
    times = [p["t"] for p in doc["points"]]
    assert times == sorted(times)
    bad = await http(lab.web_port, "GET", "/api/series?seconds=0")
    assert (bad.status, bad.json()["field"]) == (422, "seconds")


async def test_a_view_filters_the_page_and_the_feed_answers_with_its_seq(lab: Lab) -> None:
    assert lab.web_port is not None
    port = listener_port(lab, "tcp")
    with trio.fail_after(10):
        status, client, stream = await websocket_handshake(lab.web_port)
        async with stream:
            assert (status, client is not None) == (101, True)
            assert client is not None
            assert (await client.receive_json())["type"] == "full"
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(30)]
            try:
                remotes = [f"127.0.0.1:{s.socket.getsockname()[1]}" for s in streams]
                while (await next_of(client, "conns"))["total"] != 30:
                    pass
                await send_view(client, limit=10, q=remotes[17].split(":")[1], seq=5)
                page = await next_of(client, "conns")
                assert page["seq"] == 5
                assert page["matched"] == 1
                rows = [dict(zip(page["cols"], r, strict=True)) for r in page["rows"]]
                assert [r["remote"] for r in rows] == [remotes[17]]
                await send_view(client, limit=10, offset=20, seq=6)
                page = await next_of(client, "conns")
                assert (page["seq"], page["matched"], page["offset"]) == (6, 30, 20)
                assert len(page["ids"]) == 10
                await send_view(client, limit=9999, seq=7)
                error = await next_of(client, "error")
                assert error["field"] == "limit"
            finally:
                for s in streams:
                    await s.aclose()
            page = await next_of(client, "conns")
            while page["total"] != 0:
                page = await next_of(client, "conns")
            assert page["ids"] == []


async def test_busy_pages_stay_within_the_byte_budget_but_a_view_is_answered_at_once(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.web.live

    budget = 4000  # bytes per second, and as much again as a burst
    monkeypatch.setattr(app.web.live, "PAGE_BYTES_PER_S", budget)
    monkeypatch.setattr(app.web.live, "PAGE_BURST_BYTES", budget)
    assert lab.web_port is not None
    port = listener_port(lab, "tcp")
    # Every step waits for what it needs (no fixed window that a busy machine can miss);
    # this only turns a feed that stops into a failure instead of a hang.
    with trio.fail_after(30):
        _status, client, stream = await websocket_handshake(lab.web_port)
        async with stream, trio.open_nursery() as nursery:
            assert client is not None

            async def chatter() -> None:
                # Every row of the page changes every tick (20 ticks a second in tests).
                async with await trio.open_tcp_stream("127.0.0.1", port) as tcp:
                    while True:
                        await tcp.send_all(b"x")
                        await tcp.receive_some(1)
                        await trio.sleep(0.02)

            for _ in range(50):
                nursery.start_soon(chatter)
            while (await next_of(client, "conns"))["total"] < 50:
                pass
            # The budget holds from here on: the page answering the view may overdraw it,
            # every page after it is sent only while it is not overdrawn.
            start = trio.current_time()
            await send_view(client, limit=100, seq=1)
            while (await next_of(client, "conns"))["seq"] != 1:
                pass
            sizes: list[int] = []
            resyncs = 0
            # At least 3 s of pages (unthrottled, ~110 kB/s would be far over), and at least
            # two of them however long that takes: throttled, not stopped.
            while trio.current_time() - start < 3.0 or len(sizes) < 2:
                text = await client.receive_text()
                kind = json.loads(text)["type"]
                if kind == "conns":
                    sizes.append(len(text))
                elif kind == "full":
                    # The feed fell behind the hub and resynced: the next page is whole,
                    # sent whatever the budget.
                    resyncs += 1
            elapsed = trio.current_time() - start
            # Unthrottled this would be ~50 rows x ~110 B x 20 ticks = ~110 kB/s.
            assert sum(sizes) <= budget * elapsed + budget + max(sizes) * (1 + resyncs), (
                sizes,
                elapsed,
                resyncs,
            )
            # With no budget left at all, no page goes out on a tick any more: the answer
            # to a view can only come because a view is answered whatever the budget.
            monkeypatch.setattr(app.web.live, "PAGE_BYTES_PER_S", 0)
            monkeypatch.setattr(app.web.live, "PAGE_BURST_BYTES", 0)
            await send_view(client, limit=10, seq=2)
            while (await next_of(client, "conns"))["seq"] != 2:
                pass
            nursery.cancel_scope.cancel()
