"""Per-listener limits: max connections, idle timeout, max message size; IPv6 binds."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from app.listeners.modes import create_listener
from app.listeners.parse import parse_listener
from app.listeners.tcp import handle_tcp_stream
from app.registry import Registry
from tests.helpers import echo_round_trip, wait_for
from tests.listener_fixtures import open_manager, read_to_eof, start


async def test_the_101st_connection_is_closed_at_once_while_100_stay_served() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?max_connections=100")
        streams: list[trio.SocketStream] = []
        try:
            with trio.fail_after(20):
                for i in range(100):
                    stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
                    streams.append(stream)
                    await echo_round_trip(stream, b"hello %d" % i)
                assert listener.connections == 100
                # The documented policy: accepted, then closed at once (EOF right away).
                async with await trio.open_tcp_stream("127.0.0.1", listener.port) as extra:
                    assert await extra.receive_some(100) == b""
                assert listener.rejected == 1
                assert listener.accepted == 101
                for i, stream in enumerate(streams):
                    await echo_round_trip(stream, b"still here %d" % i)
                assert listener.connections == 100
                # A slot freed is a slot for the next client.
                await streams.pop().aclose()
                await wait_for(lambda: listener.connections == 99)
                async with await trio.open_tcp_stream("127.0.0.1", listener.port) as late:
                    await echo_round_trip(late, b"welcome")
                assert listener.rejected == 1
        finally:
            for stream in streams:
                await stream.aclose()


async def test_udp_flows_past_max_connections_are_dropped_and_counted() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?max_connections=2")
        with trio.fail_after(5):
            socks = [trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
            for sock in socks:
                await sock.connect(("127.0.0.1", listener.port))
            try:
                for sock in socks[:2]:
                    await sock.send(b"in")
                    assert await sock.recv(10) == b"in"
                await socks[2].send(b"out")
                await wait_for(lambda: listener.rejected == 1)
                await socks[0].send(b"again")
                assert await socks[0].recv(10) == b"again"
            finally:
                for sock in socks:
                    sock.close()
    assert listener.accepted == 2
    assert listener.msgs_in == 3  # the rejected datagram is not counted as received


async def test_an_idle_connection_is_closed_at_its_timeout(autojump_clock: object) -> None:
    listener = create_listener("l1", parse_listener("tcp://127.0.0.1:0?idle_timeout=30"))
    registry = Registry()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_tcp_stream, listener, registry, server, "here", "there")
        await trio.sleep(20)
        await client.send_all(b"ping")  # traffic pushes the deadline forward
        assert await client.receive_some(100) == b"ping"
        t0 = trio.current_time()
        assert len(registry) == 1
        assert await client.receive_some(100) == b""  # the server closed the connection
        assert trio.current_time() - t0 == pytest.approx(30)
    assert listener.idle_closed == 1
    assert len(registry) == 0


async def test_an_idle_real_connection_is_closed_and_counted() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?idle_timeout=0.2")
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                t0 = trio.current_time()
                assert await read_to_eof(stream) == b""
                assert trio.current_time() - t0 >= 0.19
    assert listener.idle_closed == 1


async def test_a_real_connection_that_keeps_talking_outlives_its_idle_timeout() -> None:
    """The echo's socket loop moves the idle deadline: talk every 0.1 s for 5 idle
    timeouts and stay open; then fall silent and get closed."""
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?idle_timeout=0.3")
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                t0 = trio.current_time()
                while trio.current_time() - t0 < 1.5:
                    await echo_round_trip(stream, b"still here")
                    await trio.sleep(0.1)  # the client's pace, not a wait for a condition
                assert listener.idle_closed == 0
                assert await read_to_eof(stream) == b""
    assert listener.idle_closed == 1


async def test_an_idle_udp_flow_is_forgotten(autojump_clock: object) -> None:
    # No packets are needed: a flow row that never gets traffic ages out on the same clock.
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?idle_timeout=10")
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"x")
            assert await sock.recv(10) == b"x"
        manager.registry.take_diff()  # what the lab's snapshot loop does
        assert listener.connections == 1
        await trio.sleep(20)
        assert listener.connections == 0
        assert listener.idle_closed == 1


async def test_an_oversized_datagram_is_dropped_and_counted_and_serving_goes_on() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?max_message_size=100")
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"x" * 101)
            await sock.send(b"y" * 100)
            assert await sock.recv(1000) == b"y" * 100  # the big one got no echo
    assert listener.oversized == 1
    assert listener.msgs_out == 1


async def test_an_oversized_line_closes_only_its_connection() -> None:
    spec = {
        "url": "tcp://127.0.0.1:0?mode=respond&max_message_size=16",
        "rules": [{"match": "exact", "pattern": "PING", "reply": "PONG\\n"}],
    }
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"PING\n")
                assert await stream.receive_some(100) == b"PONG\n"
                await stream.send_all(b"z" * 40)
                # The server closes with our bytes unread, so the kernel may send a reset.
                try:
                    assert await read_to_eof(stream) == b""
                except trio.BrokenResourceError:
                    pass
            assert listener.oversized == 1
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"PING\n")
                assert await stream.receive_some(100) == b"PONG\n"


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")
async def test_listeners_bind_ipv6() -> None:
    async with open_manager() as manager:
        tcp = await start(manager, "tcp://[::1]:0")
        udp = await start(manager, "udp://[::1]:0")
        assert tcp.spec_url().startswith("tcp://[::1]:")
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("::1", tcp.port) as stream:
                await echo_round_trip(stream, b"six")
            with trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
                await sock.connect(("::1", udp.port))
                await sock.send(b"six")
                assert await sock.recv(10) == b"six"
