"""socketlab's figures against the relays' logs: loss, duplicates, reordering and jitter.

Every run here goes through a relay of :mod:`tests.relay`, which impairs what the run sends
and logs what it did to each datagram by probe sequence number. The expected figures are
read from that log; socketlab's own arithmetic is never the reference. Runs are short and
count-based so the whole table takes seconds.
"""

from __future__ import annotations

import time
import zlib
from functools import partial
from typing import Any

import pytest
import trio

from app.endpoint import Endpoint
from app.lab import Lab
from app.listeners.parse import parse_listener
from app.runs.flowstats import one_way
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import wait_for
from tests.relay import RCVBUF, Impairment, RelayLog, serve_tcp_relay, serve_udp_relay

IMPAIRMENTS = {
    "loss-1": Impairment(loss=1, seed=101),
    "loss-5": Impairment(loss=5, seed=105),
    "loss-20": Impairment(loss=20, seed=120),
    "duplicate-2": Impairment(duplicate=2, seed=202),
    "reorder-2": Impairment(reorder=2, seed=302),
    "mixed": Impairment(loss=5, duplicate=2, reorder=2, seed=402),
}
COUNT = 300
RATE = 3000


async def sink_port(lab: Lab, protocol: str = "udp", query: str = "") -> int:
    listener = await lab.listeners.start(
        parse_listener(f"{protocol}://127.0.0.1:0?mode=sink{query}")
    )
    return listener.port


async def upstream_port(lab: Lab, end: str) -> int:
    """A UDP echo or sink behind a relay, with room to queue a sender's catch-up burst."""
    listener = await lab.listeners.start(
        parse_listener(f"udp://127.0.0.1:0?mode={end}&rcvbuf={RCVBUF}")
    )
    return listener.port


async def finish(lab: Lab, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(30):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished", doc
    summary: dict[str, Any] = doc["summary"]
    return run.id, summary


def tag_of(run_id: str) -> int:
    # The run tag is the CRC-32 of the run id (README, "The probe header").
    return zlib.crc32(run_id.encode())


def receiving_end(lab: Lab, port: int, run_id: str, sent: int) -> dict[str, Any]:
    """What the sink behind the relay counted of the run, beside what was sent."""
    endpoint = Endpoint.parse(f"udp://127.0.0.1:{port}", field="target")
    remote = one_way(lab.receiver_side(endpoint, tag_of(run_id)), sent)
    assert remote is not None
    return remote


@pytest.mark.parametrize("warmup", [0.0, 0.05], ids=["no-warmup", "warmup"])
@pytest.mark.parametrize("flows", [1, 4])
@pytest.mark.parametrize("impairment", list(IMPAIRMENTS))
@pytest.mark.parametrize("end", ["echo", "sink"])
async def test_loss_duplicates_and_reordering_equal_the_relays_log(
    lab: Lab, nursery: trio.Nursery, end: str, impairment: str, flows: int, warmup: float
) -> None:
    log = RelayLog()
    upstream = await upstream_port(lab, end)
    # A datagram held back last in its flow goes on in order after 0.1 s, within the
    # run's 0.3 s timeout.
    relay = await nursery.start(
        partial(serve_udp_relay, hold_timeout=0.1),
        ("127.0.0.1", upstream),
        IMPAIRMENTS[impairment],
        log,
    )
    spec: dict[str, Any] = {
        "target": f"udp://127.0.0.1:{relay}",
        "pattern": "rate",
        "rate": RATE,
        "count": COUNT,
        "connections": flows,
        "warmup": warmup,
        "size": 64,
        "timeout": 0.3,
    }
    if end == "sink":
        spec["expect_replies"] = False  # behind the relay the lab cannot see its sink
    run_id, summary = await finish(lab, spec)
    # A run at a sink ends with its last send: the relay may still be reading, or holding
    # a datagram back (its fate is known once it has gone on).
    await wait_for(lambda: len(log.fates) == COUNT)
    await wait_for(lambda: all(f.action == "dropped" or f.emitted_ns for f in log.fates))

    counted = log.counted()
    dropped, duplicated = log.count("dropped"), log.count("duplicated")
    reordered = log.count("reordered")
    assert (len(counted) == COUNT) == (warmup == 0)
    assert summary["sent"] == len(counted)
    kinds = IMPAIRMENTS[impairment]
    # The log has something to compare with: each impairment of the case happened.
    actions = {f.action for f in log.fates}
    assert ("dropped" in actions) == (kinds.loss > 0)
    assert ("duplicated" in actions) == (kinds.duplicate > 0)
    assert ("reordered" in actions) == (kinds.reorder > 0)
    if end == "echo":
        assert summary["lost"] == dropped
        assert summary["duplicates"] == duplicated
        assert summary["reordered"] == reordered
        assert summary["received"] == len(counted) - dropped
        assert summary["remote"] is None
        return
    # A sink answers nothing: the sending end claims no loss, the receiving end counts.
    assert summary["lost"] is None and summary["loss_pct"] is None
    assert summary["received"] == 0
    sink = next(item for item in lab.listeners if item.port == upstream)
    await wait_for(lambda: sink.msgs_in == len(log.emitted))
    remote = receiving_end(lab, upstream, run_id, summary["sent"])
    assert remote["lost"] == dropped
    assert remote["duplicates"] == duplicated
    assert remote["reordered"] == reordered
    assert remote["received"] == len(counted) - dropped + duplicated


async def test_a_run_at_the_labs_own_sink_reports_one_way_figures(lab: Lab) -> None:
    port = await sink_port(lab)
    _, summary = await finish(
        lab,
        {"target": f"udp://127.0.0.1:{port}", "pattern": "rate", "rate": 2000, "count": 200},
    )
    assert (summary["sent"], summary["received"]) == (200, 0)
    assert summary["lost"] is None and summary["loss_pct"] is None
    remote = summary["remote"]
    assert (remote["sent"], remote["received"], remote["lost"]) == (200, 200, 0)


@pytest.mark.parametrize("pattern", ["burst", "bulk"])
async def test_burst_and_bulk_at_the_labs_own_sink_claim_no_loss(lab: Lab, pattern: str) -> None:
    port = await sink_port(lab)
    loads: dict[str, dict[str, Any]] = {
        "burst": {"burst": 20, "interval": 0.05},
        "bulk": {"rate": 2000},
    }
    load = loads[pattern]
    _, summary = await finish(
        lab,
        {"target": f"udp://127.0.0.1:{port}", "pattern": pattern, "count": 100, **load},
    )
    assert summary["lost"] is None
    assert (summary["remote"]["received"], summary["remote"]["lost"]) == (100, 0)


async def test_a_tcp_rate_run_at_a_framing_sink_shows_what_arrived(lab: Lab) -> None:
    port = await sink_port(lab, "tcp", "&message_size=64")
    _, summary = await finish(
        lab,
        {"target": f"tcp://127.0.0.1:{port}", "pattern": "rate", "rate": 2000, "count": 100},
    )
    assert summary["lost"] is None and summary["errors"] == 0
    assert (summary["remote"]["received"], summary["remote"]["lost"]) == (100, 0)


async def test_expect_replies_false_claims_no_loss_at_a_silent_target(lab: Lab) -> None:
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as silent:
        await silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        _, summary = await finish(
            lab,
            {
                "target": f"udp://127.0.0.1:{port}",
                "pattern": "rate",
                "rate": 1000,
                "count": 50,
                "timeout": 5,
                "expect_replies": False,
            },
        )
    assert summary["sent"] == 50
    assert summary["lost"] is None and summary["remote"] is None
    assert time.monotonic() - started < 4  # no reply is waited for


async def test_warmup_messages_are_left_out_at_the_sink(lab: Lab) -> None:
    port = await sink_port(lab)
    _, summary = await finish(
        lab,
        {
            "target": f"udp://127.0.0.1:{port}",
            "pattern": "rate",
            "rate": 1000,
            "count": 300,
            "warmup": 0.1,
        },
    )
    remote = summary["remote"]
    assert 150 <= summary["sent"] < 300
    assert (remote["received"], remote["lost"]) == (summary["sent"], 0)
    sink = next(item for item in lab.listeners if item.port == port)
    assert sink.to_dict()["probe"]["warmup"] == 300 - summary["sent"]


async def test_a_tcp_relay_delay_is_in_every_round_trip(lab: Lab, nursery: trio.Nursery) -> None:
    log = RelayLog()
    echo = ("127.0.0.1", listener_port(lab, "tcp"))
    relay = await nursery.start(
        lambda task_status: serve_tcp_relay(
            echo, Impairment(delay=0.02), log, message_size=64, task_status=task_status
        )
    )
    _, summary = await finish(
        lab,
        {"target": f"tcp://127.0.0.1:{relay}", "pattern": "rate", "rate": 500, "count": 100},
    )
    delays_ms = [(f.emitted_ns[0] - f.arrived_ns) / 1e6 for f in log.fates]
    assert len(delays_ms) == 100 and min(delays_ms) >= 20.0
    assert summary["received"] == 100
    assert summary["rtt_ms"]["min"] >= min(delays_ms)


async def test_a_tcp_sink_that_frames_nothing_says_so_and_claims_no_loss(lab: Lab) -> None:
    port = await sink_port(lab, "tcp")
    _, summary = await finish(
        lab,
        {"target": f"tcp://127.0.0.1:{port}", "pattern": "rate", "rate": 2000, "count": 50},
    )
    assert (summary["sent"], summary["lost"], summary["errors"]) == (50, None, 0)
    remote = summary["remote"]
    assert remote["framed"] is False and "lost" not in remote
    # What it does count, it counts whole: every byte sent arrived.
    assert remote["rx_bytes"] == summary["bytes_sent"]
