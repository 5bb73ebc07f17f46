"""Read buffers of the stream loop: a silent connection holds none, and connections that take
turns with the same pooled buffers each get exactly their own bytes back and counted."""

from __future__ import annotations

import trio

from app.listeners import stream
from tests.helpers import echo_round_trip, wait_for
from tests.listener_fixtures import open_manager, read_until, start


async def test_silent_connections_hold_no_read_buffer_and_a_talking_one_gives_it_back() -> None:
    lent = stream.SPARES.lent
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=sink")
        with trio.fail_after(10):
            streams = [await trio.open_tcp_stream("127.0.0.1", listener.port) for _ in range(20)]
            try:
                await wait_for(lambda: listener.connections == 20)
                # Every connection's task waits for data: none holds a buffer.
                await wait_for(lambda: stream.SPARES.lent == lent)
                await streams[7].send_all(b"x" * 1000)
                await wait_for(lambda: listener.bytes_in == 1000)
                await wait_for(lambda: stream.SPARES.lent == lent)  # given back, waiting again
            finally:
                for s in streams:
                    await s.aclose()
        await wait_for(lambda: listener.connections == 0)
    assert stream.SPARES.lent == lent


async def test_connections_taking_turns_with_pooled_buffers_get_their_own_replies() -> None:
    spec = {
        "url": "tcp://127.0.0.1:0?mode=respond",
        "rules": [{"match": "regex", "pattern": "^ECHO (.*)$", "reply": "ECHO {1}\\n"}],
    }
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(20):
            a = await trio.open_tcp_stream("127.0.0.1", listener.port)
            b = await trio.open_tcp_stream("127.0.0.1", listener.port)
            async with a, b:
                sent = 0
                for i in range(50):
                    # Alternate: each read of one connection may take the buffer the other
                    # just gave back, and is silent (waiting, holding none) in between.
                    for name, s in ((b"a", a), (b"b", b)):
                        line = b"ECHO %s %d\n" % (name, i)
                        await s.send_all(line)
                        assert await read_until(s, b"\n") == line
                        sent += len(line)
        await wait_for(lambda: listener.connections == 0)
    assert listener.bytes_in == listener.bytes_out == sent
    assert listener.msgs_in == listener.msgs_out == 100
    assert listener.errors == 0


async def test_an_echo_over_the_stream_loop_grows_its_buffer_and_keeps_every_byte() -> None:
    # Impairment moves echo to the stream loop; a big write makes the buffer grow (x4).
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=echo&delay=0.001")
        with trio.fail_after(20):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as s:
                for size in (10, 70_000, 10):
                    await echo_round_trip(s, bytes(range(256)) * (size // 256 + 1))


def test_the_pool_keeps_a_bounded_number_of_bytes_and_reuses_what_it_keeps() -> None:
    spares = stream._Spares()
    size = 1 << 20
    taken = [spares.take(size) for _ in range(10)]
    assert spares.lent == 10
    for pair in taken:
        spares.give(size, pair)
    assert spares.lent == 0
    kept = [spares.take(size) for _ in range(10)]
    reused = sum(any(pair[0] is old[0] for old in taken) for pair in kept)
    assert reused == stream.MAX_SPARE_BYTES // size  # the rest were new buffers
