"""The event hub: drop-for-slow with resync, one encoding per transport, per-reader filters."""

from __future__ import annotations

from collections import Counter
from typing import Any

from app.events import ConnectionClosed, RunEnded, Tick
from app.hub import Encoder, Hub


def _counting(counts: Counter[str], name: str, *kinds: type) -> Encoder:
    def encode(event: Any) -> str:
        counts[name] += 1
        return f"{name}:{event.doc()['type']}"

    return Encoder(encode, frozenset(kinds))


async def test_a_full_subscriber_drops_counts_and_is_asked_to_resync_while_others_get_all() -> None:
    hub = Hub()
    encoder = _counting(Counter(), "ws", Tick)
    async with (
        hub.subscribe(max_buffer=2, encoder=encoder) as slow,
        hub.subscribe(max_buffer=10, encoder=encoder) as fast,
    ):
        for i in range(5):
            hub.publish(Tick({"type": "full", "n": i}))  # never awaits, even with slow full
        assert (slow.dropped, slow.resync) == (3, True)
        assert (fast.dropped, fast.resync) == (0, False)
        assert hub.dropped == 3
        # The resync: the writer discards the stale backlog, then starts afresh.
        assert slow.drain_nowait() == 2
        slow.resync = False
        hub.publish(Tick({"type": "full", "n": 5}))
        assert slow.receive_channel.receive_nowait() == "ws:tick"
        assert (slow.dropped, slow.resync) == (3, False)
        assert fast.drain_nowait() == 6
    assert hub.subscriber_count == 0


async def test_each_event_is_encoded_once_per_transport_whatever_its_subscribers() -> None:
    hub = Hub()
    counts: Counter[str] = Counter()
    ws = _counting(counts, "ws", Tick, RunEnded)
    ndjson = _counting(counts, "ndjson", RunEnded, ConnectionClosed)
    async with (
        hub.subscribe(encoder=ws) as ws_1,
        hub.subscribe(encoder=ws) as ws_2,
        hub.subscribe(encoder=ws) as ws_3,
        hub.subscribe(encoder=ndjson) as nd_1,
        hub.subscribe(encoder=ndjson) as nd_2,
    ):
        hub.publish(RunEnded("r1", "finished", None, {"sent": 1}))
        assert counts == {"ws": 1, "ndjson": 1}
        for sub in (ws_1, ws_2, ws_3):
            assert sub.receive_channel.receive_nowait() == "ws:run.ended"
        for sub in (nd_1, nd_2):
            assert sub.receive_channel.receive_nowait() == "ndjson:run.ended"
        # A kind a transport does not carry is not encoded for it, nor queued.
        hub.publish(ConnectionClosed("c1"))
        assert counts == {"ws": 1, "ndjson": 2}
        assert ws_1.drain_nowait() == 0
        assert nd_1.drain_nowait() == 1
        assert hub.wants(Tick) and hub.wants(ConnectionClosed)
    assert not hub.wants(Tick)


async def test_a_readers_filter_keeps_skipped_events_out_of_its_buffer() -> None:
    hub = Hub()

    def only_r1(event: Any) -> bool:
        return getattr(event, "run_id", None) == "r1"

    async with hub.subscribe(max_buffer=1, accepts=only_r1) as sub:
        for _ in range(10):
            hub.publish(RunEnded("r2", "finished", None, None))
        ended = RunEnded("r1", "stopped", None, None)
        hub.publish(ended)
        assert (sub.dropped, sub.resync) == (0, False)
        assert sub.receive_channel.receive_nowait() is ended  # no encoder: the event itself
