"""Target policy: where runs may send traffic.

Theory of operation: a run's target name is resolved exactly once; every address it resolves
to is checked, and the run connects to the checked address, never to the name again (so a
resolver that changes its answer cannot slip a second address past the check, as in DNS
rebinding). An address is refused when

1. it is in an always-denied range, whatever the configuration: "this network"
   (0.0.0.0/8), link-local (169.254.0.0/16, where cloud metadata services live), reserved
   and broadcast (240.0.0.0/4), multicast (224.0.0.0/4) unless multicast is enabled, and
   their IPv6 counterparts (::, fe80::/10, ff00::/8); IPv4 addresses embedded in IPv6
   (IPv4-mapped ::ffff:0:0/96, IPv4-translated or SIIT ::ffff:0:0:0/96, IPv4-compatible
   ::/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32 with both
   its server and its client address) are unwrapped and judged as IPv4, so allowing ::/0
   does not let a denied IPv4 address through in IPv6 clothes; or
2. it is not allowed: loopback always is; so are the networks and host names given at
   start-up (``allow_targets``: CIDRs, addresses or names, e.g. compose peers). A name in the
   allowlist matches the target's name as written; its addresses must still pass rule 1.

One denied address among several refuses the target: a name that resolves to a mix is
refused as a whole. Numeric forms such as ``2130706433``, ``0x7f.1`` or ``0251.0376.0251.0376``
are whatever the system resolver turns them into, and that address is what is checked.
"""

from __future__ import annotations

import ipaddress
import socket as stdsocket
from collections.abc import Iterable
from typing import Any

import trio

from app.endpoint import Endpoint
from app.errors import SpecError, TargetNotAllowedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DENIED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved or broadcast (240.0.0.0/4)"),
)
_MULTICAST_V4 = ipaddress.IPv4Network("224.0.0.0/4")
_DENIED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("::/128"), "the unspecified address (::)"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local (fe80::/10)"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local (fec0::/10)"),
)
_MULTICAST_V6 = ipaddress.IPv6Network("ff00::/8")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_COMPAT = ipaddress.IPv6Network("::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
# IPv4-translated (RFC 2765, SIIT): ::ffff:0:a.b.c.d, one 16-bit group off IPv4-mapped.
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")


def embedded_ipv4s(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries; empty when it carries none.

    Mapped, translated (SIIT), compatible, NAT64 and 6to4 addresses carry one. A Teredo
    address (2001::/32, RFC 4380) carries two: its server's (bits 32-63) and its client's
    (the last 32 bits, inverted), and traffic to it reaches both, so both are returned.
    """
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.teredo is not None:
        return address.teredo  # (server, client), the client already un-inverted
    value = int(address)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _SIIT or any(address in net for net in _NAT64):
        return (low,)
    if address in _COMPAT and value > 1:
        return (low,)
    if address in _SIXTOFOUR:
        return (ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF),)
    return ()


class TargetPolicy:
    """Which addresses runs may reach. Built once from start-up configuration.

    Args:
        allow: CIDRs, addresses or host names allowed besides loopback.
        allow_multicast: Whether multicast destinations are allowed.
        allow_any: Allow every address outside the always-denied ranges (used by the
            command line's in-process ``fire``, whose user already has the machine).
    """

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        allow_multicast: bool = False,
        allow_any: bool = False,
    ) -> None:
        self.allow_multicast = allow_multicast
        self.allow_any = allow_any
        self.networks: list[IPNetwork] = []
        self.names: set[str] = set()
        for entry in allow:
            entry = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not entry or "/" in entry or " " in entry:
                    raise SpecError(
                        f"allow_targets: {entry!r} is not a CIDR or host name", "allow_targets"
                    ) from None
                self.names.add(entry.lower().rstrip("."))

    def denied_reason(self, address: IPAddress) -> str | None:
        """Why ``address`` is always denied, or ``None``."""
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4s(address)
            if inner:
                for ipv4 in inner:
                    reason = self.denied_reason(ipv4)
                    if reason is not None:
                        return f"{reason}, embedded in {address}"
                return None
            for net, why in _DENIED_V6:
                if address in net:
                    return why
            if address in _MULTICAST_V6 and not self.allow_multicast:
                return "multicast (ff00::/8), which is not enabled"
            return None
        for net4, why in _DENIED_V4:
            if address in net4:
                return why
        if address in _MULTICAST_V4 and not self.allow_multicast:
            return "multicast (224.0.0.0/4), which is not enabled"
        return None

    def allowed(self, address: IPAddress, name: str) -> bool:
        """Whether a non-denied ``address`` (resolved from ``name``) is on the allowlist."""
        if self.allow_any:
            return True
        plain: IPAddress = address
        # Only an IPv4-mapped address is the IPv4 host itself; a NAT64, SIIT, 6to4 or
        # Teredo address of 127.0.0.1 is somebody else's gateway or relay, so it must be
        # allowed as IPv6.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped
        if plain.is_loopback:
            return True
        if name.lower().rstrip(".") in self.names:
            return True
        return any(plain in net for net in self.networks if net.version == plain.version)

    def check(self, address: IPAddress, name: str) -> None:
        """Raise :class:`TargetNotAllowedError` unless traffic to ``address`` is allowed."""
        reason = self.denied_reason(address)
        if reason is not None:
            raise TargetNotAllowedError(
                f"{name} resolves to {address}, which is {reason}: always refused", "target"
            )
        if not self.allowed(address, name):
            raise TargetNotAllowedError(
                f"{name} resolves to {address}, which is not an allowed target "
                "(loopback and the networks and hosts given with --allow-target)",
                "target",
            )

    async def resolve(self, endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
        """Resolve ``endpoint`` once, check every address, return the one to connect to.

        Raises:
            TargetNotAllowedError: Any resolved address is denied or not allowed.
            OSError: The name does not resolve (``socket.gaierror``).
        """
        kind = stdsocket.SOCK_DGRAM if endpoint.protocol == "udp" else stdsocket.SOCK_STREAM
        infos = await trio.socket.getaddrinfo(endpoint.host, endpoint.port, type=kind)
        if not infos:
            raise stdsocket.gaierror(stdsocket.EAI_NONAME, "no addresses")
        for _, _, _, _, sockaddr in infos:
            host = str(sockaddr[0]).split("%", 1)[0]
            self.check(ipaddress.ip_address(host), endpoint.host)
        family, _, _, _, address = infos[0]
        return int(family), tuple(address)
