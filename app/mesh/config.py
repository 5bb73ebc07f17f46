"""Mesh mode's settings: ``[mesh]`` in the config file and the ``--mesh*`` flags.

A node in mesh mode measures every peer continuously: one UDP and one TCP probe flow per
peer, each at ``rate`` probes a second, against the echo listeners every mesh node serves
on ``port``. Peers are the ``--peer`` URLs and the addresses ``--peers-dns NAME[:PORT]``
resolves to, looked up again every ``resolve_interval`` seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from app.errors import SpecError

DEFAULT_PORT = 9101
DEFAULT_WEB_PORT = 8000
# "Low, capped": a mesh is a background measurement, never a load test.
MAX_RATE = 50.0
MAX_PEERS_LIMIT = 1024
# A name goes into the API's paths (app.web.mesh_schemas.NAME_PATTERN).
_NAME = re.compile(r"[^\s/?#%\\]{1,128}")


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """What mesh mode does, when ``enabled``.

    Attributes:
        enabled: Whether this node measures its peers.
        rate: Probes per second of each flow (one UDP, one TCP per peer).
        window: Seconds of probes the figures cover.
        port: Where this node's mesh echo listeners (TCP and UDP) bind.
        name: What this node is called in the matrix (default: its host name).
        peers_dns: ``NAME[:PORT]`` names whose addresses are peers' web APIs.
        resolve_interval: Seconds between two lookups of ``peers_dns``.
        max_peers: Peers measured at most (further ones are counted, not measured).
        size: Bytes of one probe.
    """

    enabled: bool = False
    rate: float = 5.0
    window: float = 30.0
    port: int = DEFAULT_PORT
    name: str | None = None
    peers_dns: tuple[str, ...] = ()
    resolve_interval: float = 15.0
    max_peers: int = 64
    size: int = 64

    def probe_timeout(self) -> float:
        """Seconds after which a probe with no reply is lost: 2 s, or two periods."""
        return max(2.0, 2.0 / self.rate)

    def fail_after(self) -> float:
        """Seconds without any reply after which a flow is failing: well inside 10 s."""
        return max(3.0, 3.0 / self.rate)


def _number(raw: Any, name: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SpecError(f"{name} must be a number, got {raw!r}", name) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise SpecError(f"{name} must be between {low:g} and {high:g}, got {raw!r}", name)
    return value


def parse_dns_name(text: str) -> tuple[str, int]:
    """``NAME[:PORT]`` → (name, port); the port defaults to 8000 (the web port).

    Raises:
        SpecError: An empty name or a bad port (field ``peers_dns``).
    """
    name, sep, port_text = text.strip().rpartition(":")
    if not sep:
        name, port_text = text.strip(), str(DEFAULT_WEB_PORT)
    name = name.strip("[]")
    if not name or any(c.isspace() or c in "/?#@" for c in name):
        raise SpecError(f"peers-dns {text!r}: write NAME[:PORT]", "peers_dns")
    port = int(_number(port_text, "peers_dns", 1, 65535))
    return name, port


def mesh_settings(base: MeshSettings, values: dict[str, Any], where: str) -> MeshSettings:
    """``base`` with the ``[mesh]`` keys (or flags) in ``values``; None values are skipped.

    Raises:
        SpecError: An unknown key or a value out of range, naming ``mesh.KEY``.
    """
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if raw is None:
            continue
        field = f"mesh.{key}"
        if key == "enabled":
            changes[key] = bool(raw)
        elif key == "rate":
            changes[key] = _number(raw, field, 0.1, MAX_RATE)
        elif key == "window":
            changes[key] = _number(raw, field, 1, 3600)
        elif key == "resolve_interval":
            changes[key] = _number(raw, field, 0.5, 3600)
        elif key in ("port", "max_peers", "size"):
            high = {"port": 65535, "max_peers": MAX_PEERS_LIMIT, "size": 1400}[key]
            low = {"port": 0, "max_peers": 1, "size": 24}[key]
            number = _number(raw, field, low, high)
            if number != int(number):
                raise SpecError(f"{field} must be a whole number, got {raw!r}", field)
            changes[key] = int(number)
        elif key == "name":
            name = str(raw).strip()
            if not _NAME.fullmatch(name):
                raise SpecError(
                    f"{field}: 1 to 128 printable characters, no space, / ? # % or \\", field
                )
            changes[key] = name
        elif key == "peers_dns":
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise SpecError(f"{where}: {field} must be a list of NAME[:PORT]", field)
            for item in items:
                parse_dns_name(item)
            changes[key] = tuple(base.peers_dns) + tuple(items)
        else:
            raise SpecError(f"{where}: unknown mesh key {key!r}", field)
    return replace(base, **changes)
