"""The socket loop at its seams: DirectSocket and ReadyLoop over real loopback TCP sockets.

The fd-reuse tests move a new socket onto the descriptor number a closed one had (as the
kernel does with the lowest free number) and check that the loop never hands the new socket
the old one's item, nor the old item the new socket's events, and keeps serving the others.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack

import pytest
import trio
import trio.testing

from app.readyloop import ReadyLoop, Served
from app.sockio import BUDGET, DirectSocket
from app.turns import PASS_SIZE


class Pairs:
    """Connected loopback TCP pairs: a non-blocking stdlib end and a trio end for the peer."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def __call__(self) -> tuple[socket.socket, trio.socket.SocketType]:
        with socket.create_server(("127.0.0.1", 0)) as server:
            client = socket.create_connection(server.getsockname())
            served, _ = server.accept()
        served.setblocking(False)
        self._stack.callback(served.close)
        peer = trio.socket.from_stdlib_socket(client)
        self._stack.callback(peer.close)
        return served, peer

    def move_onto(self, fd: int, sock: socket.socket) -> socket.socket:
        """``sock`` moved onto descriptor ``fd``, just closed: fd reuse, made certain."""
        with pytest.raises(OSError):
            os.fstat(fd)  # free: dup2 must not close anything of somebody else's
        os.dup2(sock.fileno(), fd)
        moved = socket.socket(fileno=fd)
        self._stack.callback(moved.close)
        moved.setblocking(False)
        sock.close()
        return moved


@pytest.fixture
async def pair() -> AsyncIterator[Pairs]:
    with ExitStack() as stack:  # closed inside trio: a trio socket's close tells trio
        yield Pairs(stack)


async def round_trip(peer: trio.socket.SocketType, data: bytes) -> bytes:
    await peer.send(data)
    got = b""
    while len(got) < len(data):
        chunk = await peer.recv(65536)
        assert chunk, "closed"
        got += chunk
    return got


# --- DirectSocket -------------------------------------------------------------------------


async def test_recv_into_gives_what_the_peer_sent_then_0_at_end_of_stream(pair: Pairs) -> None:
    served, peer = pair()
    direct = DirectSocket(served)
    buffer = bytearray(100)
    with trio.fail_after(5):
        await peer.send(b"hello")
        assert await direct.recv_into(buffer) == 5
        assert buffer[:5] == b"hello"
        peer.shutdown(socket.SHUT_WR)
        assert await direct.recv_into(buffer) == 0


async def test_recv_into_with_nothing_there_waits_for_data(pair: Pairs) -> None:
    served, peer = pair()
    direct = DirectSocket(served, more=True)  # a first read that finds nothing must wait too
    got: list[int] = []

    async def reader() -> None:
        got.append(await direct.recv_into(bytearray(10)))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await peer.send(b"abc")
    assert got == [3]


async def test_recv_into_reads_at_most_nbytes(pair: Pairs) -> None:
    served, peer = pair()
    direct = DirectSocket(served)
    buffer = bytearray(100)
    with trio.fail_after(5):
        await peer.send(b"abcdef")
        assert await direct.recv_into(buffer, 4) == 4
        assert await direct.recv_into(buffer, 4) == 2  # the rest, read without a wait
        assert buffer[:2] == b"ef"


async def test_a_socket_that_never_waits_still_checkpoints_every_budget_calls(
    pair: Pairs,
) -> None:
    served, peer = pair()
    direct = DirectSocket(served, more=True)
    await peer.send(b"x" * (BUDGET * 2))
    buffer = bytearray(1)  # every read fills it: the kernel always has more
    returned = 0
    with trio.fail_after(5), trio.CancelScope() as scope:
        scope.cancel()
        while True:
            await direct.recv_into(buffer)
            returned += 1
    # No checkpoint (and so no chance for the cancel to land) before the budget is spent,
    # then one: a busy connection can neither starve the others nor ignore a stop.
    assert returned == BUDGET - 1


async def test_send_all_delivers_everything_through_a_small_send_buffer(pair: Pairs) -> None:
    served, peer = pair()
    served.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    direct = DirectSocket(served)
    payload = bytes(range(256)) * 4096  # 1 MiB: many partial sends
    got = bytearray()

    async def reader() -> None:
        while len(got) < len(payload):
            chunk = await peer.recv(65536)
            assert chunk
            got.extend(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await direct.send_all(memoryview(payload))
    assert got == payload


async def test_send_returns_what_the_kernel_took_and_waits_only_while_it_takes_nothing(
    pair: Pairs,
) -> None:
    served, peer = pair()
    served.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    direct = DirectSocket(served)
    with trio.fail_after(5):
        filled = 0
        while True:  # fill the kernel's buffers (both ends) until it takes nothing
            try:
                filled += served.send(b"f" * 65536)
            except BlockingIOError:
                break
        data = memoryview(b"d" * (1 << 20))
        took: list[int] = []

        async def sender() -> None:
            took.append(await direct.send(data))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert took == []  # waiting for room
            drained = 0
            while drained < filled:
                drained += len(await peer.recv(65536))
    assert 0 < took[0] < len(data)  # what there was room for, not the whole payload


async def test_close_wakes_a_task_waiting_to_read(pair: Pairs) -> None:
    served, _ = pair()
    direct = DirectSocket(served)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await direct.recv_into(bytearray(10))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            direct.close()
    assert served.fileno() == -1


async def test_shutdown_write_ends_the_peers_stream_and_the_socket_still_reads(
    pair: Pairs,
) -> None:
    served, peer = pair()
    direct = DirectSocket(served)
    with trio.fail_after(5):
        direct.shutdown_write()
        assert await peer.recv(10) == b""
        await peer.send(b"still")
        buffer = bytearray(10)
        assert await direct.recv_into(buffer) == 5
    with socket.socket() as unconnected:
        DirectSocket(unconnected).shutdown_write()  # not connected: nothing to end, no error


# --- ReadyLoop ----------------------------------------------------------------------------


class Echo(Served):
    __slots__ = ("name",)

    def __init__(self, sock: socket.socket, name: str) -> None:
        super().__init__(sock)
        self.name = name


class EchoLoop:
    """A ReadyLoop whose handler echoes and logs which item each event was given to."""

    def __init__(self, read_size: int = 65536) -> None:
        self.read_size = read_size
        self.log: list[tuple[str, int]] = []
        self.fail_on: bytes | None = None
        self.loop: ReadyLoop[Echo] = ReadyLoop(self.on_ready)

    def on_ready(self, item: Echo, mask: int) -> None:
        self.log.append((item.name, mask))
        data = item.sock.recv(self.read_size)
        if not data:
            self.loop.finish(item)
            return
        if data == self.fail_on:
            raise ValueError(f"bad input on {item.name}")
        item.sock.send(data)

    def names(self) -> list[str]:
        return [name for name, _ in self.log]


async def serve(nursery: trio.Nursery, loop: ReadyLoop[Echo]) -> None:
    nursery.start_soon(loop.run)
    await trio.testing.wait_all_tasks_blocked()


async def test_one_loop_serves_many_sockets_each_until_its_end(pair: Pairs) -> None:
    echo = EchoLoop()
    loop = echo.loop

    async def own(served: socket.socket, name: str) -> None:
        item = Echo(served, name)
        loop.add(item)
        await loop.wait(item)  # returns when the handler finished the item

    async def client(peer: trio.socket.SocketType, i: int) -> None:
        for j in range(5):
            message = b"message %d.%d" % (i, j)
            assert await round_trip(peer, message) == message
        peer.shutdown(socket.SHUT_WR)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            async with trio.open_nursery() as owners:
                for i in range(20):
                    served, peer = pair()
                    owners.start_soon(own, served, f"s{i}")
                    owners.start_soon(client, peer, i)
            assert loop.items == {}
            nursery.cancel_scope.cancel()
    assert len(echo.log) == 20 * 6  # 5 messages and the end of stream each


async def test_a_socket_with_more_to_read_comes_back_in_the_next_pass(pair: Pairs) -> None:
    # Level-triggered and one read per event: two busy sockets take turns, pass by pass.
    echo = EchoLoop(read_size=1)
    loop = echo.loop
    peers = []
    for name in ("a", "b"):
        served, peer = pair()
        loop.add(Echo(served, name))
        await peer.send(b"12345")
        peers.append(peer)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            for peer in peers:
                got = b""
                while len(got) < 5:
                    got += await peer.recv(10)
            nursery.cancel_scope.cancel()
    assert sorted(echo.names()[:2]) == ["a", "b"]
    assert [echo.names()[i : i + 2].count("a") for i in range(0, 10, 2)] == [1] * 5


async def test_a_busy_loop_yields_after_pass_size_sockets_served_not_after_every_pass(
    pair: Pairs,
) -> None:
    # One socket with a byte per event and 3 * PASS_SIZE bytes waiting: passes of one socket
    # each. Another task counts its turns. The loop yields after PASS_SIZE sockets served, so
    # between two of the other's turns it serves at most twice that (trio runs each batch of
    # tasks in either order: loop, other | other, loop), as when it yielded after every full
    # pass; and one-socket passes run on without a scheduler round each (at most 2 apart).
    turns = 0
    seen: list[int] = []  # the other task's turns when each event was served
    echo = EchoLoop(read_size=1)
    handler = echo.on_ready

    def on_ready(item: Echo, mask: int) -> None:
        seen.append(turns)
        handler(item, mask)

    loop: ReadyLoop[Echo] = ReadyLoop(on_ready)
    echo.loop = loop
    served, peer = pair()
    total = 3 * PASS_SIZE
    await peer.send(b"x" * total)
    await trio.testing.wait_all_tasks_blocked()  # every byte is in the served socket's queue
    loop.add(Echo(served, "a"))

    async def other() -> None:
        nonlocal turns
        while True:
            await trio.lowlevel.checkpoint()
            turns += 1

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            nursery.start_soon(loop.run)
            got = b""
            while len(got) < total:
                got += await peer.recv(total)
            nursery.cancel_scope.cancel()
    assert len(seen) >= total
    runs = [seen[:total].count(t) for t in sorted(set(seen[:total]))]
    assert max(runs) <= 2 * PASS_SIZE
    assert max(runs) > 2


async def test_after_pass_runs_once_after_each_pass_that_served_sockets(pair: Pairs) -> None:
    # A pingpong client sends there what the pass's replies made room for, back to back.
    log: list[str] = []
    echo = EchoLoop()
    handler = echo.on_ready

    def on_ready(item: Echo, mask: int) -> None:
        log.append(item.name)
        handler(item, mask)

    loop: ReadyLoop[Echo] = ReadyLoop(on_ready, after_pass=lambda: log.append("|"))
    echo.loop = loop
    peers = []
    for name in ("a", "b"):
        served, peer = pair()
        loop.add(Echo(served, name))
        await peer.send(b"ping")
        peers.append(peer)
    await trio.testing.wait_all_tasks_blocked()  # both sockets have their data
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            for peer in peers:
                assert await peer.recv(10) == b"ping"
            nursery.cancel_scope.cancel()
    assert log == ["a", "b", "|"] or log == ["b", "a", "|"]  # one pass, then its end


async def test_a_handler_error_ends_that_socket_only_and_its_owner_raises_it(
    pair: Pairs,
) -> None:
    echo = EchoLoop()
    echo.fail_on = b"boom"
    loop = echo.loop
    bad_sock, bad_peer = pair()
    good_sock, good_peer = pair()
    bad, good = Echo(bad_sock, "bad"), Echo(good_sock, "good")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            loop.add(bad)
            loop.add(good)
            await bad_peer.send(b"boom")
            with pytest.raises(ValueError, match="bad input on bad"):
                await loop.wait(bad)
            assert await round_trip(good_peer, b"still served") == b"still served"
            assert list(loop.items.values()) == [good]
            nursery.cancel_scope.cancel()


async def test_on_error_decides_what_a_handler_error_does(pair: Pairs) -> None:
    errors: list[tuple[str, str]] = []

    def fail(item: Echo, mask: int) -> None:
        item.sock.recv(100)
        raise RuntimeError("once")

    def keep_serving(item: Echo, exc: Exception) -> None:
        errors.append((item.name, str(exc)))

    loop: ReadyLoop[Echo] = ReadyLoop(fail, keep_serving)
    served, peer = pair()
    item = Echo(served, "kept")
    loop.add(item)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            for _ in range(2):
                await peer.send(b"x")
                while len(errors) < _ + 1:
                    await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert errors == [("kept", "once"), ("kept", "once")]
    assert loop.items == {item.fd: item}
    assert not item.done.is_set()


async def test_finish_is_idempotent_and_says_whether_it_ended_the_item(pair: Pairs) -> None:
    loop = EchoLoop().loop
    served, _ = pair()
    item = Echo(served, "a")
    loop.add(item)
    error = OSError("gone")
    assert loop.finish(item, error) is True
    assert loop.finish(item) is False
    assert item.done.is_set()
    assert item.error is error  # the second finish does not overwrite the first
    assert loop.items == {}
    with pytest.raises(OSError, match="gone"):
        await loop.wait(item)


async def test_an_owner_cancelled_while_waiting_stops_its_socket_being_served(
    pair: Pairs,
) -> None:
    echo = EchoLoop()
    loop = echo.loop
    left_sock, left_peer = pair()
    other_sock, other_peer = pair()
    left = Echo(left_sock, "left")
    loop.add(Echo(other_sock, "other"))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            with trio.move_on_after(0) as scope:
                loop.add(left)
                await loop.wait(left)
            assert scope.cancelled_caught
            assert left.fd not in loop.items
            await left_peer.send(b"unheard")
            # The other socket's round trip is a pass of the loop after "unheard" arrived.
            assert await round_trip(other_peer, b"ping") == b"ping"
            nursery.cancel_scope.cancel()
    assert echo.names() == ["other"]


async def test_watch_asks_for_room_to_write_instead_of_data(pair: Pairs) -> None:
    masks: list[int] = []

    def on_ready(item: Echo, mask: int) -> None:
        masks.append(mask)
        loop.finish(item)

    loop: ReadyLoop[Echo] = ReadyLoop(on_ready)
    served, _ = pair()  # the peer sends nothing: there is room to write, never data
    item = Echo(served, "w")
    loop.add(item)
    loop.watch(item, select.EPOLLOUT)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            await loop.wait(item)
            nursery.cancel_scope.cancel()
    assert masks == [select.EPOLLOUT]


async def test_the_loop_refuses_new_sockets_once_it_has_ended(pair: Pairs) -> None:
    loop = EchoLoop().loop
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            nursery.cancel_scope.cancel()
    served, _ = pair()
    with pytest.raises(trio.ClosedResourceError):
        loop.add(Echo(served, "late"))


# --- Descriptor numbers reused ------------------------------------------------------------


async def test_a_new_socket_on_the_fd_of_one_closed_while_served_gets_only_its_own_events(
    pair: Pairs,
) -> None:
    echo = EchoLoop()
    loop = echo.loop
    old_sock, old_peer = pair()
    new_sock, new_peer = pair()
    old = Echo(old_sock, "old")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            loop.add(old)
            assert await round_trip(old_peer, b"before") == b"before"
            fd = old.fd
            old_sock.close()  # closed while still served: no finish first
            new = Echo(pair.move_onto(fd, new_sock), "new")
            assert new.fd == fd
            loop.add(new)  # the closed socket's registration went with it
            assert loop.items == {fd: new}
            assert await round_trip(new_peer, b"after") == b"after"
            # The old socket's owner cleans up late: that must not end the new one.
            assert loop.finish(old) is False
            assert not new.done.is_set()
            assert await round_trip(new_peer, b"again") == b"again"
            assert loop.finish(new) is True
            nursery.cancel_scope.cancel()
    assert echo.names() == ["old", "new", "new"]


async def test_a_socket_on_the_fd_of_a_closed_served_one_is_not_served_until_added(
    pair: Pairs,
) -> None:
    echo = EchoLoop()
    loop = echo.loop
    old_sock, _ = pair()
    new_sock, new_peer = pair()
    other_sock, other_peer = pair()
    old = Echo(old_sock, "old")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            loop.add(old)
            loop.add(Echo(other_sock, "other"))
            fd = old.fd
            old_sock.close()
            moved = pair.move_onto(fd, new_sock)
            await new_peer.send(b"for the new one")
            # A pass of the loop after that data arrived: it went to nobody, above all not
            # to the old item, which still holds that fd number in the loop's table.
            assert await round_trip(other_peer, b"ping") == b"ping"
            assert echo.names() == ["other"]
            # Ending the old item unregisters nothing of the new socket's and breaks nothing.
            assert loop.finish(old) is True
            assert await round_trip(other_peer, b"pong") == b"pong"
            new = Echo(moved, "new")
            loop.add(new)
            assert await new_peer.recv(100) == b"for the new one"
            nursery.cancel_scope.cancel()
    assert echo.names() == ["other", "other", "new"]


async def test_a_finished_closed_socket_and_a_new_one_on_its_fd(pair: Pairs) -> None:
    echo = EchoLoop()
    loop = echo.loop
    old_sock, old_peer = pair()
    new_sock, new_peer = pair()
    old = Echo(old_sock, "old")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await serve(nursery, loop)
            loop.add(old)
            old_peer.shutdown(socket.SHUT_WR)
            await loop.wait(old)  # finished by the handler at end of stream
            old_sock.close()
            new = Echo(pair.move_onto(old.fd, new_sock), "new")
            loop.add(new)
            await loop.wait(old)  # waiting again on the old item: returns, ends nothing
            assert loop.finish(old) is False
            assert loop.items == {new.fd: new}
            assert await round_trip(new_peer, b"fresh") == b"fresh"
            nursery.cancel_scope.cancel()
    assert echo.names() == ["old", "new"]
