"""An HDR histogram whose ``record_value`` costs a third of the library's.

Theory of operation: hdrh's ``record_value`` finds a value's slot through three method
calls and a ``len(bin(value))`` for the leading zeros; a run records one RTT per message,
so that is per-message work of every run. :class:`FastHistogram` computes the same slot in
one method with ``int.bit_length`` and constants taken once, and leaves everything else
(adding, encoding, percentiles) to the library: its counts are the library's, slot for
slot, so histograms of either class add, encode and compare alike.

The slot, from hdrh's ``_counts_index_for``: with ``m`` the sub-bucket mask, ``u`` the unit
magnitude and ``h`` the sub-bucket half-count magnitude, ``bucket = bitlen(v | m) - u - h -
1``, ``sub = v >> (bucket + u)`` and ``index = ((bucket + 1) << h) + sub - 2 ** h``.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram


class FastHistogram(HdrHistogram):  # type: ignore[misc]
    """``HdrHistogram`` with the same counts and a cheaper :meth:`record_value`."""

    min_value: float
    max_value: float

    def __init__(self, lowest: int, highest: int, digits: int) -> None:
        super().__init__(lowest, highest, digits)
        self._mask = int(self.sub_bucket_mask)
        self._shift = int(self.unit_magnitude)
        self._half_magnitude = int(self.sub_bucket_half_count_magnitude)
        self._bucket_offset = self._shift + self._half_magnitude + 1
        self._half = int(self.sub_bucket_half_count)

    def layout(self) -> tuple[int, int, int, int, int, int]:
        """What a compiled recorder needs to find a value's slot as :meth:`record_ns` does
        (app/native/_pingpong.c): the sub-bucket mask, the unit magnitude, the sub-bucket
        half-count magnitude, the bucket offset, the sub-bucket half count and the number
        of counts (``counts`` holds them as int64s)."""
        return (
            self._mask,
            self._shift,
            self._half_magnitude,
            self._bucket_offset,
            self._half,
            int(self.counts_len),
        )

    def record_value(self, value: int | float, count: int = 1) -> bool:
        """Record ``value`` ``count`` times; False (nothing recorded) when out of range."""
        if value < 0:
            return False
        v = int(value)
        bucket = (v | self._mask).bit_length() - self._bucket_offset
        index = ((bucket + 1) << self._half_magnitude) + (v >> (bucket + self._shift)) - self._half
        if index < 0 or index >= self.counts_len:
            return False
        self.counts[index] += count
        self.total_count += count
        if value < self.min_value:
            self.min_value = value
        if value > self.max_value:
            self.max_value = value
        return True

    def record_ns(self, value: int) -> None:
        """Record one ``value`` known to be a non-negative int (an RTT in ns from a
        monotonic clock): :meth:`record_value` without the checks and the conversion those
        values do not need, for the per-reply path. Out of range, it records nothing, as
        :meth:`record_value` does."""
        # For value >= 0 the bucket, and so the index, is never negative.
        bucket = (value | self._mask).bit_length() - self._bucket_offset
        index = (
            ((bucket + 1) << self._half_magnitude) + (value >> (bucket + self._shift)) - self._half
        )
        if index >= self.counts_len:
            return
        self.counts[index] += 1
        self.total_count += 1
        if value < self.min_value:
            self.min_value = value
        if value > self.max_value:
            self.max_value = value
