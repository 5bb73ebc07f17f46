"""UDP pingpong windows (app.runs.mux_udp) measured against a forwarder the test controls.

The forwarder sits between the run and an echo: it delays requests, drops or duplicates
the ones it is told to by sequence number, and logs every reply datagram it passes back
and its size. The figures socketlab reports are compared with that log, not with
socketlab's own arithmetic.
"""

from __future__ import annotations

import shutil
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs.manager import Run
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port

# The probe header's sequence number: a u64 at offset 12 (read here by hand, not by app.wire).
_SEQ = struct.Struct("!Q")


def seq_of(data: bytes) -> int:
    return int(_SEQ.unpack_from(data, 12)[0])


@dataclass
class ForwarderLog:
    # Reply datagrams sent to the run, and their bytes: what was on the wire.
    replies: int = 0
    reply_bytes: int = 0
    largest_reply: int = 0
    dropped: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    # Of those, the replies to counted datagrams (no warm-up flag in the header).
    duplicated_counted: list[int] = field(default_factory=list)
    # Set when a request with this sequence number passes (see ``serve_forwarder``).
    watch_seq: int | None = None
    seen: trio.Event = field(default_factory=trio.Event)


async def serve_forwarder(
    upstream: tuple[str, int],
    log: ForwarderLog,
    *,
    delay: float = 0.0,
    drop: Callable[[int], bool] = lambda seq: False,
    duplicate: Callable[[int], bool] = lambda seq: False,
    hold: dict[int, float] | None = None,
    task_status: trio.TaskStatus[tuple[int, tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forward one client's datagrams to ``upstream`` and the replies back.

    Each request waits ``delay`` seconds (a 20 ms path is ``delay=0.02``); a request whose
    sequence number ``drop`` accepts is not sent; a reply whose sequence number
    ``duplicate`` accepts is sent back twice; request ``seq`` waits ``hold[seq]`` seconds
    more. Starts with (the port to send to, the address
    the forwarder sends to ``upstream`` from).
    """
    front = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with front, back:
        await front.bind(("127.0.0.1", 0))
        await back.bind(("127.0.0.1", 0))
        await back.connect(upstream)
        task_status.started((front.getsockname()[1], back.getsockname()))
        client: list[Any] = []

        async def replies() -> None:
            while True:
                data = await back.recv(65536)
                log.largest_reply = max(log.largest_reply, len(data))
                copies = 1
                if len(data) >= 28 and duplicate(seq_of(data)):
                    copies = 2
                    log.duplicated.append(seq_of(data))
                    if not data[3] & 1:
                        log.duplicated_counted.append(seq_of(data))
                for _ in range(copies):
                    log.replies += 1
                    log.reply_bytes += len(data)
                    await front.sendto(data, client[0])

        async def later(data: bytes, due: float) -> None:
            await trio.sleep_until(due)
            await back.send(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replies)
            while True:
                data, address = await front.recvfrom(65536)
                if not client:
                    client.append(address)
                seq = seq_of(data)
                if seq == log.watch_seq:
                    log.seen.set()
                if drop(seq):
                    log.dropped.append(seq)
                elif delay or hold:
                    extra = hold.get(seq, 0.0) if hold else 0.0
                    nursery.start_soon(later, data, trio.current_time() + delay + extra)
                else:
                    await back.send(data)


async def start_run(lab: Lab, port: int, **fields: Any) -> Run:
    spec = {"target": f"udp://127.0.0.1:{port}", "size": 64, **fields}
    return await lab.runs.start(parse_run_spec(spec))


async def finish(run: Run) -> dict[str, Any]:
    with trio.fail_after(30):
        await run.done.wait()
    assert run.status == "finished", run.error
    summary: dict[str, Any] = run.summary()
    return summary


async def through_20_ms(lab: Lab, nursery: trio.Nursery, **fields: Any) -> dict[str, Any]:
    """A UDP pingpong run through a forwarder that adds 20 ms, to the lab's UDP echo."""
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    port, _ = await nursery.start(partial(serve_forwarder, echo, ForwarderLog(), delay=0.02))
    return await finish(await start_run(lab, port, timeout=2.0, **fields))


async def test_udp_in_flight_8_gives_at_least_4_times_the_messages_of_1(
    lab: Lab, nursery: trio.Nursery
) -> None:
    # The 20 ms dominates the cost of a message, so the ratio holds on a loaded machine:
    # about 8 in theory, 4 asked for.
    one = await through_20_ms(lab, nursery, in_flight=1, duration=0.6)
    eight = await through_20_ms(lab, nursery, in_flight=8, duration=0.6)
    for summary in (one, eight):
        assert summary["received"] == summary["sent"]
        assert (summary["lost"], summary["late"], summary["duplicates"]) == (0, 0, 0)
    assert 0 < 4 * one["received"] <= eight["received"]


@pytest.mark.timing
async def test_udp_in_flight_8_gives_7_to_8_5_times_the_rate_of_1(
    lab: Lab, nursery: trio.Nursery
) -> None:
    one = await through_20_ms(lab, nursery, in_flight=1, duration=2.0)
    eight = await through_20_ms(lab, nursery, in_flight=8, duration=2.0)
    assert 7.0 <= eight["msgs_per_s"] / one["msgs_per_s"] <= 8.5


async def test_a_lost_datagram_holds_one_slot_of_the_window_not_the_flow(
    lab: Lab, nursery: trio.Nursery
) -> None:
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    log = ForwarderLog(watch_seq=119)
    port, _ = await nursery.start(
        partial(serve_forwarder, echo, log, delay=0.02, drop=lambda seq: seq == 7)
    )
    run = await start_run(lab, port, in_flight=8, count=120, timeout=2.0)
    with trio.fail_after(10):
        await log.seen.wait()
    # The last request went out while datagram 7 still waited for its deadline (about 2 s
    # after its send; the other 119 take about 0.3 s): the window went on around it.
    assert run.status == "running"
    assert run.stats.lost == 0
    summary = await finish(run)
    assert log.dropped == [7]
    assert (summary["sent"], summary["received"], summary["lost"]) == (120, 119, 1)
    assert (summary["late"], summary["duplicates"]) == (0, 0)


@pytest.mark.parametrize("in_flight", [1, 8])
async def test_duplicated_replies_are_counted_as_duplicates_not_late(
    lab: Lab, nursery: trio.Nursery, in_flight: int
) -> None:
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    log = ForwarderLog()
    port, _ = await nursery.start(
        partial(serve_forwarder, echo, log, delay=0.02, duplicate=lambda seq: seq % 10 == 3)
    )
    summary = await finish(await start_run(lab, port, in_flight=in_flight, count=100))
    assert len(log.duplicated) == 10
    assert summary["duplicates"] == len(log.duplicated)
    assert (summary["sent"], summary["received"], summary["lost"], summary["late"]) == (
        100,
        100,
        0,
        0,
    )
    assert summary["bytes_received"] == log.reply_bytes == 64 * (100 + 10)


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
async def test_bytes_received_are_the_bytes_on_the_wire_from_an_echo_that_merges_datagrams(
    lab: Lab, nursery: trio.Nursery
) -> None:
    # socat reads each request into cat's stdin and sends back whatever it reads from cat's
    # stdout as one datagram: requests that queue up come back merged into one reply.
    size = 1000
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with echo:
        echo.bind(("127.0.0.1", 0))
        log = ForwarderLog()
        port, back = await nursery.start(partial(serve_forwarder, echo.getsockname(), log))
        echo.connect(back)
        fd = echo.fileno()
        process = await trio.lowlevel.open_process(
            ["socat", "-b", "65536", f"FD:{fd}", "EXEC:cat"], pass_fds=(fd,)
        )
    try:
        summary = await finish(
            await start_run(lab, port, size=size, in_flight=16, count=800, timeout=0.5)
        )
    finally:
        process.terminate()
        await process.wait()
    assert log.largest_reply > size  # some replies were merged, so the case was there
    assert summary["bytes_received"] == log.reply_bytes
    assert summary["sent"] == 800
    assert summary["received"] + summary["lost"] == 800


async def test_replies_to_warm_up_datagrams_are_left_out_duplicates_included(
    lab: Lab, nursery: trio.Nursery
) -> None:
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    log = ForwarderLog()
    port, _ = await nursery.start(
        partial(serve_forwarder, echo, log, delay=0.02, duplicate=lambda seq: seq % 10 == 3)
    )
    summary = await finish(await start_run(lab, port, in_flight=8, count=300, warmup=0.2))
    # One flow sends 300 datagrams: the warm-up ones numbered 0.. and flagged, then the
    # counted ones (the last ``sent``) numbered 0.. again (app.wire.probe).
    sent = summary["sent"]
    counted_duplicates = log.duplicated_counted
    assert sorted(counted_duplicates) == [seq for seq in range(sent) if seq % 10 == 3]
    warm_duplicates = [seq for seq in range(300 - sent) if seq % 10 == 3]
    assert warm_duplicates
    assert len(log.duplicated) == len(counted_duplicates) + len(warm_duplicates)
    assert summary["duplicates"] == len(counted_duplicates)
    assert (summary["received"], summary["lost"], summary["late"]) == (summary["sent"], 0, 0)
    assert summary["bytes_received"] == 64 * (summary["sent"] + len(counted_duplicates))


async def test_a_reply_after_its_deadline_is_late_not_a_duplicate(
    lab: Lab, nursery: trio.Nursery
) -> None:
    echo = ("127.0.0.1", listener_port(lab, "udp"))
    log = ForwarderLog()
    # Datagram 5 comes back 0.4 s late, past its 0.2 s timeout, while the flow still runs
    # (400 datagrams, 8 at a time through 20 ms: about 1 s).
    port, _ = await nursery.start(partial(serve_forwarder, echo, log, delay=0.02, hold={5: 0.4}))
    summary = await finish(await start_run(lab, port, in_flight=8, count=400, timeout=0.2))
    assert log.replies == 400
    assert (summary["sent"], summary["received"], summary["lost"]) == (400, 399, 1)
    assert (summary["late"], summary["duplicates"]) == (1, 0)
    assert summary["bytes_received"] == log.reply_bytes == 400 * 64
