"""Per-flow receive statistics: loss, duplicates, reordering and jitter.

Theory of operation: a receiver (the UDP client reading echoes, or a sink listener reading
one-way traffic) calls :meth:`FlowStats.record` once per datagram that carries a probe
header, with the header's sequence number and send time and its own receive time. Nothing
here does I/O or reads a clock, so the same code serves both and tests feed it by hand.

Sequence numbers start at 0 and grow by one per datagram sent. For each arrival:

* ``seq`` above the highest seen so far is new; the gap in between is (for now) missing;
* ``seq`` already seen is a **duplicate**;
* otherwise ``seq`` is below the highest and new: it is **reordered** (late).

Remembering every sequence number would grow without bound, so a flow remembers only the
last ``window`` sequence numbers (4096 by default) in a ring bitmap. An arrival that is
``window`` or more behind the highest counts as reordered, even if it is in fact a
duplicate that old; such a stale duplicate is then also counted as received, so ``lost``
can be low by the same amount (it never goes below 0).

``lost`` is derived, not counted: the number of sequence numbers that should have arrived
(``highest_seq + 1``, or ``expected`` when the sender's count is known and larger) minus
the number of distinct ones that did. Trailing losses after the highest received sequence
number are only visible once ``expected`` is set.

Jitter is the RFC 3550 interarrival jitter (section 6.4.1), computed the way iperf3 does,
from the *actual* send time the header carries (so a late sender's lateness is not jitter):
for each arrival after the first, in arrival order (duplicates and late datagrams
included), ``D = (Rj - Ri) - (Sj - Si)`` is the change in transit time since the previous
arrival and ``J += (|D| - J) / 16``. Unlike iperf3, the first arrival is not compared with
a transit time of 0: with the sender's clock in another domain that first difference is an
arbitrary offset. A constant clock offset cancels out of ``D``.

:class:`FlowTable` keeps one :class:`FlowStats` per (source, flow id), bounded to
``max_flows`` with the least recently active flow evicted (its counts kept in the totals).
"""

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["DEFAULT_WINDOW", "FlowStats", "FlowTable", "one_way"]

DEFAULT_WINDOW = 4096
"""How many sequence numbers behind the highest a flow remembers for duplicate detection."""


class FlowStats:
    """Receive statistics of one flow; see the module docstring for the definitions.

    Args:
        expected: How many datagrams the sender sent, if known; may also be set later.
        window: Sequence numbers remembered for duplicate detection; a power of two >= 8.

    Attributes:
        received: Datagrams recorded, duplicates included.
        duplicates: Datagrams whose sequence number was already seen (within the window).
        reordered: Datagrams that arrived after a higher sequence number, first copy only.
        highest_seq: Highest sequence number seen; -1 before the first datagram.
        jitter_ns: RFC 3550 interarrival jitter in ns.

    Raises:
        ValueError: ``window`` is not a power of two of at least 8.
    """

    __slots__ = (
        "_bits",
        "_mask",
        "_prev_transit",
        "_unique",
        "_zeros",
        "duplicates",
        "expected",
        "highest_seq",
        "jitter_ns",
        "received",
        "reordered",
        "window",
    )

    def __init__(self, expected: int | None = None, window: int = DEFAULT_WINDOW) -> None:
        if window < 8 or window & (window - 1):
            raise ValueError(f"window must be a power of two >= 8, not {window}")
        self.expected = expected
        self.window = window
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.highest_seq = -1
        self.jitter_ns = 0.0
        self._unique = 0
        self._prev_transit: int | None = None
        self._mask = window - 1
        self._bits = bytearray(window // 8)
        self._zeros = bytes(window // 8)

    def record(self, seq: int, sent_ns: int, recv_ns: int) -> None:
        """Account for one received datagram.

        Args:
            seq: Its sequence number (>= 0).
            sent_ns: Its send time from the probe header, in the sender's clock.
            recv_ns: Its receive time in the receiver's clock, in ns.
        """
        self.received += 1

        transit = recv_ns - sent_ns
        prev = self._prev_transit
        if prev is not None:
            d = transit - prev
            if d < 0:
                d = -d
            self.jitter_ns += (d - self.jitter_ns) / 16.0
        self._prev_transit = transit

        bits = self._bits
        highest = self.highest_seq
        if seq > highest:
            # The slots between the old and new highest held sequence numbers that have
            # now slid out of the window: clear them before reusing them.
            if seq - highest >= self.window:
                bits[:] = self._zeros
            else:
                mask = self._mask
                clear = highest + 1
                while clear < seq:
                    slot = clear & mask
                    bits[slot >> 3] &= ~(1 << (slot & 7))
                    clear += 1
            slot = seq & self._mask
            bits[slot >> 3] |= 1 << (slot & 7)
            self.highest_seq = seq
            self._unique += 1
        elif highest - seq >= self.window:
            # Too old to tell a late datagram from a stale duplicate: call it late.
            self.reordered += 1
            self._unique += 1
        else:
            slot = seq & self._mask
            bit = 1 << (slot & 7)
            index = slot >> 3
            if bits[index] & bit:
                self.duplicates += 1
            else:
                bits[index] |= bit
                self.reordered += 1
                self._unique += 1

    @property
    def expected_total(self) -> int:
        """Datagrams that should have arrived: ``max(expected, highest_seq + 1)``."""
        seen = self.highest_seq + 1
        expected = self.expected
        return seen if expected is None or expected < seen else expected

    @property
    def lost(self) -> int:
        """Datagrams that should have arrived and did not (never negative)."""
        return max(0, self.expected_total - self._unique)

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter in milliseconds."""
        return self.jitter_ns / 1e6

    def summary(self) -> dict[str, float | int]:
        """Return the counters as a plain dict (JSON ready).

        Returns:
            ``received``, ``duplicates``, ``reordered``, ``lost``, ``loss_pct`` (of
            :attr:`expected_total`, 0.0 when that is 0), ``jitter_ms`` and ``highest_seq``.
        """
        total = self.expected_total
        lost = self.lost
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "lost": lost,
            "loss_pct": 100.0 * lost / total if total else 0.0,
            "jitter_ms": self.jitter_ms,
            "highest_seq": self.highest_seq,
        }


class FlowTable:
    """:class:`FlowStats` for many flows, keyed by (source, flow id), bounded in size.

    When a new flow would exceed ``max_flows``, the least recently active flow is evicted:
    its counts move into the table's totals, so :meth:`summary` still covers it, and
    ``evicted`` counts it.

    Args:
        max_flows: Most flows kept at once (>= 1).
        window: Passed to each :class:`FlowStats`.

    Raises:
        ValueError: ``max_flows`` is below 1.
    """

    __slots__ = (
        "_flows",
        "_retired_duplicates",
        "_retired_jitter_ms",
        "_retired_lost",
        "_retired_received",
        "_retired_reordered",
        "_retired_total",
        "_retired_with_jitter",
        "_window",
        "evicted",
        "max_flows",
    )

    def __init__(self, max_flows: int = 1024, window: int = DEFAULT_WINDOW) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, not {max_flows}")
        self.max_flows = max_flows
        self.evicted = 0
        self._window = window
        self._flows: OrderedDict[Hashable, FlowStats] = OrderedDict()
        # Totals of evicted flows.
        self._retired_received = 0
        self._retired_duplicates = 0
        self._retired_reordered = 0
        self._retired_lost = 0
        self._retired_total = 0
        self._retired_jitter_ms = 0.0
        self._retired_with_jitter = 0

    def record(self, key: Hashable, seq: int, sent_ns: int, recv_ns: int) -> None:
        """Account for one datagram of the flow ``key``; see :meth:`FlowStats.record`.

        Args:
            key: Identifies the flow, e.g. ``((host, port), flow_id)``.
            seq: Sequence number from the probe header.
            sent_ns: Send time from the probe header.
            recv_ns: Receive time in ns.
        """
        flows = self._flows
        stats = flows.get(key)
        if stats is None:
            if len(flows) >= self.max_flows:
                self._retire(flows.popitem(last=False)[1])
            stats = flows[key] = FlowStats(window=self._window)
        else:
            flows.move_to_end(key)
        stats.record(seq, sent_ns, recv_ns)

    def _retire(self, stats: FlowStats) -> None:
        self.evicted += 1
        self._retired_received += stats.received
        self._retired_duplicates += stats.duplicates
        self._retired_reordered += stats.reordered
        self._retired_lost += stats.lost
        self._retired_total += stats.expected_total
        if stats.received > 1:
            self._retired_jitter_ms += stats.jitter_ms
            self._retired_with_jitter += 1

    def get(self, key: Hashable) -> FlowStats | None:
        """Return the statistics of a live flow, or ``None`` (unknown or evicted)."""
        return self._flows.get(key)

    def __len__(self) -> int:
        return len(self._flows)

    def summary(self) -> dict[str, float | int]:
        """Return totals over every flow seen, evicted ones included.

        Returns:
            ``flows`` (live), ``evicted``, and the sums of ``received``, ``duplicates``,
            ``reordered`` and ``lost``; ``loss_pct`` of all datagrams expected; and
            ``jitter_ms``, the mean jitter of flows with at least two datagrams (as iperf3
            averages over streams).
        """
        received = self._retired_received
        duplicates = self._retired_duplicates
        reordered = self._retired_reordered
        lost = self._retired_lost
        total = self._retired_total
        jitter_ms = self._retired_jitter_ms
        with_jitter = self._retired_with_jitter
        for stats in self._flows.values():
            received += stats.received
            duplicates += stats.duplicates
            reordered += stats.reordered
            lost += stats.lost
            total += stats.expected_total
            if stats.received > 1:
                jitter_ms += stats.jitter_ms
                with_jitter += 1
        return {
            "flows": len(self._flows),
            "evicted": self.evicted,
            "received": received,
            "duplicates": duplicates,
            "reordered": reordered,
            "lost": lost,
            "loss_pct": 100.0 * lost / total if total else 0.0,
            "jitter_ms": jitter_ms / with_jitter if with_jitter else 0.0,
        }


def one_way(received: dict[str, Any] | None, sent: int) -> dict[str, Any] | None:
    """The receiving end's figures of a run beside what its sender sent.

    A receiver sees a flow's gaps but not the datagrams lost after the last one that
    arrived; the sender's count closes that gap: ``lost`` is what was sent and never arrived
    (``sent`` minus the distinct datagrams received), and ``sent`` is added beside it.

    Args:
        received: :meth:`FlowTable.summary` of the run at the receiving end, or ``None``.
        sent: Counted datagrams the sender sent (warm-up left out).

    Returns:
        ``None`` for ``None``; a summary without counts (``received`` absent, as from a TCP
        sink that does not frame messages) is returned as it is.
    """
    if received is None or "received" not in received:
        return received
    distinct = received["received"] - received["duplicates"]
    lost = max(sent - distinct, 0)
    return {
        **received,
        "sent": sent,
        "lost": lost,
        "loss_pct": 100.0 * lost / sent if sent else 0.0,
    }
