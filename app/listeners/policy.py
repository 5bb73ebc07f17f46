"""Where a listener that a client asks for may bind, and how many listeners there may be.

Listeners from the config file and the command line bind as the operator wrote them: the
operator has the machine already. A listener asked for over the API or the dashboard comes
from a token holder, who may not, so :meth:`ListenerPolicy.check` refuses, naming ``url``:

1. an address other than loopback, unless it is in a network the operator allowed at start
   (``--allow-bind CIDR``, ``allow_binds`` in the config file). The unspecified addresses
   (``0.0.0.0``, ``::``) bind every interface, so they too need a network that contains
   them (``0.0.0.0/0``, ``::/0`` or the address itself). An IPv4-mapped IPv6 address
   (``::ffff:0.0.0.0``) is judged as the IPv4 address it carries. A host name other than
   ``localhost`` is refused: the system resolver, not the policy, would pick its address;
2. a privileged port (1-1023), whatever the address;
3. the web server's port on any address a dashboard client may reach it by: every
   loopback address, the unspecified ones, the web server's own, and every address when
   the web server binds an unspecified one or a name. A listener on ``[::1]:8000`` would
   otherwise answer, in place of a dashboard on ``127.0.0.1:8000``, every client that tries
   ``::1`` first for ``localhost``.

The number of listeners is capped as well (``max_listeners``, ``caps.listeners`` in the
config file), the operator's included; the manager counts them
(:meth:`app.listeners.manager.ListenerManager.start_requested`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from app.endpoint import host_port
from app.errors import SpecError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Binding below this port needs privileges on most systems, and well-known services live
# there: a token holder must not be able to stand in for one.
FIRST_UNPRIVILEGED_PORT = 1024
DEFAULT_MAX_LISTENERS = 100


def parse_bind_networks(
    entries: Iterable[str], field_name: str = "allow_binds"
) -> tuple[IPNetwork, ...]:
    """The networks of ``--allow-bind`` / ``allow_binds`` (addresses or CIDRs).

    Raises:
        SpecError: An entry is neither, naming ``field_name``.
    """
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
        except ValueError:
            raise SpecError(
                f"{field_name}: {entry!r} is not an address or a CIDR", field_name
            ) from None
    return tuple(networks)


def bind_address(host: str) -> IPAddress | None:
    """The address a listener on ``host`` binds, or ``None`` for a host name.

    ``localhost`` binds 127.0.0.1 (an IPv4 socket: the name has no colon); an IPv4-mapped
    IPv6 address binds the IPv4 address it carries.
    """
    if host.lower() == "localhost":
        return ipaddress.IPv4Address("127.0.0.1")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    """Binds allowed to listeners a client asks for, and the cap on listeners.

    Args:
        allow: Networks such listeners may bind besides loopback.
        max_listeners: Listeners at most, every source together.
        web_host: Where the web server binds (``None``: the lab serves no web).
        web_port: The web server's bound port.
    """

    allow: tuple[IPNetwork, ...] = ()
    max_listeners: int = DEFAULT_MAX_LISTENERS
    web_host: str | None = None
    web_port: int | None = None

    def check(self, host: str, port: int) -> None:
        """Refuse a bind of ``host:port`` that the rules of this module do not allow.

        Raises:
            SpecError: Naming ``url``, with the reason.
        """
        where = host_port(host, port)
        address = bind_address(host)
        if address is None:
            raise SpecError(
                f"url: {where}: a listener started over the API binds an address, not a "
                "name (127.0.0.1 or ::1, or an address allowed with --allow-bind)",
                "url",
            )
        if not (address.is_loopback or any(address in net for net in self.allow)):
            raise SpecError(
                f"url: {where}: listeners started over the API bind loopback addresses only; "
                "the operator allows others at start with --allow-bind (allow_binds)",
                "url",
            )
        if 0 < port < FIRST_UNPRIVILEGED_PORT:
            raise SpecError(
                f"url: {where}: port {port} is privileged (below {FIRST_UNPRIVILEGED_PORT}); "
                "such listeners are started only from the config file or the command line",
                "url",
            )
        if port and port == self.web_port and self._reaches_web(address):
            raise SpecError(
                f"url: {where}: port {port} is the dashboard's; a listener there would "
                "answer clients looking for the dashboard",
                "url",
            )

    def _reaches_web(self, address: IPAddress) -> bool:
        """Whether a listener on ``address`` at the web port could be taken for the web."""
        if self.web_host is None:
            return False
        web = bind_address(self.web_host)
        if web is None or web.is_unspecified:
            return True
        return address.is_loopback or address.is_unspecified or address == web
