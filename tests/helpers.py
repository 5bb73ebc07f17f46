"""Test helpers: a framing-aware HTTP client, condition waits, lab settings for tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h11
import trio

from app.settings import Settings, parse_listener_url

if TYPE_CHECKING:
    from app.lab import Lab

TOKEN = "test-token-0123456789"


def lab_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process lab: port 0 everywhere, loopback, a known token."""
    values: dict[str, Any] = {
        "web_host": "127.0.0.1",
        "web_port": 0,
        "listeners": (
            parse_listener_url("tcp://127.0.0.1:0?mode=echo"),
            parse_listener_url("udp://127.0.0.1:0?mode=echo"),
        ),
        "token": TOKEN,
        "data_dir": data_dir,
        "snapshot_interval": 0.05,
        "graceful_timeout": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    body: Any = None,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Response:
    """One HTTP/1.1 request, read by framing up to the end of the message (never to EOF)."""
    hdrs = {"Host": f"{host}:{port}", "Connection": "close"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if raw_body is not None:
        data = raw_body
    if data:
        hdrs["Content-Length"] = str(len(data))
    hdrs.update(headers or {})
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            out = conn.send(h11.Request(method=method, target=path, headers=list(hdrs.items())))
            if data:
                out += conn.send(h11.Data(data=data))
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            status, rheaders, chunks = 0, {}, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    rheaders = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
    return Response(status, rheaders, b"".join(chunks))


async def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    """Wait until ``condition()`` is truthy, with a hang guard.

    For state that lives in another task or process (a kernel socket, a server's counters)
    and has no event to wait on, this re-checks the condition a few ms apart; the guard
    turns a condition that never holds into a failure, not a hang.
    """
    with trio.fail_after(timeout):
        while not (result := condition()):  # noqa: ASYNC110
            await trio.sleep(0.005)
        return result


async def wait_for_async(
    condition: Callable[[], Any],
    timeout: float = 5.0,  # noqa: ASYNC109
) -> Any:
    """Like :func:`wait_for`, for a coroutine function."""
    with trio.fail_after(timeout):
        while not (result := await condition()):  # noqa: ASYNC110
            await trio.sleep(0.01)
        return result


async def finished_run(
    lab: Lab,
    spec: dict[str, Any],
    timeout: float = 30.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Start a run on ``lab`` over the API (``POST /api/runs``, body ``spec``) and return
    its document (``GET /api/runs/{id}``) once it is no longer running."""
    assert lab.web_port is not None
    port = lab.web_port
    created = await http(port, "POST", "/api/runs", body=spec)
    assert created.status == 201, created.body
    run_id = created.json()["id"]

    async def ended() -> dict[str, Any] | None:
        doc: dict[str, Any] = (await http(port, "GET", f"/api/runs/{run_id}")).json()
        return doc if doc["status"] != "running" else None

    doc: dict[str, Any] = await wait_for_async(ended, timeout=timeout)
    return doc


@dataclass
class ServedLab:
    """A ``socketlab serve`` child process and what it printed at start."""

    process: subprocess.Popen[str]
    web_port: int
    login_url: str
    listeners: dict[str, int] = field(default_factory=dict)
    data_dir: Path | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def close_stdout(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()


def api_call(
    served: ServedLab, method: str, path: str, body: Any = None, timeout: float = 10
) -> Any:
    """One API call with the token, as a script would make it; the JSON answer or None."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.web_port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


async def echo_round_trip(stream: trio.SocketStream, payload: bytes) -> None:
    """Send ``payload`` on ``stream`` and assert the same bytes come back."""
    await stream.send_all(payload)
    got = b""
    while len(got) < len(payload):
        chunk = await stream.receive_some(65536)
        assert chunk, "the connection closed"
        got += chunk
    assert got == payload


_DASHBOARD = re.compile(r"dashboard: (http://[^\s]+?:(\d+)/\S*)")
_LISTENER = re.compile(r"(tcp|udp)://127\.0\.0\.1:(\d+)\?mode=(\w+)")


def start_served_lab(data_dir: Path, *extra: str, token: str = TOKEN, **popen: Any) -> ServedLab:
    """Start ``socketlab serve`` on free ports and wait until it prints its login URL.

    ``popen`` goes to :class:`subprocess.Popen` (``stderr=`` to keep the log, ``preexec_fn=``
    to set resource limits in the child).
    """
    args = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--web",
        "127.0.0.1:0",
        "--data",
        str(data_dir),
        "--token",
        token,
        *extra,
    ]
    if "--listen" not in extra:
        args += [
            "--listen",
            "tcp://127.0.0.1:0?mode=echo",
            "--listen",
            "udp://127.0.0.1:0?mode=echo",
        ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SOCKETLAB_TOKEN", None)
    options: dict[str, Any] = {"stderr": subprocess.DEVNULL, "env": env, **popen}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **options)
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    listeners: dict[str, int] = {}
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        for proto, port, _mode in _LISTENER.findall(line):
            listeners.setdefault(proto, int(port))
        match = _DASHBOARD.search(line)
        if match:
            return ServedLab(process, int(match.group(2)), match.group(1), listeners, data_dir)
    process.kill()
    process.wait()
    raise AssertionError("socketlab serve did not print its dashboard URL")


async def read_ndjson(
    port: int, path: str, limit: int = 200, lines: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Read an NDJSON stream into ``lines`` until the server ends it (or ``limit`` lines)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    lines = [] if lines is None else lines
    async with stream:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n"
        )
        await stream.send_all(request.encode())
        conn = h11.Connection(h11.CLIENT)
        buffer = b""
        while len(lines) < limit:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Data):
                buffer += bytes(event.data)
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    lines.append(json.loads(raw))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return lines


class WebSocketClient:
    """A minimal WebSocket client on wsproto, enough to read the live feed in tests."""

    def __init__(self, stream: trio.SocketStream, ws: Any) -> None:
        self.stream = stream
        self.ws = ws
        self.pending: list[str] = []

    async def receive_text(self) -> str:
        from wsproto.events import CloseConnection, Ping, TextMessage

        buffer = ""
        while True:
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    buffer += event.data
                    if event.message_finished:
                        return buffer
                elif isinstance(event, Ping):
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise EOFError("the server closed the WebSocket")
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the connection closed")
            self.ws.receive_data(data)

    async def receive_json(self) -> Any:
        return json.loads(await self.receive_text())


async def websocket_handshake(
    port: int,
    *,
    token: str | None = TOKEN,
    origin: str | None = None,
    host: str | None = None,
) -> tuple[int, WebSocketClient | None, trio.SocketStream]:
    """Open ``/ws``; returns (status, client or None when refused, stream to close)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, RejectConnection, Request

    ws = WSConnection(ConnectionType.CLIENT)
    extra: list[tuple[bytes, bytes]] = []
    if token is not None:
        extra.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        extra.append((b"origin", origin.encode()))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        ws.send(Request(host=host or f"127.0.0.1:{port}", target="/ws", extra_headers=extra))
    )
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return 0, None, stream
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return 101, WebSocketClient(stream, ws), stream
            if isinstance(event, RejectConnection):
                return event.status_code, None, stream


async def promtool_check(text: str) -> tuple[int, str]:
    """``promtool check metrics`` on an exposition ``text``: (exit code, its output).

    Fails the test when promtool is missing (Debian's prometheus package; make
    system-deps installs it)."""
    import shutil

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: it comes with Debian's prometheus package "
            "(make system-deps installs it)"
        )
    with trio.fail_after(30):
        result = await trio.run_process(
            [promtool, "check", "metrics"],
            stdin=text.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return result.returncode, (result.stdout + result.stderr).decode()
