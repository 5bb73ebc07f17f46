"""Batched datagram I/O (app/mmsg.py) over both paths: recvmmsg/sendmmsg and the fallback.

The batch classes are checked against what Python's own ``recvfrom`` reports (sizes, bytes,
peer addresses in IPv4 and IPv6), and the UDP listeners that use them (echo, sink, StatsD)
against the exact datagrams a client sent: counts and bytes equal on both paths.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio

from app.listeners.base import Listener
from app.mmsg import ENV_NO_MMSG, MmsgBatch, PlainBatch, mmsg_available, open_batch
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start, udp_client

PATHS = ["mmsg", "plain"]
FAMILIES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
# Known sizes, the largest past the listeners' max_message_size below (counted oversized).
SIZES = [1, 7, 64, 200, 999, 1000, 1001, 1400, 8]
MAX_SIZE = 1000


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which datagram path the listeners started in this test use (the env var decides)."""
    name: str = request.param
    if name == "mmsg":
        if not mmsg_available():
            pytest.skip("libc has no recvmmsg here (or SOCKETLAB_NO_MMSG is set)")
    else:
        monkeypatch.setenv(ENV_NO_MMSG, "1")
    return name


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    family, host = request.param
    server = socket.socket(family, socket.SOCK_DGRAM)
    client = socket.socket(family, socket.SOCK_DGRAM)
    with server, client:
        server.bind((host, 0))
        server.setblocking(False)
        client.bind((host, 0))
        client.settimeout(5)
        yield server, client


def _batch(kind: str, sock: socket.socket, slots: int) -> MmsgBatch | PlainBatch:
    if kind == "mmsg":
        if not mmsg_available():
            pytest.skip("libc has no recvmmsg here")
        return MmsgBatch(sock, MAX_SIZE, slots)
    return PlainBatch(sock, MAX_SIZE, slots)


def _drain(batch: MmsgBatch | PlainBatch, expected: int) -> list[tuple[bytes, object, int]]:
    """Every datagram queued on the batch's socket, each echoed back: (bytes kept, address,
    size on the wire)."""
    got: list[tuple[bytes, object, int]] = []
    while len(got) < expected:
        count = batch.recv()
        assert count, f"the kernel had {len(got)} of {expected} datagrams"
        for i in range(count):
            n = batch.sizes[i]
            got.append((bytes(batch.views[i][: min(n, MAX_SIZE + 1)]), batch.addrs[i], n))
            batch.reply(i, min(n, MAX_SIZE + 1))
        assert batch.flush() == []
    assert batch.recv() == 0  # drained: nothing left, and no error
    return got


@pytest.mark.parametrize("pair", FAMILIES, indirect=True, ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", PATHS)
def test_a_batch_reads_what_was_sent_and_echoes_it_back(
    pair: tuple[socket.socket, socket.socket], kind: str
) -> None:
    server, client = pair
    batch = _batch(kind, server, slots=4)  # fewer slots than datagrams: several passes
    assert batch.recv() == 0
    with pytest.raises(ValueError):
        batch.reply(0, MAX_SIZE + 2)
    sent = [bytes([i % 251]) * size for i, size in enumerate(SIZES)]
    for payload in sent:
        client.sendto(payload, server.getsockname())
    got = _drain(batch, len(sent))
    # One byte past max_size is kept, so an oversized datagram is seen as such.
    assert [data for data, _, _ in got] == [p[: MAX_SIZE + 1] for p in sent]
    assert [size for _, _, size in got] == SIZES  # the real length, even of a cut one
    assert {addr for _, addr, _ in got} == {client.getsockname()}
    echoed = [client.recvfrom(4096) for _ in sent]
    assert [data for data, _ in echoed] == [p[: MAX_SIZE + 1] for p in sent]
    assert {addr for _, addr in echoed} == {server.getsockname()}


@pytest.mark.parametrize("pair", FAMILIES[:1], indirect=True, ids=["ipv4"])
@pytest.mark.parametrize("kind", PATHS)
def test_a_refused_reply_is_reported_and_the_others_are_sent(
    pair: tuple[socket.socket, socket.socket], kind: str
) -> None:
    """The middle of three replies goes to the broadcast address, which a socket without
    SO_BROADCAST may not send to (EACCES): it alone fails."""
    server, client = pair
    batch = _batch(kind, server, slots=8)
    for payload in (b"one", b"two", b"three"):
        client.sendto(payload, server.getsockname())
    assert batch.recv() == 3
    port = client.getsockname()[1]
    if isinstance(batch, MmsgBatch):
        raw = socket.inet_aton("255.255.255.255")
        batch._names_mv[32 + 4 : 32 + 8] = raw  # slot 1's sockaddr_in address
    else:
        batch.addrs[1] = ("255.255.255.255", port)
    for i in range(3):
        batch.reply(i, batch.sizes[i])
    assert batch.flush() == [1]
    assert [client.recv(100) for _ in range(2)] == [b"one", b"three"]


def test_the_env_var_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        monkeypatch.setenv(ENV_NO_MMSG, "1")
        assert not mmsg_available()
        assert isinstance(open_batch(sock, MAX_SIZE), PlainBatch)
        monkeypatch.delenv(ENV_NO_MMSG)
        if mmsg_available():
            assert isinstance(open_batch(sock, MAX_SIZE), MmsgBatch)


# --- the listeners over both paths: counts equal what was sent ---------------------------

BURST = 16  # datagrams in flight at once: well within a default receive buffer


async def _send_known(listener: Listener, family: int, host: str, rounds: int) -> list[int]:
    """Send SIZES ``rounds`` times from two clients, a burst at a time, each burst waited for
    (the listener has counted it) so the kernel never drops one; returns the sizes sent."""
    sent: list[int] = []
    with udp_client(family) as a, udp_client(family) as b:
        await a.bind((host, 0))
        await b.bind((host, 0))
        target = (host, listener.port)
        sizes = SIZES * rounds
        for start_at in range(0, len(sizes), BURST):
            for k, size in enumerate(sizes[start_at : start_at + BURST]):
                await (a if k % 2 else b).sendto(bytes([size % 251]) * size, target)
                sent.append(size)
            await wait_for(lambda: listener.msgs_in == len(sent), timeout=20)
    return sent


@pytest.mark.parametrize(("family", "host"), FAMILIES, ids=["ipv4", "ipv6"])
async def test_udp_echo_counts_equal_what_was_sent(path: str, family: int, host: str) -> None:
    async with open_manager() as manager:
        spec = f"udp://{'[::1]' if family == socket.AF_INET6 else host}:0?mode=echo"
        listener = await start(manager, f"{spec}&max_message_size={MAX_SIZE}")
        with udp_client(family) as client, trio.fail_after(30):
            await client.bind((host, 0))
            sizes = SIZES * 20
            replies: list[int] = []
            for start_at in range(0, len(sizes), BURST):
                burst = sizes[start_at : start_at + BURST]
                for size in burst:
                    await client.sendto(bytes([size % 251]) * size, (host, listener.port))
                for _ in [s for s in burst if s <= MAX_SIZE]:
                    replies.append(len(await client.recv(4096)))
        fit = [s for s in sizes if s <= MAX_SIZE]
        assert sorted(replies) == sorted(fit)
        assert listener.msgs_in == len(sizes)
        assert listener.bytes_in == sum(sizes)
        assert listener.oversized == len(sizes) - len(fit)
        assert listener.msgs_out == len(fit)
        assert listener.bytes_out == sum(fit)
        assert listener.errors == 0
        assert listener.connections == 1
        (flow,) = [c for c in manager.registry if c.listener_id == listener.id]
        assert (flow.msgs_in, flow.bytes_in) == (len(sizes), sum(sizes))
        assert (flow.msgs_out, flow.bytes_out) == (len(fit), sum(fit))


async def test_udp_sink_counts_equal_what_was_sent(path: str) -> None:
    async with open_manager() as manager:
        listener = await start(manager, f"udp://127.0.0.1:0?mode=sink&max_message_size={MAX_SIZE}")
        sent = await _send_known(listener, socket.AF_INET, "127.0.0.1", rounds=20)
        assert listener.msgs_in == len(sent)
        assert listener.bytes_in == sum(sent)
        assert listener.oversized == sum(1 for s in sent if s > MAX_SIZE)
        assert listener.msgs_out == 0
        assert listener.connections == 2
        flows = [c for c in manager.registry if c.listener_id == listener.id]
        assert sum(c.msgs_in for c in flows) == len(sent)
        assert sum(c.bytes_in for c in flows) == sum(sent)


async def test_udp_statsd_counts_every_metric_on_both_paths(path: str) -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        mode = listener.mode
        lines = [f"speed.c{i % 7}:{i}|c".encode() for i in range(600)]
        with udp_client() as client, trio.fail_after(30):
            for start_at in range(0, len(lines), BURST):
                for line in lines[start_at : start_at + BURST]:
                    await client.sendto(line, ("127.0.0.1", listener.port))
                done = min(start_at + BURST, len(lines))

                def counted(done: int = done) -> bool:
                    return listener.msgs_in == done

                await wait_for(counted, timeout=20)
        assert listener.msgs_in == len(lines)
        assert listener.bytes_in == sum(map(len, lines))
        statsd = await wait_for(
            lambda: (doc := mode.details()["statsd"])["metrics_received"] == len(lines) and doc
        )
        assert statsd["bad_lines"] == 0
        assert statsd["backlog_drops"] == 0


async def test_a_flood_is_answered_in_batches_with_exact_counts(path: str) -> None:
    """Datagrams sent without yielding to the listener pile up in the kernel, so its next
    reads fill every slot: the flood path (replies queued, one sendmmsg per batch)."""
    sizes = [1 + (i * 37) % 200 for i in range(150)]
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client, trio.fail_after(30):
            client.bind(("127.0.0.1", 0))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            for size in sizes:  # no await in between: the listener cannot read meanwhile
                client.sendto(bytes([size % 251]) * size, ("127.0.0.1", listener.port))
            client.setblocking(False)
            replies: list[bytes] = []
            while len(replies) < len(sizes):
                await trio.lowlevel.wait_readable(client)
                replies.append(client.recv(4096))
        assert sorted(map(len, replies)) == sorted(sizes)
        assert (listener.msgs_in, listener.bytes_in) == (len(sizes), sum(sizes))
        assert (listener.msgs_out, listener.bytes_out) == (len(sizes), sum(sizes))
        assert listener.errors == 0
