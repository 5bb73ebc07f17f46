"""Plain TCP echo connections served with no task of their own: idle, active again, closed
from the API while idle, timed out while idle, reset, and ended by the listener's stop."""

from __future__ import annotations

import socket
import struct

import trio

from app.descriptors import DESCRIPTORS
from app.listeners.idle import SWEEP_BATCH, IdleDeadlines
from tests.helpers import echo_round_trip, wait_for
from tests.listener_fixtures import open_manager, read_to_eof, start


async def test_a_connection_idle_then_active_again_is_served_and_counted_exactly(
    autojump_clock: object,
) -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=echo&idle_timeout=30")
        async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
            for payload in (b"first", b"after 20 s", b"after 40 s"):
                await echo_round_trip(stream, payload)
                await trio.sleep(20)  # silent, but for less than the idle timeout
            conn = next(iter(manager.registry))
            assert (conn.msgs_in, conn.msgs_out) == (3, 3)
            assert conn.bytes_in == conn.bytes_out == len(b"firstafter 20 safter 40 s")
            assert (listener.msgs_in, listener.bytes_in) == (3, conn.bytes_in)
            assert listener.idle_closed == 0
            await echo_round_trip(stream, b"last")
            t0 = trio.current_time()
            assert await read_to_eof(stream) == b""  # closed by the idle timeout
            waited = trio.current_time() - t0
    # Between the timeout and the timeout plus the sweep's granularity (1 s at most).
    assert 30 <= waited <= 31
    assert (listener.idle_closed, listener.closed_by_api, listener.errors) == (1, 0, 0)
    assert (listener.msgs_in, listener.msgs_out) == (4, 4)
    assert listener.connections == 0
    assert len(manager.registry) == 0


async def test_an_idle_connection_is_closed_from_the_api_and_counted() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=echo")
        held = DESCRIPTORS.held  # the accept loop's, taken for the next connection
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await echo_round_trip(stream, b"hello")
                (conn,) = manager.registry
                assert DESCRIPTORS.held == held + 1
                assert manager.registry.close_connection(conn.id)
                assert await read_to_eof(stream) == b""
            assert manager.registry.get(conn.id) is None
            assert (listener.closed_by_api, listener.idle_closed, listener.errors) == (1, 0, 0)
            assert listener.connections == 0
            assert DESCRIPTORS.held == held
            # Closing it again is a no-op on the counters.
            assert not manager.registry.close_connection(conn.id)
            assert listener.closed_by_api == 1


async def test_a_reset_connection_is_counted_as_an_error_and_the_others_go_on() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=echo")
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as other:
                rude = socket.create_connection(("127.0.0.1", listener.port))
                await wait_for(lambda: listener.connections == 2)
                # Linger 0: close sends a reset instead of a FIN.
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                rude.close()
                await wait_for(lambda: listener.connections == 1)
                await echo_round_trip(other, b"still served")
    assert listener.errors == 1
    assert (listener.closed_by_api, listener.idle_closed) == (0, 0)


async def test_stopping_the_listener_closes_its_idle_connections_without_counting_them() -> None:
    held = DESCRIPTORS.held
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=echo")
        with trio.fail_after(10):
            streams = [await trio.open_tcp_stream("127.0.0.1", listener.port) for _ in range(5)]
            try:
                for stream in streams:
                    await echo_round_trip(stream, b"x")
                assert len(manager.registry) == 5
                await manager.stop(listener.id)
                for stream in streams:
                    assert await read_to_eof(stream) == b""
            finally:
                for stream in streams:
                    await stream.aclose()
    assert len(manager.registry) == 0
    assert listener.connections == 0
    assert (listener.idle_closed, listener.closed_by_api, listener.errors) == (0, 0, 0)
    assert DESCRIPTORS.held == held


# --- IdleDeadlines alone ------------------------------------------------------------------


class _Item:
    def __init__(self, active_at: float) -> None:
        self.active_at = active_at
        self.idle_due = active_at
        self.ended = False

    def __lt__(self, other: _Item) -> bool:
        return self.idle_due < other.idle_due


def _deadlines(idle: float, live: list[_Item], expired: list[_Item]) -> IdleDeadlines[_Item]:
    def expire(item: _Item) -> None:
        item.ended = True
        expired.append(item)
        live.remove(item)

    return IdleDeadlines(idle, 1.0, expire, lambda item: item.ended, lambda: live)


def test_a_sweep_expires_the_silent_keeps_the_active_and_drops_the_ended() -> None:
    live = [_Item(0.0) for _ in range(3)]
    expired: list[_Item] = []
    deadlines = _deadlines(10.0, live, expired)
    for item in live:
        deadlines.add(item)
    silent, active, ended = live
    active.active_at = 5.0
    ended.ended = True
    live.remove(ended)
    assert deadlines.sweep(9.9) == 0
    assert deadlines.sweep(10.0) == 3  # each looked at once
    assert expired == [silent]
    assert len(deadlines) == 1  # the active one, due again at 15
    assert deadlines.sweep(14.9) == 0
    assert deadlines.sweep(15.0) == 1
    assert expired == [silent, active]
    assert len(deadlines) == 0


def test_a_sweep_looks_at_no_more_than_its_limit() -> None:
    live = [_Item(0.0) for _ in range(10)]
    expired: list[_Item] = []
    deadlines = _deadlines(1.0, live, expired)
    for item in list(live):
        deadlines.add(item)
    assert deadlines.sweep(5.0, 4) == 4
    assert len(expired) == 4
    assert deadlines.sweep(5.0, 4) == 4
    assert deadlines.sweep(5.0, 4) == 2
    assert len(expired) == 10


def test_the_heap_stays_proportional_to_the_live_connections() -> None:
    live: list[_Item] = []
    deadlines = _deadlines(300.0, live, [])
    for i in range(20_000):
        item = _Item(float(i) / 1000)
        live.append(item)
        deadlines.add(item)
        if len(live) > 10:  # connections come and go; ten stay open
            gone = live.pop(0)
            gone.ended = True
    assert len(deadlines) <= 2 * len(live) + 1024 + 1


async def test_thousands_due_at_once_are_closed_in_batches_with_turns_between(
    autojump_clock: object,
) -> None:
    live = [_Item(0.0) for _ in range(3 * SWEEP_BATCH + 5)]
    expired: list[_Item] = []
    deadlines = _deadlines(10.0, live, expired)
    for item in list(live):
        deadlines.add(item)
    turns = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)

        async def other_task() -> None:
            nonlocal turns
            while len(expired) < 3 * SWEEP_BATCH + 5:
                # Each batch ends with a checkpoint: this task runs between batches.
                turns += 1
                await trio.lowlevel.checkpoint()

        await trio.sleep(10)
        await other_task()
        nursery.cancel_scope.cancel()
    assert len(expired) == 3 * SWEEP_BATCH + 5
    assert turns >= 3


async def test_the_sweeper_wakes_for_an_item_added_while_it_slept_with_nothing(
    autojump_clock: object,
) -> None:
    expired = trio.Event()
    item = _Item(0.0)

    def expire(_: _Item) -> None:
        expired.set()

    deadlines = IdleDeadlines(5.0, 1.0, expire, lambda _: expired.is_set(), lambda: [item])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.sleep(100)  # the sweeper sleeps with nothing to watch
        item.active_at = t0 = trio.current_time()
        deadlines.add(item)
        await expired.wait()
        assert 5.0 <= trio.current_time() - t0 <= 6.0  # + the granularity (1 s) at most
        nursery.cancel_scope.cancel()
