"""Several nodes: peers shown on a lab, runs started on a peer, the event stream, --via."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from app.lab import Lab
from tests.conftest import listener_port, running_lab
from tests.helpers import TOKEN, http, read_ndjson, wait_for_async


async def test_a_lab_shows_its_peer_with_listeners_and_connections(hub_lab: Lab, edge: Lab) -> None:
    assert hub_lab.web_port is not None
    edge_tcp = listener_port(edge, "tcp")
    async with await trio.open_tcp_stream("127.0.0.1", edge_tcp) as client:
        await client.send_all(b"x")
        await client.receive_some(1)
        remote = f"127.0.0.1:{client.socket.getsockname()[1]}"

        async def peer_sees_it() -> dict[str, Any] | None:
            doc = (await http(hub_lab.web_port or 0, "GET", "/api/peers")).json()
            peer = doc["items"][0]
            seen = any(c["remote"] == remote for c in peer["connections"])
            return peer if peer["status"] == "up" and seen else None

        peer = await wait_for_async(peer_sees_it, timeout=10)
    assert peer["name"] == "127.0.0.1"
    assert {item["port"] for item in peer["listeners"]} == {item.port for item in edge.listeners}


async def test_a_run_started_on_a_peer_is_visible_on_both_nodes(hub_lab: Lab, edge: Lab) -> None:
    assert hub_lab.web_port is not None and edge.web_port is not None
    spec = {
        "target": f"tcp://127.0.0.1:{listener_port(edge, 'tcp')}",
        "count": 200,
        "connections": 2,
    }
    created = await http(hub_lab.web_port, "POST", "/api/peers/127.0.0.1/runs", body=spec)
    assert created.status == 201, created.body
    local_id, remote_id = created.json()["id"], created.json()["remote_id"]

    async def finished_here() -> dict[str, Any] | None:
        doc = (await http(hub_lab.web_port or 0, "GET", f"/api/runs/{local_id}")).json()
        return doc if doc["status"] != "running" else None

    here = await wait_for_async(finished_here, timeout=20)
    there = (await http(edge.web_port, "GET", f"/api/runs/{remote_id}")).json()
    assert here["status"] == there["status"] == "finished"
    assert here["summary"]["received"] == there["summary"]["received"] == 200
    assert local_id == f"127.0.0.1~{remote_id}"
    listed = (await http(hub_lab.web_port, "GET", "/api/runs")).json()["items"]
    assert local_id in [item["id"] for item in listed]
    live = await http(hub_lab.web_port, "GET", f"/api/peers/127.0.0.1/runs/{remote_id}")
    assert live.json()["id"] == remote_id
    missing = await http(hub_lab.web_port, "POST", "/api/peers/nobody/runs", body=spec)
    assert (missing.status, missing.json()["field"]) == (404, "peer")


async def test_event_stream_follows_a_run_to_its_end(lab: Lab) -> None:
    assert lab.web_port is not None
    spec = {"target": f"udp://127.0.0.1:{listener_port(lab, 'udp')}", "duration": 2.2}
    run_id = (await http(lab.web_port, "POST", "/api/runs", body=spec)).json()["id"]
    with trio.fail_after(15):
        events = await read_ndjson(lab.web_port, f"/api/events?run={run_id}")
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "run.ended"
    assert kinds.count("run.interval") >= 1
    assert events[-1]["status"] == "finished"
    assert events[-1]["summary"]["received"] > 0
    # Asking after the end answers with the end at once.
    with trio.fail_after(5):
        again = await read_ndjson(lab.web_port, f"/api/events?run={run_id}")
    assert [e["type"] for e in again] == ["run.ended"]


async def test_event_stream_reports_connections(lab: Lab) -> None:
    assert lab.web_port is not None
    port = lab.web_port
    got: list[dict[str, Any]] = []

    async def reader(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await read_ndjson(port, "/api/events?types=connection", limit=1000, lines=got)

    async with trio.open_nursery() as nursery:
        await nursery.start(reader)
        await wait_for_async(lambda: _subscribed(lab), timeout=5)
        async with await trio.open_tcp_stream("127.0.0.1", listener_port(lab, "tcp")) as c:
            await c.send_all(b"x")
            await c.receive_some(1)
            remote = f"127.0.0.1:{c.socket.getsockname()[1]}"
            await wait_for_async(lambda: _seen(got, "connection.opened"), timeout=5)
        await wait_for_async(lambda: _seen(got, "connection.closed"), timeout=5)
        nursery.cancel_scope.cancel()
    opened = [e for e in got if e["type"] == "connection.opened"]
    assert any(e["remote"] == remote for e in opened)


async def _subscribed(lab: Lab) -> bool:
    return lab.hub.subscriber_count > 0


async def _seen(events: list[dict[str, Any]], kind: str) -> bool:
    return any(e["type"] == kind for e in events)


async def test_cli_fire_via_starts_the_run_on_the_remote_lab(lab: Lab) -> None:
    assert lab.web_port is not None
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            target,
            "--count",
            "300",
            "--conns",
            "3",
            "--via",
            f"http://127.0.0.1:{lab.web_port}",
            "--token",
            TOKEN,
            "--json",
        ],
        capture_stdout=True,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["summary"]["received"] == 300
    stored = await lab.runs.get(doc["id"])  # it ran there, and is stored there
    assert stored["status"] == "finished"


async def test_demo_profile_keeps_traffic_flowing_to_peers(
    nursery: trio.Nursery, tmp_path: Path, edge: Lab
) -> None:
    peers = (f"http://127.0.0.1:{edge.web_port}",)
    async with running_lab(nursery, tmp_path / "demo", peers=peers, peer_token=TOKEN, demo=True):
        edge_ports = {item.port for item in edge.listeners}

        async def demo_connections() -> bool:
            rows = [c for c in edge.registry if c.listener_id is not None]
            protocols = {c.protocol for c in rows if int(c.local.rsplit(":", 1)[1]) in edge_ports}
            return protocols == {"tcp", "udp"}

        await wait_for_async(demo_connections, timeout=15)


async def test_event_stream_says_when_a_listener_starts(lab: Lab) -> None:
    assert lab.web_port is not None
    port = lab.web_port
    got: list[dict[str, Any]] = []

    async def reader() -> None:
        await read_ndjson(port, "/api/events?types=listener", limit=1000, lines=got)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await wait_for_async(lambda: _subscribed(lab), timeout=10)
            created = await http(port, "POST", "/api/listeners", body={"url": "tcp://127.0.0.1:0"})
            assert created.status == 201, created.body
            new_id = created.json()["id"]
            await wait_for_async(lambda: _seen(got, "listener.changed"), timeout=10)
            nursery.cancel_scope.cancel()
    changed = next(e for e in got if e["type"] == "listener.changed")
    assert new_id in {item["id"] for item in changed["listeners"]}
    assert {e["type"] for e in got} <= {"listener.changed", "heartbeat"}


async def test_a_run_on_a_peer_counts_against_this_labs_caps_and_is_audited(
    nursery: trio.Nursery, tmp_path: Path, edge: Lab
) -> None:
    assert edge.web_port is not None
    peers = (f"http://127.0.0.1:{edge.web_port}",)
    async with running_lab(
        nursery, tmp_path / "hub", peers=peers, peer_token=TOKEN, max_concurrent_runs=1
    ) as hub:
        assert hub.web_port is not None
        target = f"tcp://127.0.0.1:{listener_port(edge, 'tcp')}"
        created = await http(
            hub.web_port,
            "POST",
            "/api/peers/127.0.0.1/runs",
            body={"target": target, "duration": 30},
        )
        assert created.status == 201, created.body
        local_id = created.json()["id"]
        # The followed run is one of this lab's runs: a second run here is over the cap.
        local = await http(hub.web_port, "POST", "/api/runs", body={"target": target, "count": 1})
        assert local.status == 409, local.body
        again = await http(
            hub.web_port, "POST", "/api/peers/127.0.0.1/runs", body={"target": target, "count": 1}
        )
        assert again.status == 409, again.body
        audit = (await http(hub.web_port, "GET", "/api/audit")).json()["items"]
        assert [e["outcome"] for e in audit if e["run_id"] == local_id] == ["running"]
        # Stopping the copy here stops the run on the peer too.
        stopped = await http(hub.web_port, "POST", f"/api/runs/{local_id}/stop", body={})
        assert stopped.status in (200, 202), stopped.body
        remote_id = created.json()["remote_id"]

        async def ended_there() -> dict[str, Any] | None:
            doc = (await http(edge.web_port or 0, "GET", f"/api/runs/{remote_id}")).json()
            return doc if doc["status"] != "running" else None

        async def ended_here() -> dict[str, Any] | None:
            doc = (await http(hub.web_port or 0, "GET", f"/api/runs/{local_id}")).json()
            return doc if doc["status"] != "running" else None

        there = await wait_for_async(ended_there, timeout=10)
        here = await wait_for_async(ended_here, timeout=10)
        assert there["status"] == here["status"] == "stopped"
        audit = (await http(hub.web_port, "GET", "/api/audit")).json()["items"]
        assert [e["outcome"] for e in audit if e["run_id"] == local_id] == ["stopped"]


async def test_simultaneous_runs_on_a_peer_start_exactly_as_many_as_this_labs_cap(
    nursery: trio.Nursery, tmp_path: Path, edge: Lab
) -> None:
    assert edge.web_port is not None
    peers = (f"http://127.0.0.1:{edge.web_port}",)
    async with running_lab(
        nursery, tmp_path / "hub", peers=peers, peer_token=TOKEN, max_concurrent_runs=2
    ) as hub:
        assert hub.web_port is not None
        target = f"tcp://127.0.0.1:{listener_port(edge, 'tcp')}"
        statuses: list[int] = []

        async def one() -> None:
            body = {"target": target, "duration": 30}
            answer = await http(hub.web_port or 0, "POST", "/api/peers/127.0.0.1/runs", body=body)
            statuses.append(answer.status)

        with trio.fail_after(30):
            async with trio.open_nursery() as requests:
                for _ in range(12):
                    requests.start_soon(one)
        assert sorted(statuses) == [201, 201] + [409] * 10
        # The peer was asked only for the two this lab had room for.
        there = (await http(edge.web_port, "GET", "/api/runs")).json()["items"]
        assert [run["status"] for run in there].count("running") == 2
        await http(hub.web_port, "POST", "/api/runs/stop-all", body={})
