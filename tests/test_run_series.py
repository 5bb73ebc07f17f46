"""A run's per-second series, and its last, partial interval (``RunStats.close_series``).

Each case is a table: what happened in each interval (messages, their RTTs) and when each
interval closed, the last one by ``close_series``; the expected series is written out by
hand, rates as counts over the seconds each point covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from app.lab import Lab
from app.runs.fire import fire_in_process, per_s
from app.runs.spec import parse_run_spec
from app.runs.stats import MIN_FINAL_INTERVAL, RunStats
from tests.conftest import listener_port


@dataclass(frozen=True)
class Interval:
    """Messages that went out and came back in one interval, closed at ``until``."""

    until: float
    messages: int = 0
    rtts_ms: tuple[float, ...] = ()
    size: int = 100


@dataclass(frozen=True)
class Expected:
    t: float
    received: int
    seconds: float  # the length the point's rates are over
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None


@dataclass(frozen=True)
class Case:
    ticks: tuple[Interval, ...]
    last: Interval
    series: tuple[Expected, ...]


def _happen(stats: RunStats, interval: Interval) -> None:
    stats.sent += interval.messages
    stats.received += interval.messages
    stats.bytes_sent += interval.messages * interval.size
    stats.bytes_received += interval.messages * interval.size
    for rtt in interval.rtts_ms:
        stats.interval.record_value(int(rtt * 1e6))


CASES = {
    # Two whole seconds, then 4 ms with one more message: one point over 1.004 s.
    "a few-millisecond tail joins the second before it": Case(
        ticks=(Interval(1.0, 10), Interval(2.0, 10)),
        last=Interval(2.004, 1),
        series=(Expected(1.0, 10, 1.0), Expected(2.004, 11, 1.004)),
    ),
    # 0.6 s is long enough to be a point of its own.
    "a tail of more than half a second is a point of its own": Case(
        ticks=(Interval(1.0, 10), Interval(2.0, 10)),
        last=Interval(2.6, 6),
        series=(Expected(1.0, 10, 1.0), Expected(2.0, 10, 1.0), Expected(2.6, 6, 0.6)),
    ),
    # Nothing moved after the last tick: no drop to zero at the end.
    "an empty tail adds nothing": Case(
        ticks=(Interval(1.0, 10), Interval(2.0, 10)),
        last=Interval(2.003, 0),
        series=(Expected(1.0, 10, 1.0), Expected(2.0, 10, 1.0)),
    ),
    # A packet run: a few milliseconds is all there is, and it is the one point.
    "a run shorter than the minimum keeps its one point": Case(
        ticks=(),
        last=Interval(0.127, 1, (0.45,)),
        series=(Expected(0.127, 1, 0.127, 0.45, 0.45),),
    ),
    "a run that moved nothing still has one point": Case(
        ticks=(),
        last=Interval(0.05, 0),
        series=(Expected(0.05, 0, 0.05),),
    ),
    # The joined point's RTTs are those of both intervals.
    "the joined point's round trips are both intervals'": Case(
        ticks=(Interval(1.0, 2, (1.0, 2.0)), Interval(2.0, 2, (1.5, 1.5))),
        last=Interval(2.01, 1, (5.0,)),
        series=(Expected(1.0, 2, 1.0, 1.0, 2.0), Expected(2.01, 3, 1.01, 1.5, 5.0)),
    ),
    # A second without replies before the tail: its (empty) RTTs join, not older ones.
    "after a silent second the joined point has only the tail's round trips": Case(
        ticks=(Interval(1.0, 2, (1.0, 1.0)), Interval(2.0, 0)),
        last=Interval(2.002, 1, (3.0,)),
        series=(Expected(1.0, 2, 1.0, 1.0, 1.0), Expected(2.002, 1, 1.002, 3.0, 3.0)),
    ),
    # A tail with messages but no RTT keeps the RTTs of the second it joins.
    "a tail without round trips keeps the second's": Case(
        ticks=(Interval(1.0, 2, (1.0, 2.0)),),
        last=Interval(1.3, 3),
        series=(Expected(1.3, 5, 1.3, 1.0, 2.0),),
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_the_last_interval_of_a_series(case: Case) -> None:
    stats = RunStats()
    stats.start(0.0)
    for interval in case.ticks:
        _happen(stats, interval)
        stats.tick(interval.until)
    _happen(stats, case.last)
    stats.close_series(case.last.until)
    assert [p["t"] for p in stats.series] == [e.t for e in case.series]
    for point, expected in zip(stats.series, case.series, strict=True):
        assert point["received"] == point["sent"] == expected.received
        assert point["bytes_sent"] == expected.received * 100
        assert point["msgs_per_s"] == pytest.approx(expected.received / expected.seconds)
        assert point["sent_per_s"] == pytest.approx(expected.received / expected.seconds)
        assert point["bits_per_s"] == pytest.approx(expected.received * 800 / expected.seconds)
        rtt = point["rtt_ms"]
        for got, want in ((rtt["min"], expected.rtt_min_ms), (rtt["max"], expected.rtt_max_ms)):
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, rel=2e-3)  # HDR: 3 significant digits
    # The series still adds up to the run, and the final summary has every RTT.
    assert sum(p["received"] for p in stats.series) == stats.received
    final = stats.summary(case.last.until, final=True)
    rtts = [r for i in (*case.ticks, case.last) for r in i.rtts_ms]
    assert final["received"] == stats.received
    if rtts:
        assert final["rtt_ms"]["max"] == pytest.approx(max(rtts), rel=2e-3)
        assert final["rtt_ms"]["min"] == pytest.approx(min(rtts), rel=2e-3)


def test_no_point_of_a_finished_series_is_shorter_than_the_minimum_unless_it_is_alone() -> None:
    stats = RunStats()
    stats.start(0.0)
    for k in range(1, 4):
        stats.received += 5
        stats.tick(float(k))
    stats.received += 1
    stats.close_series(3.0 + MIN_FINAL_INTERVAL / 10)
    starts = [0.0] + [p["t"] for p in stats.series[:-1]]
    assert all(p["t"] - s >= MIN_FINAL_INTERVAL for p, s in zip(stats.series, starts, strict=True))


def test_a_flow_holding_the_interval_histogram_records_into_every_second() -> None:
    # Flows bind ``stats.interval`` once (the hot path); closing a second must keep it.
    stats = RunStats()
    stats.start(0.0)
    interval = stats.interval
    for k in range(1, 4):
        interval.record_value(k * 1_000_000)
        stats.received += 1
        stats.tick(float(k))
    interval.record_value(9_000_000)
    stats.received += 1
    stats.close_series(3.01)
    assert [p["rtt_ms"]["max"] for p in stats.series] == pytest.approx([1.0, 2.0, 9.0], rel=2e-3)
    assert stats.summary(3.01, final=True)["rtt_ms"]["max"] == pytest.approx(9.0, rel=2e-3)


async def test_the_cli_s_last_progress_line_is_the_series_last_point(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Bursts every 0.25 s for 2.1 s: the last burst goes out at 2.0 s and its replies come
    # back a few milliseconds later, the tail that used to read as thousands a second.
    target = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    spec = parse_run_spec(
        {"target": target, "pattern": "burst", "burst": 10, "interval": 0.25, "duration": 2.1}
    )
    with trio.fail_after(30):
        doc = await fire_in_process(spec, show_progress=True)
    series = doc["series"]
    last_line = capsys.readouterr().err.split("\r")[-1]
    assert f"{per_s(series[-1]['msgs_per_s']):>10} msg/s" in last_line
    assert series[-1]["t"] - series[-2]["t"] >= MIN_FINAL_INTERVAL
    assert series[-1]["msgs_per_s"] < 2 * doc["summary"]["msgs_per_s"]  # no spike at the end
    assert sum(p["received"] for p in series) == doc["summary"]["received"]
