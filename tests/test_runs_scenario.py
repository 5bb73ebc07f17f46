"""Scenario runs against servers socketlab did not write or whose answers it knows apart:
a real redis-server (its own command counts are the truth), the lab's respond listener
(its rule hit counters), and a test server that logs what it did to each session."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.listeners.parse import parse_listener
from app.runs.spec import parse_run_spec


async def run_to_end(lab: Lab, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run = await lab.runs.start(parse_run_spec(body))
    with trio.fail_after(60):
        await run.done.wait()
    return run.status, run.summary()


def steps_of(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["step"]: row for row in summary["scenario"]["steps"]}


# --- a real Redis --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: `make test` installs it")
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--maxclients", "1000"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                if redis_cli(port, "PING").strip() == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            assert server.poll() is None, "redis-server exited"
            time.sleep(0.05)  # a process of its own starting: polled, not awaited
        yield port
    finally:
        server.terminate()
        server.wait(10)


def redis_cli(port: int, *command: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *command], check=True, capture_output=True, text=True
    ).stdout


def command_calls(port: int) -> dict[str, int]:
    """``cmdstat_<name>:calls=N`` of ``INFO commandstats``: Redis's own counts."""
    calls = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.partition(":")
            stats = dict(part.split("=", 1) for part in fields.split(","))
            calls[name.removeprefix("cmdstat_")] = int(stats["calls"])
    return calls


REDIS_SCENARIO = {
    "name": "redis",
    "steps": [
        {"send": "PING\\r\\n"},
        {"expect": "+PONG"},
        {"send": "SET k{counter} v{counter}\\r\\n"},
        {"expect": "+OK"},
        {"send": "GET k{counter}\\r\\n"},
        {"expect": "$", "match": "prefix"},
        {"expect": "v{counter}"},
        {"capture": "(?P<value>v[0-9]+)"},
    ],
}


async def test_a_scenario_against_redis_counts_what_redis_counts(lab: Lab, redis_port: int) -> None:
    before = command_calls(redis_port)
    status, summary = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{redis_port}",
            "pattern": "scenario",
            "scenario": REDIS_SCENARIO,
            "connections": 50,
            "duration": 5,
        },
    )
    after = command_calls(redis_port)
    figures = summary["scenario"]
    steps = steps_of(summary)
    assert status == "finished"
    assert summary["errors"] == 0, summary["error_samples"]
    assert figures["sessions_failed"] == 0 and figures["worst_step"] is None
    sessions = figures["sessions"]
    assert sessions > 50
    # Redis's own counts of the commands the sessions sent (a session the end of the run
    # cut short counts the steps it made, not as a session).
    for step, command in (("steps.0", "ping"), ("steps.2", "set"), ("steps.4", "get")):
        sent = after.get(command, 0) - before.get(command, 0)
        assert steps[step]["count"] == sent >= sessions, (step, command)
    for step in ("steps.1", "steps.3", "steps.5", "steps.6"):
        row = steps[step]
        assert row["count"] >= sessions and row["failed"] == 0
        assert row["passed"] == row["count"]
        latency = row["latency_ms"]
        assert latency is not None and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert steps["steps.7"]["passed"] >= sessions
    assert summary["sent"] == sum(steps[s]["count"] for s in ("steps.0", "steps.2", "steps.4"))


# --- the lab's own respond listener -----------------------------------------------------


async def test_a_captured_value_is_sent_back_and_checked_byte_for_byte(lab: Lab) -> None:
    listener = await lab.listeners.start(
        parse_listener(
            {
                "url": "tcp://127.0.0.1:0?mode=respond",
                "rules": [
                    {"match": "exact", "pattern": "HELLO", "reply": "TOKEN {random:16}\\n"},
                    {
                        "match": "regex",
                        "pattern": "^USE (?P<t>[0-9a-f]{16})$",
                        "reply": "OK {t} \\x01\\xfe\\n",
                    },
                ],
            }
        )
    )
    status, summary = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{listener.port}",
            "pattern": "scenario",
            "connections": 4,
            "iterations": 40,
            "scenario": {
                "steps": [
                    {"send": "HELLO\\n"},
                    {"expect": "TOKEN ", "match": "prefix"},
                    {"capture": "^TOKEN (?P<token>[0-9a-f]{16})$"},
                    {"send": "USE {token}\\n"},
                    # The whole line, byte for byte: the token that came back, then \x01\xfe.
                    {"expect": "OK {token} \\x01\\xfe"},
                ]
            },
        },
    )
    assert status == "finished"
    assert summary["scenario"]["sessions"] == 40
    assert summary["scenario"]["sessions_failed"] == 0, summary["scenario"]
    hits = [rule["hits"] for rule in listener.to_dict()["respond"]["rules"]]
    assert hits == [40, 40]


async def test_wrong_answers_are_failures_of_their_step_as_many_as_the_rule_hit(lab: Lab) -> None:
    # Sessions whose number ends in 0 or 5 get a wrong answer from the first rule.
    listener = await lab.listeners.start(
        parse_listener(
            {
                "url": "tcp://127.0.0.1:0?mode=respond",
                "rules": [
                    {"match": "regex", "pattern": "^Q [0-9]*[05]$", "reply": "WRONG\\n"},
                    {"match": "prefix", "pattern": "Q ", "reply": "RIGHT\\n"},
                ],
            }
        )
    )
    status, summary = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{listener.port}",
            "pattern": "scenario",
            "connections": 3,
            "iterations": 60,
            "scenario": {"steps": [{"send": "Q {counter}\\n"}, {"expect": "RIGHT"}]},
        },
    )
    wrong, right = (rule["hits"] for rule in listener.to_dict()["respond"]["rules"])
    row = steps_of(summary)["steps.1"]
    assert status == "finished"
    assert wrong + right == 60 and wrong == 12
    assert (row["failed"], row["passed"]) == (wrong, right)
    assert row["errors_by_kind"] == {"mismatch": wrong}
    assert summary["errors_by_kind"] == {"mismatch": wrong}
    assert summary["scenario"]["worst_step"] == "steps.1"
    assert row["samples"] and all(s["text"] == "WRONG" for s in row["samples"])


# --- timeouts, resets, refusals -----------------------------------------------------------


async def serve_by_number(log: dict[str, int], task_status: trio.TaskStatus[int]) -> None:
    """A line server: ``Q n`` gets no answer when n % 3 == 0, a reset when n % 3 == 1,
    ``OK`` otherwise; it counts what it did in ``log``."""

    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            if not chunk:
                return
            buffer += chunk
        n = int(buffer.split()[1])
        if n % 3 == 0:
            log["silent"] += 1
            await trio.sleep_forever()
        elif n % 3 == 1:
            log["reset"] += 1
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
        else:
            log["answered"] += 1
            await stream.send_all(b"OK\n")
            await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_timeouts_resets_and_refusals_are_counted_by_kind_and_others_pass(
    lab: Lab, nursery: trio.Nursery
) -> None:
    log = {"silent": 0, "reset": 0, "answered": 0}
    port = await nursery.start(serve_by_number, log)
    status, summary = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{port}",
            "pattern": "scenario",
            "connections": 6,
            "iterations": 30,
            "scenario": {
                "steps": [
                    {"send": "Q {counter}\\n"},
                    {"expect": "OK", "timeout": 0.3},
                    {"close": True},
                ]
            },
        },
    )
    row = steps_of(summary)["steps.1"]
    assert status == "finished"
    assert log == {"silent": 10, "reset": 10, "answered": 10}
    assert row["passed"] == log["answered"]
    kinds = row["errors_by_kind"]
    assert kinds.get("timeout", 0) == log["silent"]
    # A reset reads as a reset, or as the stream's end when it came before the read.
    assert kinds.get("reset", 0) + kinds.get("closed", 0) == log["reset"]
    assert summary["scenario"]["sessions"] == 30

    # Nothing listens there: every session is refused, and the run still ends.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    status, summary = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{closed}",
            "pattern": "scenario",
            "iterations": 5,
            "scenario": {"steps": [{"send": "x"}]},
        },
    )
    assert status == "failed"
    assert summary["errors_by_kind"] == {"refused": 5}
    assert steps_of(summary)["steps.0"]["errors_by_kind"] == {"refused": 5}


async def test_fire_scenario_prints_the_step_table(lab: Lab, tmp_path: Path) -> None:
    from tests.conftest import listener_port

    scenario = tmp_path / "echo.toml"
    scenario.write_text('[[steps]]\nsend = "hi {counter}\\n"\n[[steps]]\nexpect = "hi {counter}"\n')
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    command = [sys.executable, "-m", "app.cli", "fire", target, "--pattern", "scenario"]
    with trio.fail_after(30):
        result = await trio.run_process(
            [*command, "--scenario", str(scenario), "--iterations", "20", "--conns", "2"],
            capture_stdout=True,
            capture_stderr=True,
        )
    out = result.stdout.decode()
    assert "sessions 20 (0 failed)" in out, out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("steps.")]
    assert [row[:5] for row in rows] == [
        ["steps.0", "send", "20", "20", "0"],
        ["steps.1", "expect", "20", "20", "0"],
    ]
