"""Who pays for TCP_INFO: only the rows someone looks at are read, and every row at its close.

The sockets here count the kernel calls made on them (each answers with a captured
``tcp_info``), so the cost is counted in calls, not timed.
"""

from __future__ import annotations

import socket

import pytest

from app.connview import ConnRow, ConnView, ConnWindow, Sampler
from app.registry import Conn, Registry
from app.tcpinfo import TCP_INFO, parse, refresh_all
from tests.test_tcpinfo import LOSSY

pytestmark = pytest.mark.skipif(TCP_INFO is None, reason="the platform has no TCP_INFO")


class CountingSocket:
    """Answers TCP_INFO with a capture whose total retransmits can be set; counts calls."""

    def __init__(self, total_retrans: int = 0) -> None:
        self.calls = 0
        self.total_retrans = total_retrans

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes:
        assert (level, optname) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        self.calls += 1
        data = bytearray(LOSSY[:buflen])
        data[100:104] = self.total_retrans.to_bytes(4, "little")
        return bytes(data)


def opened(
    registry: Registry, n: int, *, listener_id: str | None = None, run_id: str | None = None
) -> list[tuple[Conn, CountingSocket]]:
    out = []
    for i in range(n):
        sock = CountingSocket()
        conn = registry.open(
            "tcp",
            ("127.0.0.1", 9000),
            ("127.0.0.1", 20000 + i),
            listener_id=listener_id,
            run_id=run_id,
            sock=sock,
        )
        out.append((conn, sock))
    return out


def sampler(now: float) -> Sampler:
    """The dashboard's hook (app.web.live): rows read this tick are not read again in it."""

    def sample(rows: list[ConnRow], max_age: float) -> bool:
        conns: list[Conn] = [row for row in rows if isinstance(row, Conn)]
        return refresh_all(conns, now, min_age=max(max_age, 0.125))

    return sample


async def test_a_dashboard_page_reads_only_its_rows_once_per_tick(autojump_clock: object) -> None:
    registry = Registry()
    conns = opened(registry, 1000, listener_id="l1")
    window = ConnWindow(ConnView(limit=100))
    message = window.update(registry, len(registry), 0.0, sampler(1.0))
    assert message is not None
    on_page = set(message["ids"])
    assert len(on_page) == 100
    calls = {conn.id: sock.calls for conn, sock in conns}
    assert sum(calls.values()) == 100
    assert all(calls[conn_id] == 1 for conn_id in on_page)
    # The next tick reads the same rows again; nothing changed, so nothing is sent.
    assert window.sample(registry.get, sampler(2.0)) is False
    assert sum(sock.calls for _, sock in conns) == 200
    # A row on the page retransmitted: the page must go out again, with that row only.
    _, sock = conns[5]
    sock.total_retrans = 99
    assert window.sample(registry.get, sampler(3.0)) is True
    message = window.update(registry, len(registry), 0.0, sampler(3.0))
    assert message is not None
    (row,) = message["rows"]
    assert dict(zip(message["cols"], row, strict=True))["total_retrans"] == 99


async def test_sorting_by_a_kernel_column_reads_every_match_at_most_once_per_age(
    autojump_clock: object,
) -> None:
    registry = Registry()
    conns = opened(registry, 300, listener_id="l1")
    conns[42][1].total_retrans = 7
    window = ConnWindow(ConnView(limit=10, sort="total_retrans", desc=True))
    message = window.update(registry, len(registry), 0.0, sampler(1.0))
    assert message is not None
    assert message["ids"][0] == conns[42][0].id
    assert sum(sock.calls for _, sock in conns) == 300
    # A second later the page's rows are read again, the others are young enough.
    window.update(registry, len(registry), 0.0, sampler(2.0))
    assert sum(sock.calls for _, sock in conns) == 300 + 10


async def test_every_row_is_read_at_close_into_its_directions_sums(
    autojump_clock: object,
) -> None:
    registry = Registry()
    inbound = opened(registry, 3, listener_id="l1")
    outbound = opened(registry, 2, run_id="r1")
    for i, (_, sock) in enumerate(inbound + outbound):
        sock.total_retrans = i + 1
    for conn, _ in inbound + outbound:
        registry.close(conn)
    assert [sock.calls for _, sock in inbound + outbound] == [1] * 5
    assert (registry.tcp_inbound.retransmits, registry.tcp_inbound.connections) == (6, 3)
    assert (registry.tcp_outbound.retransmits, registry.tcp_outbound.connections) == (9, 2)
    # Closed rows are not read again, nor are UDP flows (no socket to ask).
    udp = registry.open("udp", ("127.0.0.1", 1), ("127.0.0.1", 2), listener_id="l1")
    assert registry.detail(udp.id) is not None
    assert registry.tcp_inbound.connections == 3
    assert parse(LOSSY).total_retrans == 18
