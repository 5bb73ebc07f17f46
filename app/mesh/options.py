"""The ``--mesh*`` flags of ``socketlab serve`` (each one a ``[mesh]`` key of the config)."""

from __future__ import annotations

import argparse
from typing import Any

from app.mesh.config import DEFAULT_PORT, MAX_RATE, MeshSettings

_DEFAULTS = MeshSettings()


def add_mesh_options(serve: argparse.ArgumentParser) -> None:
    """Add mesh mode's flags to ``serve``."""
    group = serve.add_argument_group(
        "mesh", "measure every peer continuously and share an all-pairs matrix (GET /api/mesh)"
    )
    group.add_argument(
        "--mesh",
        action="store_true",
        default=None,
        help="mesh mode: probe every peer over UDP and TCP (config: [mesh] enabled)",
    )
    group.add_argument(
        "--mesh-rate",
        metavar="N",
        help=f"probes per second of each flow (default {_DEFAULTS.rate:g}, at most "
        f"{MAX_RATE:g}; config: [mesh] rate)",
    )
    group.add_argument(
        "--mesh-window",
        metavar="SECONDS",
        help=f"seconds the figures cover (default {_DEFAULTS.window:g}; config: [mesh] window)",
    )
    group.add_argument(
        "--mesh-port",
        metavar="PORT",
        help=f"this node's mesh echo port, TCP and UDP, on the --web address (default "
        f"{DEFAULT_PORT}; config: [mesh] port)",
    )
    group.add_argument(
        "--mesh-name",
        metavar="NAME",
        help="this node's name in the matrix (default: the host name; config: [mesh] name)",
    )
    group.add_argument(
        "--peers-dns",
        metavar="NAME[:PORT]",
        action="append",
        help="a DNS name whose addresses are mesh peers' APIs (port default 8000), e.g. a "
        "Kubernetes headless service; looked up again periodically; repeat for more "
        "(config: [mesh] peers_dns)",
    )
    group.add_argument(
        "--peers-dns-interval",
        metavar="SECONDS",
        help=f"seconds between two lookups of --peers-dns (default "
        f"{_DEFAULTS.resolve_interval:g}; config: [mesh] resolve_interval)",
    )


def mesh_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as ``[mesh]`` keys."""
    return {
        "enabled": args.mesh,
        "rate": args.mesh_rate,
        "window": args.mesh_window,
        "port": args.mesh_port,
        "name": args.mesh_name,
        "peers_dns": args.peers_dns,
        "resolve_interval": args.peers_dns_interval,
    }
