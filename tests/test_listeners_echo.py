"""TCP and UDP echo listeners, over real loopback sockets."""

from __future__ import annotations

import socket

import trio

from app.lab import Lab
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
