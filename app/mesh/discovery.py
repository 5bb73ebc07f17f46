"""The mesh's peers: the ``--peer`` URLs and the addresses of ``--peers-dns`` names.

A ``--peers-dns NAME[:PORT]`` name (a Kubernetes headless service, a compose service with
replicas) resolves to one address per node; each is a peer's web API at
``http://ADDRESS:PORT``, sent the peers' token (``--peer-token``). Looked up with
:func:`trio.socket.getaddrinfo`, so a lookup never blocks the loop.

Error handling: a name that does not resolve is logged (once until it resolves again) and
reported as failed, so the caller keeps the peers it found last time rather than dropping
every node at a resolver's hiccup.
"""

from __future__ import annotations

import logging
import socket as stdsocket

import trio

from app.endpoint import host_port
from app.mesh.config import parse_dns_name
from app.peers import PeerConfig

logger = logging.getLogger(__name__)

_failing: set[str] = set()


async def resolve_name(text: str, token: str | None) -> list[PeerConfig] | None:
    """The peers ``NAME[:PORT]`` resolves to, in the resolver's order; None if it fails."""
    name, port = parse_dns_name(text)
    try:
        infos = await trio.socket.getaddrinfo(name, port, type=stdsocket.SOCK_STREAM)
    except OSError as exc:
        if text not in _failing:
            logger.warning("mesh: %s does not resolve: %s", name, exc)
            _failing.add(text)
        return None
    _failing.discard(text)
    peers: list[PeerConfig] = []
    for _, _, _, _, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        url = f"http://{host_port(address, port)}"
        if all(p.url != url for p in peers):
            peers.append(PeerConfig(url, token, address))
    return peers


async def discover(
    static: list[PeerConfig], names: tuple[str, ...], token: str | None
) -> tuple[list[tuple[PeerConfig, bool]], bool]:
    """Every peer: ``(config, from_dns)``, static ones first; and whether every name resolved."""
    found: list[tuple[PeerConfig, bool]] = [(p, False) for p in static]
    complete = True
    for text in names:
        peers = await resolve_name(text, token)
        if peers is None:
            complete = False
            continue
        found.extend((p, True) for p in peers)
    return found, complete
