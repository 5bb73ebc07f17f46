"""Multicast sockets: a listener's group membership, and a sender's TTL, interface and loop.

Theory of operation: a multicast listener is a UDP socket bound to the group's address and
port, so it receives that group's datagrams only (binding the wildcard address would also
deliver other groups joined on the same port). Before the bind it sets ``SO_REUSEADDR`` and
``SO_REUSEPORT``, so several listeners (in this process or others) share one group and
port and each gets its own copy of every datagram, and turns ``IP_MULTICAST_ALL`` /
``IPV6_MULTICAST_ALL`` off, so it sees only the memberships it made itself. After the bind
it joins the group on one interface (by name, or the kernel's choice by route when none is
given): any-source with ``MCAST_JOIN_GROUP``, source-specific (RFC 4607: only datagrams
from ``source`` are delivered) with ``MCAST_JOIN_SOURCE_GROUP``. Those two protocol-
independent calls (RFC 3678) serve IPv4 and IPv6 alike.

Python's socket module has neither constant nor their structs, so they are written here
with the values of Linux's ``<linux/in.h>`` / ``<linux/in6.h>`` and packed with
:mod:`struct`::

    struct group_req        { __u32 gr_interface; struct sockaddr_storage gr_group; };
    struct group_source_req { __u32 gsr_interface; struct sockaddr_storage gsr_group;
                              struct sockaddr_storage gsr_source; };

``sockaddr_storage`` is 128 bytes aligned like ``unsigned long``, so on a 64-bit kernel 4
bytes of padding follow the interface index. The level is ``IPPROTO_IP`` on an IPv4 socket
and ``IPPROTO_IPV6`` on an IPv6 one.

A sender (:func:`configure_sender`) sets the TTL or hop limit of its datagrams
(``IP_MULTICAST_TTL`` / ``IPV6_MULTICAST_HOPS``; the kernel's default is 1: the local
link), the interface they leave by (``IP_MULTICAST_IF`` with a ``struct ip_mreqn`` naming
the interface index / ``IPV6_MULTICAST_IF``) and whether this host's own members get a copy
(``IP_MULTICAST_LOOP`` / ``IPV6_MULTICAST_LOOP``; on by default).

Error handling: a failed join (no such interface, no route for the group, a source of the
other family) is an ``OSError`` naming what failed; the listener manager turns it into the
listener's refusal.
"""

from __future__ import annotations

import errno
import ipaddress
import socket as stdsocket
import struct
from dataclasses import dataclass
from typing import Any

from app.errors import SpecError

__all__ = [
    "IPV6_MULTICAST_ALL",
    "IP_MULTICAST_ALL",
    "MCAST_JOIN_GROUP",
    "MCAST_JOIN_SOURCE_GROUP",
    "Membership",
    "check_group",
    "configure_sender",
    "group_address",
    "interface_index",
    "is_group",
    "pack_group_req",
    "pack_group_source_req",
]

# Linux values (<linux/in.h>): the same on every architecture.
MCAST_JOIN_GROUP = 42
MCAST_JOIN_SOURCE_GROUP = 46
IP_MULTICAST_ALL = 49
# <linux/in6.h>
IPV6_MULTICAST_ALL = 29

_SOCKADDR_STORAGE = 128
# sockaddr_storage is aligned like unsigned long (the size of a pointer on Linux).
_PAD = struct.calcsize("P") - 4

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def group_address(host: str) -> Address | None:
    """The multicast group ``host`` is, or None (a name, or a unicast address)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return address if address.is_multicast else None


def is_group(host: str) -> bool:
    """Whether ``host`` is a multicast group address (224.0.0.0/4, ff00::/8)."""
    return group_address(host) is not None


def check_group(host: str, protocol: str, mode: str, iface: str | None, source: str | None) -> None:
    """A listener's group options: a group is joined over UDP, by a mode that receives;
    ``iface`` and ``source`` apply to a group only, and ``source`` is a sender's unicast
    address of the group's family.

    Raises:
        SpecError: Naming the option (or ``url``) at fault.
    """
    group = group_address(host)
    if group is None:
        for name, value in (("iface", iface), ("source", source)):
            if value is not None:
                raise SpecError(
                    f"{name} applies to a listener on a multicast group "
                    "(udp://239.1.2.3:5000 or udp://[ff15::1]:5000)",
                    name,
                )
        return
    if protocol != "udp":
        raise SpecError(f"url: a multicast group ({group}) is joined over udp:// only", "url")
    if mode == "source":
        raise SpecError("mode: a source answers requests; a multicast group sends none", "mode")
    if source is None:
        return
    try:
        sender = ipaddress.ip_address(source)
    except ValueError:
        raise SpecError(f"source: {source!r} is not an address", "source") from None
    if sender.version != group.version or sender.is_multicast or sender.is_unspecified:
        raise SpecError(
            f"source: give a sender's unicast IPv{group.version} address "
            f"(the group {group} is IPv{group.version})",
            "source",
        )


def interface_index(name: str | None) -> int:
    """The index of interface ``name``; 0 (the kernel picks by route) for None.

    Raises:
        OSError: No interface of that name (``ENODEV``).
    """
    if name is None:
        return 0
    try:
        return stdsocket.if_nametoindex(name)
    except OSError:
        raise OSError(errno.ENODEV, f"no network interface {name!r}") from None


def _sockaddr(address: Address) -> bytes:
    """``address`` (port 0) as a ``struct sockaddr_storage``."""
    if isinstance(address, ipaddress.IPv4Address):
        # struct sockaddr_in: family (host order), port, address, 8 bytes of zero.
        raw = struct.pack("=H", stdsocket.AF_INET) + struct.pack("!H4s", 0, address.packed)
    else:
        # struct sockaddr_in6: family, port, flow info, address, scope id.
        raw = struct.pack("=H", stdsocket.AF_INET6) + struct.pack("!HI16s", 0, 0, address.packed)
        raw += struct.pack("=I", 0)
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def pack_group_req(ifindex: int, group: Address) -> bytes:
    """A ``struct group_req`` for ``MCAST_JOIN_GROUP``."""
    return struct.pack("=I", ifindex) + b"\0" * _PAD + _sockaddr(group)


def pack_group_source_req(ifindex: int, group: Address, source: Address) -> bytes:
    """A ``struct group_source_req`` for ``MCAST_JOIN_SOURCE_GROUP``."""
    return struct.pack("=I", ifindex) + b"\0" * _PAD + _sockaddr(group) + _sockaddr(source)


def _level(family: int) -> int:
    return stdsocket.IPPROTO_IPV6 if family == stdsocket.AF_INET6 else stdsocket.IPPROTO_IP


@dataclass(frozen=True, slots=True)
class Membership:
    """What a listener on a group joins: the group, the interface, and for a
    source-specific join the one source it takes datagrams from.

    Args:
        group: The group address.
        iface: The interface's name; None lets the kernel choose by route.
        source: Source-specific: the only sender delivered; None for any source.
    """

    group: Address
    iface: str | None = None
    source: Address | None = None

    @classmethod
    def of(cls, host: str, iface: str | None, source: str | None) -> Membership | None:
        """The membership of a listener on ``host``; None when ``host`` is no group."""
        group = group_address(host)
        if group is None:
            return None
        return cls(group, iface, None if source is None else ipaddress.ip_address(source))

    @property
    def family(self) -> int:
        return stdsocket.AF_INET6 if self.group.version == 6 else stdsocket.AF_INET

    def prepare(self, sock: stdsocket.socket) -> None:
        """Before the bind: share the group and port, and see only our own memberships."""
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        if self.family == stdsocket.AF_INET6:
            sock.setsockopt(stdsocket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        else:
            sock.setsockopt(stdsocket.IPPROTO_IP, IP_MULTICAST_ALL, 0)

    def bind_address(self, port: int) -> tuple[Any, ...]:
        """Where the socket binds: the group itself (a link-scoped IPv6 group needs the
        interface as its scope)."""
        if self.family == stdsocket.AF_INET6:
            return (str(self.group), port, 0, interface_index(self.iface))
        return (str(self.group), port)

    def join(self, sock: stdsocket.socket) -> None:
        """Join the group (after the bind).

        Raises:
            OSError: The kernel refused the join; the message says which.
        """
        ifindex = interface_index(self.iface)
        try:
            if self.source is None:
                sock.setsockopt(
                    _level(self.family), MCAST_JOIN_GROUP, pack_group_req(ifindex, self.group)
                )
            else:
                req = pack_group_source_req(ifindex, self.group, self.source)
                sock.setsockopt(_level(self.family), MCAST_JOIN_SOURCE_GROUP, req)
        except OSError as exc:
            where = f" on {self.iface}" if self.iface else ""
            whom = f" from {self.source}" if self.source else ""
            raise OSError(
                exc.errno, f"cannot join {self.group}{whom}{where}: {exc.strerror or exc}"
            ) from None


def configure_sender(
    sock: stdsocket.socket, ttl: int | None, iface: str | None, loopback: bool | None
) -> None:
    """Set a sending socket's multicast TTL (hop limit), interface and loop; what is None
    keeps the kernel's default (TTL 1, the route's interface, loop on).

    Raises:
        OSError: No such interface, or the kernel refused an option.
    """
    v6 = sock.family == stdsocket.AF_INET6
    level = _level(sock.family)
    if ttl is not None:
        name = stdsocket.IPV6_MULTICAST_HOPS if v6 else stdsocket.IP_MULTICAST_TTL
        sock.setsockopt(level, name, ttl)
    if iface is not None:
        index = interface_index(iface)
        if v6:
            sock.setsockopt(level, stdsocket.IPV6_MULTICAST_IF, index)
        else:
            # struct ip_mreqn: group (unused here), local address (any), interface index.
            mreqn = struct.pack("=4s4si", b"\0" * 4, b"\0" * 4, index)
            sock.setsockopt(level, stdsocket.IP_MULTICAST_IF, mreqn)
    if loopback is not None:
        name = stdsocket.IPV6_MULTICAST_LOOP if v6 else stdsocket.IP_MULTICAST_LOOP
        sock.setsockopt(level, name, int(loopback))
