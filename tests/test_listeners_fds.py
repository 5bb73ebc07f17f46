"""Listeners give back every descriptor they opened when they are deleted.

Counted as the kernel sees them (``/proc/self/fd``), with the garbage collector off: a
descriptor closed only when a reference cycle is collected is still a leak (2,000 echo
listeners that came and went once left 1,006 epoll descriptors open).
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
from collections.abc import Iterator

import pytest
import trio

from app.errors import ConflictError
from app.listeners.base import Listener
from app.listeners.manager import ListenerManager
from tests.listener_fixtures import open_manager, start, udp_client

ROUNDS = 50
URLS = [
    "udp://127.0.0.1:0?mode=echo",
    "tls://127.0.0.1:0?mode=echo",
    "tcp://127.0.0.1:0?mode=echo",
    "tcp://127.0.0.1:0?mode=echo&delay=1ms",
    "udp://127.0.0.1:0?mode=echo&delay=1ms",
    "tcp://127.0.0.1:0?mode=sink",
]

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def use(listener: Listener) -> None:
    """One exchange with the listener, so its per-connection or per-flow state exists too."""
    protocol = listener.spec.protocol
    if protocol == "udp":
        with udp_client() as sock:
            await sock.sendto(b"ping\n", ("127.0.0.1", listener.port))
            if listener.spec.mode == "echo":
                assert await sock.recv(100) == b"ping\n"
        return
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
    if protocol == "tls":
        assert listener.cert_pem is not None
        context = ssl.create_default_context(cadata=listener.cert_pem)
        stream = trio.SSLStream(stream, context, server_hostname="127.0.0.1")
    async with stream:
        await stream.send_all(b"ping\n")
        if listener.spec.mode == "echo":
            got = b""
            while len(got) < 5:
                got += await stream.receive_some(100)
            assert got == b"ping\n"


async def come_and_go(manager: ListenerManager, url: str, rounds: int) -> None:
    for _ in range(rounds):
        listener = await start(manager, url)
        await use(listener)
        await manager.stop(listener.id)


@pytest.mark.parametrize("url", URLS)
async def test_a_deleted_listener_leaves_no_descriptor_open(url: str, no_gc: None) -> None:
    with trio.fail_after(60):
        async with open_manager() as manager:
            # One round first: what is opened once per process (trio's I/O machinery for
            # a kind of socket) is not a per-listener leak.
            await come_and_go(manager, url, 1)
            before = open_fds()
            await come_and_go(manager, url, ROUNDS)
            after = open_fds()
    assert after == before, f"{len(after - before)} descriptors left open by {ROUNDS} listeners"


async def test_a_listener_that_cannot_bind_leaves_no_descriptor_open(no_gc: None) -> None:
    with socket.socket() as taken, trio.fail_after(30):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with open_manager() as manager:
            before = open_fds()
            for _ in range(ROUNDS):
                for protocol in ("tcp", "tls"):
                    with pytest.raises(ConflictError):
                        await start(manager, f"{protocol}://127.0.0.1:{port}?mode=echo")
            after = open_fds()
    assert after == before, f"{len(after - before)} descriptors left open by failed binds"
