"""Listeners started and stopped at run time through the API; connections closed by id."""

from __future__ import annotations

import socket

import trio

from app.lab import Lab
from tests.helpers import http, wait_for
from tests.listener_fixtures import read_to_eof


async def test_post_starts_a_listener_and_answers_201_with_the_bound_port(lab: Lab) -> None:
    assert lab.web_port is not None
    with trio.fail_after(10):
        response = await http(
            lab.web_port,
            "POST",
            "/api/listeners",
            body={
                "url": "tcp://127.0.0.1:0?mode=echo",
                "max_connections": 5,
                "idle_timeout": "30s",
            },
        )
        assert response.status == 201
        doc = response.json()
        assert doc["port"] > 0
        assert (
            doc["url"]
            == f"tcp://127.0.0.1:{doc['port']}?mode=echo&max_connections=5&idle_timeout=30"
        )
        assert (doc["max_connections"], doc["idle_timeout"]) == (5, 30.0)
        async with await trio.open_tcp_stream("127.0.0.1", doc["port"]) as stream:
            await stream.send_all(b"live")
            assert await stream.receive_some(10) == b"live"
        listed = (await http(lab.web_port, "GET", "/api/listeners")).json()["items"]
        assert doc["id"] in [item["id"] for item in listed]
        one = await http(lab.web_port, "GET", f"/api/listeners/{doc['id']}")
        assert one.json()["bytes_in"] == 4


async def test_delete_stops_a_listener_closes_its_connections_and_frees_the_port(
    lab: Lab,
) -> None:
    assert lab.web_port is not None
    with trio.fail_after(10):
        created = await http(
            lab.web_port, "POST", "/api/listeners", body={"url": "tcp://127.0.0.1:0"}
        )
        doc = created.json()
        async with await trio.open_tcp_stream("127.0.0.1", doc["port"]) as stream:
            await stream.send_all(b"x")
            assert await stream.receive_some(10) == b"x"
            response = await http(lab.web_port, "DELETE", f"/api/listeners/{doc['id']}")
            assert response.status == 200
            assert response.json()["status"] == "stopped"
            assert await read_to_eof(stream) == b""  # our connection was closed
        # The port is free at once: binding it again works.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", doc["port"]))
        again = await http(
            lab.web_port, "POST", "/api/listeners", body={"url": f"tcp://127.0.0.1:{doc['port']}"}
        )
        assert again.status == 201
        assert (await http(lab.web_port, "DELETE", f"/api/listeners/{doc['id']}")).status == 404


async def test_bad_listener_bodies_answer_422_naming_the_field(lab: Lab) -> None:
    assert lab.web_port is not None
    cases = [
        ({"url": "ftp://127.0.0.1:0"}, "url"),
        ({"url": "tcp://127.0.0.1:0", "mode": "teapot"}, "mode"),
        ({"url": "tcp://127.0.0.1:0", "loss": 5}, "loss"),
        ({"url": "udp://127.0.0.1:0", "loss": 101}, "loss"),
        ({"url": "tcp://127.0.0.1:0", "bogus": 1}, "bogus"),
        ({"url": "tcp://127.0.0.1:0?mode=respond"}, "rules"),
        (
            {
                "url": "tcp://127.0.0.1:0?mode=respond",
                "rules": [{"match": "regex", "pattern": "("}],
            },
            "rules.0.reply",
        ),
        (
            {
                "url": "tcp://127.0.0.1:0?mode=respond",
                "rules": [{"match": "regex", "pattern": "(", "reply": "x"}],
            },
            "rules.0.pattern",
        ),
        ({"url": "tls://127.0.0.1:0", "cert": "/nonexistent.pem", "key": "/k.pem"}, "cert"),
        ({}, "url"),
    ]
    with trio.fail_after(10):
        for body, field in cases:
            response = await http(lab.web_port, "POST", "/api/listeners", body=body)
            assert response.status == 422, body
            assert response.json()["field"] == field, (body, response.json())
        response = await http(lab.web_port, "POST", "/api/listeners", body=["tcp://x:1"])
        assert response.status == 422


async def test_binding_a_port_in_use_answers_409(lab: Lab) -> None:
    assert lab.web_port is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(10):
            response = await http(
                lab.web_port, "POST", "/api/listeners", body={"url": f"tcp://127.0.0.1:{port}"}
            )
    assert response.status == 409
    assert response.json()["field"] == "url"


async def test_delete_connection_really_closes_the_socket(lab: Lab) -> None:
    assert lab.web_port is not None
    tcp = next(item for item in lab.listeners if item.spec.protocol == "tcp")
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", tcp.port) as stream:
            await stream.send_all(b"hi")
            assert await stream.receive_some(10) == b"hi"
            local = f"127.0.0.1:{stream.socket.getsockname()[1]}"
            row = next(c for c in lab.registry if c.remote == local)
            response = await http(lab.web_port, "DELETE", f"/api/connections/{row.id}")
            assert response.status == 200
            assert response.json() == {"id": row.id, "closed": True}
            assert await read_to_eof(stream) == b""
        await wait_for(lambda: lab.registry.get(row.id) is None)
        assert tcp.closed_by_api == 1
        missing = await http(lab.web_port, "DELETE", f"/api/connections/{row.id}")
        assert missing.status == 404


async def test_delete_connection_forgets_a_udp_flow(lab: Lab) -> None:
    assert lab.web_port is not None
    udp = next(item for item in lab.listeners if item.spec.protocol == "udp")
    with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", udp.port))
        await sock.send(b"a")
        assert await sock.recv(10) == b"a"
        local = f"127.0.0.1:{sock.getsockname()[1]}"
        row = next(c for c in lab.registry if c.remote == local)
        response = await http(lab.web_port, "DELETE", f"/api/connections/{row.id}")
        assert response.status == 200
        assert lab.registry.get(row.id) is None
        assert udp.connections == 0
        await sock.send(b"b")  # the next datagram starts a new flow
        assert await sock.recv(10) == b"b"
        rows = [c for c in lab.registry if c.remote == local]
        assert len(rows) == 1 and rows[0].id != row.id


async def test_listeners_from_the_settings_start_with_the_lab(lab: Lab) -> None:
    protocols = sorted(item.spec.protocol for item in lab.listeners)
    assert protocols == ["tcp", "udp"]
    assert all(item.port > 0 for item in lab.listeners)
