"""The nftables text of a listener's kernel packet loss, and reading back what nft lists.

Theory of operation (sans-IO: no process is run here): a listener with ``kernel_loss``
gets one base chain of its own in socketlab's own table ``inet socketlab``. The chain hooks
the ``input`` path, where every packet delivered to this machine passes, and holds one rule
per direction that drops a share of the listener's packets::

    add table inet socketlab
    add chain inet socketlab sl_4242_l3 { type filter hook input priority -150; policy accept; }
    add rule inet socketlab sl_4242_l3 iif "lo" ip daddr 127.0.0.1 tcp dport 9000 \\
        numgen random mod 10000 < 500 counter drop comment "socketlab l3 in"

Directions:
    ``in``: packets the listener receives (its address and port as destination). TCP's
        data from clients and their ACKs are lost, so clients retransmit; a UDP request
        lost never gets its echo, so round-trip loss equals the share dropped.
    ``out``: packets the listener sends (its address and port as source), dropped where
        they arrive. That point is on this machine only for a client on loopback, so
        ``out`` and ``both`` need a loopback listener. (Dropping them on the way out, in
        the ``output`` hook, would fail the listener's own ``sendto`` with EPERM instead
        of losing the datagram on the path.)
    ``both``: the two rules above.

Only packets of this listener match: its port and protocol always, its address when it is
bound to one, and the loopback interface when that address is a loopback one. The chain's
name carries the process id (``sl_<pid>_<listener id>``), so a lab that starts after a crash
recognises the chains of dead processes and removes them (:func:`stale_chains`) without
touching those of another lab running beside it.

The share is applied in hundredths of a percent (``numgen random mod 10000``); every drop is
counted by the rule's ``counter``, read back by :func:`chain_drops`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FAMILY",
    "TABLE",
    "LossRules",
    "chain_drops",
    "chain_pid",
    "stale_chains",
]

FAMILY = "inet"
TABLE = "socketlab"
# Before conntrack's confirmation and any filter of the host's own (priority 0).
_PRIORITY = -150
# numgen's modulus: the share is applied in hundredths of a percent.
_SCALE = 10_000
_CHAIN = re.compile(r"^sl_(\d+)_([A-Za-z0-9]+)$")

Direction = Literal["in", "out", "both"]


@dataclass(frozen=True, slots=True)
class LossRules:
    """What one listener asks the kernel to drop.

    Attributes:
        listener_id: The listener's id (``l3``), part of the chain's name.
        protocol: ``tcp`` or ``udp`` (a TLS listener's packets are TCP).
        host: The address the listener is bound to (a literal, a wildcard or ``localhost``).
        port: The bound port (never 0).
        percent: Share of matching packets dropped, 0.01 to 100.
        direction: ``in``, ``out`` or ``both`` (see the module's docstring).
    """

    listener_id: str
    protocol: Literal["tcp", "udp"]
    host: str
    port: int
    percent: float
    direction: Direction = "in"

    @property
    def threshold(self) -> int:
        """Packets out of 10,000 dropped."""
        return round(self.percent * _SCALE / 100)

    def chain(self, pid: int) -> str:
        """The chain of this listener in the process ``pid``."""
        return f"sl_{pid}_{self.listener_id}"

    def add_script(self, pid: int) -> str:
        """The ``nft -f -`` script that adds the table (if missing), the chain and its rules,
        as one transaction: all of it or nothing."""
        chain = self.chain(pid)
        lines = [
            f"add table {FAMILY} {TABLE}",
            f"add chain {FAMILY} {TABLE} {chain} "
            f"{{ type filter hook input priority {_PRIORITY}; policy accept; }}",
        ]
        for way in ("in", "out") if self.direction == "both" else (self.direction,):
            lines.append(
                f"add rule {FAMILY} {TABLE} {chain} {self._match(way)} "
                f"numgen random mod {_SCALE} < {self.threshold} counter drop "
                f'comment "socketlab {self.listener_id} {way}"'
            )
        return "\n".join(lines) + "\n"

    def _match(self, way: str) -> str:
        """The selector of this listener's packets going ``way`` (``in`` or ``out``)."""
        side, port_side = ("daddr", "dport") if way == "in" else ("saddr", "sport")
        parts = []
        if loopback(self.host):
            parts.append('iif "lo"')
        address = literal(self.host)
        if address is not None and not address.is_unspecified:
            family = "ip" if address.version == 4 else "ip6"
            parts.append(f"{family} {side} {address}")
        parts.append(f"{self.protocol} {port_side} {self.port}")
        return " ".join(parts)


def delete_script(chain: str) -> str:
    """The ``nft -f -`` script that removes one chain and its rules (flushed first: kernels
    before 6.x refuse to delete a chain that still holds rules)."""
    return f"flush chain {FAMILY} {TABLE} {chain}\ndelete chain {FAMILY} {TABLE} {chain}\n"


def literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or ``localhost``."""
    address = literal(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def where_refused(host: str, direction: Direction) -> str | None:
    """Why rules for a listener on ``host`` cannot do what ``direction`` asks, or None."""
    if literal(host) is None and host != "localhost":
        return (
            f"kernel_loss needs the listener bound to an IP address, not the name {host!r} "
            "(its rules match the address)"
        )
    if direction != "in" and not loopback(host):
        return (
            f"kernel_loss_direction={direction} drops the listener's packets where they "
            "arrive, on this machine only for loopback clients: bind a loopback address, "
            "or use in"
        )
    return None


def _items(listing: str | dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The objects of an ``nft -j list ...`` document."""
    doc = json.loads(listing) if isinstance(listing, str) else listing
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    return (item for item in items if isinstance(item, dict))


def chain_pid(name: str) -> int | None:
    """The process id in a chain name of ours (``sl_4242_l3`` -> 4242), else None."""
    match = _CHAIN.match(name)
    return int(match.group(1)) if match else None


def stale_chains(listing: str | dict[str, Any], alive: Callable[[int], bool]) -> list[str]:
    """Chains in an ``nft -j list table inet socketlab`` document left by dead processes.

    Args:
        listing: The JSON nft printed.
        alive: Whether a process id still runs.

    Returns:
        The names of our chains whose process is gone, in listing order. Chains whose
        name is not ours are left alone (someone else put them there).
    """
    stale = []
    for item in _items(listing):
        chain = item.get("chain")
        if not isinstance(chain, dict) or chain.get("table") != TABLE:
            continue
        pid = chain_pid(str(chain.get("name", "")))
        if pid is not None and not alive(pid):
            stale.append(str(chain["name"]))
    return stale


def chain_drops(listing: str | dict[str, Any], chain: str) -> dict[str, int]:
    """Packets dropped so far by each rule of ``chain``, by direction (``in``, ``out``).

    Args:
        listing: An ``nft -j list chain inet socketlab CHAIN`` (or table) document.
        chain: The chain's name.
    """
    drops: dict[str, int] = {}
    for item in _items(listing):
        rule = item.get("rule")
        if not isinstance(rule, dict) or rule.get("chain") != chain:
            continue
        way = str(rule.get("comment", "")).rsplit(" ", 1)[-1]
        for expr in rule.get("expr", []):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):
                drops[way] = drops.get(way, 0) + int(counter.get("packets", 0))
    return drops


def netem_missing(
    config: str | None, module_files: Iterable[str], loaded: bool, release: str
) -> str | None:
    """Why tc netem cannot delay or reorder here, or None when the kernel has ``sch_netem``.

    Args:
        config: The kernel's build configuration (``/proc/config.gz`` or
            ``/boot/config-*``), None when neither can be read.
        module_files: Files of a ``sch_netem`` module found under ``/lib/modules``.
        loaded: True when ``/sys/module/sch_netem`` exists (loaded, or built in).
        release: The kernel release (``uname -r``), for the message.
    """
    if loaded:
        return None
    setting = None
    if config is not None:
        match = re.search(r"^CONFIG_NET_SCH_NETEM=([ym])$", config, re.MULTILINE)
        setting = match.group(1) if match else "unset"
    if setting == "y" or (setting in ("m", None) and any(True for _ in module_files)):
        return None
    if setting == "unset":
        return f"kernel {release} has no sch_netem (CONFIG_NET_SCH_NETEM is not set)"
    return f"kernel {release} has no sch_netem module (tc netem needs it)"
