"""The plain TCP echo's hand-offs between its compiled pass and the Python handler.

Every test here runs twice under ``make test``: with ``app/native/_tcpecho.c`` (the pass
echoes in C and hands ends, errors, partial sends and close requests to Python) and with
``SOCKETLAB_NO_NATIVE=1`` (the Python handler does everything). The assertions are the
same: the bytes a client gets and the counters are exact either way.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
from typing import Any

import pytest
import trio

from app.listeners.base import Listener
from app.listeners.modes.echo import EchoMode, _EchoConn
from app.native import OFF, native
from app.readyloop import ReadyLoop, Served
from app.registry import Conn
from tests.helpers import echo_round_trip, wait_for
from tests.listener_fixtures import open_manager, read_to_eof, start

ECHO = "tcp://127.0.0.1:0?mode=echo"


def _mode(listener: Listener) -> EchoMode:
    mode = listener.mode
    assert isinstance(mode, EchoMode)
    return mode


def _served(listener: Listener) -> list[_EchoConn]:
    return list(_mode(listener)._loop.items.values())


def _assert_balanced(listener: Listener, conn: Conn) -> None:
    """An echo's row and listener counters: every message read was counted out whole."""
    assert (conn.bytes_in, conn.msgs_in) == (conn.bytes_out, conn.msgs_out)
    assert (listener.bytes_in, listener.msgs_in) == (conn.bytes_in, conn.msgs_in)
    assert (listener.bytes_out, listener.msgs_out) == (conn.bytes_out, conn.msgs_out)


async def test_the_echo_loop_runs_its_compiled_pass_unless_turned_off() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await echo_round_trip(stream, b"hello")
        assert _mode(listener)._loop.compiled == (native("tcpecho") is not None)
        assert _mode(listener)._loop.compiled != OFF


async def test_counters_and_the_row_update_are_exact_over_many_round_trips() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        registry = manager.registry
        with trio.fail_after(20):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await echo_round_trip(stream, b"x")
                (conn,) = registry
                (state,) = _served(listener)
                active_at = state.active_at
                registry.take_diff()  # a snapshot: the row is clean now
                assert not conn.dirty
                for i in range(300):  # past the ints CPython keeps cached (256)
                    await echo_round_trip(stream, bytes(i % 7 + 1))
                assert registry.take_diff()["updated"] == [conn.id]  # touched once
                assert conn.msgs_in == conn.msgs_out == 301
                assert conn.bytes_in == 1 + sum(i % 7 + 1 for i in range(300))
                _assert_balanced(listener, conn)
                assert state.active_at > active_at  # the idle heap's clock moved with it


async def test_a_half_close_gets_every_byte_back_then_the_end() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        payload = bytes(range(256)) * 512  # 128 KiB
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
            async with stream, trio.open_nursery() as nursery:

                async def writer() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()  # a half-close: the client still reads

                nursery.start_soon(writer)
                got = await read_to_eof(stream)
            await wait_for(lambda: listener.connections == 0, timeout=10)
    assert got == payload
    assert listener.bytes_in == listener.bytes_out == len(payload)
    assert listener.msgs_in == listener.msgs_out
    assert (listener.errors, listener.idle_closed, listener.closed_by_api) == (0, 0, 0)
    assert len(manager.registry) == 0


async def test_a_reset_mid_stream_is_one_error_and_leaves_counters_balanced() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        with trio.fail_after(20):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as other:
                rude = socket.create_connection(("127.0.0.1", listener.port))
                rude.setblocking(False)
                await wait_for(lambda: listener.connections == 2)
                # Echoed bytes it never reads: the reset finds replies and requests queued.
                chunk = b"r" * 65536
                try:
                    for _ in range(64):
                        rude.send(chunk)
                except BlockingIOError:
                    pass
                await wait_for(lambda: listener.bytes_in > 0)
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                rude.close()  # linger 0: a reset instead of a FIN
                await wait_for(lambda: listener.connections == 1, timeout=10)
                await echo_round_trip(other, b"still served")
    assert listener.errors == 1
    assert (listener.closed_by_api, listener.idle_closed) == (0, 0)
    # Whatever was read was counted out whole (sent, or pending and lost with the reset),
    # except the one read whose send met the reset itself: its bytes never left, so they
    # are counted in and not out, by both paths alike.
    unsent = listener.bytes_in - listener.bytes_out
    assert (listener.msgs_in - listener.msgs_out, unsent > 0) in ((0, False), (1, True))
    assert unsent <= len(_mode(listener)._shared)  # one read at most


async def test_a_partial_send_under_a_full_peer_window_is_kept_and_sent_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that stops reading fills its window: the server keeps the rest of the
    reply, stops reading that client (backpressure), and sends the rest once there is
    room. The client then gets exactly what it sent."""
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        loop = _mode(listener)._loop
        watched: list[int] = []
        real_watch = loop.watch

        def counted(item: Any, mask: int) -> None:
            watched.append(mask)
            real_watch(item, mask)

        # Observe only: a partial send (in C or in Python) makes the loop watch for room.
        monkeypatch.setattr(loop, "watch", counted)
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = bytes((j * 13) % 251 for j in range(1 << 20))  # 1 MiB, no period of 2**k
        got = bytearray()
        with client, trio.fail_after(60):
            await client.connect(("127.0.0.1", listener.port))
            (state,) = await wait_for(lambda: _served(listener))
            # A small send buffer on the server's side: its replies soon go out in parts.
            state.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

            async def writer() -> None:
                view = memoryview(payload)
                while view:
                    view = view[await client.send(view[:65536]) :]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                # Nobody reads until the server could not send a reply whole.
                await wait_for(lambda: watched, timeout=30)
                while len(got) < len(payload):
                    data = await client.recv(65536)
                    assert data, "the server closed"
                    got.extend(data)
            (conn,) = manager.registry
            assert bytes(got) == payload
            assert watched[0] == select.EPOLLOUT and watched[-1] == select.EPOLLIN
            assert conn.bytes_in == len(payload)
            _assert_balanced(listener, conn)
    assert listener.errors == 0


async def _stream_until_closed(stream: trio.SocketStream, close: Any) -> int:
    """Echo a stream of requests until ``close()`` (called once replies flow) ends the
    connection; returns the bytes the client got back."""
    got = 0
    ended = trio.Event()

    async def writer() -> None:
        try:
            while not ended.is_set():
                await stream.send_all(b"w" * 4096)
        except trio.BrokenResourceError:
            pass  # the server has gone

    async def reader() -> None:
        nonlocal got
        try:
            while chunk := await stream.receive_some(65536):
                got += len(chunk)
        except trio.BrokenResourceError:
            pass  # a reset: the server closed with requests unread
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
        await wait_for(lambda: got > 256 * 1024, timeout=20)
        await close()
        await ended.wait()
        nursery.cancel_scope.cancel()
    return got


async def test_a_close_from_the_api_mid_stream_ends_it_once_and_counts_it() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        registry = manager.registry
        with trio.fail_after(30):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await echo_round_trip(stream, b"first")
                (conn,) = registry

                async def close() -> None:
                    assert registry.close_connection(conn.id)

                got = await _stream_until_closed(stream, close)
        assert registry.get(conn.id) is None
        assert (listener.closed_by_api, listener.errors, listener.idle_closed) == (1, 0, 0)
        assert listener.connections == 0
        assert got <= conn.bytes_out - len(b"first")
        _assert_balanced(listener, conn)


async def test_stopping_the_listener_mid_stream_closes_without_counting_an_end() -> None:
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        with trio.fail_after(30):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await echo_round_trip(stream, b"first")
                (conn,) = manager.registry

                async def stop() -> None:
                    await manager.stop(listener.id)

                await _stream_until_closed(stream, stop)
    assert (listener.closed_by_api, listener.errors, listener.idle_closed) == (0, 0, 0)
    assert listener.connections == 0
    assert len(manager.registry) == 0
    _assert_balanced(listener, conn)


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
async def test_socat_gets_its_bytes_back_and_the_counters_equal_what_it_sent() -> None:
    """A third-party client: socat sends a file, half-closes, and prints what came back."""
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        payload = os.urandom(3 << 20)
        with trio.fail_after(60):
            # -t: how long socat waits for the echo's end after its own (a loaded machine).
            done = await trio.run_process(
                ["socat", "-t", "30", "-b", "65536", "-", f"TCP:127.0.0.1:{listener.port}"],
                stdin=payload,
                capture_stdout=True,
            )
            await wait_for(lambda: listener.connections == 0, timeout=10)
    assert done.stdout == payload
    assert listener.bytes_in == listener.bytes_out == len(payload)
    assert listener.msgs_in == listener.msgs_out > 0
    assert (listener.errors, listener.closed_by_api, listener.idle_closed) == (0, 0, 0)


@pytest.mark.skipif(native("tcpecho") is None, reason="the compiled pass is not loaded")
def test_the_compiled_pass_refuses_an_item_that_is_not_a_plain_echo_connection() -> None:
    module = native("tcpecho")
    assert module is not None
    with pytest.raises(TypeError):
        module.EchoPass(-1, {}, print, print, print, object(), Conn, Conn, 1024)
    echo_pass = module.EchoPass(-1, {}, print, print, print, object(), _EchoConn, Conn, 8)
    with pytest.raises(TypeError):
        echo_pass.adopt(object())
    echo_pass.close()
    with pytest.raises(ValueError, match="closed"):
        echo_pass.run(1, 0.0)


@pytest.mark.skipif(native("tcpecho") is None, reason="the compiled pass is not loaded")
async def test_the_compiled_pass_gives_other_items_to_the_handler_and_its_errors_to_the_owner() -> (
    None
):
    """A socket the pass did not adopt is served by the loop's handler, as in the Python
    pass; what the handler raises ends that item, and its owner raises it."""
    module = native("tcpecho")
    assert module is not None
    seen: list[int] = []

    def handler(item: Served, mask: int) -> None:
        seen.append(mask)
        raise ValueError("the handler's own error")

    def factory(epfd: int, items: Any, handler: Any, on_error: Any) -> Any:
        return module.EchoPass(epfd, items, handler, on_error, print, None, _EchoConn, Conn, 64)

    loop: ReadyLoop[Served] = ReadyLoop(handler, native=factory)
    a, b = socket.socketpair()
    with a, b, trio.fail_after(10):
        a.setblocking(False)
        item = Served(a)
        loop.add(item, native=False)
        assert loop.compiled
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            b.send(b"ready")
            with pytest.raises(ValueError, match="own error"):
                await loop.wait(item)
            nursery.cancel_scope.cancel()
    assert seen == [select.EPOLLIN]
    assert not loop.items


async def test_a_failure_while_counting_ends_that_connection_as_an_error_only() -> None:
    """What goes wrong while a connection is served (here a counter that is not an int)
    ends that connection, counted in errors, as an exception of the Python handler does;
    the listener serves the others."""
    async with open_manager() as manager:
        listener = await start(manager, ECHO)
        with trio.fail_after(20):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as broken:
                await echo_round_trip(broken, b"first")
                (conn,) = manager.registry
                conn.bytes_in = "not a number"  # type: ignore[assignment]
                await broken.send_all(b"second")
                assert await read_to_eof(broken) == b""
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as other:
                await echo_round_trip(other, b"still served")
    assert listener.errors == 1
    assert (listener.closed_by_api, listener.idle_closed) == (0, 0)
    assert manager.registry.get(conn.id) is None
