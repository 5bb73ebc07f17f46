import random
import socket
from typing import Any

import pytest
import statsd
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ProtocolError
from app.wire.statsd import (
    METRIC_TYPES,
    Aggregator,
    Metric,
    StatsdError,
    metric_key,
    parse_line,
    parse_packet,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"hits:1|c", Metric("hits", 1.0, "c")),
        (b"hits:1|c\n", Metric("hits", 1.0, "c")),
        (b"hits:1|c\r\n", Metric("hits", 1.0, "c")),
        (b"hits:-2|c", Metric("hits", -2.0, "c")),
        (b"hits:+2|c", Metric("hits", 2.0, "c")),
        (b"hits:0.5|c", Metric("hits", 0.5, "c")),
        (b"hits:.5|c", Metric("hits", 0.5, "c")),
        (b"hits:5.|c", Metric("hits", 5.0, "c")),
        (b"hits:1|c|@0.1", Metric("hits", 1.0, "c", rate=0.1)),
        (b"hits:1|c|@1", Metric("hits", 1.0, "c", rate=1.0)),
        (b"hits:1|c|#env:prod,host", Metric("hits", 1.0, "c", tags=("env:prod", "host"))),
        (b"hits:1|c|@0.5|#a", Metric("hits", 1.0, "c", rate=0.5, tags=("a",))),
        (b"hits:1|c|#a|@0.5", Metric("hits", 1.0, "c", rate=0.5, tags=("a",))),
        (b"hits:1|c|#a,,b,", Metric("hits", 1.0, "c", tags=("a", "b"))),
        (b"hits:1|c|#", Metric("hits", 1.0, "c")),
        (b"temp:21.5|g", Metric("temp", 21.5, "g")),
        (b"temp:+3|g", Metric("temp", 3.0, "g", delta=True)),
        (b"temp:-3|g", Metric("temp", -3.0, "g", delta=True)),
        (b"temp:0|g", Metric("temp", 0.0, "g")),
        (b"rt:320|ms", Metric("rt", 320.0, "ms")),
        (b"rt:1.5e2|ms", Metric("rt", 150.0, "ms")),
        (b"rt:320.000000|ms|@0.25", Metric("rt", 320.0, "ms", rate=0.25)),
        (b"size:4|h", Metric("size", 4.0, "h")),
        (b"lat:0.25|d", Metric("lat", 0.25, "d")),
        (b"users:alice|s", Metric("users", "alice", "s")),
        (b"users:a:b|s", Metric("users", "a:b", "s")),
        (b"users:42|s|#shard:1", Metric("users", "42", "s", tags=("shard:1",))),
        (b"size:1:2:3|h", Metric("size", 1.0, "h", packed=(2.0, 3.0))),
        (b"rt:1:2|ms|@0.5", Metric("rt", 1.0, "ms", rate=0.5, packed=(2.0,))),
        (b"hits:1:1|c", Metric("hits", 1.0, "c", packed=(1.0,))),
        (b"lat:5:6|d|#a", Metric("lat", 5.0, "d", tags=("a",), packed=(6.0,))),
        (b"hits:1|c|c:container-123|T1700000000", Metric("hits", 1.0, "c")),
        (b"hits:1|c|e:it-false,cn-web|card:high", Metric("hits", 1.0, "c")),
        (b"hits:1|c||#a", Metric("hits", 1.0, "c", tags=("a",))),
        (b"api.req-time_total:1|c", Metric("api.req-time_total", 1.0, "c")),
        ("températ:1|g".encode(), Metric("températ", 1.0, "g")),
        (b"cpu,host=a:1|g", Metric("cpu,host=a", 1.0, "g")),
    ],
)
def test_parse_line_reads_every_metric_form(line: bytes, expected: Metric) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"", "no ':'"),
        (b"hits", "no ':'"),
        (b":1|c", "empty metric name"),
        (b"hits:1", "no '|type'"),
        (b"hits:1|", "unknown metric type ''"),
        (b"hits:1|x", "unknown metric type 'x'"),
        (b"hits:1|C", "unknown metric type 'C'"),
        (b"hits:1|c:200|ms", "unknown metric type 'c:200'"),
        (b"hits:|c", "'' is not a number"),
        (b"hits:abc|c", "'abc' is not a number"),
        (b"hits: 1|c", "is not a number"),
        (b"hits:1_000|c", "is not a number"),
        (b"hits:0x10|c", "is not a number"),
        (b"hits:nan|c", "is not a number"),
        (b"temp:inf|g", "is not a number"),
        (b"hits:1e999|c", "out of range"),
        (b"hits:1:|h", "is not a number"),
        (b"hits:1|c|@0", "not in (0, 1]"),
        (b"hits:1|c|@1.5", "not in (0, 1]"),
        (b"hits:1|c|@-0.5", "not in (0, 1]"),
        (b"hits:1|c|@", "sample rate '' is not a number"),
        (b"hits:1|c|@x", "sample rate 'x'"),
        (b"hits:1|c|@0.5|@0.5", "sample rate given twice"),
        (b"hits:1|c|#a|#b", "tags given twice"),
        (b"temp:1:2|g", "packed values are not allowed for type 'g'"),
        (b"users:a|s|@0.5|@1", "sample rate given twice"),
        (b"users:|s", "empty set member"),
        (b"\xff:1|c", "not UTF-8"),
        (b"hits:1|c|#\xe9", "not UTF-8"),
    ],
)
def test_parse_line_rejects_malformed_lines_saying_what_is_wrong(line: bytes, words: str) -> None:
    with pytest.raises(StatsdError) as caught:
        parse_line(line)
    assert words in str(caught.value)
    assert caught.value.line == line


def test_statsd_error_is_a_value_error_and_a_protocol_error() -> None:
    with pytest.raises(StatsdError) as caught:
        parse_line(b"bad")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.to_dict() == {"error": str(caught.value), "field": "line"}


def test_parse_packet_reads_several_metrics_and_counts_bad_lines() -> None:
    packet = b"a:1|c\nb:2|g\n\nnonsense\nc:3|ms\r\n\r\nd:x|c\ne:u1|s"
    metrics, bad = parse_packet(packet)
    assert [m.name for m in metrics] == ["a", "b", "c", "e"]
    assert bad == 2


@pytest.mark.parametrize("packet", [b"", b"\n", b"\r\n\n\r\n"])
def test_parse_packet_skips_empty_lines(packet: bytes) -> None:
    assert parse_packet(packet) == ([], 0)


def test_metric_key_sorts_and_deduplicates_tags() -> None:
    assert metric_key("x") == "x"
    assert metric_key("x", ["b", "a:1", "b"]) == "x|#a:1,b"
    assert parse_line(b"x:1|c|#b,a").key == parse_line(b"x:1|c|#a,b").key == "x|#a,b"


def _aggregate(*lines: bytes, max_keys: int = 10_000, max_set_values: int = 10_000) -> Aggregator:
    aggregator = Aggregator(max_keys, started_at=0.0, max_set_values=max_set_values)
    for line in lines:
        aggregator.add(parse_line(line))
    return aggregator


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"x:1|c"], 1.0),
        ([b"x:1|c", b"x:2|c"], 3.0),
        ([b"x:1|c|@0.1"], 10.0),
        ([b"x:3|c|@0.5", b"x:1|c"], 7.0),
        ([b"x:-1|c", b"x:1|c"], 0.0),
        ([b"x:1:2:3|c"], 6.0),
        ([b"x:1:2|c|@0.5"], 6.0),
    ],
)
def test_counters_add_values_scaled_by_sample_rate(lines: list[bytes], expected: float) -> None:
    snapshot = _aggregate(*lines).flush(10.0)
    assert snapshot["counters"]["x"]["value"] == pytest.approx(expected)
    assert snapshot["counters"]["x"]["rate"] == pytest.approx(expected / 10.0)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"g:5|g"], 5.0),
        ([b"g:5|g", b"g:7|g"], 7.0),
        ([b"g:5|g", b"g:+2|g"], 7.0),
        ([b"g:5|g", b"g:-7|g"], -2.0),
        ([b"g:-7|g"], -7.0),  # a delta on a new gauge starts from zero
        ([b"g:5|g", b"g:-1|g", b"g:3|g"], 3.0),
        ([b"g:0|g", b"g:-5|g"], -5.0),  # how clients set a negative gauge
        ([b"g:5|g|@0.1"], 5.0),  # the sample rate does not scale a gauge
    ],
)
def test_gauges_are_set_or_moved_by_signed_deltas(lines: list[bytes], expected: float) -> None:
    assert _aggregate(*lines).flush(1.0)["gauges"] == {"g": expected}


def test_timer_summary_on_known_samples() -> None:
    aggregator = Aggregator(started_at=0.0, percentiles=(50, 90, 95, 99, 99.9, 100))
    for value in random.Random(3).sample(range(1, 101), 100):
        aggregator.add(Metric("rt", float(value), "ms"))
    timer = aggregator.flush(10.0)["timers"]["rt"]
    assert timer == {
        "count": 100.0,
        "min": 1.0,
        "max": 100.0,
        "mean": 50.5,
        "sum": 5050.0,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p99.9": 100.0,
        "p100": 100.0,
    }


def test_timer_percentiles_of_a_single_sample_are_that_sample() -> None:
    timer = _aggregate(b"rt:7|ms").flush(1.0)["timers"]["rt"]
    assert (timer["p50"], timer["p99"], timer["mean"]) == (7.0, 7.0, 7.0)


def test_timer_count_is_scaled_by_sample_rate_but_mean_is_over_samples() -> None:
    timer = _aggregate(b"rt:10|ms|@0.5", b"rt:20|ms|@0.5").flush(1.0)["timers"]["rt"]
    assert timer["count"] == 4.0
    assert timer["sum"] == 30.0
    assert timer["mean"] == 15.0


def test_histograms_distributions_and_packed_values_are_timers() -> None:
    snapshot = _aggregate(b"x:1:2:3|h", b"x:4|d", b"x:5|ms").flush(1.0)
    assert snapshot["timers"]["x"]["count"] == 5.0
    assert snapshot["timers"]["x"]["sum"] == 15.0


def test_timer_keeps_bounded_samples_but_exact_count_min_max_sum() -> None:
    aggregator = Aggregator(started_at=0.0, max_samples=100, rng=random.Random(1))
    for value in range(1, 10_001):
        aggregator.add(Metric("rt", float(value), "ms"))
    assert len(aggregator._timers["rt"].samples) == 100
    timer = aggregator.flush(1.0)["timers"]["rt"]
    assert (timer["count"], timer["min"], timer["max"]) == (10_000.0, 1.0, 10_000.0)
    assert timer["sum"] == 10_000 * 10_001 / 2
    # The reservoir is a uniform sample: its median is near the true one.
    assert 3_000 < timer["p50"] < 7_000


def test_sets_count_distinct_members() -> None:
    aggregator = _aggregate(b"u:a|s", b"u:b|s", b"u:a|s", b"u:1|s", b"v:a|s")
    assert aggregator.flush(1.0)["sets"] == {"u": 3, "v": 1}


def test_sets_stop_growing_at_their_bound_and_count_the_drops() -> None:
    aggregator = _aggregate(b"u:a|s", b"u:b|s", b"u:c|s", b"u:a|s", max_set_values=2)
    assert aggregator.flush(1.0)["sets"] == {"u": 2}
    assert aggregator.set_overflow == 1


def test_tags_make_separate_keys_in_any_order() -> None:
    snapshot = _aggregate(b"x:1|c|#b,a", b"x:1|c|#a,b", b"x:1|c", b"x:1|c|#a").flush(1.0)
    assert {key: c["value"] for key, c in snapshot["counters"].items()} == {
        "x|#a,b": 2.0,
        "x": 1.0,
        "x|#a": 1.0,
    }


def test_new_keys_past_max_keys_are_dropped_and_counted() -> None:
    aggregator = _aggregate(b"a:1|c", b"b:1|g", b"c:1|ms", b"a:1|c", b"b:2|g", max_keys=2)
    assert aggregator.overflow == 1
    assert aggregator.metrics_received == 5
    snapshot = aggregator.flush(1.0)
    assert snapshot["counters"]["a"]["value"] == 2.0
    assert snapshot["gauges"] == {"b": 2.0}
    assert snapshot["timers"] == {}
    assert snapshot["overflow"] == 1


def test_a_flush_frees_the_slots_of_counters_timers_and_sets() -> None:
    aggregator = _aggregate(b"a:1|c", b"b:1|s", max_keys=2)
    aggregator.delete_counters = True  # etsy's deleteCounters; by default counters stay
    aggregator.add(parse_line(b"c:1|c"))
    assert aggregator.overflow == 1
    aggregator.flush(1.0)
    aggregator.add(parse_line(b"c:1|c"))
    aggregator.add(parse_line(b"d:1|ms"))
    assert aggregator.overflow == 1
    assert aggregator.keys == 2


def test_flush_resets_counters_timers_and_sets_but_keeps_gauges() -> None:
    aggregator = _aggregate(b"c:1|c", b"g:5|g", b"t:3|ms", b"s:a|s")
    first = aggregator.flush(10.0)
    assert (len(first["counters"]), len(first["timers"]), len(first["sets"])) == (1, 1, 1)
    aggregator.add(parse_line(b"g:+1|g"))
    second = aggregator.flush(25.0)
    assert second["counters"] == {"c": {"value": 0.0, "rate": 0.0}}  # idle: flushed as 0
    assert second["timers"] == {}
    assert second["sets"] == {}
    assert second["gauges"] == {"g": 6.0}
    assert (second["flushed_at"], second["interval"]) == (25.0, 15.0)
    assert aggregator.last_flush == second


def test_rates_are_per_second_over_the_interval() -> None:
    aggregator = Aggregator(started_at=100.0)
    aggregator.add(parse_line(b"c:50|c"))
    assert aggregator.flush(105.0)["counters"]["c"] == {"value": 50.0, "rate": 10.0}
    aggregator.add(parse_line(b"c:50|c"))
    assert aggregator.flush(130.0)["counters"]["c"] == {"value": 50.0, "rate": 2.0}


def test_rates_are_unknown_until_the_interval_has_a_start() -> None:
    aggregator = Aggregator()
    aggregator.add(parse_line(b"c:1|c"))
    snapshot = aggregator.flush(5.0)
    assert snapshot["interval"] is None
    assert snapshot["counters"]["c"] == {"value": 1.0, "rate": None}
    aggregator.add(parse_line(b"c:1|c"))
    assert aggregator.flush(7.0)["counters"]["c"] == {"value": 1.0, "rate": 0.5}


def test_current_shows_the_open_interval_without_resetting_it() -> None:
    aggregator = _aggregate(b"c:4|c", b"t:1|ms")
    peek = aggregator.current(2.0)
    assert peek["counters"]["c"] == {"value": 4.0, "rate": 2.0}
    assert aggregator.current()["counters"]["c"] == {"value": 4.0, "rate": None}
    assert aggregator.last_flush is None
    flushed = aggregator.flush(2.0)
    assert flushed == peek
    assert set(peek) == {
        "counters",
        "gauges",
        "timers",
        "sets",
        "events",
        "service_checks",
        "flushed_at",
        "interval",
        "metrics_received",
        "events_received",
        "service_checks_received",
        "bad_lines",
        "overflow",
    }


def test_feed_adds_good_lines_and_counts_bad_ones() -> None:
    aggregator = Aggregator(started_at=0.0)
    assert aggregator.feed(b"c:1|c\nbroken\nc:2|c\n\ng:1|g|@2") == 2
    assert (aggregator.metrics_received, aggregator.bad_lines) == (2, 2)
    assert aggregator.flush(1.0)["counters"]["c"]["value"] == 3.0


@pytest.mark.parametrize(
    "options",
    [{"max_keys": 0}, {"max_samples": 0}, {"max_set_values": 0}, {"percentiles": (0,)}],
)
def test_aggregator_refuses_bounds_that_cannot_work(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Aggregator(**options)


def test_lines_from_the_statsd_client_library_aggregate_as_meant() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5.0)
        client = statsd.StatsClient("127.0.0.1", server.getsockname()[1], prefix="app")
        try:
            client.incr("hits", 3)
            client.decr("hits")
            client.gauge("temp", -5)  # sent as a pipeline of "0|g" then "-5|g"
            client.gauge("temp", 2, delta=True)
            client.timing("rt", 12.5)
            client.set("users", "alice")
            with client.pipeline() as pipe:
                pipe.incr("hits")
                pipe.set("users", "bob")
        finally:
            client.close()
        aggregator = Aggregator(started_at=0.0)
        for _ in range(7):
            aggregator.feed(server.recv(65535))
    assert aggregator.bad_lines == 0
    snapshot = aggregator.flush(1.0)
    assert snapshot["counters"]["app.hits"]["value"] == 3.0
    assert snapshot["gauges"] == {"app.temp": -3.0}
    assert snapshot["timers"]["app.rt"]["max"] == 12.5
    assert snapshot["sets"] == {"app.users": 2}


# Property tests

names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=":|"),
    min_size=1,
)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)
tags = st.lists(st.text(st.characters(blacklist_characters=",|\r\n", codec="utf-8"), min_size=1))


@given(st.binary())
def test_parse_line_returns_a_metric_or_raises_statsd_error(line: bytes) -> None:
    try:
        metric = parse_line(line)
    except StatsdError as exc:
        assert exc.line == line
    else:
        assert metric.type in METRIC_TYPES


@given(
    st.lists(
        st.sampled_from(
            [
                b"x",
                b":",
                b"|",
                b"1",
                b"-",
                b".",
                b"@",
                b"#",
                b"c",
                b"g",
                b"ms",
                b"s",
                b"h",
                b"0.5",
                b"e3",
                b"\n",
                b",",
            ]
        )
    )
)
def test_parse_line_on_near_miss_lines_raises_only_statsd_error(pieces: list[bytes]) -> None:
    try:
        parse_line(b"".join(pieces))
    except StatsdError:
        pass


@given(
    name=names,
    kind=st.sampled_from(["c", "g", "ms", "h", "d"]),
    value=numbers,
    rate=st.floats(min_value=0.001, max_value=1.0),
    tag_list=tags,
)
def test_formatted_metrics_parse_back_to_themselves(
    name: str, kind: str, value: float, rate: float, tag_list: list[str]
) -> None:
    line = f"{name}:{value!r}|{kind}|@{rate!r}"
    if tag_list:
        line += "|#" + ",".join(tag_list)
    metric = parse_line(line.encode())
    assert (metric.name, metric.value, metric.type) == (name, value, kind)
    assert (metric.rate, metric.tags) == (rate, tuple(tag_list))


@given(st.binary())
def test_parse_packet_never_raises_and_accounts_for_every_line(data: bytes) -> None:
    metrics, bad = parse_packet(data)
    assert len(metrics) + bad == sum(1 for line in data.split(b"\n") if line.rstrip(b"\r"))


lines = st.one_of(
    st.sampled_from(
        [b"a:1|c", b"a:2|c|@0.5", b"b:3|g", b"b:-1|g", b"t:4|ms", b"t:1:2|h", b"s:x|s", b"bad"]
    ),
    st.binary(max_size=12),
)


@given(st.lists(lines), st.data())
def test_a_packet_fed_whole_or_in_pieces_aggregates_the_same(
    packet_lines: list[bytes], data: st.DataObject
) -> None:
    packet = b"\n".join(packet_lines)
    whole = Aggregator(started_at=0.0, rng=random.Random(0))
    whole.feed(packet)
    pieces = Aggregator(started_at=0.0, rng=random.Random(0))
    # A stream reader cuts at newlines; any grouping of whole lines must give the same result.
    rest = packet_lines
    while rest:
        take = data.draw(st.integers(1, len(rest)))
        pieces.feed(b"\n".join(rest[:take]))
        rest = rest[take:]
    assert pieces.flush(1.0) == whole.flush(1.0)
