"""StatsD as etsy's StatsD and the DogStatsD agent define it: table tests, no I/O.

The expected values are written out from the definitions, never computed by the code under
test: etsy's lib/process_metrics.js takes ``numInThreshold = Math.round(pct / 100 * count)``
(JavaScript rounds halves up) and reports ``upper_<pct>`` as the ``numInThreshold``-th
smallest sample, and no ``upper_<pct>`` at all when ``numInThreshold`` is 0.
"""

from __future__ import annotations

import random

import pytest

from app.listeners.parse import parse_listener_url
from app.wire.dogstatsd import DogstatsdError, Event, ServiceCheck, parse_event, parse_service_check
from app.wire.statsd import Aggregator, Metric, parse_packet, sanitize_name

# (samples, percentile, etsy's upper_N or None when etsy reports none)
ETSY_UPPER = [
    # 7 samples 1..7: round(pct/100 * 7)
    (range(1, 8), 5, None),  # 0.35 -> 0: no upper_5
    (range(1, 8), 10, 1),  # 0.7 -> 1
    (range(1, 8), 50, 4),  # 3.5 -> 4 (a half rounds up)
    (range(1, 8), 65, 5),  # 4.55 -> 5
    (range(1, 8), 90, 6),  # 6.3 -> 6 (nearest rank would give 7)
    (range(1, 8), 95, 7),  # 6.65 -> 7
    (range(1, 8), 99, 7),  # 6.93 -> 7
    (range(1, 8), 100, 7),
    # 10 samples 10, 20, ..., 100: round(pct/100 * 10)
    (range(10, 101, 10), 1, None),  # 0.1 -> 0
    (range(10, 101, 10), 5, 10),  # 0.5 -> 1
    (range(10, 101, 10), 25, 30),  # 2.5 -> 3 (Python's round would give 2)
    (range(10, 101, 10), 50, 50),  # 5
    (range(10, 101, 10), 75, 80),  # 7.5 -> 8
    (range(10, 101, 10), 90, 90),  # 9
    (range(10, 101, 10), 95, 100),  # 9.5 -> 10
    (range(10, 101, 10), 99, 100),  # 9.9 -> 10
    # 100 samples 1..100: round(pct/100 * 100)
    (range(1, 101), 0.4, None),  # 0.4 -> 0
    (range(1, 101), 0.5, 1),  # 0.5 -> 1
    (range(1, 101), 12.5, 13),  # 12.5 -> 13
    (range(1, 101), 50, 50),
    (range(1, 101), 90, 90),
    (range(1, 101), 95, 95),
    (range(1, 101), 99, 99),
    (range(1, 101), 99.5, 100),  # 99.5 -> 100
    (range(1, 101), 99.9, 100),
    # one sample: etsy reports it for every threshold
    (range(42, 43), 1, 42),
    (range(42, 43), 50, 42),
]


@pytest.mark.parametrize(("samples", "pct", "upper"), ETSY_UPPER)
def test_percentiles_are_etsys_upper_n(samples: range, pct: float, upper: int | None) -> None:
    aggregator = Aggregator(percentiles=(pct,), started_at=0.0)
    shuffled = list(samples)
    random.Random(pct).shuffle(shuffled)  # the order of arrival must not matter
    for value in shuffled:
        aggregator.add(Metric("rt", float(value), "ms"))
    timer = aggregator.flush(1.0)["timers"]["rt"]
    assert timer.get(f"p{pct:g}") == upper
    assert (timer["min"], timer["max"], timer["count"]) == (
        samples[0],
        samples[-1],
        len(samples),
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("api.req-time_total", "api.req-time_total"),
        ("a/b", "a-b"),
        ("my hits", "my_hits"),
        ("a  \t b", "a_b"),  # a run of whitespace is one "_"
        ("température", "temprature"),
        ("cpu,host=a", "cpuhosta"),
        ("x/y z!", "x-y_z"),
        ("hits\x00", "hits"),
    ],
)
def test_names_are_sanitized_as_etsy_does(name: str, key: str) -> None:
    assert sanitize_name(name) == key
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(f"{name}:1|c".encode())
    assert list(aggregator.flush(1.0)["counters"]) == [key]


def test_names_that_sanitize_to_the_same_key_add_up() -> None:
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(b"my hits:1|c\nmy_hits:2|c\nmy\thits:3|c|#a")
    counters = aggregator.flush(1.0)["counters"]
    assert {key: c["value"] for key, c in counters.items()} == {"my_hits": 3.0, "my_hits|#a": 3.0}


@pytest.mark.parametrize("line", ["é€:1|c".encode(), b"\x00\x01:1|c", b"!!!:1|g|#tag"])
def test_a_name_with_nothing_etsy_keeps_is_a_bad_line(line: bytes) -> None:
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(line)
    assert (aggregator.bad_lines, aggregator.metrics_received, aggregator.keys) == (1, 0, 0)


@pytest.mark.parametrize(
    ("signed_gauges", "lines", "expected"),
    [
        ("delta", [b"g:5|g", b"g:+2|g"], 7.0),
        ("delta", [b"g:5|g", b"g:-7|g"], -2.0),
        ("delta", [b"g:-7|g"], -7.0),
        ("set", [b"g:5|g", b"g:+2|g"], 2.0),
        ("set", [b"g:5|g", b"g:-7|g"], -7.0),
        ("set", [b"g:-7|g", b"g:3|g"], 3.0),
    ],
)
def test_signed_gauges_move_as_etsy_or_set_as_dogstatsd(
    signed_gauges: str, lines: list[bytes], expected: float
) -> None:
    aggregator = Aggregator(started_at=0.0, signed_gauges=signed_gauges)  # type: ignore[arg-type]
    aggregator.feed(b"\n".join(lines))
    assert aggregator.flush(1.0)["gauges"] == {"g": expected}


def test_an_idle_counter_is_flushed_as_zero_by_default() -> None:
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(b"hits:4|c\nrt:1|ms\nu:a|s")
    assert aggregator.flush(10.0)["counters"] == {"hits": {"value": 4.0, "rate": 0.4}}
    idle = aggregator.flush(20.0)
    assert idle["counters"] == {"hits": {"value": 0.0, "rate": 0.0}}
    assert (idle["timers"], idle["sets"]) == ({}, {})
    aggregator.feed(b"hits:1|c")
    assert aggregator.flush(30.0)["counters"]["hits"]["value"] == 1.0


def test_delete_counters_drops_an_idle_counter_and_frees_its_key() -> None:
    aggregator = Aggregator(started_at=0.0, delete_counters=True, max_keys=1)
    aggregator.feed(b"hits:4|c")
    aggregator.flush(10.0)
    assert aggregator.flush(20.0)["counters"] == {}
    aggregator.feed(b"other:1|c")
    assert aggregator.overflow == 0


def test_the_listener_options_reach_the_spec() -> None:
    default = parse_listener_url("udp://127.0.0.1:0?mode=statsd")
    assert (default.signed_gauges, default.delete_counters) == ("delta", False)
    spec = parse_listener_url(
        "udp://127.0.0.1:0?mode=statsd&signed_gauges=set&delete_counters=true"
    )
    assert (spec.signed_gauges, spec.delete_counters) == ("set", True)
    assert "signed_gauges=set" in spec.url and "delete_counters=True" in spec.url
    assert parse_listener_url(spec.url) == spec


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"_e{5,4}:title|text", Event("title", "text")),
        (b"_e{5,4}:title|text\n", Event("title", "text")),
        # The lengths (of the escaped text, as clients count), not "|", delimit.
        (b"_e{3,6}:a|b|c|d\\ne", Event("a|b", "c|d\ne")),
        ("_e{5,2}:été|ok".encode(), Event("été", "ok")),  # UTF-8 byte lengths
        (
            b"_e{2,3}:up|yes|d:1700000000|h:web1|k:deploy|p:low|s:jenkins|t:success|#env:prod,a",
            Event(
                "up",
                "yes",
                timestamp=1700000000,
                hostname="web1",
                aggregation_key="deploy",
                priority="low",
                source_type="jenkins",
                alert_type="success",
                tags=("env:prod", "a"),
            ),
        ),
        (b"_e{1,0}:x||c:abc|card:low", Event("x", "")),
    ],
)
def test_events_parse(line: bytes, expected: Event) -> None:
    assert parse_event(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"_sc|db.up|0", ServiceCheck("db.up", 0)),
        (b"_sc|db.up|2|#env:prod", ServiceCheck("db.up", 2, tags=("env:prod",))),
        (
            b"_sc|db.up|1|d:1700000000|h:db1|#a,b|m:slow m\\: 3s\\nretrying|c:xyz",
            ServiceCheck(
                "db.up",
                1,
                timestamp=1700000000,
                hostname="db1",
                message="slow m: 3s\nretrying",
                tags=("a", "b"),
            ),
        ),
    ],
)
def test_service_checks_parse(line: bytes, expected: ServiceCheck) -> None:
    assert parse_service_check(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"_e{",
        b"_e{5,4}title|text",
        b"_e{0,4}:|text",
        b"_e{9,4}:title|text",
        b"_e{5,9}:title|text",
        b"_e{5,2}:title|text",
        b"_e{5,4}:titleXtext",
        b"_e{5,4}:title|text|d:soon",
        b"_e{5,4}:title|\xff\xfe\xfd\xfc",
        b"_sc|",
        b"_sc|db.up",
        b"_sc||0",
        b"_sc|db.up|4",
        b"_sc|db.up|ok",
        b"_sc|db.up|0|d:-1",
    ],
)
def test_malformed_events_and_service_checks_are_bad_lines(line: bytes) -> None:
    with pytest.raises(DogstatsdError):
        if line.startswith(b"_e"):
            parse_event(line)
        else:
            parse_service_check(line)
    aggregator = Aggregator()
    aggregator.feed(line)
    assert aggregator.bad_lines == 1


def test_events_and_service_checks_are_kept_per_interval_not_counted_as_bad() -> None:
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(
        b"hits:1|c\n_e{6,7}:deploy|v1.2 up|t:success|#svc:api\n"
        b"_sc|db.up|0|#shard:1\n_sc|db.up|2|#shard:1|m:down\n_sc|db.up|0|#shard:2"
    )
    assert (aggregator.bad_lines, aggregator.metrics_received) == (0, 1)
    assert (aggregator.events_received, aggregator.service_checks_received) == (1, 3)
    snapshot = aggregator.flush(1.0)
    (event,) = snapshot["events"]
    assert (event["title"], event["text"], event["alert_type"]) == ("deploy", "v1.2 up", "success")
    assert event["tags"] == ["svc:api"]
    checks = snapshot["service_checks"]
    assert set(checks) == {"db.up|#shard:1", "db.up|#shard:2"}
    last = checks["db.up|#shard:1"]
    assert (last["status"], last["status_name"], last["message"]) == (2, "critical", "down")
    assert (snapshot["events_received"], snapshot["service_checks_received"]) == (1, 3)
    after = aggregator.flush(2.0)
    assert (after["events"], after["service_checks"]) == ([], {})


def test_parse_packet_skips_events_and_service_checks_without_counting_them_bad() -> None:
    metrics, bad = parse_packet(b"a:1|c\n_e{1,1}:t|x\n_sc|c|0\n_sc|c|9")
    assert ([m.name for m in metrics], bad) == (["a"], 1)


def test_events_per_interval_are_bounded() -> None:
    aggregator = Aggregator(started_at=0.0, max_events=2)
    aggregator.feed(b"\n".join(b"_e{1,1}:%d|x" % i for i in range(5)))
    assert [e["title"] for e in aggregator.flush(1.0)["events"]] == ["0", "1"]
    assert (aggregator.events_received, aggregator.overflow) == (5, 3)


def test_a_flush_in_steps_gives_the_same_snapshot_as_one_flush() -> None:
    def filled() -> Aggregator:
        aggregator = Aggregator(started_at=0.0, rng=random.Random(5))
        values = random.Random(9)
        for key in range(30):
            for _ in range(1_000):
                aggregator.add(Metric(f"t{key}", values.uniform(0, 100), "ms"))
        aggregator.feed(b"c:1|c\ng:2|g\ns:x|s")
        return aggregator

    whole = filled().flush(5.0)
    stepped = filled()
    job = stepped.begin_flush(5.0)
    steps = 1
    while not job.step(2_500):  # each step sorts about three timers of 1,000 samples
        steps += 1
        assert stepped.last_flush is None  # published only when complete
    assert 10 <= steps <= 16
    assert job.snapshot == whole
    assert stepped.last_flush == whole


def test_metrics_sent_during_a_flush_in_steps_go_to_the_next_interval() -> None:
    aggregator = Aggregator(started_at=0.0)
    aggregator.feed(b"t:1|ms\nc:1|c")
    job = aggregator.begin_flush(1.0)
    aggregator.feed(b"t:7|ms\nc:5|c")
    while not job.step(1):
        pass
    assert job.snapshot is not None
    assert job.snapshot["timers"]["t"]["max"] == 1.0
    assert job.snapshot["counters"]["c"]["value"] == 1.0
    nxt = aggregator.flush(2.0)
    assert (nxt["timers"]["t"]["max"], nxt["counters"]["c"]["value"]) == (7.0, 5.0)
