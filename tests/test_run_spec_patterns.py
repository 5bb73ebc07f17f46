"""Each pattern accepts only its own fields: every other field is refused by name.

Over the API a refused field is a 422 whose ``field`` is that field; from the CLI it is exit
2 with one line naming the option. The table is every pattern by every field of the union.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.lab import Lab
from app.runs.options import option_name
from app.runs.spec import MODELS, PATTERNS, RUN_SPEC_FIELDS, parse_run_spec
from tests.helpers import http

# A value each field would accept where its pattern has it.
VALUES: dict[str, Any] = {
    "connections": 2,
    "size": 100,
    "size_max": 200,
    "duration": 1,
    "count": 5,
    "warmup": 0.5,
    "ramp_up": 0.5,
    "in_flight": 2,
    "rate": 100,
    "bitrate": 1e6,
    "burst": 5,
    "interval": 0.5,
    "timeout": 1,
    "insecure": True,
    "expect_replies": True,
    "payload": {"kind": "zeros"},
    "iterations": 3,
    "scenario": {"steps": [{"send": "x"}]},
    "reverse": True,
    "bidir": True,
    "ttl": 4,
    "iface": "eth0",
    "loopback": True,
}
# What each pattern needs to be valid at all (a rate run needs its rate).
BASE: dict[str, dict[str, Any]] = {
    "rate": {"rate": 100},
    "bulk": {},
    "scenario": {"scenario": {"steps": [{"send": "x"}]}},
}
TARGET = "tcp://127.0.0.1:9"


def refused_pairs() -> list[tuple[str, str]]:
    return [
        (pattern, name)
        for pattern in PATTERNS
        for name in RUN_SPEC_FIELDS
        if name not in MODELS[pattern].model_fields
    ]


def body(pattern: str, name: str | None = None) -> dict[str, Any]:
    doc = {"target": TARGET, "pattern": pattern, **BASE.get(pattern, {})}
    if name is not None:
        doc[name] = VALUES[name]
    return doc


def test_the_table_covers_every_refusal_the_issue_names() -> None:
    pairs = set(refused_pairs())
    assert {("pingpong", "rate"), ("rate", "in_flight"), ("packet", "size")} <= pairs
    assert {("pingpong", n) for n in ("rate", "bitrate", "burst", "interval")} <= pairs
    assert {("rate", n) for n in ("in_flight", "burst", "interval")} <= pairs
    assert {("pingpong", "expect_replies"), ("packet", "expect_replies")} <= pairs
    assert {("scenario", n) for n in ("payload", "size", "count", "rate")} <= pairs
    assert all(name in VALUES for _, name in pairs)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_field_a_pattern_has_is_accepted(pattern: str) -> None:
    for name in MODELS[pattern].model_fields:
        if name in VALUES:
            doc = body(pattern, name)
            if name == "bitrate":  # rate and bitrate exclude each other
                doc.pop("rate", None)
            if name == "insecure":  # only a TLS target has a certificate to accept
                doc["target"] = "tls://127.0.0.1:9"
            if name in ("ttl", "iface", "loopback"):  # only a group has a TTL to set
                doc["target"] = "udp://239.1.2.3:9"
            if pattern == "bulk" and name in ("rate", "bitrate", "size_max"):
                doc["target"] = "udp://127.0.0.1:9"  # TCP bulk goes as fast as it can
                doc.setdefault("bitrate" if name == "bitrate" else "rate", 100)
            parse_run_spec(doc)


async def test_every_field_a_pattern_ignores_is_a_422_naming_it(lab: Lab) -> None:
    assert lab.web_port is not None
    wrong = []
    for pattern, name in refused_pairs():
        response = await http(lab.web_port, "POST", "/api/runs", body=body(pattern, name))
        doc = response.json()
        if response.status != 422 or doc["field"] != name or pattern not in doc["error"]:
            wrong.append((pattern, name, response.status, doc))
    assert wrong == []
    assert await lab.runs.list() == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"target": TARGET, "pattern": "bulk", "rate": 100}, "rate"),
        ({"target": TARGET, "pattern": "bulk", "bitrate": 1e6}, "bitrate"),
        ({"target": "tls://127.0.0.1:9", "pattern": "bulk", "size_max": 100}, "size_max"),
        ({"target": TARGET, "insecure": True}, "insecure"),
        ({"target": "udp://127.0.0.1:9", "pattern": "packet", "insecure": True}, "insecure"),
    ],
)
async def test_a_field_the_protocol_ignores_is_a_422_naming_it(
    lab: Lab, spec: dict[str, Any], field: str
) -> None:
    assert lab.web_port is not None
    response = await http(lab.web_port, "POST", "/api/runs", body=spec)
    assert (response.status, response.json()["field"]) == (422, field)


def test_udp_pingpong_with_several_in_flight_and_udp_bulk_with_a_rate_are_fine() -> None:
    # UDP pingpong keeps in_flight datagrams out per flow (it was refused above 1).
    for in_flight in (1, 8, 1024):
        spec = parse_run_spec({"target": "udp://127.0.0.1:9", "in_flight": in_flight})
        assert spec.in_flight == in_flight
    parse_run_spec({"target": "udp://127.0.0.1:9", "pattern": "bulk", "rate": 10})


def _cli_value(name: str, value: Any, scenario_file: Path) -> list[str]:
    # The options that are not the field's JSON value: a file, and the payload's kind.
    if name == "scenario":
        return [str(scenario_file)]
    if name == "payload":
        return [value["kind"]]
    return [] if value is True else [str(value)]


@pytest.mark.parametrize(("pattern", "name"), refused_pairs())
def test_the_cli_refuses_an_ignored_option_with_exit_2_naming_it(
    pattern: str, name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(json.dumps(VALUES["scenario"]))
    args = ["fire", TARGET, "--pattern", pattern]
    for key, value in BASE.get(pattern, {}).items():
        args += [option_name(key), *_cli_value(key, value, scenario_file)]
    args += [option_name(name), *_cli_value(name, VALUES[name], scenario_file)]
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"socketlab: error: {option_name(name)}: ")


def test_the_cli_sends_only_the_options_given() -> None:
    from app.cli import build_parser
    from app.runs.options import spec_body

    args = build_parser().parse_args(["fire", TARGET, "--conns", "3", "--size", "10-20"])
    assert spec_body(args.url, args) == {
        "target": TARGET,
        "connections": 3,
        "size": 10,
        "size_max": 20,
    }


@pytest.mark.parametrize("pattern", ["rate", "burst", "bulk"])
def test_expect_replies_is_yes_no_or_left_to_the_lab(pattern: str) -> None:
    doc = {"target": "udp://127.0.0.1:9", "pattern": pattern, **BASE.get(pattern, {})}
    if pattern == "bulk":
        doc["rate"] = 100
    assert parse_run_spec(doc).expect_replies is None  # decided at run time
    assert parse_run_spec({**doc, "expect_replies": False}).expect_replies is False


def test_the_cli_says_no_replies_are_expected_with_no_expect_replies() -> None:
    from app.cli import build_parser
    from app.runs.options import spec_body

    args = build_parser().parse_args(
        ["fire", "udp://127.0.0.1:9", "--pattern", "rate", "--rate", "10", "--no-expect-replies"]
    )
    assert spec_body(args.url, args)["expect_replies"] is False
