"""The UDP echo's hand-offs between the compiled drain (app/native/_udpecho.c) and Python.

These go through a listener and run both ways (``make test`` runs this file again with
``SOCKETLAB_NO_NATIVE=1 SOCKETLAB_NO_MMSG=1``): a new source, an oversized datagram, a
close from the API, an idle timeout, a source outside loopback (a network namespace) and a
third-party sender (socat) leave the same exact counts on either path. The C object itself
is tested in tests/test_udpecho_c.py.
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
from pathlib import Path

import trio

from app.listeners.base import Listener
from app.listeners.udp import read_kernel_drops
from app.listeners.udpecho import KnownFlows
from app.mmsg import mmsg_available
from app.native import native
from app.registry import Conn, Registry
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start
from tests.netns import in_ns, ip, namespace, needs_netns

_udpecho = native("udpecho")
REPO = Path(__file__).resolve().parent.parent


def _udp_listener_state(listener: Listener) -> KnownFlows | None:
    """The compiled drain's table of known flows of ``listener``, when it serves one."""
    for obj in gc.get_objects():
        if isinstance(obj, KnownFlows) and any(
            flow is not None and flow.listener_id == listener.id for flow in obj.by_slot
        ):
            return obj
    return None


def _flow_of(listener: Listener, rows: Registry, sock: trio.socket.SocketType) -> Conn:
    local = f"127.0.0.1:{sock.getsockname()[1]}"
    [flow] = [c for c in rows if c.remote == local and c.listener_id == listener.id]
    return flow


async def test_new_sources_open_flows_whose_counts_stay_exact_per_flow() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo")
        socks = [trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            with trio.fail_after(20):
                for sock in socks:
                    await sock.connect(("127.0.0.1", listener.port))
                for rounds, sock in enumerate(socks, start=1):
                    for k in range(rounds * 10):
                        payload = bytes([k % 256]) * (rounds * 7)
                        await sock.send(payload)
                        assert await sock.recv(1000) == payload
            for rounds, sock in enumerate(socks, start=1):
                flow = _flow_of(listener, manager.registry, sock)
                n = rounds * 10
                assert (flow.msgs_in, flow.msgs_out) == (n, n)
                assert (flow.bytes_in, flow.bytes_out) == (n * rounds * 7, n * rounds * 7)
                assert flow.dirty  # touched: the dashboard's next snapshot shows it
            assert (listener.msgs_in, listener.msgs_out) == (60, 60)
            assert listener.bytes_in == listener.bytes_out == 7 * 10 + 14 * 20 + 21 * 30
            assert (listener.accepted, listener.connections, listener.errors) == (3, 3, 0)
            known = _udp_listener_state(listener)
            if _udpecho is None or not mmsg_available():
                assert known is None
            else:  # every flow is served in C after its first datagram
                assert known is not None
                assert len(known.slot_of) == 3
        finally:
            for sock in socks:
                sock.close()


async def test_an_oversized_datagram_of_a_served_flow_is_counted_and_serving_goes_on() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo&max_message_size=100")
        with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"a" * 10)
            assert await sock.recv(1000) == b"a" * 10
            await sock.send(b"b" * 101)
            await sock.send(b"c" * 100)
            assert await sock.recv(1000) == b"c" * 100  # the big one got no echo
            flow = _flow_of(listener, manager.registry, sock)
            assert (flow.msgs_in, flow.bytes_in, flow.msgs_out, flow.bytes_out) == (
                3,
                211,
                2,
                110,
            )
    assert (listener.oversized, listener.msgs_in, listener.msgs_out) == (1, 3, 2)


async def test_a_flow_closed_from_the_api_starts_a_new_row_with_its_next_datagram() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo")
        with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            for _ in range(5):
                await sock.send(b"12345")
                assert await sock.recv(100) == b"12345"
            old = _flow_of(listener, manager.registry, sock)
            assert manager.registry.close_connection(old.id)
            assert (listener.closed_by_api, listener.connections) == (1, 0)
            for _ in range(2):
                await sock.send(b"678")
                assert await sock.recv(100) == b"678"
            new = _flow_of(listener, manager.registry, sock)
    assert new is not old
    assert (old.msgs_in, old.bytes_in, old.msgs_out, old.bytes_out) == (5, 25, 5, 25)
    assert (new.msgs_in, new.bytes_in, new.msgs_out, new.bytes_out) == (2, 6, 2, 6)
    assert (listener.accepted, listener.msgs_in, listener.bytes_out) == (2, 7, 31)


async def test_a_served_flow_that_goes_quiet_is_forgotten_and_comes_back_as_a_new_one(
    autojump_clock: object,
) -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo&idle_timeout=10")
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            for _ in range(4):
                await sock.send(b"tick")
                assert await sock.recv(10) == b"tick"
            old = _flow_of(listener, manager.registry, sock)
            manager.registry.take_diff()  # what the lab's snapshot loop does
            await trio.sleep(20)
            assert (listener.connections, listener.idle_closed) == (0, 1)
            await sock.send(b"tock")
            assert await sock.recv(10) == b"tock"
            new = _flow_of(listener, manager.registry, sock)
    assert new is not old
    assert (old.msgs_in, old.msgs_out, new.msgs_in, new.msgs_out) == (4, 4, 1, 1)
    assert (listener.accepted, listener.msgs_in, listener.msgs_out) == (2, 5, 5)


async def test_counts_are_exact_against_socat_blasting_datagrams(tmp_path: Path) -> None:
    count, size = 3000, 64
    blob = tmp_path / "blob"
    # socat reads its file in blocks of -b bytes and sends each as one datagram.
    blob.write_bytes(b"".join(bytes([k % 256]) * size for k in range(count)))
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=echo")
        with trio.fail_after(30):
            await trio.run_process(
                ["socat", "-b", str(size), "-u", f"OPEN:{blob}", f"UDP:127.0.0.1:{listener.port}"]
            )
            sock = _sock_of(listener)
            assert sock is not None

            def seen() -> int:
                return listener.msgs_in + (read_kernel_drops(sock) or 0)

            await wait_for(lambda: seen() == count, timeout=20)
            drops = read_kernel_drops(sock) or 0
    assert listener.msgs_in + drops == count
    assert listener.bytes_in == size * listener.msgs_in
    # Every datagram read was answered (socat's socket takes them) or counted as an error.
    assert listener.msgs_out + listener.errors == listener.msgs_in
    assert listener.bytes_out == size * listener.msgs_out
    assert (listener.accepted, listener.oversized) == (1, 0)


def _sock_of(listener: Listener) -> socket.socket | None:
    """The listener's UDP socket (for its kernel drop counter)."""
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.type == socket.SOCK_DGRAM:
            try:
                if obj.getsockname()[1] == listener.port:
                    return obj
            except OSError:
                continue
    return None


# Run inside a namespace whose loopback also carries 10.9.0.1 (not a loopback address): the
# echo on 10.9.0.1 sees a source outside loopback, which the reply guard limits per reply.
_OUTSIDE = """
import json, socket, trio
from tests.listener_fixtures import open_manager, start

async def main():
    async with open_manager() as manager:
        listener = await start(manager, "udp://10.9.0.1:0?mode=echo&reply_rate=5")
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("10.9.0.1", 0))
            await sock.connect(("10.9.0.1", listener.port))
            for _ in range(30):
                await sock.send(b"ping")
            while listener.msgs_in < 30:
                await trio.sleep(0.01)
            # A reply larger than its request is never sent to such a source: an echo's
            # never is, so only the rate limits it.
            replies = 0
            with trio.move_on_after(1):
                while True:
                    assert await sock.recv(100) == b"ping"
                    replies += 1
        print(json.dumps({"msgs_in": listener.msgs_in, "msgs_out": listener.msgs_out,
                          "dropped": listener.reply_guard.dropped, "replies": replies}))

trio.run(main)
"""


@needs_netns
def test_a_source_outside_loopback_gets_replies_only_as_the_reply_guard_allows() -> None:
    with namespace("slue") as ns:
        ip("addr", "add", "10.9.0.1/32", "dev", "lo", ns=ns)
        out = subprocess.run(
            in_ns(ns, sys.executable, "-c", _OUTSIDE),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["msgs_in"] == 30
    # The bucket holds one second of the rate (5): the burst is answered, the rest refused.
    assert 5 <= doc["msgs_out"] <= 7
    assert doc["msgs_out"] + doc["dropped"] == 30
    assert doc["replies"] == doc["msgs_out"]
