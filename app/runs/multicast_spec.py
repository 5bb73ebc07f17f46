"""The multicast fields of the patterns that send to a group: ``ttl``, ``iface``, ``loopback``.

A rate or burst run whose target is a multicast group (``udp://239.1.2.3:5000``,
``udp://[ff15::1]:5000``) sends every datagram once to the group, and every member gets a
copy; :mod:`app.runs.spec` gives those two models the fields below and
:func:`check_multicast` refuses them for a unicast target (and a group over TCP, or a
reversed run to one: a group sends nothing back). Every other pattern has
:class:`NoMulticast` (the kernel's defaults). Any run to a group expects no replies and
gathers its receivers' figures (:mod:`app.runs.receivers`). Reaching a group still needs
the lab's ``--allow-multicast`` (:mod:`app.runs.targets`), checked as for every target.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.listeners.multicast import is_group

_FIELDS = ("ttl", "iface", "loopback")


def ttl_field() -> Any:
    return Field(
        None,
        ge=0,
        le=255,
        description="multicast: TTL (IPv6: hop limit) of the datagrams sent to the group; "
        "the kernel's default is 1 (the local link)",
    )


def iface_field() -> Any:
    return Field(
        None,
        min_length=1,
        max_length=15,
        pattern=r"^[^/\s:]+$",
        description="multicast: the interface (e.g. eth0) the datagrams leave by; by "
        "default the route's",
    )


def loopback_field() -> Any:
    return Field(
        None,
        description="multicast: deliver a copy to this host's own members of the group "
        "(the kernel's default: yes)",
    )


def check_multicast(spec: Any) -> None:
    """The multicast fields apply to a group target over UDP; a group is sent to one way."""
    group = is_group(spec.target.host)
    if not group:
        for name in _FIELDS:
            if getattr(spec, name) is not None:
                raise ValueError(
                    f"{name}: applies to a multicast target (udp://239.1.2.3:5000 or "
                    "udp://[ff15::1]:5000)"
                )
        return
    if spec.target.protocol != "udp":
        raise ValueError("target: a multicast group is reached over udp:// only")
    if spec.reverse or spec.bidir:
        name = "bidir" if spec.bidir else "reverse"
        raise ValueError(f"{name}: a multicast group does not send back; a run to it is one-way")


class NoMulticast:
    """A pattern that never sends to a group: the kernel's defaults."""

    @property
    def ttl(self) -> int | None:
        return None

    @property
    def iface(self) -> str | None:
        return None

    @property
    def loopback(self) -> bool | None:
        return None
