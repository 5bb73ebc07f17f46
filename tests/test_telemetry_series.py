"""The one telemetry model's stores: bounded series with raw points then buckets, the last
value kept; StatsD's flushes feed them (an hour on trio's virtual clock); memory stays
bounded with 100,000 distinct series; the log store's exact counts and filters."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio

from app.errors import SpecError
from app.listeners.modes.statsd import StatsdMode
from app.listeners.modes.statsd_series import key_tags, tags_key
from app.listeners.parse import parse_listener_url
from app.telemetry.logs import LogQuery, LogStore
from app.telemetry.points import LogRecord, Point, tags_of
from app.telemetry.series import MAX_STRING, SeriesQuery, SeriesStore
from tests.listener_fixtures import open_manager, start

EPOCH = 1_800_000_000.0


def test_raw_points_fold_into_buckets_and_the_last_value_stays() -> None:
    store = SeriesStore(max_series=10, max_points=3, resolution=60, max_buckets=2)
    for i in range(8):  # one point every 30 s: 0, 30, ..., 210
        store.add(Point("cpu", {"value": float(i)}, tags_of({"host": "a"})), EPOCH + 30 * i)
    key = ("cpu", "value", (("host", "a"),))
    history = store.history(key)
    assert history is not None
    assert history["points"] == [[EPOCH + 150, 5.0], [EPOCH + 180, 6.0], [EPOCH + 210, 7.0]]
    # Points 0..4 left the raw list: buckets of 60 s, the newest two kept (bounded).
    buckets = history["buckets"]
    assert isinstance(buckets, list)
    assert [(b["t"], b["count"], b["min"], b["max"], b["last"]) for b in buckets] == [
        (EPOCH + 60, 2, 2.0, 3.0, 3.0),
        (EPOCH + 120, 1, 4.0, 4.0, 4.0),
    ]
    assert history["last"] == {"t": EPOCH + 210, "value": 7.0}


def test_a_late_point_is_kept_in_time_order_and_does_not_replace_the_last_value() -> None:
    store = SeriesStore(max_series=10, max_points=10)
    store.add(Point("m", {"f": 2.0}, time=EPOCH + 20), EPOCH)
    store.add(Point("m", {"f": 1.0}, time=EPOCH + 10), EPOCH)
    store.add(Point("m", {"f": "text"}, time=EPOCH + 5), EPOCH)
    history = store.history(("m", "f", ()))
    assert history is not None
    assert history["points"] == [[EPOCH + 5, "text"], [EPOCH + 10, 1.0], [EPOCH + 20, 2.0]]
    assert history["last"] == {"t": EPOCH + 20, "value": 2.0}
    since = store.history(("m", "f", ()), since=EPOCH + 10)
    assert since is not None and since["points"] == [[EPOCH + 10, 1.0], [EPOCH + 20, 2.0]]


def test_a_long_string_is_kept_cut_and_counted() -> None:
    store = SeriesStore()
    store.add(Point("log", {"text": "x" * (MAX_STRING + 10), "short": "ok"}), EPOCH)
    held = store.get(("log", "text", ()))
    assert held is not None and held.last == (EPOCH, "x" * MAX_STRING)
    assert store.strings_cut == 1


def test_a_series_past_max_series_is_counted_not_kept() -> None:
    store = SeriesStore(max_series=2)
    store.add(Point("a", {"x": 1.0, "y": 2.0}), EPOCH)  # two series
    store.add(Point("b", {"x": 1.0}), EPOCH)
    store.add(Point("a", {"x": 3.0}), EPOCH + 1)  # an existing series still takes points
    assert (store.series_count, store.overflow) == (2, 1)
    assert store.get(("b", "x", ())) is None


def test_the_query_picks_by_name_field_tags_and_text() -> None:
    store = SeriesStore()
    store.add(Point("cpu", {"user": 1.0, "idle": 2.0}, tags_of({"host": "a", "dc": "x"})), EPOCH)
    store.add(Point("cpu", {"user": 3.0}, tags_of({"host": "b"})), EPOCH)
    store.add(Point("mem", {"used": 4.0}, tags_of({"host": "a"})), EPOCH)

    def names(query: SeriesQuery, limit: int | None = None) -> list[tuple[str, str]]:
        picked, _ = store.query(query, limit)
        return [(key[0], key[1]) for key, _ in picked]

    assert names(SeriesQuery(name="cpu")) == [("cpu", "idle"), ("cpu", "user"), ("cpu", "user")]
    assert names(SeriesQuery(tags=(("host", "a"),))) == [
        ("cpu", "idle"),
        ("cpu", "user"),
        ("mem", "used"),
    ]
    assert names(SeriesQuery(name="cpu", field="user", tags=(("host", "b"),))) == [("cpu", "user")]
    assert names(SeriesQuery(text="DC=X")) == [("cpu", "idle"), ("cpu", "user")]
    picked, total = store.query(SeriesQuery(), 2)
    assert len(picked) == 2 and total == 4


@pytest.mark.parametrize("key", ["hits", "hits|#env:dev", "lat|#a:1,b,c:x:y"])
def test_a_statsd_key_is_a_name_and_tags_and_back(key: str) -> None:
    name, tags = key_tags(key)
    assert tags_key(name, tags) == key


async def test_a_statsd_metric_sent_once_is_still_charted_an_hour_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_manager() as manager:
        listener = await start(
            manager, "tcp://127.0.0.1:0?mode=statsd&flush_interval=10&history_points=120"
        )  # TCP: no kernel drop counter read in a thread, which the virtual clock runs past
        mode = listener.mode
        assert isinstance(mode, StatsdMode)
        mode.wall_clock = lambda: EPOCH + trio.current_time()
        # The parser's own path, without a socket: the virtual clock cannot wait on one.
        mode.aggregator.feed(b"render:12|ms\nhits:3|c\ntemp:21.5|g")
        sent_at = EPOCH + trio.current_time()
        await trio.sleep(3600 + 5)  # 360 flushes
        series = mode.series
        assert mode.flushes == 360
        # The timer arrived once: one point, raw, an hour later.
        render = series.history(("render", "mean", ()))
        assert render is not None
        [[at, value]] = render["points"]
        assert value == 12 and sent_at <= at <= sent_at + 10
        assert render["last"] == {"t": at, "value": 12}
        # The counter flushed 3 and then 0 every 10 s: the newest 120 flushes raw, the 3
        # folded into the oldest one-minute bucket, all of it within the bound.
        hits = series.history(("hits", "counter", ()))
        assert hits is not None
        assert len(hits["points"]) == 120
        buckets = hits["buckets"]
        assert isinstance(buckets, list) and 0 < len(buckets) <= 60
        assert buckets[0]["max"] == 3 and sum(b["count"] for b in buckets) == 360 - 120
        gauge = series.history(("temp", "gauge", ()))
        assert gauge is not None and gauge["last"] is not None
        assert gauge["last"]["value"] == 21.5  # a gauge keeps its value at every flush
        # Two more hours: the counter's 3 has left its bounded history; the timer's one
        # point is still its last value.
        await trio.sleep(7200)
        hits = series.history(("hits", "counter", ()))
        assert hits is not None and isinstance(hits["buckets"], list)
        assert all(b["max"] == 0 for b in hits["buckets"]) and len(hits["buckets"]) <= 60
        render = series.history(("render", "mean", ()))
        assert render is not None and render["last"] == {"t": at, "value": 12}


def _measured(store: SeriesStore, start: int, count: int) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(start, start + count):
        store.add(Point(f"metric.{i}", {"value": float(i)}, (("host", f"h{i % 100}"),)), EPOCH)
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_memory_is_bounded_with_100000_distinct_series() -> None:
    store = SeriesStore(max_series=100_000)
    tracemalloc.start()
    try:
        filled = _measured(store, 0, 100_000)
        past = _measured(store, 100_000, 50_000)
    finally:
        tracemalloc.stop()
    assert store.series_count == 100_000  # the cap is hit...
    assert store.overflow == 50_000  # ...and counted...
    # ...and not exceeded: 50,000 more distinct series cost (almost) nothing.
    assert past < filled / 100, (filled, past)
    # A series with one point costs well under a kilobyte.
    assert filled / 100_000 < 1024, filled


def _record(severity: int, message: str, host: str = "h1", app: str = "web") -> LogRecord:
    return LogRecord(
        facility=16, severity=severity, message=message, format="rfc5424", host=host, app=app
    )


def test_the_log_store_keeps_the_newest_and_counts_every_record() -> None:
    logs = LogStore(max_records=3)
    for i in range(5):
        logs.add(_record(i % 8, f"message {i}"), EPOCH + i)
    assert (logs.received, logs.evicted, len(logs)) == (5, 2, 3)
    assert logs.by_severity[:5] == [1, 1, 1, 1, 1]
    kept = [record.message for _, _, record in logs.query(LogQuery(), 10)]
    assert kept == ["message 4", "message 3", "message 2"]  # newest first


def test_the_log_query_filters_by_severity_host_app_text_and_seq() -> None:
    logs = LogStore()
    logs.add(_record(3, "disk failed", host="db"), EPOCH)
    logs.add(_record(6, "user logged in", app="sshd"), EPOCH + 1)
    logs.add(_record(2, "Disk on fire", app="sshd"), EPOCH + 2)

    def messages(query: LogQuery) -> list[str]:
        return [record.message for _, _, record in logs.query(query, 10)]

    assert messages(LogQuery(severity=3)) == ["Disk on fire", "disk failed"]  # err or worse
    assert messages(LogQuery(host="db")) == ["disk failed"]
    assert messages(LogQuery(app="sshd", text="DISK")) == ["Disk on fire"]
    assert messages(LogQuery(after=2)) == ["Disk on fire"]
    assert messages(LogQuery(facility=0)) == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("udp://127.0.0.1:0?mode=statsd&history_points=0", "history_points"),
        ("udp://127.0.0.1:0?mode=statsd&history_resolution=0", "history_resolution"),
        ("udp://127.0.0.1:0?mode=statsd&history_buckets=-1", "history_buckets"),
        ("udp://127.0.0.1:0?mode=echo&history_points=10", "history_points"),
    ],
)
def test_a_history_bound_out_of_range_or_for_a_mode_that_keeps_none_is_refused(
    url: str, field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_listener_url(url)
    assert caught.value.field == field


async def test_a_collector_is_bounded_as_its_history_options_say() -> None:
    url = "udp://127.0.0.1:0?mode=statsd&history_points=5&history_resolution=30s&history_buckets=7"
    async with open_manager() as manager:
        mode = (await start(manager, url)).mode
        assert isinstance(mode, StatsdMode)
        series = mode.series
        assert (series.max_series, series.max_points) == (10_000, 5)
        assert (series.resolution, series.max_buckets) == (30.0, 7)
