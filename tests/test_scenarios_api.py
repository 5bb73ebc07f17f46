"""Saved scenarios over the API (create, list, get, edit, delete, refusals), a run that names
a saved scenario, the text view's parse, and the dry run of one session against the lab's
own respond listener (real sockets, real SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from app.lab import Lab
from app.wire.scenario import Scenario
from tests.conftest import listener_port, running_lab
from tests.helpers import http, wait_for_async

# A respond listener: PING gets a numbered PONG; ECHO <word> gets GOT <word> back.
RULES = [
    {"match": "prefix", "pattern": "PING", "reply": "PONG {counter}\n"},
    {"match": "regex", "pattern": "^ECHO (?P<word>[0-9a-z]+)", "reply": "GOT {word}\n"},
]

# Captures the number of one reply and sends it back in the next.
ROUND_TRIP: dict[str, Any] = {
    "steps": [
        {"send": "PING\\n"},
        {"expect": "PONG ", "match": "prefix"},
        {"capture": "PONG (?P<n>[0-9]+)"},
        {"send": "ECHO {n}\\n"},
        {"expect": "GOT {n}"},
    ]
}


async def call(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    assert lab.web_port is not None
    answer = await http(lab.web_port, method, path, body=body)
    return answer.status, answer.json() if answer.body else None


async def respond_listener(lab: Lab) -> str:
    status, listener = await call(
        lab,
        "POST",
        "/api/listeners",
        {"url": "tcp://127.0.0.1:0?mode=respond", "rules": RULES, "default_reply": "?\n"},
    )
    assert status == 201, listener
    return f"tcp://127.0.0.1:{listener['port']}"


async def test_saved_scenarios_are_created_listed_edited_and_deleted(lab: Lab) -> None:
    status, saved = await call(
        lab, "POST", "/api/scenarios", {"name": "rt", "scenario": ROUND_TRIP}
    )
    assert status == 201, saved
    assert saved["name"] == "rt"
    assert saved["scenario"]["steps"][0] == {
        "send": "PING\\n",
        "encoding": "text",
    }
    status, again = await call(
        lab, "POST", "/api/scenarios", {"name": "rt", "scenario": ROUND_TRIP}
    )
    assert (status, again["field"]) == (409, "name")

    status, listing = await call(lab, "GET", "/api/scenarios")
    assert status == 200
    assert [item["name"] for item in listing["items"]] == ["rt"]
    assert (await call(lab, "GET", "/api/scenarios/rt"))[1] == saved

    shorter = {"steps": ROUND_TRIP["steps"][:2]}
    status, edited = await call(lab, "PUT", "/api/scenarios/rt", {"scenario": shorter})
    assert status == 200, edited
    assert len(edited["scenario"]["steps"]) == 2
    assert edited["created_at"] == saved["created_at"]
    assert edited["updated_at"] >= saved["updated_at"]
    status, missing = await call(lab, "PUT", "/api/scenarios/nope", {"scenario": shorter})
    assert (status, missing["field"]) == (404, "name")

    assert (await call(lab, "DELETE", "/api/scenarios/rt"))[0] == 204
    assert (await call(lab, "DELETE", "/api/scenarios/rt"))[0] == 404
    assert (await call(lab, "GET", "/api/scenarios/rt"))[0] == 404
    assert (await call(lab, "GET", "/api/scenarios"))[1] == {"items": []}


async def test_a_bad_scenario_is_refused_naming_the_step_and_field(lab: Lab) -> None:
    cases = [
        # The model: a step with two actions, a field of the wrong type.
        ({"steps": [{"send": "a"}, {"send": "b", "expect": "c"}]}, "scenario.steps.1"),
        (
            {"steps": [{"send": "a"}, {"expect": "b", "timeout": "soon"}]},
            "scenario.steps.1.timeout",
        ),
        # The compiler: a variable used before a step captures it, a regex that is not RE2.
        ({"steps": [{"send": "{nope}"}]}, "scenario.steps.0.send"),
        ({"steps": [{"send": "a"}, {"expect": "(", "match": "regex"}]}, "scenario.steps.1.expect"),
    ]
    for scenario, field in cases:
        status, error = await call(
            lab, "POST", "/api/scenarios", {"name": "bad", "scenario": scenario}
        )
        assert status == 422, (scenario, error)
        assert error["field"] == field, (scenario, error)
        assert error["error"].startswith(field), error
    status, error = await call(
        lab, "POST", "/api/scenarios", {"name": "a/b", "scenario": ROUND_TRIP}
    )
    assert (status, error["field"]) == (422, "name")
    assert (await call(lab, "GET", "/api/scenarios"))[1] == {"items": []}


async def test_the_routes_need_the_token(lab: Lab) -> None:
    assert lab.web_port is not None
    for method, path in (
        ("GET", "/api/scenarios"),
        ("POST", "/api/scenarios"),
        ("GET", "/api/scenarios/x"),
        ("PUT", "/api/scenarios/x"),
        ("DELETE", "/api/scenarios/x"),
        ("POST", "/api/scenarios/parse"),
        ("POST", "/api/scenarios/dry-run"),
    ):
        answer = await http(lab.web_port, method, path, token=None, body={})
        assert answer.status == 401, (method, path)


async def test_a_run_naming_a_saved_scenario_stores_the_steps_it_ran(lab: Lab) -> None:
    target = await respond_listener(lab)
    assert (await call(lab, "POST", "/api/scenarios", {"name": "rt", "scenario": ROUND_TRIP}))[
        0
    ] == 201
    body = {"target": target, "pattern": "scenario", "scenario": "rt", "iterations": 3}
    status, ref = await call(lab, "POST", "/api/runs", body)
    assert status == 201, ref

    async def finished() -> Any:
        doc = (await call(lab, "GET", f"/api/runs/{ref['id']}"))[1]
        return doc if doc["status"] != "running" else None

    doc = await wait_for_async(finished, timeout=30)
    assert doc["status"] == "finished", doc
    saved = (await call(lab, "GET", "/api/scenarios/rt"))[1]
    ran = Scenario.model_validate(doc["spec"]["scenario"])
    assert ran == Scenario.model_validate(saved["scenario"])
    figures = doc["summary"]["scenario"]
    assert (figures["sessions"], figures["sessions_failed"]) == (3, 0)
    # Editing the saved scenario later changes no stored run.
    assert (await call(lab, "PUT", "/api/scenarios/rt", {"scenario": {"steps": [{"send": "x"}]}}))[
        0
    ] == 200
    again = (await call(lab, "GET", f"/api/runs/{ref['id']}"))[1]
    assert again["spec"]["scenario"] == doc["spec"]["scenario"]

    status, error = await call(lab, "POST", "/api/runs", body | {"scenario": "missing"})
    assert (status, error["field"]) == (422, "scenario")
    assert "missing" in error["error"]


async def test_the_text_view_parses_toml_and_names_what_is_wrong(lab: Lab) -> None:
    toml = (
        'name = "rt"\n[[steps]]\nsend = "PING\\\\n"\n'
        '[[steps]]\nexpect = "PONG "\nmatch = "prefix"\n'
    )
    status, parsed = await call(
        lab, "POST", "/api/scenarios/parse", {"text": toml, "format": "toml"}
    )
    assert status == 200, parsed
    assert parsed["scenario"]["steps"][0] == {"send": "PING\\n", "encoding": "text"}
    assert parsed["scenario"]["steps"][1]["match"] == "prefix"
    status, error = await call(
        lab, "POST", "/api/scenarios/parse", {"text": "[[steps]\n", "format": "toml"}
    )
    assert (status, error["field"]) == (422, "text")
    bad = '[[steps]]\nsend = "a"\n[[steps]]\nexpect = "b"\nframing = "length"\n'
    status, error = await call(lab, "POST", "/api/scenarios/parse", {"text": bad, "format": "toml"})
    assert (status, error["field"]) == (422, "scenario.steps.1.length"), error


async def test_a_dry_run_shows_each_exchange_byte_for_byte(lab: Lab) -> None:
    target = await respond_listener(lab)
    status, result = await call(
        lab, "POST", "/api/scenarios/dry-run", {"target": target, "scenario": ROUND_TRIP}
    )
    assert status == 200, result
    assert result["ok"] is True and result["error"] is None, result
    shown = [(x["step"], x["action"], x["ok"]) for x in result["exchanges"]]
    assert shown == [
        ("steps.0", "send", True),
        ("steps.1", "expect", True),
        ("steps.2", "capture", True),
        ("steps.3", "send", True),
        ("steps.4", "expect", True),
    ]
    exchanges = result["exchanges"]
    # The value captured from the first reply went back in the next send, byte for byte.
    assert exchanges[0]["sent"] == {"bytes": 5, "hex": b"PING\n".hex(" "), "text": "PING\\n"}
    assert exchanges[1]["received"] == {"bytes": 6, "hex": b"PONG 1".hex(" "), "text": "PONG 1"}
    assert exchanges[3]["sent"]["hex"] == b"ECHO 1\n".hex(" ")
    assert exchanges[4]["received"]["hex"] == b"GOT 1".hex(" ")
    assert exchanges[4]["latency_ms"] > 0
    # No run is kept.
    assert (await call(lab, "GET", "/api/runs"))[1]["items"] == []


async def test_a_dry_run_that_fails_names_the_step_and_kind(lab: Lab) -> None:
    target = await respond_listener(lab)
    wrong = {"steps": [{"send": "PING\\n"}, {"expect": "PANG", "match": "prefix"}, {"send": "x"}]}
    status, result = await call(
        lab, "POST", "/api/scenarios/dry-run", {"target": target, "scenario": wrong}
    )
    assert status == 200, result
    assert (result["ok"], result["failed_step"]) == (False, "steps.1")
    failed = result["exchanges"][-1]
    assert (failed["step"], failed["kind"], failed["received"]["text"]) == (
        "steps.1",
        "mismatch",
        "PONG 1",
    )
    assert len(result["exchanges"]) == 2  # the session ends at the first failed step

    # Nothing listens: the first step fails as refused.
    port = listener_port(lab, "tcp")
    await call(
        lab, "DELETE", f"/api/listeners/{next(x.id for x in lab.listeners if x.port == port)}"
    )
    status, result = await call(
        lab,
        "POST",
        "/api/scenarios/dry-run",
        {"target": f"tcp://127.0.0.1:{port}", "scenario": wrong},
    )
    assert status == 200, result
    assert result["ok"] is False
    assert result["exchanges"][0]["kind"] == "refused", result


async def test_a_dry_run_is_held_to_the_target_policy_and_names_saved_scenarios(
    lab: Lab,
) -> None:
    status, error = await call(
        lab,
        "POST",
        "/api/scenarios/dry-run",
        {"target": "tcp://192.0.2.1:9", "scenario": ROUND_TRIP},
    )
    assert status == 403, error
    status, error = await call(
        lab, "POST", "/api/scenarios/dry-run", {"target": "tcp://127.0.0.1:9", "scenario": "nope"}
    )
    assert (status, error["field"]) == (422, "scenario")
    target = await respond_listener(lab)
    await call(lab, "POST", "/api/scenarios", {"name": "rt", "scenario": ROUND_TRIP})
    status, result = await call(
        lab, "POST", "/api/scenarios/dry-run", {"target": target, "scenario": "rt"}
    )
    assert (status, result["ok"]) == (200, True), result
    status, error = await call(
        lab,
        "POST",
        "/api/scenarios/dry-run",
        {"target": target, "scenario": {"steps": [{"send": "{x}"}]}},
    )
    assert (status, error["field"]) == (422, "scenario.steps.0.send"), error


async def test_saved_scenarios_survive_a_restart_and_are_capped(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_lab(nursery, data) as first:
        status, saved = await call(
            first, "POST", "/api/scenarios", {"name": "rt", "scenario": ROUND_TRIP}
        )
        assert status == 201, saved
    async with running_lab(nursery, data) as second:
        assert (await call(second, "GET", "/api/scenarios/rt"))[1] == saved
        second.scenarios.store.max_scenarios = 1
        status, error = await call(
            second, "POST", "/api/scenarios", {"name": "other", "scenario": ROUND_TRIP}
        )
        assert (status, error["field"]) == (409, "name"), error
        # Replacing the one saved is not a new one.
        status, _ = await call(second, "PUT", "/api/scenarios/rt", {"scenario": ROUND_TRIP})
        assert status == 200


async def test_a_dry_run_of_a_malformed_scenario_names_its_field(lab: Lab) -> None:
    cases = [
        (5, "scenario"),
        ({"steps": [{"send": "a", "expect": "b"}]}, "scenario.steps.0"),
        ({"steps": [{"expect": "b", "timeout": "soon"}]}, "scenario.steps.0.timeout"),
        ({"steps": []}, "scenario.steps"),
    ]
    for scenario, field in cases:
        body = {"target": "tcp://127.0.0.1:9", "scenario": scenario}
        status, error = await call(lab, "POST", "/api/scenarios/dry-run", body)
        assert (status, error["field"]) == (422, field), (scenario, error)
    status, error = await call(lab, "POST", "/api/scenarios/dry-run", {"scenario": "x"})
    assert (status, error["field"]) == (422, "target"), error
