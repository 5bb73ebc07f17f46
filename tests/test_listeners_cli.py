"""``socketlab listen``: listeners without the dashboard, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

_LISTENING = re.compile(r"listening (\w+)://127\.0\.0\.1:(\d+)\?(\S*) \((l\d+)\)")


def _start(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """Start ``socketlab listen`` and read its "listening" lines, with a deadline: a child
    that prints nothing fails the test instead of hanging it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "listen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    expected = sum(arg.count("://") for arg in args)
    fd = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + 20
    while output.count(b"\n") < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        output += chunk
    ports = {m.group(4): int(m.group(2)) for m in _LISTENING.finditer(output.decode())}
    if len(ports) < expected:
        process.kill()
        _, errors = process.communicate()
        raise AssertionError(f"socketlab listen did not start: {errors.decode()}")
    return process, ports


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    return process.returncode, out.decode()


async def test_listen_serves_until_sigterm_then_prints_totals() -> None:
    process, ports = _start("tcp://127.0.0.1:0", "udp://127.0.0.1:0?mode=statsd", "--flushes")
    try:
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", ports["l1"]) as stream:
                await stream.send_all(b"standalone")
                assert await stream.receive_some(100) == b"standalone"
    finally:
        code, out = _stop(process)
    assert code == 0
    summary = [line for line in out.splitlines() if line.startswith("l1 ")]
    assert summary and "msgs_in=1" in summary[0] and "bytes_in=10" in summary[0]
    assert any(line.startswith("l2 ") and "metrics=0" in line for line in out.splitlines())


async def test_listen_flags_are_defaults_for_the_urls(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"match": "exact", "pattern": "hi", "reply": "hello\\n"}]))
    process, ports = _start(
        "tcp://127.0.0.1:0", "--mode", "respond", "--rules", str(rules), "--json"
    )
    try:
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", ports["l1"]) as stream:
                await stream.send_all(b"hi\n")
                assert await stream.receive_some(100) == b"hello\n"
    finally:
        code, out = _stop(process)
    assert code == 0
    documents = json.loads(out[out.index("[") :])
    assert documents[0]["mode"] == "respond"
    assert documents[0]["respond"]["rules"][0]["hits"] == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tcp://127.0.0.1:0?mode=nope"], "mode must be one of"),
        (["tcp://127.0.0.1:0", "--mode", "respond"], "needs rules"),
        (["tcp://127.0.0.1:0?loss=3"], "udp:// listeners only"),
        (["udp://127.0.0.1:0?mode=respond&rules_file=/does/not/exist.json"], "cannot read"),
    ],
)
def test_bad_listen_arguments_exit_2_with_one_line(args: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "listen", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]


def test_a_port_in_use_exits_2_with_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "listen", f"tcp://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "cannot bind" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
