"""Network namespaces a test makes for itself, and veth links between them.

A namespace is made with ``ip netns add`` and deleted (with every link and process socket
in it) when the ``with`` block ends; its loopback is up. :func:`link` joins two namespaces
with a veth pair carrying the given IPv4 and IPv6 addresses. Everything here needs root
and iproute2; tests that use it carry :data:`needs_netns`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="needs root, ip (iproute2) and nft (nftables) for a network namespace",
)


def in_ns(ns: str, *args: str) -> list[str]:
    """``args`` as a command run inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *args]


def ip(*args: str, ns: str | None = None) -> None:
    """Run ``ip args`` (inside ``ns`` when given); a failure raises."""
    command = ["ip", *args] if ns is None else in_ns(ns, "ip", *args)
    subprocess.run(command, check=True, timeout=10, capture_output=True)


@contextmanager
def namespace(prefix: str = "sl") -> Iterator[str]:
    """A fresh namespace named ``prefix-<random>`` with its loopback up."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def link(
    a: str,
    b: str,
    a_addrs: tuple[str, ...],
    b_addrs: tuple[str, ...],
    *,
    names: tuple[str, str] = ("veth0", "veth0"),
) -> None:
    """Join namespaces ``a`` and ``b`` with a veth pair, interface ``names[0]`` in ``a``
    and ``names[1]`` in ``b``, each with its addresses (``"10.0.0.1/24"``,
    ``"fd00::1/64"``; IPv6 ones without duplicate address detection, so they are usable
    at once)."""
    tmp_a, tmp_b = f"sla{secrets.token_hex(3)}", f"slb{secrets.token_hex(3)}"
    ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    for ns, tmp, name, addrs in ((a, tmp_a, names[0], a_addrs), (b, tmp_b, names[1], b_addrs)):
        ip("link", "set", tmp, "netns", ns)
        ip("link", "set", tmp, "name", name, ns=ns)
        for addr in addrs:
            extra = ["nodad"] if ":" in addr else []
            ip("addr", "add", addr, "dev", name, *extra, ns=ns)
        ip("link", "set", name, "up", ns=ns)


@contextmanager
def bridge(members: Mapping[str, tuple[str, ...]], prefix: str = "slbr") -> Iterator[str]:
    """One more namespace holding a bridge ``br0``, and a veth pair from it to each member.

    ``members`` maps each member namespace (made by the caller with :func:`namespace`) to
    its addresses (``"10.0.0.1/24"``, ``"fd00::1/64"``; IPv6 without duplicate address
    detection). In each member the interface is ``veth0`` and carries the multicast
    routes (``224.0.0.0/4``, and ``ff00::/8`` as the kernel adds it), so a group is
    reached over the bridge without naming an interface. The bridge floods multicast to every
    port (IGMP/MLD snooping off: no querier runs here, and what the members receive must
    depend on their own joins only). Yields the bridge namespace's name; it is deleted,
    with the bridge and the pairs, when the block ends.
    """
    with namespace(prefix) as hub:
        ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0", ns=hub)
        ip("link", "set", "br0", "up", ns=hub)
        for index, (member, addrs) in enumerate(members.items()):
            port = f"port{index}"
            link(hub, member, (), addrs, names=(port, "veth0"))
            ip("link", "set", port, "master", "br0", ns=hub)
            # IPv6 needs none: the kernel routes ff00::/8 by every interface it runs on.
            ip("route", "add", "224.0.0.0/4", "dev", "veth0", ns=member)
        yield hub
