"""StatsD listeners fed by real clients: the `statsd` library from PyPI over UDP and TCP."""

from __future__ import annotations

import itertools
import random
import socket
from typing import Any

import pytest
import statsd
import trio
from hypothesis import given
from hypothesis import strategies as st

from app.lab import Lab
from app.listeners.base import Listener
from app.listeners.modes.statsd import StatsdMode, StatsdStream
from app.listeners.parse import parse_listener_url
from app.wire.rules import FrameTooLongError
from app.wire.statsd import Aggregator
from tests.helpers import http, wait_for, wait_for_async
from tests.listener_fixtures import open_manager, start


def _mode(listener: Listener) -> StatsdMode:
    assert isinstance(listener.mode, StatsdMode)
    return listener.mode


def _send_with_the_library(client: statsd.StatsClient | statsd.TCPStatsClient) -> int:
    """Counters, gauges, timers and sets through the library's public calls; returns how
    many metric lines it sent."""
    client.incr("hits")
    client.incr("hits", 41)
    client.decr("hits", 2)
    client.incr("sampled", 1, rate=0.25)  # random.random is pinned to 0 below: always sent
    client.incr("sampled", 3, rate=0.25)
    client.gauge("temperature", 20)
    client.gauge("temperature", 5, delta=True)
    client.gauge("temperature", -1.5, delta=True)
    client.gauge("below_zero", -7)  # the library sends "0|g" then "-7|g"
    for ms in (10, 20, 30, 40, 100):
        client.timing("latency", ms)
    client.set("users", "alice")
    client.set("users", "bob")
    client.set("users", "alice")
    with client.pipeline() as pipe:  # several metrics in one datagram
        pipe.incr("hits")
        pipe.set("users", "carol")
        pipe.timing("latency", 50)
    return 3 + 2 + 3 + 2 + 5 + 3 + 3


def _check_numbers(snapshot: Any) -> None:
    assert snapshot["counters"]["app.hits"]["value"] == 1 + 41 - 2 + 1
    assert snapshot["counters"]["app.sampled"]["value"] == (1 + 3) / 0.25
    assert snapshot["gauges"]["app.temperature"] == 20 + 5 - 1.5
    assert snapshot["gauges"]["app.below_zero"] == -7
    assert snapshot["sets"]["app.users"] == 3
    latency = snapshot["timers"]["app.latency"]
    assert latency["count"] == 6
    assert (latency["min"], latency["max"], latency["sum"]) == (10, 100, 250)
    assert latency["mean"] == 250 / 6
    # etsy's upper_N of the 6 samples 10 20 30 40 50 100: the round(N/100 * 6)-th.
    assert (latency["p50"], latency["p90"], latency["p99"]) == (30, 50, 100)
    assert snapshot["bad_lines"] == 0
    assert snapshot["overflow"] == 0


@pytest.fixture
def always_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    # The library drops sampled metrics at random; pin the draw so every one is sent.
    monkeypatch.setattr(random, "random", lambda: 0.0)


@pytest.mark.usefixtures("always_sampled")
async def test_the_statsd_library_over_udp_gives_exact_numbers() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        client = statsd.StatsClient("127.0.0.1", listener.port, prefix="app")
        try:
            sent = _send_with_the_library(client)
        finally:
            client.close()
        mode = _mode(listener)
        with trio.fail_after(5):
            await wait_for(lambda: mode.aggregator.metrics_received == sent)
        _check_numbers(mode.aggregator.current())
        _check_numbers(mode.flush())
        assert mode.telemetry()["last_flush"]["counters"]["app.hits"]["value"] == 41


@pytest.mark.usefixtures("always_sampled")
async def test_the_statsd_library_over_tcp_gives_exact_numbers() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=statsd&flush_interval=3600")

        def send() -> int:
            client = statsd.TCPStatsClient("127.0.0.1", listener.port, prefix="app", timeout=5)
            try:
                return _send_with_the_library(client)
            finally:
                client.close()

        with trio.fail_after(10):
            sent = await trio.to_thread.run_sync(send)
            mode = _mode(listener)
            await wait_for(lambda: mode.aggregator.metrics_received == sent)
        _check_numbers(mode.flush())


async def test_dogstatsd_tags_rates_and_packed_lines_in_one_datagram() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd")
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(
                b"req:1|c|#route:/a,env:prod\n"
                b"req:2|c|@0.5|#env:prod,route:/a\n"  # same key: tags are sorted
                b"req:1|c|#route:/b\n"
                b"size:100:200:300|h\n"
                b"not a metric\n"
                b"up:1|g|c:abc123|T1700000000"
            )
            mode = _mode(listener)
            await wait_for(lambda: mode.aggregator.metrics_received == 5)
    snapshot = mode.flush()
    assert snapshot["counters"]["req|#env:prod,route:/a"]["value"] == 5.0
    assert snapshot["counters"]["req|#route:/b"]["value"] == 1.0
    assert snapshot["timers"]["size"]["count"] == 3
    assert snapshot["gauges"] == {"up": 1.0}
    assert snapshot["bad_lines"] == 1
    assert listener.to_dict()["statsd"]["bad_lines"] == 1


async def test_metric_keys_are_bounded_with_an_overflow_counter() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&max_keys=5")
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"\n".join(b"key%d:1|c" % i for i in range(12)))
            mode = _mode(listener)
            await wait_for(lambda: mode.aggregator.metrics_received == 12)
    stats = listener.to_dict()["statsd"]
    assert (stats["keys"], stats["overflow"]) == (5, 7)


async def test_the_flush_interval_runs_as_a_task_of_the_listener() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=0.1")
        mode = _mode(listener)
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"beats:1|c")
            await wait_for(lambda: mode.aggregator.metrics_received == 1)
            flushed = await wait_for(
                lambda: (last := mode.aggregator.last_flush) and "beats" in last["counters"]
            )
            assert flushed
            # A new interval began; the idle counter is flushed as 0, as etsy's StatsD does.
            assert mode.aggregator.current()["counters"] == {"beats": {"value": 0.0, "rate": None}}
            await wait_for(lambda: mode.flushes >= 3)


async def test_datagrams_the_kernel_dropped_are_counted_so_none_vanish() -> None:
    async with open_manager() as manager:
        # A small receive buffer (the kernel doubles it) overflows fast.
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&rcvbuf=4096")
        mode = _mode(listener)
        sent = 2000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            # Sent without yielding to trio, so the listener cannot drain in between.
            for _ in range(sent):
                sender.sendto(b"flood:1|c", ("127.0.0.1", listener.port))

        async def all_accounted_for() -> bool:
            drops = await mode.refresh_kernel_drops()
            return drops is not None and mode.aggregator.metrics_received + drops == sent

        await wait_for_async(all_accounted_for, timeout=10)
    assert mode.kernel_drops is not None and mode.kernel_drops > 0
    assert mode.aggregator.current()["counters"]["flood"]["value"] == sent - mode.kernel_drops
    assert listener.to_dict()["statsd"]["kernel_drops"] == mode.kernel_drops


async def test_telemetry_api_shows_current_and_last_flush(lab: Lab) -> None:
    assert lab.web_port is not None
    port = lab.web_port
    with trio.fail_after(10):
        response = await http(
            port, "POST", "/api/listeners", body={"url": "udp://127.0.0.1:0?mode=statsd"}
        )
        assert response.status == 201
        created = response.json()
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", created["port"]))
            await sock.send(b"jobs:3|c\nqueue:12|g")
            listener = lab.listeners.get(created["id"])
            await wait_for(lambda: _mode(listener).aggregator.metrics_received == 2)
        doc = (await http(port, "GET", "/api/telemetry")).json()
        (item,) = doc["items"]
        assert item["listener_id"] == created["id"]
        assert item["current"]["counters"]["jobs"]["value"] == 3
        assert item["current"]["gauges"]["queue"] == 12
        assert item["last_flush"] is None
        assert item["kernel_drops"] == 0
        flushed = await http(port, "POST", f"/api/listeners/{created['id']}/flush")
        assert flushed.json()["counters"]["jobs"]["value"] == 3
        doc = (await http(port, "GET", f"/api/telemetry?listener={created['id']}")).json()
        assert doc["items"][0]["last_flush"]["counters"]["jobs"]["value"] == 3
        assert doc["items"][0]["current"]["counters"]["jobs"]["value"] == 0  # idle: 0
        assert doc["items"][0]["current"]["gauges"] == {"queue": 12}  # gauges persist
        echo_id = next(item.id for item in lab.listeners if item.spec.mode == "echo")
        refused = await http(port, "GET", f"/api/telemetry?listener={echo_id}")
        assert refused.status == 409
        assert (await http(port, "GET", "/api/telemetry?listener=nope")).status == 404


def test_an_unterminated_tcp_line_is_kept_until_its_newline_or_eof() -> None:
    aggregator = Aggregator(started_at=0.0)
    stream = StatsdStream(aggregator, max_line=100)
    stream.feed(b"a:1|c\na:2")
    assert aggregator.metrics_received == 1
    stream.feed(b"|c\nb:5|g")
    assert aggregator.metrics_received == 2
    stream.close()  # EOF: the last line counts without its newline
    assert aggregator.flush(1.0)["gauges"] == {"b": 5.0}


def test_a_tcp_line_longer_than_the_limit_is_refused() -> None:
    stream = StatsdStream(Aggregator(), max_line=10)
    with pytest.raises(FrameTooLongError):
        stream.feed(b"x" * 11)


lines = st.sampled_from(
    [b"a:1|c", b"a:2|c|@0.5", b"b:3|g", b"b:-1|g", b"t:4|ms", b"t:1:2|h", b"s:x|s", b"bad", b""]
)


@given(st.lists(lines, max_size=20), st.sampled_from([b"\n", b"\r\n"]), st.data())
def test_a_tcp_stream_fed_whole_byte_by_byte_or_in_chunks_aggregates_the_same(
    stream_lines: list[bytes], newline: bytes, data: st.DataObject
) -> None:
    stream = newline.join(stream_lines) + data.draw(st.sampled_from([b"", newline]))

    def aggregate(chunks: list[bytes]) -> Any:
        aggregator = Aggregator(started_at=0.0, rng=random.Random(0))
        cutter = StatsdStream(aggregator, max_line=1000)
        for chunk in chunks:
            cutter.feed(chunk)
        cutter.close()
        return aggregator.flush(1.0)

    whole = aggregate([stream])
    by_byte = aggregate([stream[i : i + 1] for i in range(len(stream))])
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    chunked = aggregate([stream[a:b] for a, b in itertools.pairwise(bounds)])
    assert by_byte == whole
    assert chunked == whole


@given(st.binary(max_size=300), st.integers(1, 64))
def test_a_tcp_stream_of_any_bytes_aggregates_or_raises_only_frame_too_long(
    stream: bytes, max_line: int
) -> None:
    aggregator = Aggregator(started_at=0.0)
    cutter = StatsdStream(aggregator, max_line=max_line)
    try:
        cutter.feed(stream)
    except FrameTooLongError:
        return
    cutter.close()
    assert aggregator.metrics_received + aggregator.bad_lines <= stream.count(b"\n") + 1


def test_statsd_listener_spec_options_are_checked() -> None:
    spec = parse_listener_url(
        "udp://127.0.0.1:8125?mode=statsd&flush_interval=2s&percentiles=50,99.9"
    )
    assert (spec.flush_interval, spec.percentiles) == (2.0, (50.0, 99.9))
