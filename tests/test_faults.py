"""Faults a lab meets by design: resets, a bug in one handler, no file descriptors left, and a
browser that stops reading. Each one stays with the connection that caused it.

- 1,000 connections reset mid-message (SO_LINGER 0): the echo listener counts 1,000 errors
  and serves the next client;
- a fault injected into 1 of 100 connection handlers, on the listener side and on the run
  side: the other 99 finish their work;
- ``RLIMIT_NOFILE`` 64 and 120 concurrent clients on a served lab: no crash, all 120
  served once descriptors free up;
- a WebSocket subscriber that never reads (small receive buffer) while it floods view
  requests and traffic flows: the lab's RSS grows by less than 10 MiB and an echo client
  keeps its normal latency (that part is a ``timing`` test: ``pytest -m timing``).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs import pingpong
from app.runs.flows import FLOWS, FlowKind
from tests.conftest import listener_port
from tests.helpers import TOKEN, echo_round_trip, http, start_served_lab, wait_for, wait_for_async

LINGER_RESET = struct.pack("ii", 1, 0)


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


def echo_listener(lab: Lab) -> Any:
    return next(item for item in lab.listeners if item.spec.protocol == "tcp")


async def echo_once(port: int, payload: bytes, timeout: float = 5.0) -> float:  # noqa: ASYNC109
    """Send ``payload`` to an echo server and read it back; returns the RTT in seconds."""
    with trio.fail_after(timeout):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            t0 = time.perf_counter()
            await echo_round_trip(stream, payload)
            rtt = time.perf_counter() - t0
    return rtt


# --- Resets -----------------------------------------------------------------------------


async def reset_mid_message(port: int, index: int) -> None:
    """Connect, send half a message, then close with RST instead of FIN."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(b"half of message %d ..." % index)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)


async def test_a_thousand_resets_are_counted_and_the_listener_serves_on(lab: Lab) -> None:
    listener = echo_listener(lab)
    port = listener.port
    before = listener.errors
    with trio.fail_after(60):
        for batch in range(20):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(reset_mid_message, port, batch * 50 + i)
        await wait_for(lambda: listener.accepted >= 1000 and listener.connections == 0, 20)
        # Every reset ended its connection with one counted error, and nothing else did.
        await wait_for(lambda: listener.errors - before == 1000, 10)
        assert await echo_once(port, b"still alive\n") < 1.0
    assert listener.errors - before == 1000
    doc = (await http(web_port(lab), "GET", f"/api/listeners/{listener.id}")).json()
    assert doc["errors"] == listener.errors
    assert doc["accepted"] == 1001
    assert doc["connections"] == 0
    assert len(lab.registry) == 0


# --- A fault in 1 of 100 handlers -------------------------------------------------------


async def test_a_fault_in_one_of_a_hundred_listener_handlers_leaves_the_others(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    listener = echo_listener(lab)
    mode = listener.mode
    # Plain TCP echo connections have no task: the mode's adopt() is where each one's
    # handling starts (see app.listeners.tcp).
    original = mode.adopt
    calls = 0
    faulty_conn: list[str] = []

    def adopt(conn: Any, sock: Any, ended: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 37:
            faulty_conn.append(conn.id)
            raise RuntimeError("injected fault in one connection handler")
        original(conn, sock, ended)

    monkeypatch.setattr(mode, "adopt", adopt)
    results: dict[int, bytes | None] = {}
    release = trio.Event()

    async def client(index: int) -> None:
        payload = b"".join(b"message %d.%d\n" % (index, k) for k in range(20))
        async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
            got = b""
            try:
                # Hold every connection open until all 100 are in, so they overlap.
                await stream.send_all(payload[:10])
                while len(got) < 10:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise EOFError
                    got += chunk
                await release.wait()
                await stream.send_all(payload[10:])
                while len(got) < len(payload):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise EOFError
                    got += chunk
                results[index] = got
            except (EOFError, trio.BrokenResourceError):
                results[index] = None

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(client, i)
            await wait_for(lambda: calls == 100 and listener.connections == 99, 10)
            release.set()
    finished = [i for i, got in results.items() if got is not None]
    assert len(finished) == 99
    assert all(
        results[i] == b"".join(b"message %d.%d\n" % (i, k) for k in range(20)) for i in finished
    )
    assert listener.errors == 1
    logged = [r for r in caplog.records if faulty_conn[0] in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    monkeypatch.undo()
    assert await echo_once(listener.port, b"after the fault\n") < 1.0


async def test_a_fault_in_one_of_a_hundred_run_flows_leaves_the_others(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = pingpong.tcp_pingpong_flow

    async def flow(ctx: Any, flow_id: int, quota: int | None) -> None:
        if flow_id == 42:
            raise RuntimeError("injected fault in one flow")
        await original(ctx, flow_id, quota)

    row = FLOWS["pingpong", "tcp"]
    monkeypatch.setitem(FLOWS, ("pingpong", "tcp"), FlowKind(flow, row.prepare))
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    created = await http(
        web_port(lab),
        "POST",
        "/api/runs",
        body={"target": target, "connections": 100, "count": 2000, "timeout": 5},
    )
    assert created.status == 201
    run_id = created.json()["id"]

    async def ended() -> dict[str, Any] | None:
        doc: dict[str, Any] = (await http(web_port(lab), "GET", f"/api/runs/{run_id}")).json()
        return doc if doc["status"] != "running" else None

    doc = await wait_for_async(ended, timeout=30)
    assert doc["status"] == "finished"
    summary = doc["summary"]
    assert summary["sent"] == summary["received"] == 99 * 20
    assert summary["errors_by_kind"] == {"internal": 1}
    assert summary["connections_opened"] == 99
    assert any(
        f"run {run_id}: flow 42 failed" in r.getMessage() and r.exc_info for r in caplog.records
    )


# --- Out of file descriptors ------------------------------------------------------------


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


async def test_out_of_descriptors_the_lab_survives_and_serves_all_clients(
    tmp_path: Path,
) -> None:
    served = start_served_lab(tmp_path / "data", preexec_fn=_limit_descriptors)
    try:
        pid = served.process.pid
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE)[0] == 64
        port = served.listeners["tcp"]
        served_count = 0
        most_open = 0
        open_now = 0

        async def client(index: int) -> None:
            nonlocal served_count, most_open, open_now
            payload = b"client %d\n" % index
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                open_now += 1
                most_open = max(most_open, open_now)
                try:
                    await stream.send_all(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = await stream.receive_some(65536)
                        assert chunk, f"client {index}: closed without an echo"
                        got += chunk
                    assert got == payload
                    served_count += 1
                finally:
                    open_now -= 1

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(120):
                    nursery.start_soon(client, i)
        assert served_count == 120
        assert most_open > 64  # more clients at once than the lab had descriptors for
        assert served.process.poll() is None
        doc = (await http(served.web_port, "GET", "/api/listeners")).json()
        tcp = next(item for item in doc["items"] if item["protocol"] == "tcp")
        assert tcp["accepted"] == 120
        # It ran out of descriptors and counted it: accept() failed with EMFILE, or (the
        # usual case now) it stopped at its share and left the rest to the web server.
        assert tcp["accept_failures"] > 0
        assert len(os.listdir(f"/proc/{pid}/fd")) < 64
    finally:
        code = served.stop()
        served.close_stdout()
    assert code == 0


# --- A WebSocket subscriber that never reads --------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def stalled_subscriber(port: int) -> tuple[trio.SocketStream, Any]:
    """An authenticated /ws session on a socket with a 4 KiB receive buffer."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(
        ws.send(
            Request(
                host=f"127.0.0.1:{port}",
                target="/ws",
                extra_headers=[(b"authorization", f"Bearer {TOKEN}".encode())],
            )
        )
    )
    while True:
        ws.receive_data(await stream.receive_some(4096))
        if any(isinstance(event, AcceptConnection) for event in ws.events()):
            return stream, ws


@dataclass
class StalledSubscriber:
    """What a served lab did while a WebSocket subscriber flooded views and never read."""

    sent_views: int
    rss_growth: int
    rtts_before: list[float]  # echo round trips before the subscriber, seconds
    rtts_during: list[float]  # and while it was stuck


async def stall_a_subscriber(data: Path) -> StalledSubscriber:
    from wsproto.events import TextMessage

    served = start_served_lab(data)
    try:
        pid = served.process.pid
        web, echo = served.web_port, served.listeners["tcp"]
        # Rows for the connection pages: 300 idle connections.
        idle = [await trio.open_tcp_stream("127.0.0.1", echo) for _ in range(300)]
        created = await http(
            web,
            "POST",
            "/api/runs",
            body={
                "target": f"tcp://127.0.0.1:{echo}",
                "pattern": "rate",
                "rate": 500,
                "connections": 20,
                "duration": 30,
            },
        )
        assert created.status == 201
        rtts_before = [await echo_once(echo, b"x" * 64) for _ in range(100)]
        stream, ws = await stalled_subscriber(web)
        rss0 = rss_bytes(pid)
        peak = rss0
        rtts_during: list[float] = []
        sent_views = 0

        async def flood() -> None:
            # Each view asks for a different 500-row page: a server that answered every
            # one would queue ~50 KB per request.
            nonlocal sent_views
            sorts = ["id", "remote", "bytes_in", "bytes_out", "opened_at"]
            while True:
                view = {
                    "type": "view",
                    "limit": 500,
                    "sort": sorts[sent_views % len(sorts)],
                    "desc": bool(sent_views % 2),
                    "seq": sent_views,
                }
                with trio.move_on_after(0.5):
                    await stream.send_all(ws.send(TextMessage(data=json.dumps(view))))
                    sent_views += 1
                await trio.sleep(0.002)

        async def measure() -> None:
            nonlocal peak
            # The first 2 s fill the kernel's socket buffers with pages; after that the
            # subscriber's writer is stuck and the lab is in the state under test.
            settled = trio.current_time() + 2.0
            deadline = settled + 6.0
            while trio.current_time() < deadline:
                rtt = await echo_once(echo, b"x" * 64)
                if trio.current_time() > settled:
                    rtts_during.append(rtt)
                peak = max(peak, rss_bytes(pid))
                await trio.sleep(0.02)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await measure()
                nursery.cancel_scope.cancel()
        assert served.process.poll() is None
        await stream.aclose()
        for conn in idle:
            await conn.aclose()
    finally:
        code = served.stop()
        served.close_stdout()
    assert code == 0
    return StalledSubscriber(sent_views, peak - rss0, rtts_before, rtts_during)


async def test_a_subscriber_that_never_reads_costs_bounded_memory(tmp_path: Path) -> None:
    stalled = await stall_a_subscriber(tmp_path / "data")
    assert stalled.sent_views > 500  # the server kept reading requests it could not answer
    growth = stalled.rss_growth
    assert growth < 10 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB"
    assert len(stalled.rtts_during) > 10  # the echo listener answered all along


@pytest.mark.timing
async def test_a_subscriber_that_never_reads_adds_no_latency(tmp_path: Path) -> None:
    stalled = await stall_a_subscriber(tmp_path / "data")
    before = sorted(stalled.rtts_before)
    during = sorted(stalled.rtts_during)
    p50_before, p50_during = before[len(before) // 2], during[len(during) // 2]
    p99_during = during[int(len(during) * 0.99)]
    # Normal latency: the median as before (the run's traffic is there in both), and no
    # stall worth the name at the 99th percentile.
    assert p50_during < 2 * p50_before + 0.002, (p50_before, p50_during)
    assert p99_during < 0.05, p99_during


# --- UDP reflection limits --------------------------------------------------------------


def local_non_loopback_ipv4() -> str | None:
    """This machine's own address on its default route (no packet is sent), if any."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@pytest.mark.parametrize(
    ("addr", "request_size", "reply_size", "allowed"),
    [
        (("127.0.0.1", 40000), 4, 400, True),  # loopback: respond may answer longer
        (("127.9.9.9", 40000), 4, 400, True),
        (("::1", 40000, 0, 0), 4, 400, True),
        (("::ffff:127.0.0.1", 40000, 0, 0), 4, 400, True),
        (("127.0.0.1", 1023), 4, 4, False),  # a privileged source port, even on loopback
        (("127.0.0.1", 53), 4, 1, False),
        (("127.0.0.1", 0), 4, 1, False),
        (("127.0.0.1", 1024), 4, 4, True),
        (("192.0.2.7", 40000), 100, 100, True),
        (("192.0.2.7", 40000), 100, 101, False),  # never larger than the request
        (("192.0.2.7", 123), 100, 10, False),
        (("fe80::1%eth0", 40000, 0, 2), 10, 11, False),
        (("::ffff:192.0.2.7", 40000, 0, 0), 10, 11, False),
        (("2001:db8::1", 40000, 0, 0), 10, 10, True),
    ],
)
def test_the_reply_guard_table(
    addr: tuple[Any, ...], request_size: int, reply_size: int, allowed: bool
) -> None:
    from app.wire.replyguard import ReplyGuard

    guard = ReplyGuard(rate=100.0)
    assert guard.allow(addr, request_size, reply_size, 0.0) is allowed
    assert guard.dropped == (0 if allowed else 1)


def test_the_reply_guard_limits_each_outside_source_to_its_rate() -> None:
    from app.wire.replyguard import ReplyGuard

    guard = ReplyGuard(rate=100.0)
    victim, other, local = ("192.0.2.7", 5000), ("192.0.2.8", 5000), ("127.0.0.1", 5000)
    # A flood of 10,000 requests/s for 2 s: a burst of 100, then 100 per second.
    sent = {victim: 0, other: 0, local: 0}
    for i in range(20_000):
        now = i / 10_000
        for addr in (victim, local):
            sent[addr] += guard.allow(addr, 64, 64, now)
    assert 298 <= sent[victim] <= 300
    assert sent[local] == 20_000
    # Another source has its own bucket; a forgotten flow starts again full.
    assert all(guard.allow(other, 64, 64, 2.0) for _ in range(100))
    assert not guard.allow(other, 64, 64, 2.0)
    guard.forget(victim)
    assert guard.allow(victim, 64, 64, 2.0)
    assert len(guard) == 3
    assert ReplyGuard(rate=0.0).allow(victim, 64, 64, 0.0)  # 0: no rate limit


async def test_udp_echo_never_replies_larger_than_the_request() -> None:
    import random

    from tests.listener_fixtures import open_manager, start, udp_client

    rng = random.Random(10_000)
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo")
        with trio.fail_after(30), udp_client() as client:
            await client.connect(("127.0.0.1", listener.port))
            for i in range(10_000):
                request = rng.randbytes(rng.choice([0, 1, 28, rng.randint(0, 1400)]))
                await client.send(request)
                reply = await client.recv(65536)
                assert reply == request, i
    assert listener.bytes_out == listener.bytes_in
    assert listener.msgs_out == listener.msgs_in == 10_000


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a source port below 1024 needs root")
async def test_no_udp_replies_go_to_source_ports_below_1024() -> None:
    from tests.listener_fixtures import open_manager, start, udp_client

    async with open_manager() as manager:
        echo = await start(manager, "udp://127.0.0.1:0?mode=echo")
        respond = await start(
            manager, {"url": "udp://127.0.0.1:0?mode=respond", "default_reply": "ok"}
        )
        with trio.fail_after(10), udp_client() as privileged, udp_client() as normal:
            for port in range(1023, 600, -1):
                try:
                    await privileged.bind(("127.0.0.1", port))
                    break
                except OSError:
                    continue
            assert privileged.getsockname()[1] < 1024
            for listener in (echo, respond):
                target = ("127.0.0.1", listener.port)
                await privileged.sendto(b"amplify me", target)
                # Datagrams are handled in order: once the second is answered, the first
                # has been judged.
                await normal.sendto(b"hello there", target)
                assert (await normal.recvfrom(100))[0] in (b"hello there", b"ok")
                assert listener.msgs_in == 2
                assert listener.msgs_out == 1
                assert listener.to_dict()["reflection_dropped"] == 1
            with pytest.raises(BlockingIOError):
                privileged._sock.recv(100, socket.MSG_DONTWAIT)  # type: ignore[attr-defined]


async def test_udp_replies_to_an_outside_source_are_rate_limited_and_never_larger() -> None:
    from tests.listener_fixtures import open_manager, start, udp_client

    outside = local_non_loopback_ipv4()
    if outside is None:
        pytest.skip("this machine has no address besides loopback")
    async with open_manager() as manager:
        echo = await start(manager, "udp://127.0.0.1:0?mode=echo")
        respond = await start(
            manager, {"url": "udp://127.0.0.1:0?mode=respond", "default_reply": "ok"}
        )
        with trio.fail_after(20), udp_client() as client, udp_client() as local:
            # A source outside loopback: the machine's own address, sending over loopback.
            await client.bind((outside, 0))
            # The respond listener answers "ok" (2 bytes): to a 1-byte request that would
            # be amplification, to a 5-byte one it is not.
            await client.sendto(b"x", ("127.0.0.1", respond.port))
            await client.sendto(b"hello", ("127.0.0.1", respond.port))
            assert (await client.recvfrom(100))[0] == b"ok"
            assert respond.to_dict()["reflection_dropped"] == 1
            # A flood of 2,000 datagrams gets a burst of 100 replies, then 100 per second.
            t0 = trio.current_time()
            for i in range(2000):
                await client.sendto(b"flood %d" % i, ("127.0.0.1", echo.port))
                if i % 100 == 99:

                    def caught_up(sent: int = i + 1) -> bool:
                        return echo.msgs_in >= sent - 50

                    await wait_for(caught_up)
            await wait_for(lambda: echo.msgs_in + echo.errors >= 1990)
            elapsed = trio.current_time() - t0
            received = echo.msgs_in
            assert echo.msgs_out <= 100 + 100 * elapsed + 1
            assert echo.msgs_out >= 100
            assert echo.to_dict()["reflection_dropped"] == received - echo.msgs_out
            # A loopback client of the same listener is not limited.
            await local.connect(("127.0.0.1", echo.port))
            for i in range(500):
                await local.send(b"local %d" % i)
                assert await local.recv(100) == b"local %d" % i
