"""The run budget (sans-IO): the byte cap within one write, the rate caps as a schedule."""

from __future__ import annotations

import math

import pytest

from app.runs.budget import PACE_SLACK, Budget


def greedy(budget: Budget, size: int, until: float) -> list[float]:
    """Send as fast as the budget allows from t=0 to ``until``; the send times."""
    now, sent = 0.0, []
    while now < until:
        wait = budget.take(size, now)
        if wait == math.inf:
            break
        if wait:
            assert wait > now  # a wait is always in the future: no busy loop
            now = wait
            continue
        sent.append(now)
    return sent


def most_in_window(times: list[float], window: float) -> int:
    """The most sends in any window of ``window`` seconds."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


@pytest.mark.parametrize(
    ("max_rate", "max_bitrate", "size", "per_second"),
    [
        (100.0, None, 64, 100),  # the message-rate cap binds
        (None, 8_000.0, 100, 10),  # the bit-rate cap binds: 1,000 bytes/s of 100-byte messages
        (1_000.0, 80_000.0, 100, 100),  # both set: the stricter one binds
        (50.0, 1e9, 1, 50),
    ],
)
def test_a_greedy_sender_is_held_to_the_tighter_cap_in_every_window(
    max_rate: float | None, max_bitrate: float | None, size: int, per_second: int
) -> None:
    times = greedy(Budget(max_rate=max_rate, max_bitrate=max_bitrate), size, 10.0)
    # Over the whole run: the cap, to within one slack's worth and one message.
    assert per_second * 10 <= len(times) <= per_second * (10 + PACE_SLACK) + 1
    for window in (0.05, 0.5, 1.0, 3.0):
        assert most_in_window(times, window) <= per_second * (window + PACE_SLACK) + 1


def test_without_rate_caps_every_message_goes_at_once() -> None:
    budget = Budget()
    assert all(budget.take(1_000_000, 0.0) == 0.0 for _ in range(10_000))


@pytest.mark.parametrize("charge", ["take", "spend"])
@pytest.mark.parametrize(
    ("max_bytes", "sizes", "charged"),
    [
        (1_000, [100] * 20, 1_000),  # exactly at the cap: ten writes, the eleventh refused
        (1_050, [100] * 20, 1_000),  # within one write: an eleventh would pass it
        (99, [100], 0),  # not even the first write
        (250, [100, 200, 10, 10], 100),  # the 200 does not fit, and nothing after it does
        (10_000, [100] * 20, 2_000),  # under the cap: everything goes
    ],
)
def test_the_byte_cap_refuses_the_write_that_would_pass_it_and_every_one_after(
    charge: str, max_bytes: int, sizes: list[int], charged: int
) -> None:
    calls: list[None] = []
    budget = Budget(max_bytes=max_bytes, on_exhausted=lambda: calls.append(None))
    total = 0
    for size in sizes:
        ok = budget.take(size, 0.0) == 0.0 if charge == "take" else budget.spend(size)
        if ok:
            total += size
    assert total == charged
    assert budget.exhausted is (charged < sum(sizes))
    assert calls == ([None] if budget.exhausted else [])


def test_the_first_message_of_an_idle_run_goes_whatever_it_costs() -> None:
    # 1,000 bytes at 800 bit/s is ten seconds of the cap: it goes now, the next one waits.
    budget = Budget(max_bitrate=800.0)
    assert budget.take(1_000, 5.0) == 0.0
    wait = budget.take(1_000, 5.0)
    assert wait == pytest.approx(15.0 - PACE_SLACK)
    assert budget.take(1_000, wait) == 0.0


def test_idle_time_is_not_banked_beyond_the_slack() -> None:
    budget = Budget(max_rate=10.0)
    greedy(budget, 1, 1.0)
    # After 100 idle seconds a burst gets one slack's worth, not 1,000 messages.
    burst = 0
    while budget.take(1, 101.0) == 0.0:
        burst += 1
    assert burst <= 10 * PACE_SLACK + 1
