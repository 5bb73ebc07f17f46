"""The kernel's view of a TCP connection: Linux ``TCP_INFO``, read and parsed.

Theory of operation: :func:`parse` turns the bytes ``getsockopt(IPPROTO_TCP, TCP_INFO)``
returns into a :class:`TcpSample` (no I/O, so tests feed it captured bytes). The kernel
copies ``min(asked, sizeof(struct tcp_info))`` bytes, and the struct only ever grew at its
end, so an older kernel gives a shorter buffer: a field that lies past its end is ``None``,
and :func:`missing_reason` says which kernel added it. :func:`sample` is the one system call.

:func:`refresh` samples one connection row and adds the growth of its cumulative counters
(retransmitted segments and bytes) to the :class:`TcpSums` the row reports to (the lab's
per-direction totals, a run's totals). Who calls it decides the cost: the dashboard's rows
on screen, the connections API's page, a run's flows once a second, and every connection
once at close; never per message. One sample is a system call and an unpack, about 3 µs,
so a page of 100 rows costs about 0.3 ms a tick whatever the number of connections.

Where there is no ``TCP_INFO`` (not Linux, a UDP flow, a closed socket) the figures are
``None`` and :data:`UNSUPPORTED` or the row's reason says why.
"""

from __future__ import annotations

import functools
import socket as stdsocket
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

TCP_INFO: int | None = getattr(stdsocket, "TCP_INFO", None)
UNSUPPORTED: str | None = (
    None if TCP_INFO is not None else "this platform has no TCP_INFO (Linux only)"
)
NOT_TCP = "a UDP flow has no kernel TCP state"
NOT_SAMPLED = "not sampled yet: the kernel's figures are read for rows someone looks at"

# Bytes asked of the kernel: the whole struct up to tcpi_reord_seen (Linux 4.19+).
_ASK = 232

# (offset, struct code, the Linux release that added it) of each field read, in struct
# tcp_info (include/uapi/linux/tcp.h); the release goes into the reason a short struct gives.
_LAYOUT: dict[str, tuple[int, str, str]] = {
    "state": (0, "B", "2.6"),
    "retrans": (36, "I", "2.6"),
    "unacked": (24, "I", "2.6"),
    "lost": (32, "I", "2.6"),
    "srtt_us": (68, "I", "2.6"),
    "rttvar_us": (72, "I", "2.6"),
    "snd_cwnd": (80, "I", "2.6"),
    "reordering": (88, "I", "2.6"),
    "total_retrans": (100, "I", "2.6.33"),
    "delivery_rate": (160, "Q", "4.9"),
    "bytes_retrans": (208, "Q", "4.19"),
}
_STRUCTS = {name: struct.Struct("=" + code) for name, (_, code, _) in _LAYOUT.items()}
# Every field in one unpack when the struct is whole (the common case): the fields in
# offset order, with pad bytes between them.
_ORDER = sorted(_LAYOUT, key=lambda name: _LAYOUT[name][0])


def _whole_struct() -> tuple[struct.Struct, int]:
    fmt, at = "=", 0
    for name in _ORDER:
        offset, code, _ = _LAYOUT[name]
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt), at


_WHOLE, _WHOLE_SIZE = _whole_struct()

# Linux's TCP states (include/net/tcp_states.h), as ss names them.
STATES = (
    None,
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
)


class TcpSample(NamedTuple):
    """One reading of ``TCP_INFO`` in the kernel's units; ``None`` where the struct is short."""

    state: int | None
    srtt_us: int | None
    rttvar_us: int | None
    retrans: int | None
    total_retrans: int | None
    lost: int | None
    reordering: int | None
    snd_cwnd: int | None
    unacked: int | None
    delivery_rate: int | None  # bytes per second
    bytes_retrans: int | None
    size: int  # bytes the kernel gave


class TcpInfo(BaseModel):
    """The kernel's view of one TCP connection (Linux ``TCP_INFO``, as ``ss -ti`` shows it).

    Every figure is ``null`` where it is not known, and ``reason`` says why: not Linux, a
    UDP flow, a kernel too old for that field, or a row nobody has looked at yet.
    """

    model_config = ConfigDict(extra="forbid")

    state: str | None = Field(description="TCP state as ss names it (ESTAB, CLOSE-WAIT, ...)")
    srtt_ms: float | None = Field(description="smoothed round-trip time (ss rtt:SRTT/…), ms")
    rttvar_ms: float | None = Field(description="round-trip time variation (ss rtt:…/VAR), ms")
    retrans: int | None = Field(
        description="segments retransmitted and not yet acknowledged (ss retrans:N/…)"
    )
    total_retrans: int | None = Field(
        description="segments retransmitted over the connection's life (ss retrans:…/N)"
    )
    lost: int | None = Field(description="segments the kernel considers lost now (ss lost:)")
    reordering: int | None = Field(
        description="reordering the kernel tolerates, in segments (ss reordering:, 3 by default)"
    )
    snd_cwnd: int | None = Field(description="congestion window, in segments (ss cwnd:)")
    unacked: int | None = Field(description="segments sent and not yet acknowledged (ss unacked:)")
    delivery_bits_per_s: int | None = Field(
        description="the kernel's delivery-rate estimate, bits per second (ss delivery_rate)"
    )
    bytes_retrans: int | None = Field(
        description="bytes retransmitted over the connection's life (ss bytes_retrans:)"
    )
    sampled_at: float | None = Field(description="when the kernel was asked, Unix time")
    reason: str | None = Field(description="why figures are null; null when all are known")


FIELDS = tuple(name for name in TcpInfo.model_fields if name not in ("sampled_at", "reason"))


class SupportsGetsockopt(Protocol):
    """A socket the kernel can be asked about (a stdlib or a trio socket)."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def parse(data: bytes) -> TcpSample:
    """The fields of a ``struct tcp_info`` given as bytes; ``None`` for those past its end."""
    size = len(data)
    if size >= _WHOLE_SIZE:
        (
            state,
            unacked,
            lost,
            retrans,
            srtt,
            rttvar,
            cwnd,
            reordering,
            total,
            rate,
            bytes_retrans,
        ) = _WHOLE.unpack_from(data)
        return TcpSample(
            state,
            srtt,
            rttvar,
            retrans,
            total,
            lost,
            reordering,
            cwnd,
            unacked,
            rate,
            bytes_retrans,
            size,
        )
    values: dict[str, int | None] = {}
    for name, (offset, _, _) in _LAYOUT.items():
        unpacker = _STRUCTS[name]
        values[name] = (
            unpacker.unpack_from(data, offset)[0] if offset + unpacker.size <= size else None
        )
    return TcpSample(
        values["state"],
        values["srtt_us"],
        values["rttvar_us"],
        values["retrans"],
        values["total_retrans"],
        values["lost"],
        values["reordering"],
        values["snd_cwnd"],
        values["unacked"],
        values["delivery_rate"],
        values["bytes_retrans"],
        size,
    )


@functools.cache  # one kernel gives one size: computed once, not per row of every page
def missing_reason(size: int) -> str | None:
    """Why some fields of a struct of ``size`` bytes are ``None``; ``None`` when none are."""
    missing = [
        (name, since)
        for name, (offset, code, since) in _LAYOUT.items()
        if offset + struct.calcsize("=" + code) > size
    ]
    if not missing:
        return None
    names = ", ".join(name for name, _ in missing)
    newest = max((since for _, since in missing), key=lambda v: tuple(map(int, v.split("."))))
    return f"this kernel's tcp_info is {size} bytes: {names} need Linux {newest} or later"


def sample(sock: SupportsGetsockopt) -> TcpSample | None:
    """Ask the kernel about ``sock``; ``None`` when it cannot say (no TCP_INFO, closed)."""
    if TCP_INFO is None:
        return None
    try:
        data = sock.getsockopt(stdsocket.IPPROTO_TCP, TCP_INFO, _ASK)
    except (OSError, ValueError):  # closed (EBADF, or a detached socket's -1)
        return None
    return parse(data)


def figures(tcp: TcpSample) -> tuple[str | float | int | None, ...]:
    """The values of :data:`FIELDS`, in that order and the API's units, for one sample."""
    state = tcp.state
    return (
        STATES[state] if state is not None and 0 < state < len(STATES) else None,
        None if tcp.srtt_us is None else tcp.srtt_us / 1000,
        None if tcp.rttvar_us is None else tcp.rttvar_us / 1000,
        tcp.retrans,
        tcp.total_retrans,
        tcp.lost,
        tcp.reordering,
        tcp.snd_cwnd,
        tcp.unacked,
        None if tcp.delivery_rate is None else tcp.delivery_rate * 8,
        tcp.bytes_retrans,
    )


_NO_FIGURES: tuple[None, ...] = (None,) * len(FIELDS)


def reason_for(protocol: str, tcp: TcpSample | None) -> str | None:
    """Why a row's figures are (partly) null, or ``None`` when every one is known."""
    if protocol == "udp":
        return NOT_TCP
    if UNSUPPORTED is not None:
        return UNSUPPORTED
    if tcp is None:
        return NOT_SAMPLED
    return missing_reason(tcp.size)


def columns(protocol: str, tcp: TcpSample | None) -> list[str | float | int | None]:
    """The feed's kernel columns of a row: :data:`FIELDS`, then the reason (see
    :func:`reason_for`)."""
    values = _NO_FIGURES if tcp is None else figures(tcp)
    return [*values, reason_for(protocol, tcp)]


def to_doc(protocol: str, tcp: TcpSample | None, sampled_at: float | None) -> dict[str, Any]:
    """The API's ``tcp`` document of a row (:class:`TcpInfo`); ``sampled_at`` in Unix time."""
    values = _NO_FIGURES if tcp is None else figures(tcp)
    doc: dict[str, Any] = dict(zip(FIELDS, values, strict=True))
    doc["sampled_at"] = None if tcp is None else sampled_at
    doc["reason"] = reason_for(protocol, tcp)
    return doc


class TcpSums:
    """Cumulative kernel counters summed over connections (a direction, a run).

    Only growth is added: a connection's first sample adds its totals so far, each later
    one what it grew by, so a sum never goes down and a connection sampled twice in one
    tick is not counted twice.
    """

    __slots__ = ("bytes_retrans", "connections", "retransmits")

    def __init__(self) -> None:
        self.retransmits = 0
        self.bytes_retrans = 0
        self.connections = 0  # connections sampled at least once

    def add(self, old: TcpSample | None, new: TcpSample) -> None:
        if old is None:
            self.connections += 1
            self.retransmits += new.total_retrans or 0
            self.bytes_retrans += new.bytes_retrans or 0
            return
        self.retransmits += max((new.total_retrans or 0) - (old.total_retrans or 0), 0)
        self.bytes_retrans += max((new.bytes_retrans or 0) - (old.bytes_retrans or 0), 0)


class Sampled(Protocol):
    """What :func:`refresh` reads and writes of a connection row (app.registry.Conn)."""

    tcp_sock: SupportsGetsockopt | None
    tcp: TcpSample | None
    tcp_at: float
    tcp_sums: tuple[TcpSums, ...]


def refresh(conn: Sampled, now: float, *, min_age: float = 0.0) -> bool:
    """Sample ``conn`` unless it was sampled less than ``min_age`` seconds before ``now``.

    Adds the growth of its counters to its sums. Returns whether any figure changed.
    """
    sock = conn.tcp_sock
    if sock is None or (conn.tcp is not None and now - conn.tcp_at < min_age):
        return False
    new = sample(sock)
    if new is None:
        return False
    old = conn.tcp
    conn.tcp_at = now
    if new == old:
        return False
    conn.tcp = new
    for sums in conn.tcp_sums:
        sums.add(old, new)
    return True


def refresh_all(conns: Iterable[Sampled], now: float, *, min_age: float = 0.0) -> bool:
    """:func:`refresh` each of ``conns``; whether any changed."""
    changed = False
    for conn in conns:
        if refresh(conn, now, min_age=min_age):
            changed = True
    return changed
