"""Source listeners: they send what a request asks, within their caps and the target policy,
as a plain client reading the stream sees it (probe headers read with the relay's own
decoder, requests packed by the README's layout)."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from app.errors import SpecError
from app.lab import Lab
from app.listeners.base import Listener
from app.listeners.modes import create_listener
from app.listeners.modes.source import REQUEST_QUEUE, SourceMode, policy_allows
from app.listeners.parse import parse_listener
from app.listeners.udp import UdpFlows
from app.registry import Registry
from app.runs.targets import TargetPolicy
from tests.helpers import http, wait_for
from tests.relay import parse_probe
from tests.test_openapi import openapi, response_validator

LAYOUT = struct.Struct("!2sBBIIIIIIIII")
TAG = 0x5EED0001
BULK, RATE = 0, 1


def request(
    *,
    pattern: int = RATE,
    flow: int = 7,
    size: int = 64,
    rate: float = 2000,
    messages: int = 50,
    duration: float = 0.0,
    warmup: float = 0.0,
) -> bytes:
    return LAYOUT.pack(
        b"SR",
        1,
        pattern,
        TAG,
        flow,
        size,
        int(rate * 1000),
        messages,
        int(duration * 1000),
        int(warmup * 1000),
        0,
        0,
    )


async def start(lab: Lab, url: str) -> Listener:
    return await lab.listeners.start(parse_listener(url))


def mode_of(listener: Listener) -> SourceMode:
    assert isinstance(listener.mode, SourceMode)
    return listener.mode


async def read_stream(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the source closes it."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            chunks = []
            async for chunk in stream:
                chunks.append(chunk)
    return b"".join(chunks)


def messages_of(data: bytes, size: int) -> list[tuple[int, int, int, int]]:
    """(flags, run tag, flow, sequence) of each ``size``-byte message."""
    out = []
    for start in range(0, len(data), size):
        probe = parse_probe(data[start : start + size])
        assert probe is not None
        out.append((probe.flags, probe.run_tag, probe.flow, probe.seq))
    return out


async def test_a_tcp_source_sends_the_requested_messages_then_closes(lab: Lab) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source")
    data = await read_stream(listener.port, request(messages=50, size=100))
    assert len(data) == 50 * 100
    assert messages_of(data, 100) == [(0, TAG, 7, seq) for seq in range(50)]
    figures = listener.receiving_end(TAG)
    assert figures is not None
    assert (figures["tx_messages"], figures["tx_bytes"], figures["tx_streams"]) == (50, 5000, 1)
    assert listener.bytes_out == 5000 and listener.msgs_out == 50


async def test_warm_up_messages_are_flagged_and_numbered_apart(lab: Lab) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source")
    # 40 messages at 1,000/s: the first 10 ms are the warm-up.
    data = await read_stream(listener.port, request(messages=40, rate=1000, warmup=0.01))
    seen = messages_of(data, 64)
    warm = [m for m in seen if m[0] & 1]
    counted = [m for m in seen if not m[0] & 1]
    assert [m[3] for m in warm] == list(range(len(warm))) and warm
    assert [m[3] for m in counted] == list(range(len(counted)))
    figures = listener.receiving_end(TAG)
    assert figures is not None
    assert (figures["tx_messages"], figures["tx_warmup"]) == (len(counted), len(warm))


async def test_max_rate_and_max_duration_cap_a_greedy_request(lab: Lab) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source&max_rate=500&max_duration=0.2")
    # A bulk request for a million messages: paced at 500/s, ended at 0.2 s.
    data = await read_stream(listener.port, request(pattern=BULK, rate=0, messages=1_000_000))
    sent = len(data) // 64
    assert 0 < sent <= 500 * 0.2 + 1
    figures = listener.receiving_end(TAG)
    assert figures is not None and figures["tx_messages"] == sent


async def test_max_streams_refuses_a_stream_past_it(lab: Lab, nursery: trio.Nursery) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source&max_streams=1")
    mode = mode_of(listener)
    first = await trio.open_tcp_stream("127.0.0.1", listener.port)
    async with first:
        await first.send_all(request(rate=10, messages=0, duration=30))
        await wait_for(lambda: mode.streams == 1)
        # The second is closed at once, without a byte.
        assert await read_stream(listener.port, request()) == b""
        assert mode.refused == 1
    await wait_for(lambda: mode.streams == 0)


async def test_a_stream_that_is_no_request_is_counted_as_at_a_sink(lab: Lab) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source&message_size=64")
    probe_header = struct.pack("!2sBBIIQQ", b"SL", 1, 0, TAG, 1, 0, 123)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
        async with stream:
            for seq in range(5):
                header = struct.pack("!2sBBIIQQ", b"SL", 1, 0, TAG, 1, seq, 123)
                await stream.send_all(header + bytes(64 - len(probe_header)))
            await wait_for(lambda: listener.msgs_in == 5)
    figures = listener.receiving_end(TAG)
    assert figures is not None
    assert (figures["received"], figures["lost"], figures["tx_messages"]) == (5, 0, 0)


async def test_a_udp_source_sends_one_stream_per_requester(lab: Lab) -> None:
    listener = await start(lab, "udp://127.0.0.1:0?mode=source")
    mode = mode_of(listener)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    with sock, trio.fail_after(20):
        sock.connect(("127.0.0.1", listener.port))
        ask = request(messages=60, size=200)
        # Asked three times: the repeats change nothing while its stream goes.
        for _ in range(3):
            sock.send(ask)
        seqs: list[int] = []
        while len(seqs) < 60:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            probe = parse_probe(data)
            assert probe is not None and len(data) == 200
            seqs.append(probe.seq)
        await wait_for(lambda: mode.streams == 0)
        assert sorted(seqs) == list(range(60))
        figures = listener.receiving_end(TAG)
        assert figures is not None
        assert (figures["tx_messages"], figures["tx_streams"]) == (60, 1)
        # Nothing more came than the one stream (the queue, looked at without waiting).
        with pytest.raises(BlockingIOError):
            sock.recv(65536)


def test_a_source_sends_only_where_runs_may() -> None:
    loopback_only = policy_allows(TargetPolicy())
    assert loopback_only("127.0.0.1") and loopback_only("::1")
    assert not loopback_only("10.1.2.3")
    assert not loopback_only("not an address")
    allowed = policy_allows(TargetPolicy(["10.0.0.0/8"]))
    assert allowed("10.1.2.3")
    # Always-denied ranges stay denied, whatever is allowed.
    assert not policy_allows(TargetPolicy(["169.254.0.0/16"]))("169.254.169.254")


async def test_a_labs_source_uses_the_labs_target_policy(lab: Lab) -> None:
    listener = await start(lab, "udp://127.0.0.1:0?mode=source")
    assert lab.listeners.send_policy is not None
    assert mode_of(listener).may_send_to is lab.listeners.send_policy


def test_source_options_apply_to_sources_only() -> None:
    spec = parse_listener("udp://127.0.0.1:0?mode=source&max_rate=100&max_duration=2s")
    assert (spec.max_rate, spec.max_duration, spec.max_streams) == (100, 2.0, 64)
    with pytest.raises(SpecError) as caught:
        parse_listener("tcp://127.0.0.1:0?mode=echo&max_rate=100")
    assert caught.value.field == "max_rate"


async def test_the_probes_route_gives_a_sources_count(lab: Lab) -> None:
    listener = await start(lab, "tcp://127.0.0.1:0?mode=source")
    await read_stream(listener.port, request(messages=20))
    assert lab.web_port is not None
    path = f"/api/listeners/{listener.id}/probes/{TAG:08x}"
    answer = await http(lab.web_port, "GET", path)
    assert answer.status == 200
    body = answer.json()
    assert (body["tx_messages"], body["tx_bytes"]) == (20, 20 * 64)
    doc = await openapi(lab)
    response_validator(doc, "/api/listeners/{listener_id}/probes/{run_tag}", "get", 200).validate(
        body
    )
    listing = await http(lab.web_port, "GET", f"/api/listeners/{listener.id}")
    assert listing.json()["source"]["runs"][f"{TAG:08x}"]["tx_messages"] == 20


async def test_udp_requests_past_the_queue_are_dropped_and_counted() -> None:
    # The per-datagram handler never waits: with nobody draining the queue (the mode's
    # run() task is not started here), requests past its bound are dropped and counted.
    listener = create_listener("l1", parse_listener("udp://127.0.0.1:0?mode=source"))
    mode = mode_of(listener)
    registry = Registry()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        flows = UdpFlows(listener, registry, sock)
        handle = mode.datagram_handler(flows)
        data = bytearray(request())
        for i in range(REQUEST_QUEUE + 10):
            addr = ("127.0.0.1", 20000 + i)
            flow = registry.open("udp", ("127.0.0.1", 1), addr, listener_id="l1")
            handle(memoryview(data), len(data), addr, flow)
        # A bad request is counted too, and queues nothing.
        handle(memoryview(data), 39, ("127.0.0.1", 30000), flow)
    assert mode.dropped_requests == 10
    assert mode.bad_requests == 1
