"""The lab's per-second series: rates from listener counters, bounded memory."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.timeseries import LabSeries


@dataclass
class Counters:
    id: str
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    msgs_in: int = 0


def test_points_hold_per_second_rates_per_listener_and_in_total() -> None:
    series = LabSeries(capacity=10)
    a, b = Counters("l1", bytes_in=1500), Counters("l2")
    assert series.maybe_sample(0.0, 1000.0, [a, b], 0) is None
    a.bytes_in, a.bytes_out, a.msgs_in, a.connections = 4000, 2000, 40, 3
    b.bytes_in = 1000
    assert series.maybe_sample(0.5, 1000.5, [a, b], 3) is None
    point = series.maybe_sample(1.0, 1001.0, [a, b], 3)
    assert point == {
        "t": 1001.0,
        "connections": 3,
        "bytes_in": 5000.0,
        "bytes_out": 2000.0,
        "msgs_in": 40.0,
        "listeners": {
            "l1": {"connections": 3, "bytes_in": 4000.0, "bytes_out": 2000.0, "msgs_in": 40.0},
            "l2": {"connections": 0, "bytes_in": 1000.0, "bytes_out": 0.0, "msgs_in": 0.0},
        },
    }
    a.bytes_in = 6000
    point = series.maybe_sample(2.0, 1002.0, [a], 1)
    assert point is not None
    assert point["listeners"] == {
        "l1": {"connections": 3, "bytes_in": 2000.0, "bytes_out": 0.0, "msgs_in": 0.0}
    }
    assert [p["t"] for p in series.points()] == [1001.0, 1002.0]


def test_a_new_listener_counts_from_zero_and_a_late_loop_does_not_burst() -> None:
    series = LabSeries()
    series.maybe_sample(0.0, 0.0, [], 0)
    late = Counters("l3", bytes_in=500)
    point = series.maybe_sample(5.0, 5.0, [late], 0)
    assert point is not None
    assert point["bytes_in"] == 100.0  # 500 B over the 5 s since the previous sample
    assert series.maybe_sample(5.5, 5.5, [late], 0) is None
    assert series.maybe_sample(6.0, 6.0, [late], 0) is not None
    assert len(series) == 2


def test_the_buffer_keeps_only_the_newest_points() -> None:
    series = LabSeries(capacity=3)
    series.maybe_sample(0.0, 0.0, [], 0)
    for second in range(1, 6):
        series.maybe_sample(float(second), float(second), [], second)
    assert [p["connections"] for p in series.points()] == [3, 4, 5]
    assert [p["connections"] for p in series.points(2)] == [4, 5]
    assert series.points(0.5) == []


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        LabSeries(capacity=0)
    with pytest.raises(ValueError):
        LabSeries(interval=0)
