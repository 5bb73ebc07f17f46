"""Impairment on echo listeners, measured by socketlab's own runs over loopback."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.listeners.modes.impair import DelayLine, Impairment
from app.listeners.parse import parse_listener, parse_listener_url
from app.runs.manager import Run
from app.runs.spec import parse_run_spec
from tests.listener_fixtures import open_manager, read_until, start


async def _run(lab: Lab, body: dict[str, object]) -> Run:
    run = await lab.runs.start(parse_run_spec(body))
    await run.done.wait()
    assert run.status == "finished", run.error
    return run


async def test_udp_echo_with_10_percent_loss_measures_10_percent(lab: Lab) -> None:
    with trio.fail_after(120):
        listener = await lab.listeners.start(parse_listener_url("udp://127.0.0.1:0?loss=10"))
        run = await _run(
            lab,
            {
                "target": f"udp://127.0.0.1:{listener.port}",
                "pattern": "pingpong",
                "connections": 250,
                "count": 10_000,
                "size": 64,
                # A lost datagram costs its flow one timeout; loopback answers in well
                # under a millisecond, so 0.5 s expires for real losses, not slow replies.
                "timeout": 0.5,
            },
        )
    summary = run.summary()
    assert summary["sent"] == 10_000
    assert 8.5 <= summary["loss_pct"] <= 11.5
    # Every datagram the listener dropped was lost to the run (a reply slower than the
    # timeout would add to the run's count, never subtract).
    dropped = listener.to_dict()["impairment"]["dropped"]
    assert dropped <= summary["lost"] <= dropped + summary["late"] + 5
    assert listener.msgs_in == 10_000


async def _pingpong_through_a_50ms_delay(lab: Lab) -> list[dict[str, Any]]:
    """A pingpong run against a UDP and a TCP echo listener that delay by 50 ms."""
    summaries = []
    with trio.fail_after(60):
        udp = await lab.listeners.start(parse_listener_url("udp://127.0.0.1:0?delay=50ms"))
        tcp = await lab.listeners.start(parse_listener_url("tcp://127.0.0.1:0?delay=0.05"))
        for listener in (udp, tcp):
            run = await _run(
                lab,
                {
                    "target": f"{listener.spec.protocol}://127.0.0.1:{listener.port}",
                    "pattern": "pingpong",
                    "connections": 4,
                    "count": 200,
                    "size": 64,
                    "timeout": 2.0,
                },
            )
            summary = run.summary()
            assert summary["received"] == 200
            assert listener.to_dict()["impairment"]["delayed"] >= 200
            summaries.append(summary)
    return summaries


async def test_added_50ms_delay_is_never_early(lab: Lab) -> None:
    for summary in await _pingpong_through_a_50ms_delay(lab):
        assert summary["rtt_ms"]["min"] >= 49.0


@pytest.mark.timing
async def test_added_50ms_delay_shows_as_p50_rtt_of_50ms(lab: Lab) -> None:
    for summary in await _pingpong_through_a_50ms_delay(lab):
        assert 45.0 <= summary["rtt_ms"]["p50"] <= 55.0
        assert summary["rtt_ms"]["min"] >= 49.0  # never early


async def test_duplication_sends_a_second_copy_of_each_chosen_datagram() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?duplicate=100")
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"twice")
            assert await sock.recv(100) == b"twice"
            assert await sock.recv(100) == b"twice"
    assert listener.to_dict()["impairment"]["duplicated"] == 1
    assert listener.msgs_out == 2


async def test_tcp_delay_keeps_byte_order() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tcp://127.0.0.1:0?delay=20ms&jitter=15ms&seed=7")
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                sent = b""
                for i in range(50):
                    chunk = f"{i:04d}|".encode()
                    sent += chunk
                    await stream.send_all(chunk)
                got = await read_until(stream, b"0049|")
    assert got == sent


async def _udp_rtts_through_30ms_and_20ms_jitter() -> list[float]:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?delay=30ms&jitter=20ms&seed=3")
        with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            rtts = []
            for i in range(40):
                t0 = trio.current_time()
                await sock.send(b"%d" % i)
                assert await sock.recv(100) == b"%d" % i
                rtts.append(trio.current_time() - t0)
    return rtts


async def test_udp_jitter_spreads_delays_within_the_bounds() -> None:
    rtts = await _udp_rtts_through_30ms_and_20ms_jitter()
    assert min(rtts) >= 0.0099
    assert max(rtts) - min(rtts) > 0.015  # jitter really varies the delay


@pytest.mark.timing
async def test_udp_jitter_never_delays_past_its_upper_bound() -> None:
    rtts = await _udp_rtts_through_30ms_and_20ms_jitter()
    assert max(rtts) <= 0.090  # 50 ms at most, plus scheduling slack


def test_impairment_delays_are_drawn_within_delay_plus_minus_jitter() -> None:
    impairment = Impairment(parse_listener("udp://h:1?delay=0.01&jitter=0.02&seed=1"))
    draws = [impairment.draw_delay() for _ in range(2000)]
    assert min(draws) == 0.0  # clipped at zero: delay - jitter is negative
    assert max(draws) <= 0.03
    assert 0.011 < sum(draws) / len(draws) < 0.016


async def test_delay_line_releases_items_in_due_order(autojump_clock: object) -> None:
    line = DelayLine(max_pending=3)
    released: list[tuple[float, str]] = []
    t0 = trio.current_time()

    def deliver(item: str) -> None:
        released.append((trio.current_time() - t0, item))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.run, deliver)
        assert line.push(t0 + 5, "late")
        assert line.push(t0 + 1, "early")  # a new earliest item re-arms the timer
        assert line.push(t0 + 3, "middle")
        assert not line.push(t0 + 2, "overflow")
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert released == [(1, "early"), (3, "middle"), (5, "late")]
