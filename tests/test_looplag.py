"""The event-loop lag monitor: bucket accounting, and lag measured on a clock we control."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from app.looplag import LAG_BUCKETS, LoopLagMonitor


@pytest.mark.parametrize(
    ("lags", "expected_le"),
    [
        ([], {0.001: 0, 0.1: 0, float("inf"): 0}),
        ([0.0002, 0.0005], {0.0005: 2, 0.001: 2, float("inf"): 2}),
        ([0.0006, 0.02, 0.02], {0.0005: 0, 0.001: 1, 0.01: 1, 0.025: 3, float("inf"): 3}),
        ([3.0, -0.001], {0.0005: 1, 2.5: 1, float("inf"): 2}),
    ],
)
def test_lags_are_counted_in_cumulative_buckets_bounds_included(
    lags: list[float], expected_le: dict[float, int]
) -> None:
    monitor = LoopLagMonitor()
    for lag in lags:
        monitor.record(lag)
    buckets = dict(monitor.cumulative_buckets())
    assert list(buckets) == [*LAG_BUCKETS, float("inf")]
    for bound, count in expected_le.items():
        assert buckets[bound] == count, bound
    assert monitor.count == len(lags)
    assert monitor.total == pytest.approx(sum(max(lag, 0.0) for lag in lags))


def test_a_monitor_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(interval=0)


async def test_the_monitor_measures_how_late_it_was_woken(
    mock_clock: trio.testing.MockClock,
) -> None:
    monitor = LoopLagMonitor(interval=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.serve)
        await trio.testing.wait_all_tasks_blocked()
        assert monitor.count == 0
        # The clock passes the monitor's wake-up by 0.3 s, as a loop blocked that long would.
        mock_clock.jump(0.1 + 0.3)
        await trio.testing.wait_all_tasks_blocked()
        assert monitor.count == 1
        assert monitor.last == pytest.approx(0.3)
        # On time: the next wake-up is exactly when it asked for.
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert monitor.count == 2
    assert monitor.last == pytest.approx(0.0, abs=1e-9)
    assert monitor.max == pytest.approx(0.3)
    buckets = dict(monitor.cumulative_buckets())
    assert (buckets[0.25], buckets[0.5], buckets[float("inf")]) == (1, 2, 2)
