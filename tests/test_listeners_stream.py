"""The stream loop every TCP/TLS listener mode plugs into (app.listeners.stream), and the
UDP flow bookkeeping every UDP mode shares (app.listeners.udp.UdpFlows).

Sessions are fed synchronously; the loop runs over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest
import trio

from app.listeners.base import Listener, Mode
from app.listeners.modes import create_listener
from app.listeners.modes.echo import EchoSession
from app.listeners.modes.respond import RespondSession
from app.listeners.modes.sink import FixedFramer, ProbeSink, SinkSession
from app.listeners.modes.statsd import StatsdStream
from app.listeners.parse import parse_listener
from app.listeners.stream import Replies, StreamSession
from app.listeners.tcp import handle_tcp_socket, serve_tcp_listener
from app.listeners.udp import UdpFlows, bind_udp
from app.registry import Registry
from app.wire import probe
from app.wire.rules import FrameTooLongError, Responder, Rule
from app.wire.statsd import Aggregator
from tests.listener_fixtures import read_to_eof


def _feed(session: StreamSession, chunks: Sequence[bytes]) -> tuple[list[bytes], int]:
    """Feed ``chunks`` as the loop does (each in a reused buffer); the replies and count."""
    buf = bytearray(max(len(chunk) for chunk in chunks))
    view = memoryview(buf)
    replies: list[bytes] = []
    for chunk in chunks:
        buf[: len(chunk)] = chunk
        # Copied at once: a reply may be a view of the buffer the next read overwrites.
        replies += [bytes(reply) for reply in session.receive(view, len(chunk))]
    session.close()
    return replies, session.messages


# --- sessions fed synchronously ------------------------------------------------------


def test_an_echo_session_answers_every_read_with_itself() -> None:
    assert _feed(EchoSession(), [b"one", b"two!", b"x"]) == ([b"one", b"two!", b"x"], 3)


def test_a_sink_session_answers_nothing_and_counts_reads_or_frames() -> None:
    assert _feed(SinkSession(ProbeSink(), None), [b"abc", b"defgh"]) == ([], 2)
    sink = ProbeSink()
    frames = b"".join(probe.encode(7, 1, seq, 0) + b"." * 4 for seq in range(3))
    chunks = [frames[i : i + 5] for i in range(0, len(frames), 5)]
    session = SinkSession(sink, FixedFramer(sink, probe.HEADER_SIZE + 4))
    assert _feed(session, chunks) == ([], 3)
    assert sink.probes == 3


@pytest.mark.parametrize(
    ("framing", "chunks", "replies", "messages"),
    [
        ("line", [b"PING\nPI", b"NG\nnope\n"], [b"PONG\n", b"PONG\n"], 3),
        ("line", [b"PING"], [], 0),
        ("read", [b"PING", b"PING\n"], [b"PONG\n"], 2),
    ],
)
def test_a_respond_session_answers_messages_by_its_rules(
    framing: str, chunks: list[bytes], replies: list[bytes], messages: int
) -> None:
    responder = Responder([Rule(match="exact", pattern="PING", reply="PONG\\n")])
    session = RespondSession(responder, framing, 64, clock=lambda: 0.0)
    assert _feed(session, chunks) == (replies, messages)


def test_a_statsd_session_counts_reads_and_aggregates_lines_at_eof_too() -> None:
    aggregator = Aggregator()
    session = StatsdStream(aggregator, 64)
    assert _feed(session, [b"a:1|c\nb:", b"2|c\na:3|c"]) == ([], 2)
    counters = aggregator.current(0.0)["counters"]
    assert (counters["a"]["value"], counters["b"]["value"]) == (4, 2)


def test_a_session_refuses_a_line_longer_than_its_limit() -> None:
    session = StatsdStream(Aggregator(), 8)
    with pytest.raises(FrameTooLongError):
        session.receive(memoryview(b"x" * 9), 9)
    assert session.messages == 1  # the read is counted even though its line is refused


# --- the loop over real sockets ------------------------------------------------------


async def _connected_pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType, object]:
    """A client socket and the server's accepted end, on 127.0.0.1."""
    lsock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with lsock:
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await client.connect(lsock.getsockname())
        server, remote = await lsock.accept()
    return client, server, remote


async def _recv_to_eof(sock: trio.socket.SocketType) -> bytes:
    data = b""
    while chunk := await sock.recv(65536):
        data += chunk
    return data


async def test_the_loop_closes_a_silent_connection_at_its_idle_deadline(
    autojump_clock: object,
) -> None:
    listener = create_listener("l1", parse_listener("tcp://127.0.0.1:0?mode=sink&idle_timeout=30"))
    registry = Registry()
    client, server, remote = await _connected_pair()
    with client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_tcp_socket, listener, registry, server, remote)
            await trio.sleep(20)
            await client.send(b"ping")  # traffic moves the deadline
            t0 = trio.current_time()
            assert await _recv_to_eof(client) == b""  # the server closed the connection
            assert trio.current_time() - t0 == pytest.approx(30)
    assert (listener.idle_closed, listener.errors) == (1, 0)
    assert (listener.bytes_in, listener.msgs_in) == (4, 1)
    assert len(registry) == 0


async def test_the_loop_sends_replies_and_counts_both_ways() -> None:
    spec = parse_listener(
        {
            "url": "tcp://127.0.0.1:0?mode=respond",
            "rules": [{"match": "exact", "pattern": "PING", "reply": "PONG\\n"}],
        }
    )
    listener = create_listener("l1", spec)
    registry = Registry()
    client, server, remote = await _connected_pair()
    with trio.fail_after(5), client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_tcp_socket, listener, registry, server, remote)
            await client.send(b"PING\nPING\nother\n")
            client.shutdown(socket.SHUT_WR)
            assert await _recv_to_eof(client) == b"PONG\n" * 2
    assert (listener.bytes_in, listener.msgs_in) == (16, 3)
    assert (listener.bytes_out, listener.msgs_out) == (10, 2)
    assert listener.errors == 0


class _FaultySession:
    """Echoes, except that it raises for the message ``boom``: a bug in a mode."""

    whole_reads = False

    def __init__(self) -> None:
        self.messages = 0

    def receive(self, view: memoryview, n: int) -> Replies:
        if bytes(view[:n]) == b"boom":
            raise RuntimeError("injected fault in a session")
        self.messages += 1
        return (view[:n],)

    def close(self) -> None:
        pass


class _FaultyMode(Mode):
    def open_session(self) -> _FaultySession:
        return _FaultySession()


async def _echo(port: int, payload: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(payload)
        await stream.send_eof()
        return await read_to_eof(stream)


async def test_a_connection_whose_session_raises_is_closed_and_counted_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener: Listener = create_listener("l1", parse_listener("tcp://127.0.0.1:0?mode=sink"))
    listener.mode = _FaultyMode(listener)
    registry = Registry()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tcp_listener, listener, registry)
            assert await _echo(port, b"before") == b"before"
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"boom")
                try:
                    assert await read_to_eof(stream) == b""  # closed, nothing echoed
                except trio.BrokenResourceError:
                    pass  # or reset: the server closed with our bytes unread
            assert await _echo(port, b"after") == b"after"
            assert len(registry) == 0
            nursery.cancel_scope.cancel()
    assert listener.errors == 1
    assert (listener.accepted, listener.msgs_in) == (3, 2)
    assert listener.connections == 0
    assert "injected fault in a session" in caplog.text


# --- UDP flows -----------------------------------------------------------------------


async def test_udp_flows_open_reject_and_forget_through_the_api() -> None:
    listener = create_listener("l1", parse_listener("udp://127.0.0.1:0?max_connections=1"))
    registry = Registry()
    with bind_udp("127.0.0.1", 0) as sock:
        flows = UdpFlows(listener, registry, sock)
        assert listener.reply_guard is flows.guard
        a, b = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
        flow = flows.open(a)
        assert flow is not None and flows.rows == {a: flow}
        assert flows.open(b) is None  # past max_connections
        assert (listener.connections, listener.accepted, listener.rejected) == (1, 1, 1)
        flows.reply(flow, b"hello", a)
        assert (flow.msgs_out, listener.bytes_out) == (1, 5)
        assert len(flows.guard) == 1
        assert registry.close_connection(flow.id)  # DELETE /api/connections/{id}
        assert flows.rows == {} and len(registry) == 0 and len(flows.guard) == 0
        assert (listener.connections, listener.closed_by_api) == (0, 1)
        again = flows.open(a)
        assert again is not None and again.id != flow.id
        flows.close_all()
        assert len(registry) == 0 and listener.connections == 0
