"""Live edits of a running run over the API: rate, connections, pause and resume.

Truth from outside the edit code: what each closed second of the run's series counted (the
flows' own counters) and what the echo listener saw, never the control's own figures.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from app.errors import SpecError
from app.lab import Lab
from app.runs.control import RunControl, RunEdit
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port, running_lab
from tests.helpers import TOKEN, http, lab_settings, wait_for, wait_for_async

# Generous: a loaded 2-CPU machine.
WAIT = 30.0


def port_of(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


def target(lab: Lab, protocol: str) -> str:
    return f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}"


async def start(lab: Lab, spec: dict[str, Any]) -> str:
    created = await http(port_of(lab), "POST", "/api/runs", body=spec)
    assert created.status == 201, created.json()
    run_id: str = created.json()["id"]
    return run_id


async def run_doc(lab: Lab, run_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await http(port_of(lab), "GET", f"/api/runs/{run_id}")).json()
    return doc


async def series_until(lab: Lab, run_id: str, test: Any) -> list[dict[str, Any]]:
    """The run's series once ``test(series)`` holds."""

    async def look() -> list[dict[str, Any]] | None:
        series: list[dict[str, Any]] = (await run_doc(lab, run_id))["series"]
        return series if test(series) else None

    result: list[dict[str, Any]] = await wait_for_async(look, timeout=WAIT)
    return result


async def ended(lab: Lab, run_id: str) -> dict[str, Any]:
    async def look() -> dict[str, Any] | None:
        doc = await run_doc(lab, run_id)
        return doc if doc["status"] not in ("running", "paused") else None

    result: dict[str, Any] = await wait_for_async(look, timeout=WAIT)
    return result


async def patch(lab: Lab, run_id: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await http(port_of(lab), "PATCH", f"/api/runs/{run_id}", body=body)
    doc: dict[str, Any] = response.json()
    return response.status, doc


@pytest.fixture
async def capped_lab(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Lab]:
    """A lab with small caps: 60 s, 1,000 msg/s, 8 connections, 2 concurrent runs."""
    async with running_lab(
        nursery,
        tmp_path / "data",
        max_run_duration=60.0,
        max_run_rate=1000.0,
        max_run_connections=8,
        max_concurrent_runs=2,
    ) as lab:
        yield lab


async def test_a_rate_edit_takes_effect_and_shows_in_the_series(lab: Lab) -> None:
    spec = {"target": target(lab, "udp"), "pattern": "rate", "rate": 40, "duration": 5}
    run_id = await start(lab, spec)
    before = await series_until(lab, run_id, lambda s: len(s) >= 1)
    assert before[0]["rate_target"] == 40
    status, doc = await patch(lab, run_id, {"rate": 240})
    assert status == 200, doc
    assert doc["control"]["rate_target"] == 240
    assert [e["rate_target"] for e in doc["control"]["edits"]] == [240]
    edited_at = doc["control"]["edits"][0]["t"]
    # A whole second at each rate: the one before the edit, the first one after it.
    series = await series_until(
        lab, run_id, lambda s: any(p["t"] - 1 > edited_at for p in s[:-1] if p["t"] < 4.5)
    )
    old = next(p for p in series if p["t"] <= edited_at)
    new = next(p for p in series if p["t"] - 1 > edited_at)
    assert (old["rate_target"], new["rate_target"]) == (40, 240)
    assert new["sent"] > 3 * old["sent"] > 0
    final = await ended(lab, run_id)
    s = final["summary"]
    # Nothing of the statistics was lost on the way: every second is in the totals.
    assert s["sent"] == sum(p["sent"] for p in final["series"])
    assert s["received"] == s["sent"] and s["lost"] == 0
    assert final["series"][-1]["rate_target"] == 240


@pytest.mark.parametrize(
    ("pattern", "protocol", "extra"),
    [
        ("rate", "udp", {"rate": 200}),
        ("pingpong", "tcp", {"connections": 2}),
        ("pingpong", "udp", {}),
        ("burst", "tcp", {"burst": 5, "interval": 0.1}),
    ],
)
async def test_a_paused_run_sends_nothing_until_resumed(
    lab: Lab, pattern: str, protocol: str, extra: dict[str, Any]
) -> None:
    spec = {"target": target(lab, protocol), "pattern": pattern, "duration": 60, **extra}
    run_id = await start(lab, spec)
    await series_until(lab, run_id, lambda s: s and s[-1]["sent"] > 0)
    paused = await http(port_of(lab), "POST", f"/api/runs/{run_id}/pause")
    assert paused.status == 200, paused.json()
    assert paused.json()["status"] == "paused"
    assert (await run_doc(lab, run_id))["status"] == "paused"
    # Two whole seconds closed while paused: nothing was sent in either.
    series = await series_until(
        lab, run_id, lambda s: len(s) >= 3 and s[-1]["paused"] and s[-2]["paused"]
    )
    assert series[-1]["sent"] == 0
    resumed = await http(port_of(lab), "POST", f"/api/runs/{run_id}/resume")
    assert resumed.status == 200 and resumed.json()["status"] == "running"
    await series_until(lab, run_id, lambda s: not s[-1]["paused"] and s[-1]["sent"] > 0)
    stopped = await http(port_of(lab), "POST", f"/api/runs/{run_id}/stop")
    assert stopped.json()["status"] == "stopped"
    doc = await run_doc(lab, run_id)
    points = doc["series"]
    for before, point in itertools.pairwise(points):
        if before["paused"] and point["paused"]:  # a second paused from end to end
            assert point["sent"] == 0, point
    # The statistics went on through the pause: the totals hold every closed second.
    assert doc["summary"]["sent"] >= sum(p["sent"] for p in doc["series"]) > 0


@pytest.mark.parametrize(
    ("pattern", "protocol", "extra"),
    [("rate", "udp", {"rate": 100}), ("pingpong", "tcp", {}), ("pingpong", "udp", {})],
)
async def test_connections_grow_and_shrink_live_and_no_reply_is_lost(
    lab: Lab, pattern: str, protocol: str, extra: dict[str, Any]
) -> None:
    spec = {
        "target": target(lab, protocol),
        "pattern": pattern,
        "connections": 2,
        "duration": 5,
        **extra,
    }
    run_id = await start(lab, spec)
    await series_until(lab, run_id, lambda s: len(s) >= 1)
    status, doc = await patch(lab, run_id, {"connections": 4})
    assert status == 200, doc
    await series_until(lab, run_id, lambda s: s[-1]["connections"] == 4 and s[-1]["sent"])
    status, doc = await patch(lab, run_id, {"connections": 1})
    assert status == 200, doc
    assert [e["connections"] for e in doc["control"]["edits"]] == [4, 1]
    final = await ended(lab, run_id)
    s = final["summary"]
    assert final["status"] == "finished", final["error"]
    assert s["connections_opened"] == 4  # two at the start, two added; none re-opened
    # Retired flows stopped sending and waited for their replies: nothing is lost.
    assert s["lost"] == 0 and s["received"] == s["sent"] > 0
    assert {p["connections"] for p in final["series"]} >= {4}
    assert final["series"][-1]["connections"] == 1


async def test_edits_a_run_cannot_take_are_refused_naming_the_field(capped_lab: Lab) -> None:
    lab = capped_lab
    ping = await start(lab, {"target": target(lab, "tcp"), "duration": 30})
    rate = await start(
        lab, {"target": target(lab, "udp"), "pattern": "rate", "rate": 10, "count": 200}
    )
    refusals = [
        (ping, {"rate": 100}, "rate"),
        (ping, {"bitrate": 1e6}, "bitrate"),
        (rate, {"connections": 2}, "connections"),  # a count is shared out at the start
        (rate, {"rate": 5000}, "rate"),  # above the lab's rate cap
        (rate, {"rate": 2, "bitrate": 1e6}, "bitrate"),
        (ping, {"connections": 9}, "connections"),  # above the connection cap
        (ping, {"connections": 0}, "connections"),
        (ping, {"colour": "red"}, "colour"),
        (ping, {}, "body"),
        (ping, {"paused": "yes"}, "paused"),
        (ping, [1], "body"),
    ]
    for run_id, body, field in refusals:
        status, doc = await patch(lab, run_id, body)
        assert (status, doc.get("field")) == (422, field), (body, doc)
        assert doc["error"]
    # A count run that would no longer fit the duration cap at the new rate (200 messages
    # at 1 msg/s is 200 s; the cap is 60 s): the edit is refused, naming the rate.
    status, doc = await patch(lab, rate, {"rate": 1})
    assert (status, doc["field"]) == (422, "rate"), doc
    # Refused edits changed nothing.
    assert (await run_doc(lab, rate))["control"]["edits"] == []
    missing = await patch(lab, "0123456789ab", {"paused": True})
    assert (missing[0], missing[1]["field"]) == (404, "id")
    unauthorised = await http(
        port_of(lab), "PATCH", f"/api/runs/{ping}", body={"rate": 1}, token=None
    )
    assert unauthorised.status == 401
    not_json = await http(
        port_of(lab),
        "PATCH",
        f"/api/runs/{ping}",
        raw_body=b"rate=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_json.status == 415
    for run_id in (ping, rate):
        await http(port_of(lab), "POST", f"/api/runs/{run_id}/stop")
    gone = await http(port_of(lab), "POST", f"/api/runs/{ping}/pause")
    assert (gone.status, gone.json()["field"]) == (404, "id")


async def test_a_paused_run_still_holds_its_place_under_the_concurrent_run_cap(
    capped_lab: Lab,
) -> None:
    lab = capped_lab
    spec = {"target": target(lab, "tcp"), "duration": 30}
    first = await start(lab, spec)
    second = await start(lab, spec)
    for run_id in (first, second):
        paused = await http(port_of(lab), "POST", f"/api/runs/{run_id}/pause")
        assert paused.json()["status"] == "paused"
    third = await http(port_of(lab), "POST", "/api/runs", body=spec)
    assert third.status == 409
    listed = (await http(port_of(lab), "GET", "/api/runs")).json()["items"]
    assert {r["id"]: r["status"] for r in listed if r["id"] in (first, second)} == {
        first: "paused",
        second: "paused",
    }
    assert (await http(port_of(lab), "POST", "/api/runs/stop-all")).json() == {"stopped": 2}


async def test_the_byte_cap_holds_after_a_rate_edit(nursery: trio.Nursery, tmp_path: Path) -> None:
    cap = 64 * 300
    async with running_lab(nursery, tmp_path / "data", max_run_bytes=cap) as lab:
        spec = {"target": target(lab, "udp"), "pattern": "rate", "rate": 20, "duration": 60}
        run_id = await start(lab, spec)
        await series_until(lab, run_id, lambda s: len(s) >= 1)
        status, _ = await patch(lab, run_id, {"rate": 900})
        assert status == 200
        final = await ended(lab, run_id)
        assert final["summary"]["bytes_sent"] <= cap
        assert final["error"] and "cap" in final["error"]


def test_what_may_change_live_follows_the_pattern() -> None:
    settings = lab_settings(Path("/nonexistent"))
    cases = {
        "tcp://127.0.0.1:9 pingpong": ("connections", "paused"),
        "udp://127.0.0.1:9 rate rate=5": ("rate", "bitrate", "connections", "paused"),
        "udp://127.0.0.1:9 bulk rate=5": ("rate", "bitrate", "connections", "paused"),
        "tcp://127.0.0.1:9 bulk": ("connections", "paused"),
        "tcp://127.0.0.1:9 burst": ("connections", "paused"),
        "tcp://127.0.0.1:9 packet": (),
    }
    for text, fields in cases.items():
        url, pattern, *rest = text.split()
        body: dict[str, Any] = {"target": url, "pattern": pattern}
        body.update((k, float(v)) for k, v in (r.split("=") for r in rest))
        control = RunControl(parse_run_spec(body))
        assert control.editable == fields, text
    packet = RunControl(parse_run_spec({"target": "tcp://127.0.0.1:9", "pattern": "packet"}))
    with pytest.raises(SpecError) as refused:
        packet.check(RunEdit.model_validate({"paused": True}), settings)
    assert refused.value.field == "paused"


async def test_edit_answers_match_their_documented_schemas(lab: Lab) -> None:
    from tests.test_openapi import openapi, response_validator

    doc = await openapi(lab)
    spec = {"target": target(lab, "udp"), "pattern": "rate", "rate": 50, "duration": 30}
    run_id = await start(lab, spec)
    await series_until(lab, run_id, lambda s: len(s) >= 1)
    path = "/api/runs/{run_id}"
    status, answer = await patch(lab, run_id, {"rate": 60, "connections": 2})
    response_validator(doc, path, "patch", 200).validate(answer)
    for action in ("pause", "resume"):
        done = await http(port_of(lab), "POST", f"/api/runs/{run_id}/{action}")
        response_validator(doc, f"{path}/{action}", "post", 200).validate(done.json())
    series = await series_until(lab, run_id, lambda s: s[-1]["connections"] == 2)
    live = await run_doc(lab, run_id)
    response_validator(doc, path, "get", 200).validate(live)
    assert series[-1]["rate_target"] == 60
    status, refused = await patch(lab, run_id, {"bitrate": 0})
    assert status == 422
    response_validator(doc, path, "patch", 422).validate(refused)
    await http(port_of(lab), "POST", f"/api/runs/{run_id}/stop")
    status, missing = await patch(lab, run_id, {"rate": 10})
    assert status == 404
    response_validator(doc, path, "patch", 404).validate(missing)


async def test_the_cli_edits_pauses_and_resumes_a_run_on_a_lab(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    url = f"http://127.0.0.1:{port_of(lab)}"
    common = ["--url", url, "--token", TOKEN]
    spec = {"target": target(lab, "udp"), "pattern": "rate", "rate": 30, "duration": 30}
    run_id = await start(lab, spec)

    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await trio.to_thread.run_sync(main, [*argv, run_id, *common])
        out, err = capsys.readouterr()
        return code, out, err

    assert await cli("edit", "--rate", "90") == (
        0,
        f"run {run_id} running · rate 90 msg/s · 1 connection\n",
        "",
    )
    assert (await run_doc(lab, run_id))["control"]["rate_target"] == 90
    code, out, err = await cli("pause")
    assert (code, out.split(" · ")[0]) == (0, f"run {run_id} paused")
    code, out, _ = await cli("edit", "--no-paused", "--connections", "2")
    assert (code, out) == (0, f"run {run_id} running · rate 90 msg/s · 2 connections\n")
    # Refusals: one line naming the option, exit status 2.
    code, out, err = await cli("edit", "--rate", "2000000")
    assert (code, out) == (2, "")
    assert err.startswith("socketlab: error: --rate: ") and err.count("\n") == 1, err
    code, out, err = await cli("edit")
    assert (code, err.count("\n")) == (2, 1)
    code, out, err = await cli("resume")
    assert code == 0
    await http(port_of(lab), "POST", f"/api/runs/{run_id}/stop")
    code, out, err = await cli("pause")
    assert (code, err) == (2, f"socketlab: error: no running run '{run_id}'\n")


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
async def test_a_flow_without_a_gentle_retirement_is_closed_when_connections_shrink(
    nursery: trio.Nursery, tmp_path: Path, protocol: str
) -> None:
    # TCP bulk and TLS pingpong flows are ended as a close from the API ends them.
    from app.settings import parse_listener_url

    listeners = (
        parse_listener_url("tcp://127.0.0.1:0?mode=echo"),
        parse_listener_url("udp://127.0.0.1:0?mode=echo"),
        parse_listener_url("tls://127.0.0.1:0?mode=echo"),
    )
    async with running_lab(nursery, tmp_path / "data", listeners=listeners) as lab:
        spec: dict[str, Any] = {"target": target(lab, protocol), "connections": 2, "duration": 4}
        if protocol == "tcp":
            spec |= {"pattern": "bulk", "size": 1024}
        else:
            spec |= {"pattern": "pingpong", "insecure": True}
        run_id = await start(lab, spec)
        await series_until(lab, run_id, lambda s: len(s) >= 1 and s[-1]["sent"])
        status, doc = await patch(lab, run_id, {"connections": 1})
        assert status == 200, doc

        def one_row() -> bool:
            rows, _ = lab.registry.rows(offset=0, limit=100)
            return [r.get("run_id") for r in rows].count(run_id) == 1

        await wait_for(one_row, timeout=WAIT)
        final = await ended(lab, run_id)
        assert final["status"] == "finished", final["error"]
        assert final["summary"]["connections_opened"] == 2
        assert final["series"][-1]["connections"] == 1
        assert final["summary"]["errors"] == 0
