"""The JSON API over real HTTP: auth, validation errors, the public contract's shapes."""

from __future__ import annotations

import pytest
import trio

from app.errors import MAX_MESSAGE
from app.lab import Lab
from tests.conftest import listener_port
from tests.helpers import http, wait_for, wait_for_async


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def test_health_needs_no_token(lab: Lab) -> None:
    response = await http(web_port(lab), "GET", "/api/health", token=None)
    assert (response.status, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/listeners"),
        ("GET", "/api/connections"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/abc"),
        ("POST", "/api/runs/abc/stop"),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_api_refuses_a_missing_or_wrong_token(
    lab: Lab, method: str, path: str, token: str | None
) -> None:
    body = {"target": "tcp://127.0.0.1:1", "count": 1} if method == "POST" else None
    response = await http(web_port(lab), method, path, token=token, body=body)
    assert response.status == 401
    assert response.json() == {"error": "missing or wrong token", "field": "Authorization"}
    assert await lab.runs.list() == []


async def test_listeners_and_connections_follow_the_contract(lab: Lab) -> None:
    port = web_port(lab)
    listeners = (await http(port, "GET", "/api/listeners")).json()["items"]
    assert {(item["protocol"], item["mode"]) for item in listeners} == {
        ("tcp", "echo"),
        ("udp", "echo"),
    }
    for item in listeners:
        assert {"id", "host", "port", "connections", "bytes_in", "bytes_out"} <= item.keys()
        assert item["port"] > 0
    tcp = listener_port(lab, "tcp")
    async with await trio.open_tcp_stream("127.0.0.1", tcp) as stream:
        await stream.send_all(b"ping")
        await stream.receive_some(4)

        async def listed() -> list[dict[str, object]]:
            doc = (await http(port, "GET", "/api/connections")).json()
            return [c for c in doc["items"] if c.get("listener_id")]

        rows = await wait_for_async(listed)
        row = rows[0]
        assert row["protocol"] == "tcp"
        assert row["remote"] == f"127.0.0.1:{stream.socket.getsockname()[1]}"
        assert row["bytes_in"] == 4
        assert row["bytes_out"] == 4
        assert {"id", "local", "opened_at"} <= row.keys()


async def test_a_run_posted_to_the_api_finishes_with_exact_counts(lab: Lab) -> None:
    port = web_port(lab)
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    spec = {"target": target, "pattern": "pingpong", "connections": 10, "size": 64, "count": 500}
    created = await http(port, "POST", "/api/runs", body=spec)
    assert created.status == 201
    run_id = created.json()["id"]
    assert created.json()["status"] == "running"

    async def finished() -> dict[str, object] | None:
        doc = (await http(port, "GET", f"/api/runs/{run_id}")).json()
        return doc if doc["status"] != "running" else None

    doc = await wait_for_async(finished, timeout=20)
    assert doc["status"] == "finished"
    summary = doc["summary"]
    assert summary["sent"] == summary["received"] == 500
    assert set(summary["rtt_ms"]) >= {"min", "p50", "p90", "p99", "max"}
    listed = (await http(port, "GET", "/api/runs")).json()["items"]
    assert [item["id"] for item in listed] == [run_id]


async def test_a_running_run_can_be_stopped_through_the_api(lab: Lab) -> None:
    port = web_port(lab)
    target = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    run_id = (
        await http(port, "POST", "/api/runs", body={"target": target, "duration": 60})
    ).json()["id"]
    await wait_for(lambda: lab.runs.live[run_id].stats.received > 10)
    stopped = await http(port, "POST", f"/api/runs/{run_id}/stop")
    assert stopped.json() == {"id": run_id, "status": "stopped"}
    assert (await http(port, "GET", f"/api/runs/{run_id}")).json()["status"] == "stopped"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"target": "ftp://127.0.0.1:1", "count": 1}, "target"),
        ({"target": "tcp://127.0.0.1", "count": 1}, "target"),
        ({"target": "tcp://127.0.0.1:9", "connections": 0}, "connections"),
        ({"target": "tcp://127.0.0.1:9", "size": "big"}, "size"),
        ({"target": "tcp://127.0.0.1:9", "duration": -1}, "duration"),
        ({"target": "tcp://127.0.0.1:9", "duration": 1, "count": 5}, "count"),
        ({"target": "tcp://127.0.0.1:9", "pattern": "teleport"}, "pattern"),
        ({"target": "udp://127.0.0.1:9", "size": 70000}, "size"),
        ({"target": "tcp://127.0.0.1:9", "colour": "blue"}, "colour"),
        ({"count": 5}, "target"),
    ],
)
async def test_a_bad_run_spec_is_422_naming_the_field(
    lab: Lab, spec: dict[str, object], field: str
) -> None:
    response = await http(web_port(lab), "POST", "/api/runs", body=spec)
    assert response.status == 422
    doc = response.json()
    assert doc["field"] == field
    assert isinstance(doc["error"], str)
    assert doc["error"]
    assert await lab.runs.list() == []


async def test_a_body_that_is_not_json_is_refused(lab: Lab) -> None:
    port = web_port(lab)
    response = await http(
        port,
        "POST",
        "/api/runs",
        raw_body=b"target=tcp://x:1",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status == 415
    broken = await http(
        port,
        "POST",
        "/api/runs",
        raw_body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status == 422
    assert broken.json()["field"] == "body"


async def test_unknown_ids_are_404_with_the_error_shape(lab: Lab) -> None:
    port = web_port(lab)
    for method, path in (("GET", "/api/runs/nope"), ("POST", "/api/runs/nope/stop")):
        response = await http(port, method, path)
        assert response.status == 404
        assert response.json()["field"] == "id"
    missing = await http(port, "GET", "/api/nothing-here")
    assert missing.status == 404
    assert "error" in missing.json()


async def test_an_error_quotes_at_most_a_bounded_part_of_what_was_sent(lab: Lab) -> None:
    response = await http(web_port(lab), "DELETE", "/api/connections/" + "x" * 20_000)
    assert response.status == 404
    error = response.json()["error"]
    assert error.startswith("no connection 'xxx") and error.endswith("…")
    assert len(error) == MAX_MESSAGE


async def test_foreign_host_is_refused(lab: Lab) -> None:
    response = await http(web_port(lab), "GET", "/api/listeners", host="evil.example")
    assert response.status == 403
    assert response.json()["field"] == "Host"


async def test_login_url_sets_an_httponly_cookie_and_drops_the_token_from_the_url(lab: Lab) -> None:
    port = web_port(lab)
    token = lab.settings.token
    login = await http(port, "GET", f"/?token={token}", token=None)
    assert login.status == 303
    assert login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = await http(port, "GET", "/", token=None, headers={"Cookie": cookie.split(";", 1)[0]})
    assert page.status == 200
    assert b'id="connections"' in page.body
    assert token is not None
    assert token.encode() not in page.body
    refused = await http(port, "GET", "/?token=wrong", token=None)
    assert refused.status == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "udp://127.0.0.1:9"}, "payload"),
        ({"target": "udp://127.0.0.1:9", "payload": ""}, "payload"),
        ({"target": "udp://127.0.0.1:9", "payload": "zz", "hex": True}, "payload"),
        ({"target": "udp://127.0.0.1:9", "payload": "a", "timeout": 0}, "timeout"),
        ({"target": "udp://127.0.0.1:9", "payload": "a", "hex": "maybe"}, "hex"),
        ({"target": "udp://127.0.0.1:9", "payload": "a", "colour": "red"}, "colour"),
        ({"target": "ftp://127.0.0.1:9", "payload": "a"}, "target"),
        ({"payload": "a"}, "target"),
        (["payload"], "body"),
    ],
)
async def test_a_bad_send_body_is_422_naming_the_field_it_sent(
    lab: Lab, body: object, field: str
) -> None:
    # The body's own names: "payload", never the run spec's "payload.text".
    response = await http(web_port(lab), "POST", "/api/send", body=body)
    assert (response.status, response.json()["field"]) == (422, field), response.json()
    assert await lab.runs.list() == []
