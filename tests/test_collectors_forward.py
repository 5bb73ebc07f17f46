"""Forwarding: a collector with ``forward=`` passes on what it receives, unchanged, to a
second socketlab collector as its upstream, over UDP and TCP; failures are counted; the
upstream is a target the policy must allow."""

from __future__ import annotations

import shutil
import socket
from typing import Any

import pytest
import trio

from app.errors import SpecError, TargetNotAllowedError
from app.listeners.base import Listener
from app.listeners.modes.collector import CollectorMode
from app.listeners.modes.statsd import StatsdMode
from app.listeners.parse import parse_listener
from tests.collector_fixtures import frames_of
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start

WAIT = 30.0

# Documents a client sends, as datagrams (UDP) or chunks of one connection (TCP). The
# chunks cut lines and frames anywhere, as TCP may.
_DATAGRAMS: dict[str, list[bytes]] = {
    "statsd": [b"hits:1|c\nlatency:12|ms|@0.5", b"temp:-3|g", b"users:alice|s\nbad line"],
    "influx": [
        b'cpu,host=a\\ b usage=1.5,n=3i,s="x \\"y\\"" 1700000000000000000',
        b"mem free=1u\nbad\n# comment\n",
    ],
    "graphite": [b"a.b 1 1700000000\nc.d;dc=eu 2.5 1700000001", b"nope\n"],
    "syslog": [b'<13>1 2026-01-01T00:00:00Z h app 1 ID [x@1 k="v\\]"] m\xc3\xa9', b"<11>x"],
}
_STREAMS: dict[str, bytes] = {
    "statsd": b"hits:1|c\nlatency:12|ms|@0.5\ntemp:-3|g\nusers:alice|s\nbad line\nlast:1|c",
    "influx": b'cpu,host=a\\ b usage=1.5,s="a\\nb" 1\nmem free=1u\nbad\n# c\nlast v=1',
    "graphite": b"a.b 1 1700000000\nc.d;dc=eu 2.5 1700000001\nnope\nlast 3",
    # Octet counting (RFC 6587), a newline between frames as some senders add.
    "syslog": b"".join(
        b"%d %s" % (len(frame), frame)
        for frame in (b"<13>1 - h app - - - hello", b"<11>x\n", "<14>1 - - - - - - été".encode())
    ),
}
# Messages in each stream, as the upstream counts what it was forwarded: lines (TCP),
# frames (syslog).
_STREAM_MESSAGES = {"statsd": 6, "influx": 5, "graphite": 4, "syslog": 3}


def _parsed(listener: Listener) -> Any:
    """What a collector made of its traffic, to compare two of them."""
    mode = listener.mode
    if isinstance(mode, StatsdMode):
        agg = mode.aggregator
        current = agg.current()
        return (agg.metrics_received, agg.bad_lines, current["counters"], current["gauges"])
    assert isinstance(mode, CollectorMode)
    return (mode.received, mode.bad_lines)


def _handled(listener: Listener) -> int:
    mode = listener.mode
    if isinstance(mode, StatsdMode):
        return mode.aggregator.metrics_received + mode.aggregator.bad_lines
    assert isinstance(mode, CollectorMode)
    return mode.received + mode.bad_lines


async def _send(protocol: str, port: int, mode: str) -> int:
    """Send ``mode``'s document; returns the bytes sent."""
    if protocol == "udp":
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in _DATAGRAMS[mode]:
                await sock.sendto(datagram, ("127.0.0.1", port))
        return sum(len(d) for d in _DATAGRAMS[mode])
    data = _STREAMS[mode]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for start in range(0, len(data), 7):  # lines and frames cut anywhere
            await stream.send_all(data[start : start + 7])
    return len(data)


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
@pytest.mark.parametrize("mode", ["statsd", "influx", "graphite", "syslog"])
async def test_what_arrives_upstream_equals_what_was_received_byte_for_byte(
    protocol: str, mode: str
) -> None:
    async with open_manager() as manager:
        upstream = await start(manager, f"{protocol}://127.0.0.1:0?mode={mode}")
        tap = await start(
            manager, f"{protocol}://127.0.0.1:0?mode={mode}&forward=127.0.0.1:{upstream.port}"
        )
        seen: dict[str, list[bytes]] = {}
        for name, listener in (("tap", tap), ("upstream", upstream)):
            if isinstance(listener.mode, CollectorMode):
                seen[name] = frames_of(listener.mode)
        sent = await _send(protocol, tap.port, mode)
        await wait_for(lambda: upstream.bytes_in == sent and _handled(upstream) > 0, WAIT)
        await wait_for(lambda: _handled(upstream) == _handled(tap) > 0, WAIT)
        expected = len(_DATAGRAMS[mode]) if protocol == "udp" else _STREAM_MESSAGES[mode]
        # The tap counts a message forwarded when its send returns, which is a checkpoint
        # after the kernel took it: the upstream may have parsed it before the tap counts.
        await wait_for(lambda: tap.to_dict()[mode]["forwarded"] >= expected, WAIT)
        assert tap.bytes_in == upstream.bytes_in == sent
        if not (mode == "statsd" and protocol == "tcp"):  # StatsD over TCP counts reads
            assert tap.msgs_in == upstream.msgs_in
        assert _parsed(upstream) == _parsed(tap)
        if seen:
            assert seen["upstream"] == seen["tap"]
        forwarding = tap.to_dict()[mode]
        assert (forwarding["forwarded"], forwarding["forward_failed"]) == (expected, 0)
        assert forwarding["forwarded_bytes"] == sent
        assert forwarding["forward"] == f"127.0.0.1:{upstream.port}"
        assert "forward" not in upstream.to_dict()[mode]


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger")
async def test_logger_octet_counted_through_a_tap_reaches_the_upstream_unchanged() -> None:
    async with open_manager() as manager:
        upstream = await start(manager, "tcp://127.0.0.1:0?mode=syslog")
        tap = await start(
            manager, f"tcp://127.0.0.1:0?mode=syslog&forward=127.0.0.1:{upstream.port}"
        )
        assert isinstance(tap.mode, CollectorMode) and isinstance(upstream.mode, CollectorMode)
        at_tap, at_upstream = frames_of(tap.mode), frames_of(upstream.mode)
        for text in ("one", 'two [with] "quotes"', "three"):
            to_tap = ["-n", "127.0.0.1", "-P", str(tap.port), "-T", "--octet-count"]
            await trio.run_process(
                ["logger", *to_tap, "--rfc5424", "-t", "tapped", text],
                capture_stdout=True,
                capture_stderr=True,
            )
        await wait_for(lambda: len(at_upstream) == 3, WAIT)
        assert at_upstream == at_tap
        assert upstream.bytes_in == tap.bytes_in
        mode = tap.mode
        await wait_for(lambda: mode.counters()["forwarded"] >= 3, WAIT)  # see above
        assert mode.counters()["forwarded"] == 3


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_an_unreachable_upstream_is_counted_and_collecting_goes_on(protocol: str) -> None:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with open_manager() as manager:
        tap = await start(
            manager, f"{protocol}://127.0.0.1:0?mode=graphite&forward=127.0.0.1:{closed_port}"
        )
        mode = tap.mode
        assert isinstance(mode, CollectorMode)
        for index in range(5):
            if protocol == "udp":
                with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    await sock.sendto(b"a.b %d 1700000000" % index, ("127.0.0.1", tap.port))
            else:
                stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
                async with stream:
                    await stream.send_all(b"a.b %d 1700000000\n" % index)
        await wait_for(lambda: mode.received == 5, WAIT)
        await wait_for(
            lambda: mode.counters()["forwarded"] + mode.counters()["forward_failed"] == 5, WAIT
        )
        failed = mode.counters()["forward_failed"]
        if protocol == "tcp":
            assert failed == 5  # the connection is refused: nothing went
        else:
            # A datagram leaves before the port's ICMP error comes back, which fails the
            # next send: what UDP can tell a sender.
            assert failed >= 1
        assert tap.errors == 0


async def test_an_upstream_the_target_policy_refuses_stops_the_listener_starting() -> None:
    async with open_manager() as manager:
        with pytest.raises(TargetNotAllowedError) as refused:
            await start(manager, "udp://127.0.0.1:0?mode=influx&forward=192.0.2.7:8094")
        assert refused.value.field == "forward"
        assert len(manager) == 0


async def test_a_collector_forwarding_to_itself_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with open_manager() as manager:
        with pytest.raises(SpecError) as refused:
            await start(manager, f"udp://127.0.0.1:{port}?mode=syslog&forward=127.0.0.1:{port}")
        assert refused.value.field == "forward"
        assert len(manager) == 0


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("udp://127.0.0.1:0?mode=echo&forward=127.0.0.1:9", "forward"),
        ("tls://127.0.0.1:0?mode=syslog&forward=127.0.0.1:9", "forward"),
        ("udp://127.0.0.1:0?mode=influx&forward=127.0.0.1", "forward"),
        ("udp://127.0.0.1:0?mode=influx&forward=127.0.0.1:0", "forward"),
        ("udp://127.0.0.1:0?mode=graphite&precision=s", "precision"),
        ("udp://127.0.0.1:0?mode=influx&precision=m", "precision"),
        ("udp://127.0.0.1:0?mode=syslog&max_keys=0", "max_keys"),
    ],
)
def test_collector_options_a_mode_cannot_use_are_refused(url: str, field: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_listener(url)
    assert refused.value.field == field


def test_collector_options_round_trip_through_the_url() -> None:
    spec = parse_listener("tcp://[::1]:0?mode=influx&precision=ms&forward=[::1]:8094&max_keys=5")
    again = parse_listener(spec.url)
    assert again == spec
    assert (again.precision, again.forward, again.max_keys) == ("ms", "[::1]:8094", 5)
