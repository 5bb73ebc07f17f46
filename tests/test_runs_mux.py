"""Pingpong flows served by one driver task (app.runs.mux): timeouts, loss, partial sends,
a close from the API and a fault in one flow, each against real sockets."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs import mux
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import wait_for


async def run_to_end(lab: Lab, spec: dict[str, object], limit: float = 30) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(limit):
        await run.done.wait()
    doc: dict[str, Any] = await lab.runs.get(run.id)
    return doc


async def test_tcp_replies_that_never_come_end_each_flow_as_a_timeout(
    lab: Lab, nursery: trio.Nursery
) -> None:
    received = [0]

    async def silent(stream: trio.SocketStream) -> None:
        async for data in stream:  # reads everything, answers nothing
            received[0] += len(data)

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    port = listeners[0].socket.getsockname()[1]
    doc = await run_to_end(
        lab, {"target": f"tcp://127.0.0.1:{port}", "connections": 2, "count": 6, "timeout": 0.3}
    )
    summary = doc["summary"]
    assert summary["errors_by_kind"] == {"timeout": 2}
    assert (summary["sent"], summary["received"]) == (2, 0)  # one in flight per flow
    assert summary["lost"] == 2  # given up on at the timeout: lost, not merely unanswered
    assert received[0] == 2 * 64


async def serve_silent(
    protocol: str, read: list[int], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A server on 127.0.0.1 that reads every message (64 bytes each) and never answers;
    ``read[0]`` is how many it read."""
    if protocol == "tcp":

        async def silent(stream: trio.SocketStream) -> None:
            bytes_read = 0
            async for data in stream:
                bytes_read += len(data)
                read[0] += bytes_read // 64
                bytes_read %= 64

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(silent, listeners)
    else:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            task_status.started(sock.getsockname()[1])
            while True:
                await sock.recv(65536)
                read[0] += 1


@pytest.mark.parametrize(("protocol", "sent"), [("tcp", 8), ("udp", 20)])
async def test_every_message_a_server_reads_and_never_answers_is_lost(
    nursery: trio.Nursery, lab: Lab, protocol: str, sent: int
) -> None:
    # TCP: each flow sends its window and gives up at the first timeout; UDP: each flow
    # sends its whole quota, a window at a time, every datagram lost at its deadline.
    read = [0]
    port = await nursery.start(serve_silent, protocol, read)
    doc = await run_to_end(
        lab,
        {
            "target": f"{protocol}://127.0.0.1:{port}",
            "connections": 2,
            "in_flight": 4,
            "count": 20,
            "timeout": 0.2,
        },
    )
    summary = doc["summary"]
    await wait_for(lambda: read[0] == sent)  # the server's own count: what was on the wire
    assert (summary["sent"], summary["received"], summary["lost"]) == (sent, 0, sent)
    assert summary["loss_pct"] == 100.0
    assert summary["errors_by_kind"] == ({"timeout": 2} if protocol == "tcp" else {})


async def test_udp_datagrams_without_a_reply_are_lost_and_the_flow_goes_on(
    nursery: trio.Nursery, lab: Lab
) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    seen = [0]

    async def every_other() -> None:
        with sock:
            while True:
                data, peer = await sock.recvfrom(65536)
                seen[0] += 1
                if seen[0] % 2:
                    await sock.sendto(data, peer)

    nursery.start_soon(every_other)
    port = sock.getsockname()[1]
    doc = await run_to_end(lab, {"target": f"udp://127.0.0.1:{port}", "count": 10, "timeout": 0.2})
    summary = doc["summary"]
    assert (summary["sent"], summary["received"], summary["lost"]) == (10, 5, 5)
    assert summary["errors"] == 0
    assert seen[0] == 10


async def test_messages_larger_than_the_socket_buffers_are_counted_exactly(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 MiB messages, 4 in flight per flow: sends are partial, and the echo can only send
    # its replies back while the flow reads them.
    original = mux.Multiplexer._watch_writable
    blocked = [0]

    def watch(self: mux.Multiplexer, flow: mux.MuxFlow, on: bool) -> None:
        blocked[0] += on
        original(self, flow, on)

    monkeypatch.setattr(mux.Multiplexer, "_watch_writable", watch)
    port = listener_port(lab, "tcp")
    size = 1_048_576
    doc = await run_to_end(
        lab,
        {
            "target": f"tcp://127.0.0.1:{port}",
            "connections": 2,
            "size": size,
            "in_flight": 4,
            "count": 24,
            "timeout": 10,
        },
    )
    summary = doc["summary"]
    assert doc["status"] == "finished"
    assert (summary["sent"], summary["received"], summary["errors"]) == (24, 24, 0)
    assert summary["bytes_sent"] == summary["bytes_received"] == 24 * size
    assert blocked[0] > 0  # the partial-send path was taken


async def test_closing_one_flow_from_the_api_leaves_the_others_running(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    run = await lab.runs.start(
        parse_run_spec({"target": f"tcp://127.0.0.1:{port}", "connections": 3, "duration": 30})
    )

    def run_rows() -> list[Any]:
        return [c for c in lab.registry if c.run_id == run.id]

    rows = await wait_for(lambda: len(run_rows()) == 3 and run_rows(), timeout=10)
    victim = rows[0]
    assert lab.registry.close_connection(victim.id)
    await wait_for(lambda: len(run_rows()) == 2, timeout=5)
    survivors = run_rows()
    before = [c.msgs_in for c in survivors]
    await wait_for(
        lambda: all(c.msgs_in > b + 100 for c, b in zip(survivors, before, strict=True)), timeout=5
    )
    assert run.status == "running"
    lab.runs.stop(run.id)
    with trio.fail_after(10):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "stopped"
    assert doc["summary"]["errors"] == 0
    assert doc["summary"]["connections_opened"] == 3
    assert not run_rows()


async def test_a_fault_while_serving_one_flow_ends_that_flow_only(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = mux.Multiplexer._on_tcp

    def faulty(self: mux.Multiplexer, flow: mux.MuxFlow, mask: int) -> None:
        if flow.flow_id == 3:
            raise RuntimeError("injected fault while serving flow 3")
        original(self, flow, mask)

    monkeypatch.setattr(mux.Multiplexer, "_on_tcp", faulty)
    port = listener_port(lab, "tcp")
    with caplog.at_level(logging.ERROR, logger="app.runs.engine"):
        doc = await run_to_end(
            lab, {"target": f"tcp://127.0.0.1:{port}", "connections": 10, "count": 1000}
        )
    summary = doc["summary"]
    assert doc["status"] == "finished"
    assert summary["errors_by_kind"] == {"internal": 1}
    assert summary["received"] == 900  # flow 3 sent its first message and got no further
    assert summary["sent"] == 901
    assert any("flow 3 failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert not [c for c in lab.registry if c.run_id == doc["id"]]
