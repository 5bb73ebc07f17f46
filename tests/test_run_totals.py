"""Run totals for /metrics: HDR histograms reduced to Prometheus buckets, and the handoff of
a run from "running" to "ended" without any counter going down."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.runs.manager import Run
from app.runs.outcome import conclude
from app.runs.spec import parse_run_spec
from app.runs.stats import new_histogram
from app.runs.totals import RTT_BUCKETS, RunTotals, hdr_buckets

US = 1_000
MS = 1_000_000


def test_buckets_of_an_empty_histogram_are_zero() -> None:
    buckets = hdr_buckets(new_histogram())
    assert buckets.cumulative == [0] * (len(RTT_BUCKETS) + 1)
    assert (buckets.count, buckets.sum) == (0, 0.0)


def test_buckets_count_each_value_at_or_below_each_bound() -> None:
    hist = new_histogram()
    values = [30 * US] * 10 + [2 * MS] * 5 + [3_000 * MS]
    for value in values:
        hist.record_value(value)
    buckets = dict(zip([*RTT_BUCKETS, float("inf")], hdr_buckets(hist).cumulative, strict=True))
    assert buckets[0.000025] == 0
    assert buckets[0.00005] == 10
    assert buckets[0.001] == 10
    assert buckets[0.0025] == 15
    assert buckets[2.5] == 15
    assert buckets[5.0] == 16
    assert buckets[float("inf")] == 16
    assert hdr_buckets(hist).sum == pytest.approx(sum(values) / 1e9, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=59_000_000_000), min_size=1, max_size=300))
def test_buckets_agree_with_exact_counts_within_hdr_precision(values: list[int]) -> None:
    hist = new_histogram()
    for value in values:
        hist.record_value(value)
    buckets = hdr_buckets(hist)
    assert buckets.count == len(values)
    assert buckets.cumulative == sorted(buckets.cumulative)
    for bound, count in zip(RTT_BUCKETS, buckets.cumulative, strict=False):
        bound_ns = bound * 1e9
        # HDR keeps 3 significant digits: a value within 0.1 % above a bound may share its slot.
        assert (
            sum(v <= bound_ns for v in values)
            <= count
            <= sum(v <= bound_ns * 1.001 for v in values)
        )
    assert buckets.sum == pytest.approx(sum(values) / 1e9, rel=1e-3)
    # The same figure hdrh's own mean gives.
    assert buckets.sum == pytest.approx(hist.get_mean_value() * len(values) / 1e9, rel=1e-9)


def _run(target: str = "tcp://127.0.0.1:9", pattern: str = "pingpong") -> Run:
    return Run(parse_run_spec({"target": target, "pattern": pattern, "count": 10}))


def _traffic(run: Run, messages: int, rtt_ns: int) -> None:
    stats = run.stats
    stats.sent += messages
    stats.received += messages
    stats.bytes_sent += 64 * messages
    stats.bytes_received += 64 * messages
    for _ in range(messages):
        stats.interval.record_value(rtt_ns)


def test_a_run_moves_from_running_to_ended_without_a_counter_going_down() -> None:
    totals = RunTotals()
    run = _run()
    _traffic(run, 3, 40 * US)
    run.stats.fold()  # one second closed: some samples in the total histogram...
    _traffic(run, 2, 40 * US)  # ...and some in the open interval
    run.stats.record_error("timeout")
    live = totals.snapshot([run])[("tcp", "pingpong")]
    assert (live.sent, live.received, live.bytes_sent, live.rtt.count) == (5, 5, 320, 5)
    assert live.ended == {}
    assert live.errors == {"timeout": 1}

    run.end(conclude("pingpong", run.stats, 1.0))
    totals.add(run)
    ended = totals.snapshot([])[("tcp", "pingpong")]
    assert (ended.sent, ended.received, ended.bytes_sent, ended.rtt.count) == (5, 5, 320, 5)
    assert ended.ended == {"finished": 1}
    assert ended.rtt.sum == pytest.approx(live.rtt.sum)

    # A second run of another protocol is kept apart; the first one's totals stay.
    other = _run("udp://127.0.0.1:9")
    _traffic(other, 7, 2 * MS)
    both = totals.snapshot([other])
    assert both[("udp", "pingpong")].sent == 7
    assert both[("tcp", "pingpong")].sent == 5
    # Snapshots are copies: reading them never changes the totals.
    both[("tcp", "pingpong")].sent = 0
    assert totals.snapshot([])[("tcp", "pingpong")].sent == 5
