"""TCP and UDP echo listeners, over real loopback sockets."""

from __future__ import annotations

import select
import socket
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.listeners.modes.echo import EchoMode
from app.registry import Conn
from tests.conftest import listener_port
from tests.helpers import wait_for


async def test_tcp_echo_returns_every_byte(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            payload = bytes(range(256)) * 40
            await stream.send_all(payload)
            got = b""
            while len(got) < len(payload):
                got += await stream.receive_some(65536)
    assert got == payload
    tcp = next(item for item in lab.listeners if item.spec.protocol == "tcp")
    await wait_for(lambda: tcp.connections == 0)
    assert tcp.bytes_in == len(payload)
    assert tcp.bytes_out == len(payload)


async def test_udp_echo_replies_with_the_same_datagram(lab: Lab) -> None:
    port = listener_port(lab, "udp")
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, trio.fail_after(5):
        await sock.connect(("127.0.0.1", port))
        for size in (1, 64, 1400, 9000):
            payload = bytes([size % 251]) * size
            await sock.send(payload)
            assert await sock.recv(65536) == payload
    udp = next(item for item in lab.listeners if item.spec.protocol == "udp")
    assert udp.msgs_in == 4
    assert udp.msgs_out == 4


async def test_registry_shows_a_connection_only_while_it_is_open(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        local = f"127.0.0.1:{stream.socket.getsockname()[1]}"
        async with stream:
            await stream.send_all(b"hello")
            await stream.receive_some(5)
            rows = await wait_for(lambda: [c for c in lab.registry if c.remote == local])
            assert rows[0].protocol == "tcp"
            assert rows[0].bytes_in == 5
        await wait_for(lambda: not [c for c in lab.registry if c.remote == local])


async def test_udp_flow_is_a_registry_row_keyed_by_peer(lab: Lab) -> None:
    port = listener_port(lab, "udp")
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, trio.fail_after(5):
        await sock.connect(("127.0.0.1", port))
        local = f"127.0.0.1:{sock.getsockname()[1]}"
        for _ in range(3):
            await sock.send(b"x")
            await sock.recv(10)
        flows = [c for c in lab.registry if c.remote == local]
    assert len(flows) == 1
    assert flows[0].msgs_in == 3


async def test_connections_sharing_the_read_buffer_never_mix_bytes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections of one echo listener, each with a tiny kernel send buffer so most
    sends are partial, stream distinct bytes at once: each gets exactly its own back."""
    tcp = next(item for item in lab.listeners if item.spec.protocol == "tcp")
    mode = tcp.mode
    assert isinstance(mode, EchoMode)
    results: dict[int, bool] = {}
    partial = [0]

    async def one(i: int) -> None:
        client_end, server_end = socket.socketpair()
        server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        server_end.setblocking(False)
        payload = bytes((i * 7 + j) % 251 for j in range(256)) * 1024  # 256 KiB, distinct
        client = trio.socket.from_stdlib_socket(client_end)
        conn = lab.registry.open("tcp", "test", f"pair-{i}", listener_id=tcp.id)
        got = bytearray()
        ends: list[str] = []

        def ended(_: Conn, sock: socket.socket, why: str, error: Exception | None) -> None:
            ends.append(why)

        with client, server_end:
            mode.adopt(conn, server_end, ended)
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    while len(got) < len(payload):
                        data = await client.recv(1000)
                        got.extend(data)
                    assert conn.close_hook is not None
                    conn.close_hook()  # as the API closes it

                nursery.start_soon(reader)
                view = memoryview(payload)
                while view:
                    view = view[await client.send(view[:8192]) :]
        lab.registry.close(conn)
        results[i] = bytes(got) == payload and ends == ["api"]

    loop = mode._loop
    real_watch = loop.watch

    def counted(item: Any, mask: int) -> None:
        partial[0] += mask == select.EPOLLOUT
        real_watch(item, mask)

    # Observe only: the real method still does the work. A partial send makes the loop
    # watch the connection for room instead of data.
    monkeypatch.setattr(loop, "watch", counted)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0)
            nursery.start_soon(one, 1)
    assert partial[0] > 0  # the path under test was taken
    assert results == {0: True, 1: True}


async def test_many_connections_share_the_read_buffer_without_mixing_bytes(lab: Lab) -> None:
    """Six clients stream distinct bytes at once through the real listener: each gets
    exactly its own stream back (the partial-send path is forced in the test above)."""
    port = listener_port(lab, "tcp")
    results: dict[int, bool] = {}

    async def client(i: int) -> None:
        payload = bytes((i * 7 + j) % 251 for j in range(256)) * 24576  # 6 MiB, distinct
        sock = trio.socket.socket()
        # A small receive window fills the server's send buffer: its sends go partial.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        async with trio.SocketStream(sock) as stream:
            got = bytearray()

            async def reader() -> None:
                while len(got) < len(payload):
                    data = await stream.receive_some(997)  # small reads: the server blocks
                    assert data
                    got.extend(data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for k in range(0, len(payload), 4096):
                    await stream.send_all(payload[k : k + 4096])
        results[i] = bytes(got) == payload

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(client, i)
    assert results == dict.fromkeys(range(6), True)


async def test_plain_tcp_echo_takes_the_direct_socket_path(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared-buffer echo loop is what serves plain TCP, not a slower fallback."""
    from app.listeners.modes.echo import EchoMode

    taken: list[str] = []
    real = EchoMode.adopt

    def spy(self: EchoMode, conn: Conn, sock: socket.socket, ended: Any) -> None:
        taken.append(conn.id)
        real(self, conn, sock, ended)

    monkeypatch.setattr(EchoMode, "adopt", spy)
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", listener_port(lab, "tcp")) as s:
            await s.send_all(b"ping")
            assert await s.receive_some(4) == b"ping"
    assert len(taken) == 1
