"""StatsD timer samples and their summary as etsy's StatsD computes it, in bounded steps.

Theory of operation: a :class:`TimerSamples` keeps the exact count, sum, min and max of one
timer key and a bounded reservoir of samples (every sample until ``max_samples``, then a
uniform random subset: Vitter's algorithm R). :func:`summarize` turns it into the JSON
summary; each percentile ``pN`` is etsy's ``upper_N``: the ``round(N / 100 * count)``-th
smallest kept sample (JavaScript's ``Math.round``, halves up), and it is left out when that
rank is 0, as etsy leaves ``upper_N`` out. One sample is every percentile.

:class:`SummaryJob` summarizes many timers a bounded amount of work at a time: each
:meth:`SummaryJob.step` sorts and summarizes timers until it has handled ``budget``
samples (at least one timer), so a caller on an event loop can checkpoint between steps
and a flush of millions of samples never holds the loop for long.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

__all__ = ["SummaryJob", "TimerSamples", "etsy_rank", "summarize"]


class TimerSamples:
    """Samples of one timer/histogram key: exact count, sum, min and max, plus a reservoir."""

    __slots__ = ("count", "maximum", "minimum", "samples", "seen", "total")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.seen = 0
        self.count = 0.0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float, rate: float, max_samples: int, rng: random.Random) -> None:
        self.seen += 1
        self.count += 1.0 / rate
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if len(self.samples) < max_samples:
            self.samples.append(value)
        else:
            slot = rng.randrange(self.seen)
            if slot < max_samples:
                self.samples[slot] = value


def etsy_rank(pct: float, count: int) -> int:
    """How many of ``count`` sorted samples are within ``pct``: etsy's ``numInThreshold``.

    ``Math.round(pct / 100 * count)`` in JavaScript rounds halves up; Python's ``round``
    rounds them to even, and ``floor(x + 0.5)`` is wrong just below a half, so the fraction
    is compared instead (exact for a non-negative double).
    """
    exact = pct / 100 * count
    whole = math.floor(exact)
    return whole + 1 if exact - whole >= 0.5 else whole


def summarize(timer: TimerSamples, percentiles: Sequence[float]) -> dict[str, float]:
    """The summary of one timer: count, min, max, mean, sum and ``p<N>`` per percentile."""
    ordered = sorted(timer.samples) if percentiles else timer.samples
    out = {
        "count": timer.count,
        "min": timer.minimum,
        "max": timer.maximum,
        "mean": timer.total / timer.seen,
        "sum": timer.total,
    }
    kept = len(ordered)
    for pct in percentiles:
        # etsy: with one sample every threshold is that sample; otherwise upper_N is the
        # numInThreshold-th sample, and no upper_N at all when that is 0.
        rank = kept if kept == 1 else etsy_rank(pct, kept)
        if rank > 0:
            out[f"p{pct:g}"] = ordered[rank - 1]
    return out


class SummaryJob:
    """Summaries of a set of timers, computed a bounded number of samples per step.

    Args:
        timers: The timers to summarize, by key; the job owns them (the caller has swapped
            in a fresh table for new samples).
        percentiles: As for :func:`summarize`.
    """

    def __init__(self, timers: dict[str, TimerSamples], percentiles: Sequence[float]) -> None:
        self._pending: Iterator[tuple[str, TimerSamples]] = iter(list(timers.items()))
        self._percentiles = tuple(percentiles)
        self.summaries: dict[str, dict[str, float]] = {}
        self.done = not timers

    def step(self, budget: float) -> bool:
        """Summarize timers until about ``budget`` samples are handled; True when all are."""
        handled = 0
        while not self.done and (handled == 0 or handled < budget):
            entry = next(self._pending, None)
            if entry is None:
                self.done = True
                break
            key, timer = entry
            self.summaries[key] = summarize(timer, self._percentiles)
            handled += max(len(timer.samples), 1)
        return self.done
