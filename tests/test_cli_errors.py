"""Every mistake a user makes on the command line is one line on stderr and exit code 2, never
a traceback; ``stop-all`` and TLS say what happened in words. Real processes, real ports:
the ports taken here are bound by the test itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from app.lab import Lab
from app.listeners.parse import parse_listener
from app.runs.spec import parse_run_spec
from tests.helpers import TOKEN


def socketlab(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a command that failed with ``code``."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("socketlab: error: ")
    return lines[0]


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that this test is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["fire", "tcp://169.254.1.1:9", "--count", "1"], "link-local (169.254.0.0/16)"),
        (["fire", "udp://0.0.0.0:9", "--count", "1"], "'this network' (0.0.0.0/8)"),
        (["send", "udp://0.0.0.0:9", "hi"], "always refused"),
        (["send", "tcp://169.254.0.1:9", "hi"], "always refused"),
        (["fire", "tcp://240.0.0.1:9"], "always refused"),
        (["fire", "tcp://[::ffff:169.254.0.1]:9"], "always refused"),
        (["stop-all", "--url", "foo"], "--url 'foo': give the lab's URL"),
        (["stop-all", "--url", "ftp://lab:8000"], "--url"),
        (["fire", "tcp://127.0.0.1:9", "--via", "foo"], "--via 'foo': give the lab's URL"),
        (["fire", "tcp://127.0.0.1:9", "--via", "http://127.0.0.1:99999"], "--via"),
        (["fire", "tcp://127.0.0.1:9", "--insecure"], "--insecure: a tcp:// target"),
        (["send", "udp://127.0.0.1:9", "hi", "--insecure"], "--insecure: a udp:// target"),
        (["fire", "foo"], "scheme"),
        (["send", "tcp://127.0.0.1:9", "zz", "--hex"], "--text"),
        (["listen", "tcp://127.0.0.1:0?mode=respond", "--rules", "/nonexistent.toml"], "rules"),
        (["serve", "--peer", "foo"], "peer"),
        (["serve", "--config", "/nonexistent.toml"], "config"),
    ],
)
def test_a_bad_invocation_is_one_line_and_exit_2(
    args: list[str], words: str, tmp_path: Path
) -> None:
    if args[0] == "serve":
        args = [*args, "--data", str(tmp_path / "data")]
    line = one_error_line(socketlab(*args))
    assert words in line


def test_a_token_in_a_bad_lab_url_is_not_repeated() -> None:
    line = one_error_line(socketlab("fire", "tcp://127.0.0.1:9", "--via", "http://:s3cret-token@"))
    assert "s3cret" not in line


def _outside_make_run() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SOCKETLAB_MAKE_RUN"}


def test_serve_with_the_web_port_taken_says_so_and_names_web(
    taken_tcp: int, tmp_path: Path
) -> None:
    args = ["serve", "--data", str(tmp_path / "data"), "--no-auth"]
    args += ["--web", f"127.0.0.1:{taken_tcp}", "--listen", "tcp://127.0.0.1:0"]
    line = one_error_line(socketlab(*args, env=_outside_make_run()))
    assert line == (
        f"socketlab: error: cannot serve the dashboard on 127.0.0.1:{taken_tcp}: "
        "Address already in use; choose another with --web HOST:PORT"
    )
    # As `make run` runs it: the flag is named the way make passes it.
    under_make = socketlab(*args, env={**os.environ, "SOCKETLAB_MAKE_RUN": "1"})
    assert one_error_line(under_make).endswith(
        "choose another with make run ARGS='--web HOST:PORT'"
    )


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_serve_with_a_listener_port_taken_says_so_and_names_listen(
    protocol: str, taken_tcp: int, taken_udp: int, tmp_path: Path
) -> None:
    port = taken_tcp if protocol == "tcp" else taken_udp
    url = f"{protocol}://127.0.0.1:{port}"
    args = ["serve", "--data", str(tmp_path / "data"), "--web", "127.0.0.1:0"]
    line = one_error_line(socketlab(*args, "--listen", url, env=_outside_make_run()))
    assert line == (
        f"socketlab: error: cannot bind {url}: Address already in use; "
        "choose another with --listen URL"
    )


def test_listen_with_its_port_taken_is_one_line(taken_tcp: int) -> None:
    line = one_error_line(socketlab("listen", f"tcp://127.0.0.1:{taken_tcp}"))
    assert "Address already in use" in line


async def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SOCKETLAB_TOKEN"}
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "app.cli", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


async def test_stop_all_says_how_many_runs_it_stopped_in_words(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.web_port}"
    none = await _cli("stop-all", "--url", url, "--token", TOKEN)
    assert (none.returncode, none.stdout.decode()) == (0, "stopped 0 runs\n")
    port = next(item.port for item in lab.listeners if item.spec.protocol == "tcp")
    run = await lab.runs.start(
        parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "duration": 60})
    )
    one = await _cli("stop-all", "--url", url, "--token", TOKEN)
    assert (one.returncode, one.stdout.decode()) == (0, "stopped 1 run\n")
    assert run.status == "stopped"


async def test_stop_all_with_a_wrong_token_or_no_lab_is_one_plain_line(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.web_port}"
    wrong = await _cli("stop-all", "--url", url, "--token", "not-the-token")
    assert wrong.returncode == 1
    (line,) = wrong.stderr.decode().strip().splitlines()
    assert line.startswith(f"socketlab: error: 401 from {url}/api/runs/stop-all: ")
    assert "{" not in line  # the lab's words, not its JSON
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    gone = await _cli("stop-all", "--url", f"http://127.0.0.1:{free}")
    assert gone.returncode == 1
    assert gone.stderr.decode() == (
        f"socketlab: error: cannot reach http://127.0.0.1:{free}/api/runs/stop-all: "
        "Connection refused\n"
    )


async def test_send_to_the_labs_own_tls_listener_says_why_and_goes_with_insecure(
    lab: Lab,
) -> None:
    listener = await lab.listeners.start(parse_listener("tls://127.0.0.1:0?mode=echo", "url"))
    target = f"tls://127.0.0.1:{listener.port}"
    refused = await _cli("send", target, "hello")
    assert refused.returncode == 1
    assert "certificate verify failed: self-signed certificate" in refused.stdout.decode()
    accepted = await _cli("send", target, "hello", "--insecure")
    assert accepted.returncode == 0, accepted.stdout
    assert "text  hello" in accepted.stdout.decode()


async def test_a_udp_run_at_a_closed_port_exits_1_like_a_tcp_refusal() -> None:
    codes = {}
    for kind, scheme in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        result = await _cli(
            "fire", f"{scheme}://127.0.0.1:{port}", "--count", "3", "--timeout", "0.3"
        )
        assert "failed (nothing got through; errors: " in result.stdout.decode()
        codes[scheme] = result.returncode
    assert codes == {"udp": 1, "tcp": 1}


def test_the_result_table_never_rounds_a_small_rate_to_zero_beside_a_bit_rate() -> None:
    from app.runs.fire import per_s

    # 5 messages of 64 B over 10 s: 0.5 msg/s and 256 bit/s, both said.
    assert per_s(0.5) == "0.5"
    assert per_s(0.497) == "0.497"
    assert per_s(12.54) == "12.5"
    assert per_s(0) == "0"
    assert per_s(1234.4) == "1,234"
