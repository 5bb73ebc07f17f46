"""Sink listeners: count everything; one-way loss, duplicates, reordering, jitter of probes."""

from __future__ import annotations

import socket
import time

import trio
from hypothesis import given
from hypothesis import strategies as st

from app.listeners.modes.received import ReceivedBytes
from app.listeners.modes.sink import FixedFramer, ProbeSink
from app.wire import probe
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start

RUN_ID = "run-under-test"
TAG = probe.run_tag_of(RUN_ID)


def message(seq: int, flow: int = 0, size: int = 64) -> bytes:
    header = probe.encode(TAG, flow, seq, time.perf_counter_ns())
    return header + b"\0" * (size - len(header))


async def test_udp_sink_measures_one_way_loss_duplicates_and_reordering() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=sink")
        # 0..9 with 3 and 7 missing, 5 sent twice, 8 late (after 9); plus foreign traffic.
        order = [0, 1, 2, 4, 5, 5, 6, 9, 8]
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            for seq in order:
                await sock.send(message(seq))
            await sock.send(b"not a probe, just somebody's bytes")
            await sock.send(b"short")
            await wait_for(lambda: listener.msgs_in == len(order) + 2)
    stats = listener.probe_summary(TAG)
    assert stats is not None
    assert stats["received"] == 9
    assert stats["duplicates"] == 1
    assert stats["reordered"] == 1
    assert stats["lost"] == 2
    assert stats["loss_pct"] == 20.0
    doc = listener.to_dict()
    assert doc["probe"]["probes"] == 9
    assert doc["probe"]["foreign"] == 2
    assert doc["probe"]["runs"][f"{TAG:08x}"] == stats
    assert listener.msgs_out == 0  # a sink never answers
    assert listener.probe_summary(TAG + 1) is None


async def test_tcp_sink_frames_by_message_size_and_reads_probes() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=sink&message_size=100")
        stream_bytes = b"".join(message(seq, flow=1, size=100) for seq in range(50))
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                # Odd chunk sizes: headers straddle the writes.
                for start_at in range(0, len(stream_bytes), 37):
                    await stream.send_all(stream_bytes[start_at : start_at + 37])
                await wait_for(lambda: listener.bytes_in == len(stream_bytes))
    assert listener.msgs_in == 50
    stats = listener.probe_summary(TAG)
    assert stats is not None
    assert (stats["received"], stats["lost"], stats["flows"]) == (50, 0, 1)


async def test_tcp_sink_without_framing_counts_bytes_and_reads() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=sink")
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"x" * 100_000)
                await wait_for(lambda: listener.bytes_in == 100_000)
    assert listener.bytes_out == 0
    assert listener.to_dict()["probe"]["probes"] == 0


def test_probe_sink_forgets_the_least_recent_run_past_its_bound() -> None:
    sink = ProbeSink(max_runs=2)
    for tag in (1, 2, 1, 3):  # run 2 is the least recently active when run 3 arrives
        sink.record(probe.encode(tag, 0, 0, 0), 0)
    assert sorted(sink.runs) == [1, 3]
    assert sink.forgotten_runs == 1


@given(
    st.lists(st.integers(0, 20), max_size=30),
    st.integers(1, 80),
    st.data(),
)
def test_fixed_framer_fed_whole_byte_by_byte_or_in_chunks_counts_the_same(
    seqs: list[int], size: int, data: st.DataObject
) -> None:
    stream = b"".join(
        (probe.encode(7, 0, seq, seq) + b"\xff" * size)[:size] for seq in seqs
    ) + b"\x01" * data.draw(st.integers(0, size - 1))

    def framed(chunks: list[bytes]) -> tuple[int, dict[str, object]]:
        sink = ProbeSink()
        framer = FixedFramer(sink, size)
        for chunk in chunks:
            framer.feed(memoryview(chunk), len(chunk), 0)
        return framer.messages, sink.summary()

    whole = framed([stream])
    assert framed([stream[i : i + 1] for i in range(len(stream))]) == whole
    cut = data.draw(st.integers(0, len(stream)))
    assert framed([stream[:cut], stream[cut:]]) == whole
    assert whole[0] == len(seqs)
    expected_probes = len(seqs) if size >= probe.HEADER_SIZE else 0
    assert whole[1]["probes"] == expected_probes


def test_a_sink_leaves_warmup_messages_out_and_counts_from_the_first_counted_one() -> None:
    # Warm-up and counted messages are numbered apart, each from 0 (app.wire.probe).
    sink = ProbeSink()
    now = time.perf_counter_ns()
    for seq in range(5):
        sink.record(probe.encode(TAG, 0, seq, now, flags=probe.FLAG_WARMUP), now)
    for seq in (0, 1, 3):
        sink.record(probe.encode(TAG, 0, seq, now), now)
    stats = sink.for_run(TAG)
    assert stats is not None
    assert (stats["received"], stats["lost"]) == (3, 1)
    assert sink.summary()["warmup"] == 5 and sink.probes == 8


def test_a_sink_of_nothing_but_warmup_has_no_figures_for_the_run() -> None:
    sink = ProbeSink()
    sink.record(probe.encode(TAG, 0, 0, 1, flags=probe.FLAG_WARMUP), 2)
    assert sink.for_run(TAG) is None


# --- bytes received: the receiver's side of throughput ----------------------------------

SECOND = 1_000_000_000


def test_bytes_received_are_bucketed_by_second_since_the_first_arrival() -> None:
    got = ReceivedBytes()
    for at, n in [(0, 100), (SECOND // 2, 100), (SECOND, 50), (3 * SECOND + SECOND // 2, 10)]:
        got.add(n, 5 * SECOND + at)
    doc = got.summary()
    assert doc["rx_bytes"] == 260
    assert doc["rx_seconds"] == 3.5
    # Second 2 had nothing; the last second had arrivals over half of it: 10 B in 0.5 s.
    assert doc["rx_series"] == [8 * 200, 8 * 50, 0, 8 * 20]
    assert doc["rx_bits_per_s"] == 8 * 260 / 3.5


def test_a_sliver_of_a_last_second_is_left_out_of_the_series_not_the_totals() -> None:
    got = ReceivedBytes()
    got.add(1000, 0)
    got.add(10, SECOND + SECOND // 100)
    doc = got.summary()
    assert doc["rx_series"] == [8000]
    assert doc["rx_bytes"] == 1010


def test_nothing_received_has_no_rate() -> None:
    assert ReceivedBytes().summary() == {
        "rx_bytes": 0,
        "rx_seconds": 0.0,
        "rx_bits_per_s": None,
        "rx_series": [],
    }


async def test_an_unframed_tcp_stream_that_starts_with_a_probe_counts_for_its_run() -> None:
    # The sender is socat, not socketlab: a file that starts with a probe header.
    payload = probe.encode(TAG, 0, 0, 0) + bytes(range(256)) * 4000
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?mode=sink")
        with trio.fail_after(20):
            await trio.run_process(
                ["socat", "-u", "STDIN", f"TCP:127.0.0.1:{listener.port}"], stdin=payload
            )
            await wait_for(lambda: listener.bytes_in == len(payload))
            # Another tool's stream on the same sink counts for no run.
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"GET / HTTP/1.0\r\n\r\n" * 10)
            await wait_for(lambda: listener.bytes_in == len(payload) + 180)
        figures = listener.receiving_end(TAG)
    assert figures is not None
    assert figures["framed"] is False
    assert figures["rx_bytes"] == len(payload)
    assert sum(figures["rx_series"]) <= 8 * len(payload)
    assert listener.to_dict()["probe"]["foreign"] == 1


async def test_a_udp_sink_counts_the_bytes_of_counted_datagrams_only() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=sink")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(
                probe.encode(TAG, 0, 0, 0, flags=probe.FLAG_WARMUP), ("127.0.0.1", listener.port)
            )
            for seq in range(10):
                sock.sendto(message(seq, size=200), ("127.0.0.1", listener.port))
            with trio.fail_after(5):
                await wait_for(lambda: listener.msgs_in == 11)
        figures = listener.receiving_end(TAG)
    assert figures is not None
    assert (figures["received"], figures["rx_bytes"]) == (10, 2000)
