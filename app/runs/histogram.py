"""A run's RTT histogram in fine buckets, with its percentile markers, and its stored form.

Theory of operation: a run keeps every RTT in an HDR histogram (:mod:`app.runs.stats`),
3 significant digits. The summary's ``histogram`` rows double from bucket to bucket, which
is too coarse to see the shape of a distribution; :func:`fine_buckets` reads the HDR
histogram's recorded values and bins them on a fixed logarithmic grid of ``per_doubling``
buckets per doubling (8 by default: each bucket about 9 % wide). The grid is the same for
every run (edges ``2 ** (i / per_doubling)`` ns), so the histograms of several runs overlay
bucket for bucket.

Each recorded HDR value is binned by its highest equivalent value, the value HDR answers for
a percentile, so the bucket that holds a percentile's value is the bucket where the
cumulative count crosses that percentile.

Ended runs keep their HDR histogram in the store as :func:`encode`'s text (compressed,
a few hundred bytes for a typical run); runs stored before that kept only the doubling
rows, which :func:`coarse_buckets` turns into the same shape.
"""

from __future__ import annotations

import math
from typing import Any

from hdrh.histogram import HdrHistogram

DEFAULT_PER_DOUBLING = 8
MAX_PER_DOUBLING = 64


def encode(hist: HdrHistogram) -> str | None:
    """The histogram as compact text for the store; ``None`` when it holds nothing."""
    if not hist.get_total_count():
        return None
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


def decode(text: str) -> HdrHistogram:
    """The histogram :func:`encode` wrote."""
    hist: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    return hist


def _edge_ms(index: int, per_doubling: int) -> float:
    return float(2.0 ** (index / per_doubling) / 1e6)


def fine_buckets(hist: HdrHistogram, per_doubling: int = DEFAULT_PER_DOUBLING) -> list[Any]:
    """``[{"from_ms", "to_ms", "count"}]`` from the lowest to the highest occupied bucket,
    empty buckets in between included (a chart then has no holes)."""
    counts: dict[int, int] = {}
    for step in hist.get_recorded_iterator():
        value = max(int(step.value_iterated_to), 1)
        # The bucket whose upper edge is >= value: ceil, so an edge value closes its bucket.
        index = math.ceil(math.log2(value) * per_doubling) - 1
        counts[index] = counts.get(index, 0) + int(step.count_added_in_this_iter_step)
    if not counts:
        return []
    return [
        {
            "from_ms": _edge_ms(i, per_doubling),
            "to_ms": _edge_ms(i + 1, per_doubling),
            "count": counts.get(i, 0),
        }
        for i in range(min(counts), max(counts) + 1)
    ]


def coarse_buckets(rows: list[list[float]]) -> list[Any]:
    """The summary's doubling ``[upper bound in ms, count]`` rows in the same shape."""
    return [{"from_ms": upper / 2, "to_ms": upper, "count": int(count)} for upper, count in rows]


def markers(rtt_ms: dict[str, Any]) -> list[dict[str, Any]]:
    """The percentile markers of a histogram: the summary's own p50, p90, p99 and p99.9."""
    names = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
    return [
        {"name": name, "percentile": pct, "ms": rtt_ms.get(name)}
        for name, pct in names
        if rtt_ms.get(name) is not None
    ]
