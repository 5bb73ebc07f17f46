"""A StatsD listener never holds the event loop for long: big datagrams, long TCP reads and
big flushes are worked through in steps, with other tasks scheduled in between.

Behaviour, not timing: a concurrent task counts the states it sees while the work is in
progress; no wall-clock figure is asserted (section i of the benchmark, bench/stalls.py,
measures those).
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from app.listeners.base import Listener
from app.listeners.modes.statsd import StatsdMode
from app.wire.statsd import Aggregator, Metric
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start


def _mode(listener: Listener) -> StatsdMode:
    assert isinstance(listener.mode, StatsdMode)
    return listener.mode


async def _watch(agg: Aggregator, total: int, seen: set[int]) -> None:
    """Note every metrics_received value between 0 and ``total``, once per scheduling."""
    while agg.metrics_received < total:
        seen.add(agg.metrics_received)
        await trio.lowlevel.checkpoint()


async def test_a_datagram_of_3000_lines_is_parsed_in_steps() -> None:
    total = 3_000
    datagram = b"\n".join(b"k%d:1|c" % (i % 50) for i in range(total))
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        agg = _mode(listener).aggregator
        seen: set[int] = set()
        with trio.fail_after(10), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(datagram, ("127.0.0.1", listener.port))
            await _watch(agg, total, seen)
    between = {n for n in seen if 0 < n < total}
    assert len(between) >= 3  # the watcher ran at least three times inside one datagram
    assert agg.current()["counters"]["k7"]["value"] == total / 50
    assert agg.bad_lines == 0


async def test_a_long_tcp_read_is_parsed_in_steps() -> None:
    total = 20_000
    stream = b"".join(b"t:%d|ms\n" % (i % 97) for i in range(total))
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        agg = _mode(listener).aggregator
        seen: set[int] = set()
        with trio.fail_after(10):
            client = await trio.open_tcp_stream("127.0.0.1", listener.port)
            async with client, trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, stream)
                await _watch(agg, total, seen)
    # Each read holds at most max_message_size bytes; each is cut into steps as well.
    assert len({n for n in seen if 0 < n < total}) >= total // 5_000
    timer = agg.current()["timers"]["t"]
    assert (timer["count"], timer["min"], timer["max"]) == (total, 0, 96)


async def test_a_big_flush_lets_other_tasks_run_and_gives_the_same_numbers() -> None:
    keys, per_key = 20, 10_000  # 200,000 samples: about ten steps of the flush
    twin = Aggregator(started_at=0.0)
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        mode = _mode(listener)
        for agg in (mode.aggregator, twin):
            for key in range(keys):
                for i in range(per_key):
                    agg.add(Metric(f"t{key}", float((i * 7919) % per_key), "ms"))
        assert mode.aggregator.samples_held == keys * per_key
        ticks = 0
        done = trio.Event()
        result: dict[str, Any] = {}

        async def flush() -> None:
            result["snapshot"] = await mode.flush_in_steps()
            done.set()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flush)
                while not done.is_set():
                    ticks += 1
                    await trio.lowlevel.checkpoint()
    assert ticks >= 5
    expected = twin.flush(1.0)["timers"]
    assert result["snapshot"]["timers"] == expected
    assert expected["t3"]["p50"] == per_key / 2 - 1  # samples 0..9999: the 5,000th is 4999
    assert mode.aggregator.last_flush is result["snapshot"]
    assert mode.flushes == 1


async def test_telemetry_leaves_open_percentiles_out_while_sorting_them_would_be_long() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        mode = _mode(listener)
        mode.aggregator.add(Metric("rt", 5.0, "ms"))
        assert mode.telemetry()["current"]["timers"]["rt"]["p50"] == 5.0
        for key in ("a", "b", "c"):  # 30,000 samples kept: more than one step of a flush
            for i in range(10_000):
                mode.aggregator.add(Metric(key, float(i), "ms"))
        current = mode.telemetry()["current"]["timers"]
        assert "p50" not in current["a"] and "p50" not in current["rt"]
        assert (current["a"]["count"], current["a"]["max"]) == (10_000, 9_999)
        flushed = (await mode.flush_in_steps())["timers"]
        assert (flushed["a"]["p50"], flushed["rt"]["p50"]) == (4_999, 5.0)


class _Port:
    """The DatagramPort a handler is made for; these tests never send through it."""

    sock = None

    def reply(self, *args: object) -> None:  # pragma: no cover - statsd never replies
        raise AssertionError("statsd does not reply")


async def test_the_datagram_queue_is_bounded_and_its_drops_are_counted() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        mode = _mode(listener)
        handle = mode.datagram_handler(_Port())
        datagram = bytearray(b"q:1|c|#" + b"t" * 59_993)  # 60,000 bytes, one line
        view = memoryview(datagram)
        # Without yielding, as one drain pass would: nothing is parsed meanwhile.
        for _ in range(200):
            handle(view, len(datagram), ("127.0.0.1", 1), None)  # type: ignore[arg-type]
        queued = 200 - mode.backlog_drops
        assert queued * len(datagram) <= 8 * 1024 * 1024 < (queued + 1) * len(datagram)
        assert mode.details()["statsd"]["backlog_drops"] == mode.backlog_drops
        with trio.fail_after(30):
            await wait_for(lambda: mode.aggregator.metrics_received == queued)
    assert mode.aggregator.current()["counters"]["q|#" + "t" * 59_993]["value"] == queued
