"""What the lab keeps across a restart: listeners started through the API (with their
options and rules), saved packets and the packet tool's send log. Two labs, one after the
other, on the same real SQLite file in a temporary folder."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import trio

from app.lab import Lab
from tests.conftest import running_lab
from tests.helpers import http, wait_for

RULES = [{"match": "prefix", "pattern": "PING", "reply": "PONG {counter}\n"}]


def port_of(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def api(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    answer = await http(port_of(lab), method, path, body=body)
    return answer.status, answer.json() if answer.body else None


async def udp_exchange(port: int, payload: bytes) -> bytes:
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(payload)
        with trio.fail_after(10):
            return await sock.recv(65536)


def started_by_api(lab: Lab) -> list[dict[str, Any]]:
    """The listeners of ``lab`` that are not the two the settings give (port 0 echoes)."""
    items = [listener.to_dict() for listener in lab.listeners]
    return [item for item in items if item["options"] or item["mode"] != "echo"]


async def test_listeners_started_through_the_api_come_back_with_their_options(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_lab(nursery, data) as first:
        status, respond = await api(
            first,
            "POST",
            "/api/listeners",
            {"url": "udp://127.0.0.1:0?mode=respond", "rules": RULES, "default_reply": "?\n"},
        )
        assert status == 201, respond
        status, statsd = await api(
            first,
            "POST",
            "/api/listeners",
            {"url": "udp://127.0.0.1:0?mode=statsd", "percentiles": "95,99.9"},
        )
        assert status == 201, statsd
        status, gone = await api(first, "POST", "/api/listeners", {"url": "tcp://127.0.0.1:0"})
        assert status == 201
        assert (await api(first, "DELETE", f"/api/listeners/{gone['id']}"))[0] == 200
        before = {(item["url"], str(item["options"])) for item in started_by_api(first)}
    assert len(before) == 2

    async with running_lab(nursery, data) as second:
        after = {(item["url"], str(item["options"])) for item in started_by_api(second)}
        assert after == before
        status, failed = await api(second, "GET", "/api/listeners/failed")
        assert (status, failed) == (200, {"items": []})
        # The respond listener answers by its rules again, on the port it had.
        assert await udp_exchange(respond["port"], b"PING") == b"PONG 1\n"
        # The one stopped through the API stays stopped: two from the settings, two kept.
        assert len(second.listeners) == 4
        assert gone["port"] not in {item.port for item in second.listeners}


async def test_a_kept_listener_whose_port_is_taken_is_shown_failing_and_the_lab_starts(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_lab(nursery, data) as first:
        status, made = await api(first, "POST", "/api/listeners", {"url": "udp://127.0.0.1:0"})
        assert status == 201
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", made["port"]))
        async with running_lab(nursery, data) as second:
            status, failed = await api(second, "GET", "/api/listeners/failed")
            assert status == 200
            [item] = failed["items"]
            assert item["url"] == f"udp://127.0.0.1:{made['port']}"
            assert "in use" in item["error"], item
            # The lab itself runs: its listeners from the settings serve.
            status, listing = await api(second, "GET", "/api/listeners")
            assert status == 200 and len(listing["items"]) == 2
            forgotten = await http(
                port_of(second), "DELETE", f"/api/listeners/failed/{item['key']}"
            )
            assert forgotten.status == 204
            assert (await api(second, "GET", "/api/listeners/failed"))[1] == {"items": []}
    async with running_lab(nursery, data) as third:
        assert (await api(third, "GET", "/api/listeners/failed"))[1] == {"items": []}
        assert started_by_api(third) == []


async def test_respond_rules_are_readable_editable_and_kept(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_lab(nursery, data) as lab:
        status, made = await api(
            lab, "POST", "/api/listeners", {"url": "udp://127.0.0.1:0?mode=respond", "rules": RULES}
        )
        assert status == 201
        path = f"/api/listeners/{made['id']}"
        shown = (await api(lab, "GET", path))[1]["respond"]["rules"]
        assert [(r["match"], r["pattern"], r["reply"]) for r in shown] == [
            ("prefix", "PING", "PONG {counter}\n")
        ]
        new_rules = [{"match": "exact", "pattern": "HELLO", "reply": "WORLD\n"}]
        status, edited = await api(lab, "PUT", f"{path}/rules", {"rules": new_rules})
        assert status == 200, edited
        assert [r["pattern"] for r in edited["respond"]["rules"]] == ["HELLO"]
        assert await udp_exchange(made["port"], b"HELLO") == b"WORLD\n"
        # Refused as at creation, naming the field; nothing changes.
        bad = [{"match": "regex", "pattern": "(", "reply": "x"}]
        status, error = await api(lab, "PUT", f"{path}/rules", {"rules": bad})
        assert status == 422 and error["field"].startswith("rules.0"), error
        echo_id = next(item.id for item in lab.listeners if item.spec.mode == "echo")
        status, error = await api(lab, "PUT", f"/api/listeners/{echo_id}/rules", {"rules": RULES})
        assert status == 409, error
    async with running_lab(nursery, data) as again:
        [kept] = started_by_api(again)
        assert [r["pattern"] for r in kept["respond"]["rules"]] == ["HELLO"]
        assert await udp_exchange(made["port"], b"HELLO") == b"WORLD\n"


async def test_saved_packets_and_the_send_log_survive_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_lab(nursery, data) as first:
        udp = next(item for item in first.listeners if item.spec.protocol == "udp")
        target = f"udp://127.0.0.1:{udp.port}"
        packet = {"name": "hello", "target": target, "payload": "hi\\n", "hex": False}
        status, saved = await api(first, "POST", "/api/packets", packet)
        assert status == 201, saved
        status, sent = await api(
            first,
            "POST",
            "/api/packets/send",
            {"target": target, "payload": "hi\\n", "name": "hello"},
        )
        assert status == 200, sent
        assert sent["status"] == "reply" and sent["reply"]["text"] == "hi\\n", sent
        # A send is logged, not stored as a run.
        assert (await api(first, "GET", "/api/runs"))[1]["items"] == []
    async with running_lab(nursery, data) as second:
        status, packets = await api(second, "GET", "/api/packets")
        assert status == 200
        assert [(p["name"], p["target"], p["payload"]) for p in packets["items"]] == [
            ("hello", target, "hi\\n")
        ]
        status, log = await api(second, "GET", "/api/packet-log")
        assert status == 200
        assert log["items"] == [sent]
        assert (await http(port_of(second), "DELETE", "/api/packets/hello")).status == 204
        assert (await api(second, "GET", "/api/packets"))[1] == {"items": []}
        assert (await api(second, "DELETE", "/api/packet-log"))[1] == {"deleted": 1}


async def test_a_refused_send_is_logged_as_an_error_with_its_reason(lab: Lab) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        target = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        status, sent = await api(
            lab, "POST", "/api/packets/send", {"target": target, "payload": "x"}
        )
    assert status == 200, sent
    assert sent["status"] == "error" and sent["reply"] is None
    assert sent["error_kind"] == "refused"
    assert "refused" in sent["error"] and "nothing listens" in sent["error"]


async def test_a_collector_keeps_its_flushes_the_last_one_with_traffic_and_bad_lines(
    lab: Lab,
) -> None:
    status, made = await api(
        lab, "POST", "/api/listeners", {"url": "udp://127.0.0.1:0?mode=statsd&flush_interval=3600"}
    )
    assert status == 201
    listener = lab.listeners.get(made["id"])
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.sendto(b"hits:4|c\nlat:5|ms\nthis is not statsd", ("127.0.0.1", made["port"]))
    await wait_for(lambda: listener.to_dict()["statsd"]["bad_lines"] == 1)
    path = f"/api/listeners/{made['id']}/flush"
    assert (await api(lab, "POST", path))[0] == 200
    assert (await api(lab, "POST", path))[0] == 200  # a flush without traffic
    status, doc = await api(lab, "GET", f"/api/telemetry/{made['id']}/history")
    assert status == 200, doc
    assert [p["counters"] for p in doc["points"]] == [{"hits": 4.0}, {"hits": 0.0}]
    assert doc["points"][0]["timers"]["lat"]["p50"] == 5
    assert doc["points"][1]["timers"] == {}
    active = doc["last_active_flush"]
    assert active["counters"]["hits"]["value"] == 4 and "lat" in active["timers"]
    [bad] = doc["bad_samples"]
    assert bad["line"] == "this is not statsd" and bad["error"]
    echo_id = next(item.id for item in lab.listeners if item.spec.mode == "echo")
    assert (await api(lab, "GET", f"/api/telemetry/{echo_id}/history"))[0] == 409
