import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.runs.flowstats import DEFAULT_WINDOW, FlowStats, FlowTable, one_way

MS = 1_000_000  # ns


def feed(stats: FlowStats, seqs: list[int], transit_ns: int = MS) -> FlowStats:
    """Record ``seqs`` in arrival order, sent 1 ms apart, all with the same transit time."""
    for arrival, seq in enumerate(seqs):
        sent = arrival * MS
        stats.record(seq, sent, sent + transit_ns)
    return stats


@pytest.mark.parametrize(
    ("seqs", "received", "duplicates", "reordered", "lost", "highest"),
    [
        ([], 0, 0, 0, 0, -1),
        ([0], 1, 0, 0, 0, 0),
        ([0, 1, 2], 3, 0, 0, 0, 2),
        ([0, 2, 1], 3, 0, 1, 0, 2),
        ([2, 1, 0], 3, 0, 2, 0, 2),
        ([0, 0], 2, 1, 0, 0, 0),
        ([0, 1, 1, 0], 4, 2, 0, 0, 1),
        ([0, 2, 1, 1], 4, 1, 1, 0, 2),
        ([0, 5], 2, 0, 0, 4, 5),
        ([5], 1, 0, 0, 5, 5),
        ([0, 3, 1], 3, 0, 1, 1, 3),
    ],
)
def test_flow_counts_match_a_hand_count(
    seqs: list[int], received: int, duplicates: int, reordered: int, lost: int, highest: int
) -> None:
    summary = feed(FlowStats(), seqs).summary()
    assert summary["received"] == received
    assert summary["duplicates"] == duplicates
    assert summary["reordered"] == reordered
    assert summary["lost"] == lost
    assert summary["highest_seq"] == highest


def test_empty_flow_reports_zero_loss_not_a_division_error() -> None:
    assert FlowStats().summary() == {
        "received": 0,
        "duplicates": 0,
        "reordered": 0,
        "lost": 0,
        "loss_pct": 0.0,
        "jitter_ms": 0.0,
        "highest_seq": -1,
    }


def ground_truth_arrivals(count: int) -> list[int]:
    """Sequence numbers 0..count-1 as a lossy, duplicating, reordering network delivers them.

    Every 10th datagram (seq % 10 == 9) is dropped; every 25th (seq % 25 == 0) arrives
    twice in a row; in every 50 the pair (20, 21) arrives swapped. The three never touch
    the same sequence numbers.
    """
    arrivals: list[int] = []
    for seq in range(count):
        if seq % 10 == 9:
            continue
        if seq % 50 == 21:
            arrivals.insert(len(arrivals) - 1, seq)  # ahead of seq - 1
            continue
        arrivals.append(seq)
        if seq % 25 == 0:
            arrivals.append(seq)
    return arrivals


def test_ground_truth_arrivals_are_what_their_docstring_says() -> None:
    assert ground_truth_arrivals(52) == [
        0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        10, 11, 12, 13, 14, 15, 16, 17, 18,
        21, 20, 22, 23, 24, 25, 25, 26, 27, 28,
        30, 31, 32, 33, 34, 35, 36, 37, 38,
        40, 41, 42, 43, 44, 45, 46, 47, 48,
        50, 50, 51,
    ]  # fmt: skip


def test_flow_counts_drops_duplicates_and_swaps_exactly() -> None:
    stats = feed(FlowStats(), ground_truth_arrivals(1000))
    # 100 dropped (seq % 10 == 9), 40 duplicated (seq % 25 == 0), 20 swapped pairs.
    # The last datagram (999) is dropped, so without the sender's count only 99 losses
    # are visible: 0..998 should have arrived and 900 distinct ones did.
    assert stats.summary() == {
        "received": 940,
        "duplicates": 40,
        "reordered": 20,
        "lost": 99,
        "loss_pct": pytest.approx(100 * 99 / 999),
        "jitter_ms": 0.0,
        "highest_seq": 998,
    }
    stats.expected = 1000
    assert stats.lost == 100
    assert stats.summary()["loss_pct"] == pytest.approx(10.0)


def test_expected_smaller_than_what_arrived_is_ignored() -> None:
    stats = feed(FlowStats(expected=3), [0, 1, 2, 3, 4])
    assert stats.expected_total == 5
    assert stats.lost == 0


def test_expected_counts_losses_after_the_last_arrival() -> None:
    stats = feed(FlowStats(expected=10), [0, 1, 2, 3, 4])
    assert stats.lost == 5
    assert stats.summary()["loss_pct"] == 50.0


@pytest.mark.parametrize(
    ("seqs", "duplicates", "reordered"),
    [
        # 7 behind the highest is still inside a window of 8: a duplicate.
        ([0, 7, 0], 1, 0),
        # 8 behind has slid out: a stale duplicate counts as late.
        ([0, 8, 0], 0, 1),
        # A jump past the whole window forgets everything before it.
        ([0, 20, 13], 0, 1),
        ([0, 20, 13, 13], 1, 1),
        # Slot of seq 8 held seq 0; it must be cleared when the window moves past 8.
        ([0, 1, 2, 3, 4, 5, 6, 7, 9, 8], 0, 1),
        ([0, 1, 2, 3, 4, 5, 6, 7, 9, 8, 8], 1, 1),
        # 1 is 8 behind 9: out of the window, so late rather than a duplicate.
        ([0, 1, 2, 3, 4, 5, 6, 7, 9, 1], 0, 1),
    ],
)
def test_duplicates_are_remembered_for_one_window(
    seqs: list[int], duplicates: int, reordered: int
) -> None:
    stats = feed(FlowStats(window=8), seqs)
    assert (stats.duplicates, stats.reordered) == (duplicates, reordered)


def test_duplicate_window_defaults_to_4096_sequence_numbers() -> None:
    assert DEFAULT_WINDOW == 4096
    inside = feed(FlowStats(), [0, 4095, 0])
    outside = feed(FlowStats(), [0, 4096, 0])
    assert (inside.duplicates, inside.reordered) == (1, 0)
    assert (outside.duplicates, outside.reordered) == (0, 1)


@pytest.mark.parametrize("window", [0, 1, 4, 12, 100, -8])
def test_window_must_be_a_power_of_two_of_at_least_8(window: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        FlowStats(window=window)


class SetModel:
    """The counting rules of FlowStats written with an unbounded set."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.highest = -1
        self.seen: set[int] = set()
        self.unique = 0
        self.duplicates = 0
        self.reordered = 0

    def record(self, seq: int) -> None:
        if seq > self.highest:
            self.highest = seq
        elif self.highest - seq >= self.window:
            self.reordered += 1
            self.unique += 1
            return
        elif seq in self.seen:
            self.duplicates += 1
            return
        else:
            self.reordered += 1
        self.seen.add(seq)
        self.unique += 1


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=200))
def test_flow_counts_agree_with_an_unbounded_set(seqs: list[int]) -> None:
    stats = feed(FlowStats(window=8), seqs)
    model = SetModel(window=8)
    for seq in seqs:
        model.record(seq)
    assert stats.received == len(seqs)
    assert stats.duplicates == model.duplicates
    assert stats.reordered == model.reordered
    assert stats.highest_seq == model.highest
    assert stats.lost == max(0, model.highest + 1 - model.unique)


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=300))
def test_flow_counts_are_exact_while_everything_stays_inside_the_window(
    seqs: list[int],
) -> None:
    # The window (512) is larger than any sequence number drawn, so nothing is forgotten.
    stats = feed(FlowStats(window=512), seqs)
    distinct = set(seqs)
    first_arrival = {seq: seqs.index(seq) for seq in distinct}
    late = {seq for seq, i in first_arrival.items() if any(s > seq for s in seqs[:i])}
    assert stats.duplicates == len(seqs) - len(distinct)
    assert stats.reordered == len(late)
    assert stats.lost == max(seqs, default=-1) + 1 - len(distinct)


def test_jitter_of_a_constant_delay_is_zero() -> None:
    stats = FlowStats()
    for seq, sent in enumerate([0, 3, 4, 10, 50, 51, 52, 900]):
        stats.record(seq, sent * MS, sent * MS + 7 * MS)
    assert stats.jitter_ms == 0.0


def test_jitter_ignores_a_constant_clock_offset_between_sender_and_receiver() -> None:
    stats = FlowStats()
    receiver_behind = -(10**15)  # the receiver's clock reads far earlier than the sender's
    for seq in range(100):
        stats.record(seq, seq * MS, seq * MS + 2 * MS + receiver_behind)
    assert stats.jitter_ms == 0.0


def test_first_datagram_alone_has_no_jitter() -> None:
    stats = FlowStats()
    stats.record(0, 0, 123 * MS)
    assert stats.jitter_ms == 0.0


@pytest.mark.parametrize(
    ("transits_ns", "jitter_ns"),
    [
        # |D| = 32 -> J = 32/16 = 2; |D| = 16 -> J = 2 + (16 - 2)/16 = 2.875
        ([100, 132, 116], 2.875),
        # |D| = 16 three times: J = 1, 1 + 15/16, 1.9375 + 14.0625/16 = 721/256
        ([0, 16, 0, 16], 721 / 256),
        # |D| = 0, then 160: J = 0, then 10
        ([5, 5, 165], 10.0),
    ],
)
def test_jitter_matches_hand_computed_examples(transits_ns: list[int], jitter_ns: float) -> None:
    stats = FlowStats()
    for seq, transit in enumerate(transits_ns):
        stats.record(seq, seq * MS, seq * MS + transit)
    assert stats.jitter_ns == pytest.approx(jitter_ns)
    assert stats.jitter_ms == pytest.approx(jitter_ns / 1e6)


@pytest.mark.parametrize("count", [2, 3, 10, 50])
def test_jitter_of_alternating_delay_follows_the_closed_form(count: int) -> None:
    # Transit alternates 1 ms and 3 ms, so every |D| after the first arrival is c = 2 ms and
    # J after n = count - 1 steps from 0 is c * (1 - (15/16)**n).
    c = 2 * MS
    stats = FlowStats()
    for seq in range(count):
        transit = MS if seq % 2 == 0 else 3 * MS
        stats.record(seq, seq * 10 * MS, seq * 10 * MS + transit)
    assert stats.jitter_ns == pytest.approx(c * (1 - (15 / 16) ** (count - 1)))


def test_jitter_of_alternating_delay_converges_to_the_delay_difference() -> None:
    stats = FlowStats()
    for seq in range(2000):
        transit = MS if seq % 2 == 0 else 3 * MS
        stats.record(seq, seq * 10 * MS, seq * 10 * MS + transit)
    assert stats.summary()["jitter_ms"] == pytest.approx(2.0, rel=1e-12)


def test_jitter_follows_arrival_order_not_sequence_order() -> None:
    # Constant transit, delivered out of order: arrival times still track send times.
    stats = FlowStats()
    for seq in [0, 2, 1, 3]:
        stats.record(seq, seq * MS, seq * MS + MS)
    assert stats.jitter_ms == 0.0
    assert stats.reordered == 1


def test_flow_table_keeps_flows_apart() -> None:
    table = FlowTable()
    a = (("10.0.0.1", 5000), 1)
    b = (("10.0.0.1", 5000), 2)
    for seq in [0, 1, 3]:
        table.record(a, seq, 0, MS)
    for seq in [0, 0]:
        table.record(b, seq, 0, MS)
    flow_a, flow_b = table.get(a), table.get(b)
    assert flow_a is not None and flow_b is not None
    assert (flow_a.received, flow_a.lost, flow_a.duplicates) == (3, 1, 0)
    assert (flow_b.received, flow_b.lost, flow_b.duplicates) == (2, 0, 1)
    assert table.summary() == {
        "flows": 2,
        "evicted": 0,
        "received": 5,
        "duplicates": 1,
        "reordered": 0,
        "lost": 1,
        "loss_pct": 20.0,  # 1 of 4 + 1 expected
        "jitter_ms": 0.0,
    }


def test_flow_table_evicts_the_least_recently_active_flow() -> None:
    table = FlowTable(max_flows=2)
    table.record("a", 0, 0, MS)
    table.record("b", 0, 0, MS)
    table.record("a", 1, 0, MS)
    table.record("c", 0, 0, MS)
    assert len(table) == 2
    assert table.evicted == 1
    assert table.get("b") is None
    assert table.get("a") is not None
    assert table.get("c") is not None


def test_flow_table_totals_keep_evicted_flows() -> None:
    table = FlowTable(max_flows=1)
    for seq in [0, 2, 2]:  # 1 lost, 1 duplicate
        table.record("old", seq, 0, MS)
    for seq in [1, 0]:  # 1 reordered
        table.record("new", seq, 0, MS)
    assert table.summary() == {
        "flows": 1,
        "evicted": 1,
        "received": 5,
        "duplicates": 1,
        "reordered": 1,
        "lost": 1,
        "loss_pct": 20.0,  # 1 of 3 + 2 expected
        "jitter_ms": 0.0,
    }


def test_flow_table_jitter_is_the_mean_over_flows_with_two_datagrams() -> None:
    table = FlowTable(max_flows=2)
    # Flow "a": transits 0, 32 -> J = 2 ns. Flow "b": transits 0, 96 -> J = 6 ns.
    table.record("a", 0, 0, 0)
    table.record("a", 1, MS, MS + 32)
    table.record("b", 0, 0, 0)
    table.record("b", 1, MS, MS + 96)
    table.record("single", 0, 0, 5 * MS)  # evicts "a"; no jitter of its own
    assert table.summary()["jitter_ms"] == pytest.approx(4 / 1e6)


def test_flow_table_starts_a_returning_evicted_flow_afresh() -> None:
    table = FlowTable(max_flows=1)
    table.record("a", 0, 0, MS)
    table.record("b", 0, 0, MS)
    table.record("a", 0, 0, MS)
    flow = table.get("a")
    assert flow is not None
    assert (flow.received, flow.duplicates) == (1, 0)
    assert table.evicted == 2


def test_flow_table_needs_room_for_one_flow() -> None:
    with pytest.raises(ValueError, match="max_flows"):
        FlowTable(max_flows=0)


@pytest.mark.parametrize(
    ("received", "duplicates", "sent", "lost"),
    [(10, 0, 10, 0), (9, 1, 10, 2), (12, 2, 10, 0), (0, 0, 5, 5), (7, 0, 10, 3)],
)
def test_one_way_figures_count_as_lost_what_was_sent_and_never_arrived(
    received: int, duplicates: int, sent: int, lost: int
) -> None:
    # Distinct arrivals are received minus duplicates; trailing losses a receiver cannot
    # see are what the sender's count adds.
    seen = {"received": received, "duplicates": duplicates, "lost": 0, "loss_pct": 0.0}
    result = one_way(seen, sent)
    assert result is not None
    assert (result["sent"], result["lost"]) == (sent, lost)
    assert result["loss_pct"] == pytest.approx(100.0 * lost / sent)


def test_one_way_passes_nothing_and_uncounted_summaries_through() -> None:
    assert one_way(None, 5) is None
    assert one_way({"framed": False}, 5) == {"framed": False}
