"""The compiled UDP echo drain (app/native/_udpecho.c) itself, over real loopback sockets.

Skipped when it is not built or is turned off (``SOCKETLAB_NO_NATIVE=1``): the listener
tests of tests/test_udpecho_native.py hold both paths to the same counts.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.mmsg import decode_sockaddr
from app.native import native

_udpecho = native("udpecho")
pytestmark = pytest.mark.skipif(
    _udpecho is None, reason="the compiled drain is not built or is off"
)


@contextmanager
def pair(family: int = socket.AF_INET) -> Iterator[tuple[socket.socket, socket.socket, Any]]:
    """A non-blocking server socket, a client socket aimed at it, and a drain for the server."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    server = socket.socket(family, socket.SOCK_DGRAM)
    client = socket.socket(family, socket.SOCK_DGRAM)
    try:
        server.bind((host, 0))
        server.setblocking(False)
        client.bind((host, 0))
        client.connect(server.getsockname())
        client.settimeout(10)
        assert _udpecho is not None
        yield server, client, _udpecho.Echo(server.fileno(), family, 100)
    finally:
        server.close()
        client.close()


def drain_once(echo: Any, budget: int = 64, spins: int = 0) -> tuple[int, ...]:
    result: tuple[int, ...] = echo.drain(budget, spins)
    return result


def test_an_unknown_source_is_handed_back_and_served_in_c_once_known() -> None:
    assert _udpecho is not None
    with pair() as (_server, client, echo):
        client.send(b"first")
        status, read, *counts = drain_once(echo)
        assert (status, read, counts) == (_udpecho.HANDOFF, 1, [0, 0, 0, 0, 0])
        [(data, size, raw)] = echo.handoffs()
        assert (data, size) == (b"first", 5)
        assert decode_sockaddr(socket.AF_INET, raw) == client.getsockname()
        assert echo.take() == []
        echo.add(raw, 3)
        for payload in (b"a", b"bc", b"def"):
            client.send(payload)
            assert drain_once(echo)[:2] == (_udpecho.DRAINED, 1)
            assert client.recv(100) == payload
        assert echo.take() == [(3, 3, 6, 3, 6)]
        assert echo.take() == []  # taken counts are zeroed


def test_an_oversized_datagram_of_a_known_source_is_handed_back_at_its_real_size() -> None:
    assert _udpecho is not None
    with pair() as (_server, client, echo):
        client.send(b"x")
        drain_once(echo)
        [(_, _, raw)] = echo.handoffs()
        echo.add(raw, 0)
        client.send(b"y" * 500)
        client.send(b"z" * 100)  # max_size exactly: served
        status, read, msgs_in, bytes_in, msgs_out, _, errors = drain_once(echo)
        assert (status, read, msgs_in, bytes_in, msgs_out, errors) == (
            _udpecho.HANDOFF,
            2,
            1,
            100,
            1,
            0,
        )
        [(data, size, _)] = echo.handoffs()
        assert (size, data) == (500, b"y" * 101)  # the real size; max_size + 1 bytes kept
        assert client.recv(1000) == b"z" * 100
        assert echo.take() == [(0, 1, 100, 1, 100)]


def test_a_forgotten_source_is_handed_back_again_and_its_slot_reused() -> None:
    assert _udpecho is not None
    with pair() as (_server, client, echo):
        client.send(b"x")
        drain_once(echo)
        [(_, _, raw)] = echo.handoffs()
        echo.add(raw, 0)
        with pytest.raises(ValueError, match="already known"):
            echo.add(raw, 1)
        echo.forget(0)
        with pytest.raises(KeyError):
            echo.forget(0)
        client.send(b"again")
        assert drain_once(echo)[0] == _udpecho.HANDOFF
        assert [item[0] for item in echo.handoffs()] == [b"again"]
        echo.add(raw, 0)
        client.send(b"served")
        assert drain_once(echo)[:2] == (_udpecho.DRAINED, 1)
        assert client.recv(100) == b"served"


def test_a_drain_reads_at_most_its_budget_and_many_flows_stay_apart() -> None:
    assert _udpecho is not None
    with pair() as (server, first, echo):
        clients = [first]
        for _ in range(40):  # enough to grow the table of known flows
            extra = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            extra.bind(("127.0.0.1", 0))
            extra.connect(server.getsockname())
            extra.settimeout(10)
            clients.append(extra)
        try:
            for client in clients:
                client.send(b"hello")
            raws: list[bytes] = []
            while len(raws) < len(clients):
                drain_once(echo)
                raws += [raw for _, _, raw in echo.handoffs()]
            for slot, raw in enumerate(raws):
                echo.add(raw, slot)
            for index, client in enumerate(clients):
                client.send(bytes([index]) * (index + 1))
            status, read, msgs_in, *_ = drain_once(echo, budget=10)
            assert (status, read, msgs_in) == (_udpecho.BUDGET, 10, 10)
            while drain_once(echo)[0] != _udpecho.DRAINED:
                pass
            for index, client in enumerate(clients):
                assert client.recv(100) == bytes([index]) * (index + 1)
            taken = sorted(echo.take())
            assert len(taken) == len(clients)
            for slot, msgs_in, bytes_in, msgs_out, bytes_out in taken:
                index = [decode_sockaddr(socket.AF_INET, r) for r in raws].index(
                    clients[slot].getsockname()
                )
                assert (msgs_in, bytes_in, msgs_out, bytes_out) == (1, index + 1, 1, index + 1)
        finally:
            for client in clients[1:]:
                client.close()


def test_ipv6_sources_are_known_by_their_whole_address() -> None:
    assert _udpecho is not None
    with pair(socket.AF_INET6) as (_server, client, echo):
        client.send(b"six")
        drain_once(echo)
        [(_, _, raw)] = echo.handoffs()
        assert len(raw) == 28
        assert decode_sockaddr(socket.AF_INET6, raw)[:2] == client.getsockname()[:2]
        with pytest.raises(ValueError, match="family"):
            echo.add(raw[:16], 0)
        echo.add(raw, 0)
        client.send(b"six again")
        assert drain_once(echo)[:2] == (_udpecho.DRAINED, 1)
        assert client.recv(100) == b"six again"


def test_an_icmp_error_on_the_socket_is_reported_not_raised() -> None:
    assert _udpecho is not None
    with pair() as (server, client, echo):
        # Without IP_RECVERR an unconnected socket ignores ICMP errors; with it, a reply to
        # a closed port comes back as ECONNREFUSED on the next read.
        server.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
        client.send(b"x")
        drain_once(echo)
        [(_, _, raw)] = echo.handoffs()
        echo.add(raw, 0)
        client.send(b"to a closed port")
        client.close()
        assert drain_once(echo)[2:] == (1, 16, 1, 16, 0)
        status = drain_once(echo)[0]
        if status != _udpecho.ERROR:  # the ICMP error had not arrived yet: it has now
            status = drain_once(echo)[0]
        assert status == _udpecho.ERROR
        assert drain_once(echo)[0] == _udpecho.DRAINED  # reported once; serving goes on
        with pytest.raises(OSError) as caught:
            server.recv(10)
        assert caught.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


def test_an_echo_refuses_what_it_cannot_serve_and_use_before_it_is_made() -> None:
    assert _udpecho is not None
    blank = _udpecho.Echo.__new__(_udpecho.Echo)
    with pytest.raises(RuntimeError, match="not initialised"):
        blank.drain(1, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError, match="AF_INET"):
            _udpecho.Echo(sock.fileno(), socket.AF_UNIX, 100)
        with pytest.raises(ValueError, match="out of range"):
            _udpecho.Echo(sock.fileno(), socket.AF_INET, 0)
        echo = _udpecho.Echo(sock.fileno(), socket.AF_INET, 100)
        with pytest.raises(RuntimeError, match="already"):
            echo.__init__(sock.fileno(), socket.AF_INET, 100)
        with pytest.raises(ValueError, match="family"):
            echo.add(b"\0" * 16, 0)  # AF_UNSPEC
        with pytest.raises(ValueError, match="slot"):
            raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 9) + bytes(12)
            echo.add(raw, 1 << 30)
