"""The ``socketlab`` command as a user runs it: exit codes, one-line errors, real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from app.lab import Lab
from tests.conftest import listener_port
from tests.helpers import start_served_lab


def socketlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--no-auth", "--web", "0.0.0.0:0"], "loopback"),
        (["serve", "--listen", "sctp://127.0.0.1:1"], "scheme"),
        (["serve", "--web", "nonsense"], "HOST:PORT"),
        (["serve", "--allow-bind", "10.0.0.0/33"], "allow_binds"),
        (["fire", "tcp://127.0.0.1"], "no port"),
        (["fire", "tcp://127.0.0.1:9", "--conns", "0"], "connections"),
        (["fire", "tcp://127.0.0.1:9", "--conns", "many"], "invalid int"),
        (["fire", "tcp://127.0.0.1:9", "--count", "3", "--duration", "1"], "not allowed"),
        (["teleport"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], words: str) -> None:
    result = socketlab(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert result.stdout == ""


def test_help_explains_every_option() -> None:
    fire = socketlab("fire", "--help")
    assert fire.returncode == 0
    for option in ("--pattern", "--conns", "--size", "--duration", "--count", "--json"):
        assert option in fire.stdout
    serve = socketlab("serve", "--help")
    for option in ("--web", "--listen", "--token", "--no-auth", "--data", "--config"):
        assert option in serve.stdout


async def test_fire_json_prints_the_api_document(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fire",
            f"tcp://127.0.0.1:{port}",
            "--conns",
            "4",
            "--count",
            "400",
            "--json",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "finished"
    assert doc["summary"]["sent"] == doc["summary"]["received"] == 400
    assert doc["spec"]["connections"] == 4
    assert set(doc) >= {"id", "status", "spec", "summary", "series"}


async def test_fire_prints_a_table_and_exits_1_when_the_run_fails(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    ok = await trio.run_process(
        [sys.executable, "-m", "app.cli", "fire", f"tcp://127.0.0.1:{port}", "--count", "10"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert ok.returncode == 0
    table = ok.stdout.decode()
    assert "finished" in table
    assert "p99" in table
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    failed = await trio.run_process(
        [sys.executable, "-m", "app.cli", "fire", f"tcp://127.0.0.1:{free}", "--count", "1"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert failed.returncode == 1
    assert "refused" in failed.stdout.decode()


def test_sigterm_stops_the_lab_in_order_and_exits_0_within_3_s(tmp_path: Path) -> None:
    served = start_served_lab(tmp_path / "data")
    try:
        import socket

        # An open client connection must not hold shutdown up.
        client = socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
        started = time.monotonic()
        code = served.stop(signal.SIGTERM)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < 3.0
        client.settimeout(5)
        assert client.recv(10) == b""  # the lab closed it
        client.close()
    finally:
        if served.process.poll() is None:
            served.process.kill()
        served.process.wait()
        served.close_stdout()


def test_sigint_exits_0(tmp_path: Path) -> None:
    served = start_served_lab(tmp_path / "data")
    try:
        assert served.stop(signal.SIGINT) == 0
    finally:
        served.close_stdout()
