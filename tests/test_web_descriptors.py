"""The API stays reachable when idle clients hold every descriptor they can get.

- The descriptor budget's shares (a table) and its wait: a listener past its share waits
  for a connection to end, and is woken when one does.
- The web server's connections: the idle one closed first is the one idle the longest; a
  connection serving a request is never closed to make room.
- A served lab with ``RLIMIT_NOFILE`` 1,024 and 1,100 idle connections held to a listener,
  then to the web port: ``/api/health`` answers (hang guards of seconds).
- ``Connection: close`` and keep-alive: the server closes right after answering a request
  that asked for it (it took the 30 s read timeout), keeps serving a connection that did
  not, and closes that one once it has been idle for the keep-alive timeout.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from app.descriptors import DescriptorBudget
from app.lab import Lab
from app.web import server
from app.web.accept import WebConnections
from tests.conftest import running_lab
from tests.helpers import TOKEN, http, start_served_lab, wait_for_async

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")

LIMIT = 1024
HELD = 1100


@pytest.mark.parametrize(
    ("limit", "reserve", "listener_max", "web_max"),
    [
        (64, 32, 32, 16),
        (256, 128, 128, 64),
        (1024, 128, 896, 64),
        (4096, 512, 3584, 256),
        (1 << 20, 1 << 17, (1 << 20) - (1 << 17), 1 << 16),
    ],
)
def test_descriptor_shares_keep_a_reserve_for_the_web_server(
    limit: int, reserve: int, listener_max: int, web_max: int
) -> None:
    budget = DescriptorBudget(limit)
    assert (budget.reserve, budget.listener_max, budget.web_max) == (
        reserve,
        listener_max,
        web_max,
    )


async def test_a_listener_past_its_share_waits_until_a_connection_ends() -> None:
    budget = DescriptorBudget(64)
    for _ in range(budget.listener_max):
        assert budget.take_nowait()
    assert budget.full()
    assert not budget.take_nowait()
    waited: list[bool] = []

    async def next_accept() -> None:
        await budget.acquire()
        waited.append(True)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(next_accept)
            await trio.testing.wait_all_tasks_blocked()
            assert waited == []  # still waiting: the share is used up
            budget.give()
    assert waited == [True]
    assert budget.pauses == 1
    assert budget.held == budget.listener_max


def _stream_pair() -> tuple[trio.SocketStream, socket.socket]:
    server, client = socket.socketpair()
    return trio.SocketStream(trio.socket.from_stdlib_socket(server)), client


async def test_the_web_server_closes_the_connection_idle_longest_never_a_busy_one() -> None:
    connections = WebConnections(max_connections=3)
    pairs = [_stream_pair() for _ in range(3)]
    try:
        (first, first_client), (second, second_client), (third, _) = pairs
        for stream, _client in pairs:
            connections.opened(stream)
        assert connections.full()
        connections.set_idle(first, False)  # first is serving a request
        connections.set_idle(second, False)
        connections.set_idle(second, True)  # second went idle again, after third
        assert connections.evict_one()  # third: idle since its accept
        assert third.socket.fileno() == -1
        assert connections.evict_one()  # second
        assert second_client.recv(10) == b""  # its client sees EOF
        assert not connections.evict_one()  # first is busy: it stays
        assert first.socket.fileno() != -1
        assert (len(connections), connections.evicted) == (1, 2)
        connections.closed(first)
        assert len(connections) == 0
        first_client.close()
    finally:
        for stream, client in pairs:
            stream.socket.close()
            client.close()


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """This process holds 1,100 client sockets: raise its own limit for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HELD + 1024
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        except (ValueError, OSError):
            pytest.skip(f"cannot raise this process's descriptor limit to {wanted}")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


async def hold_connections(port: int, count: int) -> list[trio.socket.SocketType]:
    """``count`` idle TCP connections to ``port`` (connected, never a byte sent)."""
    socks: list[trio.socket.SocketType] = []
    try:
        for _ in range(count):
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            await sock.connect(("127.0.0.1", port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def health_answers(port: int) -> None:
    # Seconds, not milliseconds: the point is that it answers at all. Under the 5 s
    # keep-alive timeout, after which idle connections would have freed descriptors anyway.
    with trio.fail_after(4):
        response = await http(port, "GET", "/api/health", token=None)
    assert response.status == 200


def _tcp(doc: dict[str, Any]) -> dict[str, Any]:
    return next(item for item in doc["items"] if item["protocol"] == "tcp")


@pytest.mark.usefixtures("many_descriptors")
async def test_health_answers_while_1100_idle_connections_hold_a_listener(
    tmp_path: Path,
) -> None:
    served = start_served_lab(tmp_path / "data", preexec_fn=_limit_descriptors)
    socks: list[trio.socket.SocketType] = []
    try:
        pid = served.process.pid
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE)[0] == LIMIT
        with trio.fail_after(30):
            socks = await hold_connections(served.listeners["tcp"], HELD)

        async def listener_doc() -> dict[str, Any]:
            return _tcp((await http(served.web_port, "GET", "/api/listeners")).json())

        async def share_used_up() -> bool:
            # It stops accepting at its share of descriptors, and counts the pause.
            return bool((await listener_doc())["accept_failures"] > 0)

        await wait_for_async(share_used_up, timeout=30)
        await health_answers(served.web_port)
        tcp = await listener_doc()
        assert tcp["connections"] <= DescriptorBudget(LIMIT).listener_max
        assert len(os.listdir(f"/proc/{pid}/fd")) < LIMIT
        # The clients left waiting in the backlog are served once connections end.
        for sock in socks[:400]:
            sock.close()
        del socks[:400]

        async def all_accepted() -> bool:
            return bool((await listener_doc())["accepted"] == HELD)

        await wait_for_async(all_accepted, timeout=10)
        assert served.process.poll() is None
    finally:
        for sock in socks:
            sock.close()
        code = served.stop()
        served.close_stdout()
    assert code == 0


@pytest.mark.usefixtures("many_descriptors")
async def test_health_answers_while_1100_idle_connections_hold_the_web_port(
    tmp_path: Path,
) -> None:
    served = start_served_lab(tmp_path / "data", preexec_fn=_limit_descriptors)
    socks: list[trio.socket.SocketType] = []
    try:
        pid = served.process.pid
        with trio.fail_after(30):
            socks = await hold_connections(served.web_port, HELD)
        await health_answers(served.web_port)
        # The idle connections were closed to make room, not held until the process ran
        # out: the web server stayed within its share.
        assert len(os.listdir(f"/proc/{pid}/fd")) < LIMIT // 2
        assert served.process.poll() is None
    finally:
        for sock in socks:
            sock.close()
        code = served.stop()
        served.close_stdout()
    assert code == 0


async def _request(stream: trio.SocketStream, port: int, connection: str) -> bytes:
    """Send one GET /api/health; return what arrives until the body is complete."""
    await stream.send_all(
        f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: {connection}\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed before answering"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head


async def test_connection_close_is_honoured_at_once(lab: Lab) -> None:
    assert lab.web_port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", lab.web_port)
    async with stream:
        with trio.fail_after(3):  # the read timeout (30 s) is not what ends it
            head = await _request(stream, lab.web_port, "close")
            assert head.startswith(b"HTTP/1.1 200")
            assert await stream.receive_some(100) == b""


async def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hypercorn restarts its idle timer after each response from the request's task, which
    # quart-trio cancels: unshielded, the timer was lost and read_timeout (30 s) ended it.
    monkeypatch.setattr(server, "KEEP_ALIVE_TIMEOUT", 0.3)
    async with running_lab(nursery, tmp_path / "data") as lab:
        assert lab.web_port is not None
        stream = await trio.open_tcp_stream("127.0.0.1", lab.web_port)
        async with stream:
            with trio.fail_after(5):
                head = await _request(stream, lab.web_port, "keep-alive")
                assert head.startswith(b"HTTP/1.1 200")
                assert await stream.receive_some(100) == b""


async def test_keep_alive_serves_several_requests_on_one_connection(lab: Lab) -> None:
    assert lab.web_port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", lab.web_port)
    async with stream:
        with trio.fail_after(5):
            for _ in range(3):
                head = await _request(stream, lab.web_port, "keep-alive")
                assert head.startswith(b"HTTP/1.1 200")
