"""The parts of multicast that need no network: the join structs, the options, the gathering.

The structs are compared with the C layout of ``<linux/in.h>`` written out in ctypes (its
own alignment rules, not this code's arithmetic); what the kernel makes of them is checked
in namespaces by tests/test_multicast.py.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from typing import Any

import pytest
import trio

from app.errors import SpecError
from app.listeners.multicast import (
    Membership,
    is_group,
    pack_group_req,
    pack_group_source_req,
)
from app.listeners.parse import parse_listener
from app.listeners.udp import bind_udp
from app.peerhttp import PeerUnreachableError
from app.runs.receivers import Receiver, gather
from app.runs.spec import parse_run_spec


class SockaddrStorage(ctypes.Structure):
    # struct __kernel_sockaddr_storage: 128 bytes, aligned like a pointer.
    _fields_ = [
        ("ss_family", ctypes.c_ushort),
        ("data", ctypes.c_ubyte * (128 - ctypes.sizeof(ctypes.c_ushort) - 8)),
        ("align", ctypes.c_void_p),
    ]


class GroupReq(ctypes.Structure):
    _fields_ = [("gr_interface", ctypes.c_uint32), ("gr_group", SockaddrStorage)]


class GroupSourceReq(ctypes.Structure):
    _fields_ = [
        ("gsr_interface", ctypes.c_uint32),
        ("gsr_group", SockaddrStorage),
        ("gsr_source", SockaddrStorage),
    ]


def test_group_req_has_the_c_layout() -> None:
    raw = pack_group_req(7, ipaddress.IPv4Address("239.1.2.3"))
    req = GroupReq.from_buffer_copy(raw)
    assert len(raw) == ctypes.sizeof(GroupReq)
    assert req.gr_interface == 7
    assert req.gr_group.ss_family == socket.AF_INET
    # sockaddr_in: port (2 bytes), then the address.
    assert bytes(req.gr_group.data[:6]) == b"\0\0" + bytes([239, 1, 2, 3])


def test_group_source_req_has_the_c_layout_for_ipv6() -> None:
    group, source = ipaddress.IPv6Address("ff35::1:3"), ipaddress.IPv6Address("fd51::1")
    raw = pack_group_source_req(3, group, source)
    req = GroupSourceReq.from_buffer_copy(raw)
    assert len(raw) == ctypes.sizeof(GroupSourceReq)
    assert req.gsr_interface == 3
    for sockaddr, address in ((req.gsr_group, group), (req.gsr_source, source)):
        assert sockaddr.ss_family == socket.AF_INET6
        # sockaddr_in6: port (2), flow info (4), then the address.
        assert bytes(sockaddr.data[6:22]) == address.packed


def test_a_group_is_told_from_a_unicast_address() -> None:
    assert is_group("239.1.2.3") and is_group("[ff15::1]") and is_group("224.0.0.1")
    assert not is_group("10.0.0.1") and not is_group("::1") and not is_group("example.org")
    # An IPv4-mapped multicast address is not a group an IPv6 socket can join.
    assert not is_group("::ffff:239.1.2.3")


def test_a_group_listener_round_trips_with_its_options() -> None:
    spec = parse_listener("udp://[ff15::1:2]:5000?mode=sink&iface=eth0&source=[fd00::1]")
    assert (spec.host, spec.iface, spec.source) == ("ff15::1:2", "eth0", "fd00::1")
    assert parse_listener(spec.url) == spec
    membership = Membership.of(spec.host, spec.iface, spec.source)
    assert membership is not None
    assert membership.family == socket.AF_INET6
    assert membership.source == ipaddress.IPv6Address("fd00::1")
    assert Membership.of("10.0.0.1", None, None) is None


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("udp://127.0.0.1:5000?iface=eth0", "iface"),
        ("udp://127.0.0.1:5000?source=10.0.0.1", "source"),
        ("tcp://239.1.2.3:5000", "url"),
        ("tcp://127.0.0.1:5000?iface=eth0", "iface"),
        ("udp://239.1.2.3:5000?mode=source", "mode"),
        ("udp://239.1.2.3:5000?source=fd00::1", "source"),
        ("udp://[ff15::1]:5000?source=10.0.0.1", "source"),
        ("udp://239.1.2.3:5000?source=239.1.2.4", "source"),
        ("udp://239.1.2.3:5000?source=0.0.0.0", "source"),
        ("udp://239.1.2.3:5000?source=nowhere", "source"),
        ("udp://239.1.2.3:5000?iface=a/b", "iface"),
        ("udp://239.1.2.3:5000?iface=" + "x" * 16, "iface"),
    ],
)
def test_a_group_option_that_cannot_apply_is_refused_by_name(url: str, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_listener(url)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "udp://10.0.0.1:5000", "pattern": "rate", "rate": 10, "ttl": 2}, "ttl"),
        ({"target": "udp://10.0.0.1:5000", "pattern": "burst", "iface": "eth0"}, "iface"),
        ({"target": "udp://[::1]:5000", "pattern": "burst", "loopback": False}, "loopback"),
        ({"target": "tcp://239.1.2.3:5000", "pattern": "rate", "rate": 10}, "target"),
        ({"target": "udp://239.1.2.3:5000", "pattern": "burst", "bidir": True}, "bidir"),
        ({"target": "udp://239.1.2.3:5000", "pattern": "rate", "rate": 1, "ttl": 256}, "ttl"),
        ({"target": "udp://239.1.2.3:5000", "pattern": "pingpong", "ttl": 2}, "ttl"),
        ({"target": "udp://239.1.2.3:5000", "pattern": "bulk", "rate": 1, "iface": "x"}, "iface"),
    ],
)
def test_a_run_option_that_cannot_apply_is_refused_by_name(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_run_spec(body)
    assert caught.value.field == field


def test_a_run_to_a_group_takes_its_options() -> None:
    spec = parse_run_spec(
        {
            "target": "udp://[ff15::1]:5000",
            "pattern": "burst",
            "ttl": 8,
            "iface": "eth0",
            "loopback": False,
        }
    )
    assert (spec.ttl, spec.iface, spec.loopback) == (8, "eth0", False)
    # Other patterns run with the kernel's defaults.
    assert parse_run_spec({"target": "udp://127.0.0.1:1"}).ttl is None


def _receiver(answers: list[dict[str, Any] | Exception | None], peer: str | None) -> Receiver:
    async def ask(run_tag: int) -> dict[str, Any] | None:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if answer == {"hang": True}:
            await trio.sleep_forever()
        return answer

    return Receiver(peer, "l1", ask)


def _counted(received: int) -> dict[str, Any]:
    return {"received": received, "duplicates": 0, "reordered": 0, "jitter_ms": 0.5, "lost": 0}


async def test_receivers_are_asked_until_they_have_everything(autojump_clock: object) -> None:
    late = _receiver([_counted(10), _counted(60), _counted(100)], "rx1")
    down = _receiver([PeerUnreachableError("peer rx2: connection refused")], "rx2")
    silent = _receiver([{"hang": True}], "rx3")
    short = _receiver([_counted(95)], None)
    start = trio.current_time()
    rows = await gather([late, down, silent, short], 0x1234, 100, start + 2.0)
    assert [row["peer"] for row in rows] == ["rx1", "rx2", "rx3", None]
    assert (rows[0]["received"], rows[0]["lost"], rows[0]["error"]) == (100, 0, None)
    assert rows[1]["received"] is None and "connection refused" in rows[1]["error"]
    assert rows[2]["received"] is None and rows[2]["error"] == "it did not answer in time"
    # Five never came: what it counted at the deadline, beside what was sent.
    assert (rows[3]["received"], rows[3]["lost"], rows[3]["loss_pct"]) == (95, 5, 5.0)
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_a_stopped_run_asks_each_receiver_once(autojump_clock: object) -> None:
    answers: list[dict[str, Any] | Exception | None] = [_counted(10), _counted(100)]
    start = trio.current_time()
    rows = await gather([_receiver(answers, "rx1")], 1, 100, start + 2.0, wait=False)
    assert (rows[0]["received"], rows[0]["lost"]) == (10, 90)
    assert trio.current_time() == start


@pytest.mark.parametrize("group", ["239.1.2.3", "ff15::1:2"])
def test_a_join_on_an_interface_that_does_not_exist_says_so(group: str) -> None:
    # Fails before anything is sent: the interface is looked up first.
    membership = Membership.of(group, "nosuch0", None)
    with pytest.raises(OSError, match="no network interface 'nosuch0'"):
        bind_udp(group, 0, None, membership)
