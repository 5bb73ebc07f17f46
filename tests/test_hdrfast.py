"""FastHistogram records exactly what hdrh's HdrHistogram records, slot for slot."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram
from hypothesis import given
from hypothesis import strategies as st

from app.runs.hdrfast import FastHistogram
from app.runs.stats import new_histogram

EDGES = [-1, 0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, 60 * 10**9, 61 * 10**9]


@given(st.lists(st.integers(min_value=-10, max_value=2 * 60 * 10**9), max_size=200))
def test_the_same_slots_counts_and_extremes(values: list[int]) -> None:
    ref = HdrHistogram(1, 60 * 10**9, 3)
    fast = FastHistogram(1, 60 * 10**9, 3)
    for value in [*EDGES, *values]:
        assert fast.record_value(value) == ref.record_value(value), value
    assert list(fast.counts) == list(ref.counts)
    assert fast.get_total_count() == ref.get_total_count()
    assert (fast.min_value, fast.max_value) == (ref.min_value, ref.max_value)
    assert fast.get_value_at_percentile(99) == ref.get_value_at_percentile(99)


def test_runs_record_into_it_and_it_adds_and_encodes_like_the_library() -> None:
    hist = new_histogram()
    assert isinstance(hist, FastHistogram)
    for value in (1500, 25_000, 25_000, 9_000_000):
        hist.record_value(value)
    ref = HdrHistogram(1, 60 * 10**9, 3)
    ref.add(hist)
    assert ref.get_total_count() == 4
    decoded = HdrHistogram.decode(hist.encode())
    assert decoded.get_value_at_percentile(50) == hist.get_value_at_percentile(50)


@given(st.lists(st.integers(min_value=0, max_value=2 * 60 * 10**9), max_size=200))
def test_record_ns_counts_what_record_value_counts(values: list[int]) -> None:
    # The per-reply recorder: non-negative ints only, the same slots and extremes (values
    # out of range recorded by neither).
    ref = HdrHistogram(1000, 60 * 10**9, 3)
    fast = FastHistogram(1000, 60 * 10**9, 3)
    for value in [edge for edge in EDGES if edge >= 0] + values:
        ref.record_value(value)
        fast.record_ns(value)
    assert list(fast.counts) == list(ref.counts)
    assert fast.get_total_count() == ref.get_total_count()
    assert (fast.min_value, fast.max_value) == (ref.min_value, ref.max_value)
