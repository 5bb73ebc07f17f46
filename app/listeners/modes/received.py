"""What a sink received of one run, byte by byte and second by second: the receiver's side of
a throughput figure, as iperf3's server reports it.

A sender's throughput counts what it handed to its kernel; the kernel's send buffer (a few
MiB on loopback, more with autotuning) makes the first seconds look faster than the path
and the last look slower. The receiving end counts what the path delivered. A sink keeps one
:class:`ReceivedBytes` per run tag: bytes of counted messages (warm-up left out where the
sink can see it: datagrams and framed TCP streams), the first and last arrival, and bytes per
second since the first arrival, so a run shows the receiver's series beside its own.

An unframed TCP stream (a sink without ``message_size``) is tagged by the probe header at its
start; the sink cannot see where a warm-up ends in it, so its warm-up bytes count too.

No I/O and no clock reads: arrival times are given, in ``perf_counter_ns`` units.
"""

from __future__ import annotations

from typing import Any

# Seconds of series kept per run: an hour; later bytes still count in the totals.
MAX_SECONDS = 3600
_NS = 1_000_000_000
_MIN_TAIL_NS = _NS // 5


class ReceivedBytes:
    """Bytes of one run as they arrived at this end.

    Attributes:
        bytes: Counted bytes received.
        first_ns: Arrival of the first of them (``perf_counter_ns``), 0 before it.
        last_ns: Arrival of the latest of them.
        seconds: Bytes per whole second since ``first_ns`` (at most ``MAX_SECONDS``).
    """

    __slots__ = ("bytes", "first_ns", "last_ns", "seconds")

    def __init__(self) -> None:
        self.bytes = 0
        self.first_ns = 0
        self.last_ns = 0
        self.seconds: list[int] = []

    def add(self, n: int, now_ns: int) -> None:
        """Count ``n`` bytes that arrived at ``now_ns``."""
        if not self.bytes:
            self.first_ns = now_ns
        self.bytes += n
        self.last_ns = now_ns
        second = (now_ns - self.first_ns) // _NS
        seconds = self.seconds
        if second < len(seconds):
            seconds[second] += n
        elif second < MAX_SECONDS:
            seconds.extend([0] * (second - len(seconds)))
            seconds.append(n)

    def summary(self) -> dict[str, Any]:
        """``rx_bytes``, ``rx_seconds`` (first to last arrival), ``rx_bits_per_s`` over them
        (None before two arrivals) and ``rx_series``: bits per second, one per second since
        the first arrival; the last over the part of its second that had arrivals (left
        out under a fifth of a second)."""
        span_ns = self.last_ns - self.first_ns
        series = [8 * b for b in self.seconds]
        if len(series) > 1 and len(series) < MAX_SECONDS:
            # The last second is partial: over the share of it that had arrivals, so the
            # series does not end in a drop the path never had; a sliver of a second is
            # left out of the series (its bytes stay in the totals), a rate over it is noise.
            tail_ns = span_ns - (len(series) - 1) * _NS
            if tail_ns < _MIN_TAIL_NS:
                series.pop()
            else:
                series[-1] = round(series[-1] * _NS / tail_ns)
        return {
            "rx_bytes": self.bytes,
            "rx_seconds": span_ns / _NS,
            "rx_bits_per_s": 8 * self.bytes * _NS / span_ns if span_ns > 0 else None,
            "rx_series": series,
        }
