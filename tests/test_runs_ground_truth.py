"""Runs measured against ground truth: servers and relays the test controls.

A measuring tool that measures wrong is worse than none, so each figure socketlab reports
here is compared with what the test itself did: the datagrams its relay dropped, duplicated
and swapped, the delay its echo server added, the stall it caused.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from dataclasses import dataclass

import pytest
import trio

from app.lab import Lab
from app.runs.manager import Run
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port


@dataclass
class RelayLog:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    swapped: int = 0


async def serve_faulty_relay(
    upstream: tuple[str, int],
    log: RelayLog,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A UDP relay for one client: datagram n (from 1) of the client is dropped when
    n % 10 == 0, sent twice when n % 25 == 0, and held back until the next one when
    n % 40 == 13 (a swapped pair). The three sets never overlap. Replies pass unchanged."""
    front = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with front, back:
        await front.bind(("127.0.0.1", 0))
        await back.connect(upstream)
        task_status.started(front.getsockname()[1])
        client: list[tuple[str, int]] = []

        async def replies() -> None:
            while True:
                data = await back.recv(65536)
                if client:
                    await front.sendto(data, client[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replies)
            held: bytes | None = None
            n = 0
            while True:
                data, address = await front.recvfrom(65536)
                if not client:
                    client.append(address)
                n += 1
                if n % 10 == 0:
                    log.dropped += 1
                    continue
                if n % 40 == 13:
                    held = data
                    continue
                await back.send(data)
                log.forwarded += 1
                if n % 25 == 0:
                    await back.send(data)
                    log.duplicated += 1
                if held is not None:
                    await back.send(held)
                    log.forwarded += 1
                    log.swapped += 1
                    held = None


async def serve_tcp_echo(
    *,
    delay: float = 0.0,
    stall_after: int | None = None,
    stall: float = 0.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A TCP echo of fixed 64-byte messages that adds ``delay`` before each reply and, once,
    stops for ``stall`` seconds after message ``stall_after``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    stalled = False

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal stalled
        count = 0
        buffer = b""
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while len(buffer) >= 64:
                    message, buffer = buffer[:64], buffer[64:]
                    count += 1
                    if stall_after is not None and count == stall_after and not stalled:
                        stalled = True
                        await trio.sleep(stall)
                    if delay:
                        await trio.sleep(delay)
                    await stream.send_all(message)

    async with trio.open_nursery() as nursery:
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(port)


async def finish(lab: Lab, spec: dict[str, object]) -> dict[str, object]:
    run: Run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(30):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished", doc
    summary: dict[str, object] = doc["summary"]
    return summary


async def test_loss_duplicates_and_reordering_equal_the_relays_log(
    lab: Lab, nursery: trio.Nursery
) -> None:
    log = RelayLog()
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    relay = await nursery.start(serve_faulty_relay, echo, log)
    summary = await finish(
        lab,
        {
            "target": f"udp://127.0.0.1:{relay}",
            "pattern": "rate",
            "rate": 2000,
            "count": 1000,
            "size": 64,
            "timeout": 1.0,
        },
    )
    assert (log.dropped, log.duplicated, log.swapped) == (100, 20, 25)
    assert summary["sent"] == 1000
    assert summary["lost"] == log.dropped
    assert summary["duplicates"] == log.duplicated
    assert summary["reordered"] == log.swapped
    assert summary["received"] == 1000 - log.dropped
    assert summary["loss_pct"] == pytest.approx(10.0)
    assert summary["jitter_ms"] is not None


async def rtt_through_a_20_ms_delay(nursery: trio.Nursery, lab: Lab) -> dict[str, float]:
    port = await nursery.start(
        lambda task_status: serve_tcp_echo(delay=0.02, task_status=task_status)
    )
    summary = await finish(lab, {"target": f"tcp://127.0.0.1:{port}", "count": 60, "size": 64})
    rtt = summary["rtt_ms"]
    assert isinstance(rtt, dict)
    return rtt


async def test_an_added_20_ms_delay_is_in_every_round_trip(nursery: trio.Nursery, lab: Lab) -> None:
    rtt = await rtt_through_a_20_ms_delay(nursery, lab)
    assert rtt["min"] >= 20.0


@pytest.mark.timing
async def test_an_added_20_ms_delay_shows_as_p50_within_2_ms(
    nursery: trio.Nursery, lab: Lab
) -> None:
    rtt = await rtt_through_a_20_ms_delay(nursery, lab)
    assert rtt["p50"] == pytest.approx(20.0, abs=2.0)
    assert rtt["min"] >= 20.0


@pytest.mark.parametrize(("pattern", "stall_seen"), [("rate", True), ("pingpong", False)])
async def test_a_200_ms_stall_shows_in_open_loop_p99_but_hides_in_closed_loop(
    nursery: trio.Nursery, lab: Lab, pattern: str, stall_seen: bool
) -> None:
    def server(task_status: trio.TaskStatus[int]) -> Awaitable[None]:
        return serve_tcp_echo(stall_after=500, stall=0.2, task_status=task_status)

    port = await nursery.start(server)
    spec: dict[str, object] = {
        "target": f"tcp://127.0.0.1:{port}",
        "pattern": pattern,
        "duration": 2.0,
        "size": 64,
    }
    if pattern == "rate":
        spec["rate"] = 1000
    summary = await finish(lab, spec)
    rtt = summary["rtt_ms"]
    assert isinstance(rtt, dict)
    assert rtt["max"] >= 190.0  # both saw the stall once...
    if stall_seen:
        assert rtt["p99"] >= 100.0  # ...open loop counts every message it delayed
    else:
        assert rtt["p99"] < 100.0  # ...closed loop sent nothing while it waited
