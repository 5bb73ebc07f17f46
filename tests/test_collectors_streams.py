"""Whatever a TCP client sends a collector, in whatever chunks, the connection's error
boundary sees no error: bytes become messages (received or bad), an overlong frame ends the
connection as ``oversized``, a broken octet count as one bad line. Driven through the real
per-connection path (app/listeners/tcp.py) over trio's in-memory streams."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from app.listeners.modes import create_listener
from app.listeners.modes.collector import CollectorMode
from app.listeners.parse import parse_listener
from app.listeners.tcp import handle_tcp_stream
from app.registry import Registry

_chunks = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\n", b"12 ", b"<13>1 - - - - - - x", b"m f=1\n", b"a.b 1 2\n"]),
    ),
    max_size=12,
)


async def _serve(mode_name: str, chunks: list[bytes]) -> CollectorMode:
    spec = parse_listener(f"tcp://127.0.0.1:0?mode={mode_name}&max_message_size=48")
    listener = create_listener("l1", spec)
    mode = listener.mode
    assert isinstance(mode, CollectorMode)
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                handle_tcp_stream,
                listener,
                Registry(),
                server,
                ("127.0.0.1", 1),
                ("127.0.0.1", 2),
            )
            try:
                for chunk in chunks:
                    await client.send_all(chunk)
                await client.send_stream.aclose()
            except trio.BrokenResourceError:
                pass  # the collector ended the connection (an overlong frame)
    assert listener.errors == 0
    # Every frame is received, bad, or blank (a comment): never counted twice. A broken
    # octet count is one bad line more than the frames cut.
    assert mode.received + mode.bad_lines <= listener.msgs_in + 1
    return mode


@pytest.mark.parametrize("mode_name", ["influx", "graphite", "syslog"])
def test_any_stream_is_taken_without_an_error(mode_name: str) -> None:
    @settings(max_examples=60)
    @given(_chunks)
    def check(chunks: list[bytes]) -> None:
        trio.run(_serve, mode_name, chunks)

    check()


def test_a_stream_cut_anywhere_is_read_the_same() -> None:
    stream = b'm,t=a\\ b f=1i,s="x y" 1\nn g=2\nbad\n'

    @settings(max_examples=60)
    @given(st.lists(st.integers(1, 10), max_size=10))
    def check(sizes: list[int]) -> None:
        chunks, start = [], 0
        for size in sizes:
            chunks.append(stream[start : start + size])
            start += size
        chunks.append(stream[start:])
        mode = trio.run(_serve, "influx", chunks)
        assert (mode.received, mode.bad_lines) == (2, 1)

    check()
