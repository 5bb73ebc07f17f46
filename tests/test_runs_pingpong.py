"""Pingpong runs against the lab's own listeners: exact counts, storage, stop."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from app.lab import Lab
from app.runs.spec import parse_run_spec
from app.settings import parse_listener_url
from tests.conftest import listener_port
from tests.helpers import lab_settings, wait_for


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_count_mode_sends_and_receives_exactly_n(lab: Lab, protocol: str) -> None:
    port = listener_port(lab, protocol)
    spec = parse_run_spec(
        {"target": f"{protocol}://127.0.0.1:{port}", "connections": 7, "size": 64, "count": 1000}
    )
    run = await lab.runs.start(spec)
    with trio.fail_after(20):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished"
    summary = doc["summary"]
    assert summary["sent"] == 1000
    assert summary["received"] == 1000
    assert summary["bytes_sent"] == 64_000
    assert summary["bytes_received"] == 64_000
    assert summary["errors"] == 0
    rtt = summary["rtt_ms"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["max"] < 2000


async def test_small_messages_without_room_for_a_header_are_counted_by_order(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    spec = parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "size": 1, "count": 50})
    run = await lab.runs.start(spec)
    with trio.fail_after(10):
        await run.done.wait()
    summary = (await lab.runs.get(run.id))["summary"]
    assert (summary["sent"], summary["received"]) == (50, 50)


async def test_several_runs_at_once_and_one_stopped(lab: Lab) -> None:
    tcp, udp = listener_port(lab, "tcp"), listener_port(lab, "udp")
    long_run = await lab.runs.start(
        parse_run_spec({"target": f"tcp://127.0.0.1:{tcp}", "connections": 2, "duration": 60})
    )
    short = await lab.runs.start(
        parse_run_spec({"target": f"udp://127.0.0.1:{udp}", "connections": 2, "count": 200})
    )
    with trio.fail_after(10):
        await short.done.wait()
        assert long_run.status == "running"
        lab.runs.stop(long_run.id)
        await long_run.done.wait()
    stored = await lab.runs.get(long_run.id)
    assert stored["status"] == "stopped"
    assert stored["summary"]["received"] > 0
    assert (await lab.runs.get(short.id))["summary"]["received"] == 200
    # The stopped run's connections are gone from the registry.
    assert not [c for c in lab.registry if c.run_id == long_run.id]


async def test_run_against_a_closed_port_fails_with_refused_and_is_stored(lab: Lab) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    spec = parse_run_spec({"target": f"tcp://127.0.0.1:{free_port}", "connections": 3, "count": 3})
    run = await lab.runs.start(spec)
    with trio.fail_after(10):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "failed"
    assert doc["summary"]["errors_by_kind"] == {"refused": 3}


async def test_stored_run_is_listed_after_the_lab_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for restart in (False, True):
        lab = Lab(lab_settings(data))
        async with trio.open_nursery() as nursery:
            await nursery.start(lab.serve)
            if not restart:
                port = listener_port(lab, "tcp")
                spec = parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "count": 20})
                run = await lab.runs.start(spec)
                run_id = run.id
                with trio.fail_after(10):
                    await run.done.wait()
            else:
                listed = await lab.runs.list()
                assert [r["id"] for r in listed] == [run_id]
                assert listed[0]["status"] == "finished"
                assert listed[0]["summary"]["received"] == 20
                assert len((await lab.runs.get(run_id))["series"]) >= 1
            lab.request_shutdown()


async def test_tls_messages_still_unanswered_at_the_timeout_are_lost(lab: Lab) -> None:
    # An echo that holds every reply for 30 s: nothing comes back within the 0.3 s timeout.
    listener = await lab.listeners.start(parse_listener_url("tls://127.0.0.1:0?delay=30"))
    spec = parse_run_spec(
        {
            "target": f"tls://127.0.0.1:{listener.port}",
            "insecure": True,
            "in_flight": 3,
            "count": 9,
            "timeout": 0.3,
        }
    )
    run = await lab.runs.start(spec)
    with trio.fail_after(10):
        await run.done.wait()
    summary = (await lab.runs.get(run.id))["summary"]
    assert summary["errors_by_kind"] == {"timeout": 1}
    assert (summary["sent"], summary["received"], summary["lost"]) == (3, 0, 3)
    # What the listener read: the three messages, all lost.
    await wait_for(lambda: listener.bytes_in == 3 * 64)
