"""The pingpong multiplexer's compiled steady state (app/native/_pingpong.c,
app.runs.mux_native) against its Python twin: the same replies give the same figures, and
everything the engine hands back (the end of a stream, a reset, strays and duplicates, a
close from the API) ends as the Python code ends it.

Each run-level test runs both ways in one process: ``native`` (the engine, skipped when it
is not built or SOCKETLAB_NO_NATIVE=1) and ``python`` (the multiplexer told there is no
engine). The peers are real sockets on 127.0.0.1 whose own counts are the truth.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

import pytest
import trio
from hdrh.histogram import HdrHistogram

from app.lab import Lab
from app.native import native
from app.runs import mux
from app.runs.mux_native import PARTIAL, NativeLoop
from app.runs.muxflow import MuxFlow
from app.runs.spec import parse_run_spec
from app.runs.stats import new_histogram
from tests.conftest import listener_port
from tests.helpers import wait_for

ENGINE = native("pingpong")
needs_engine = pytest.mark.skipif(ENGINE is None, reason="the compiled engine is not built")
PATHS = [pytest.param("native", marks=needs_engine), "python"]
SIZE = 64


@pytest.fixture
def adopted(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The flow ids the engine has served (adopted) during the test."""
    ids: set[int] = set()
    original = NativeLoop.adopt

    def spy(self: NativeLoop, flow: MuxFlow) -> None:
        original(self, flow)
        if flow.native:
            ids.add(flow.flow_id)

    monkeypatch.setattr(NativeLoop, "adopt", spy)
    return ids


def use(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started from now on are served by ``path``."""
    if path == "python":
        monkeypatch.setattr(mux, "native", lambda name: None)
    else:
        monkeypatch.setattr(mux, "native", native)


async def run_to_end(lab: Lab, spec: dict[str, object]) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(60):
        await run.done.wait()
    doc: dict[str, Any] = await lab.runs.get(run.id)
    return doc


FIGURES = ("sent", "received", "bytes_sent", "bytes_received", "lost", "late", "duplicates")


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    summary = doc["summary"]
    out = {key: summary[key] for key in FIGURES}
    out["errors_by_kind"] = summary["errors_by_kind"]
    out["recorded"] = sum(count for _, count in summary["histogram"])
    return out


# --- the engine's own parts ------------------------------------------------------------


@needs_engine
def test_the_engine_records_each_value_in_hdrh_own_slot() -> None:
    values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 65_535, 10**6, 123_456_789]
    values += [2**k + d for k in range(11, 36) for d in (-1, 0, 1, 2**k // 3)]
    values += [59_999_999_999, 60_000_000_000, 61_000_000_000, 2**62]  # the last out of range
    ours = new_histogram()
    with select.epoll() as ep:
        assert ENGINE is not None
        engine = ENGINE.Engine(ep.fileno(), True, bytearray(64), ours.layout(), 0.1)
        engine.record(ours, values)
    library = HdrHistogram(1, 60_000_000_000, 3)  # the histogram a run makes, hdrh's own code
    for value in values:
        library.record_value(value)
    assert list(ours.counts) == list(library.counts)
    assert ours.total_count == library.total_count < len(values)
    assert (ours.min_value, ours.max_value) == (library.min_value, library.max_value)


@needs_engine
def test_the_engine_stamps_with_perf_counter_ns_clock() -> None:
    assert ENGINE is not None
    before = time.perf_counter_ns()
    stamp = ENGINE.clock_ns()
    assert before <= stamp <= time.perf_counter_ns()


# --- the same replies, the same figures ---------------------------------------------------


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize("in_flight", [1, 4])
async def test_the_same_replies_give_the_same_figures_both_ways(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, adopted: set[int], protocol: str, in_flight: int
) -> None:
    spec = {
        "target": f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}",
        "connections": 3,
        "count": 1200,
        "in_flight": in_flight,
        "size": SIZE,
        "timeout": 10,
    }
    results = {}
    for path in ("python", "native") if ENGINE is not None else ("python",):
        use(path, monkeypatch)
        adopted.clear()
        doc = await run_to_end(lab, spec)
        assert doc["status"] == "finished"
        results[path] = figures(doc)
        assert adopted == ({0, 1, 2} if path == "native" else set())
    expected: dict[str, Any] = {"sent": 1200, "received": 1200, "bytes_sent": 1200 * SIZE}
    expected |= {"bytes_received": 1200 * SIZE, "lost": 0, "late": 0, "duplicates": 0}
    expected |= {"errors_by_kind": {}, "recorded": 1200}
    for result in results.values():
        assert result == expected


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_rows_and_run_figures_agree_whenever_another_task_looks(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, adopted: set[int], path: str, protocol: str
) -> None:
    use(path, monkeypatch)
    port = listener_port(lab, protocol)
    # A timeout no loaded machine reaches: no reply is late (a late one is in the row's
    # counts but not a reply the run counts).
    spec = {"target": f"{protocol}://127.0.0.1:{port}", "connections": 4, "duration": 60}
    run = await lab.runs.start(parse_run_spec({**spec, "timeout": 30}))

    def rows() -> list[Any]:
        return [c for c in lab.registry if c.run_id == run.id]

    await wait_for(lambda: len(rows()) == 4 and min(c.msgs_in for c in rows()) > 500, 20)
    assert len(adopted) == (4 if path == "native" else 0)
    for _ in range(3):  # between two passes of the loop, every figure is whole
        stats = run.stats
        conns = rows()
        assert sum(c.msgs_in for c in conns) == stats.received
        assert sum(c.msgs_out for c in conns) == stats.sent
        assert sum(c.bytes_in for c in conns) == stats.bytes_received == SIZE * stats.received
        assert sum(c.bytes_out for c in conns) == stats.bytes_sent == SIZE * stats.sent
        assert stats.interval.get_total_count() <= stats.received
        assert all(0 <= c.msgs_out - c.msgs_in <= 1 for c in conns)  # one in flight each
        await trio.lowlevel.checkpoint()
    lab.runs.stop(run.id)
    with trio.fail_after(20):
        await run.done.wait()


# --- hand-backs -------------------------------------------------------------------------


async def serve_until(
    replies: int, how: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A TCP echo that answers ``replies`` messages of SIZE bytes, then, ``how``: ``close``
    (a FIN, and it reads on) or ``reset`` (an RST once the next message is in)."""

    async def echo(stream: trio.SocketStream) -> None:
        answered = 0
        buf = b""
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= SIZE and answered < replies:
                    await stream.send_all(buf[:SIZE])
                    buf = buf[SIZE:]
                    answered += 1
                if answered < replies:
                    continue
                if how == "close":
                    await stream.send_eof()
                    while await stream.receive_some(65536):
                        pass
                    return
                if buf:  # the message after the last reply is in: reset
                    linger = struct.pack("ii", 1, 0)
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(echo, listeners)


@pytest.mark.parametrize(("how", "kind"), [("close", "closed"), ("reset", "reset")])
async def test_a_stream_that_ends_mid_run_ends_its_flow_alike_both_ways(
    lab: Lab,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    adopted: set[int],
    how: str,
    kind: str,
) -> None:
    port = await nursery.start(serve_until, 300, how)
    spec = {"target": f"tcp://127.0.0.1:{port}", "count": 1000, "timeout": 10}
    results = {}
    for path in ("python", "native") if ENGINE is not None else ("python",):
        use(path, monkeypatch)
        adopted.clear()
        results[path] = figures(await run_to_end(lab, spec))
        assert adopted == ({0} if path == "native" else set())
    for result in results.values():
        assert result["errors_by_kind"] == {kind: 1}
        assert (result["sent"], result["received"], result["recorded"]) == (301, 300, 300)
        assert result["lost"] == 1  # the message the peer never answered
    assert len({str(r) for r in results.values()}) == 1


async def serve_udp_extras(
    every: int, log: dict[str, int], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A UDP echo that, after each reply to a request whose sequence number is ``10``
    modulo ``every``, sends that reply again and then a 10-byte stray datagram."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        while True:
            data, peer = await sock.recvfrom(65536)
            copies = [data]
            if struct.unpack_from("!Q", data, 12)[0] % every == 10:
                copies += [data, b"0123456789"]
            for copy in copies:
                await sock.sendto(copy, peer)
                log["datagrams"] += 1
                log["bytes"] += len(copy)


async def test_duplicates_and_strays_are_counted_alike_both_ways(
    lab: Lab, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, adopted: set[int]
) -> None:
    spec_of = {"count": 500, "size": SIZE, "timeout": 10}
    results = {}
    for path in ("python", "native") if ENGINE is not None else ("python",):
        use(path, monkeypatch)
        adopted.clear()
        log = {"datagrams": 0, "bytes": 0}
        port = await nursery.start(serve_udp_extras, 50, log)
        results[path] = figures(
            await run_to_end(lab, {"target": f"udp://127.0.0.1:{port}", **spec_of})
        )
        assert adopted == ({0} if path == "native" else set())
        # Every datagram the peer sent was read and counted as bytes: its log is the truth.
        assert results[path]["bytes_received"] == log["bytes"] == 500 * SIZE + 10 * (SIZE + 10)
    for result in results.values():
        assert (result["received"], result["duplicates"], result["late"]) == (500, 10, 0)
        assert result["recorded"] == 500


@pytest.mark.parametrize("path", PATHS)
async def test_a_close_from_the_api_ends_an_adopted_flow_only(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, adopted: set[int], path: str
) -> None:
    use(path, monkeypatch)
    port = listener_port(lab, "tcp")
    run = await lab.runs.start(
        parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "connections": 2, "duration": 60})
    )

    def rows() -> list[Any]:
        return [c for c in lab.registry if c.run_id == run.id]

    await wait_for(lambda: len(rows()) == 2 and min(c.msgs_in for c in rows()) > 200, 20)
    assert len(adopted) == (2 if path == "native" else 0)
    victim, survivor = rows()
    assert lab.registry.close_connection(victim.id)
    await wait_for(lambda: len(rows()) == 1, 10)
    before = survivor.msgs_in
    await wait_for(lambda: survivor.msgs_in > before + 200, 10)
    lab.runs.stop(run.id)
    with trio.fail_after(20):
        await run.done.wait()
    summary = run.summary()
    assert summary["errors"] == 0 and summary["lost"] == 0
    assert 0 <= summary["sent"] - summary["received"] <= 2  # in flight at the close or the stop
    assert summary["received"] == sum(count for _, count in summary["histogram"])


async def serve_small_window_echo(
    *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A TCP echo whose sockets have a 64 KiB receive buffer."""

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # the accepted ones inherit it
    await sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    task_status.started(sock.getsockname()[1])
    await trio.serve_listeners(echo, [trio.SocketListener(sock)])


async def test_a_send_the_kernel_takes_part_of_is_finished_by_python_both_ways(
    lab: Lab, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, adopted: set[int]
) -> None:
    # 1 MiB messages, 4 in flight, to an echo with a small receive buffer: the engine's
    # sends fill the socket buffers, and it hands the rest of each message to Python
    # (PARTIAL), which sends it when the socket is writable.
    codes: list[int] = []
    original = NativeLoop._handle

    def spy(self: NativeLoop, flow: MuxFlow, code: int, a: object, b: object) -> None:
        codes.append(code)
        original(self, flow, code, a, b)

    monkeypatch.setattr(NativeLoop, "_handle", spy)
    size = 1_048_576
    port = await nursery.start(serve_small_window_echo)
    spec = {
        "target": f"tcp://127.0.0.1:{port}",
        "size": size,
        "in_flight": 4,
        "count": 40,
        "timeout": 20,
    }
    for path in ("python", "native") if ENGINE is not None else ("python",):
        use(path, monkeypatch)
        adopted.clear()
        codes.clear()
        result = figures(await run_to_end(lab, spec))
        assert (result["sent"], result["received"], result["recorded"]) == (40, 40, 40)
        assert result["bytes_sent"] == result["bytes_received"] == 40 * size
        assert result["errors_by_kind"] == {}
        if path == "native":
            assert adopted == {0}
            assert PARTIAL in codes
