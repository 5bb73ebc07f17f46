"""The aggregator's memory of parsed lines: a repeated line costs a lookup, counts the same."""

from __future__ import annotations

from app.wire import statsd
from app.wire.statsd import Aggregator


def test_repeated_lines_count_as_often_as_they_came() -> None:
    agg = Aggregator()
    lines = [b"hits:1|c", b"hits:2|c|@0.5", b"g:+3|g", b"t:5|ms", b"hits:1|c", b"bad line"]
    for _ in range(1000):
        agg.feed_lines(lines)
    snap = agg.flush(10.0)
    assert snap["counters"]["hits"]["value"] == 1000 * (1 + 1 + 2 / 0.5)
    assert snap["gauges"]["g"] == 3000
    assert snap["timers"]["t"]["count"] == 1000
    assert agg.metrics_received == 5000
    assert agg.bad_lines == 1000  # a bad line is parsed (and refused) every time


def test_the_memory_of_parsed_lines_is_bounded() -> None:
    agg = Aggregator(max_keys=100_000)
    distinct = [f"t:{i}|ms".encode() for i in range(3 * statsd.PARSED_LINES)]
    agg.feed_lines(distinct)
    assert len(agg._parsed) <= statsd.PARSED_LINES
    assert agg.flush(10.0)["timers"]["t"]["count"] == len(distinct)
