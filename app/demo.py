"""The gentle demo profile: keep a little traffic flowing to every peer.

With ``--demo``, a node keeps two long, slow runs going to each peer that is up: a TCP rate
run (2 connections, 10 messages/s in all) and a UDP rate run (1 flow, 5 messages/s) aimed at
the peer's first TCP and UDP echo listeners. Each lasts ``RUN_SECONDS`` and is started again
when it ends, so a dashboard opened at any moment shows live connections and moving charts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from app.endpoint import Endpoint
from app.errors import SocketlabError
from app.runs.spec import parse_run_spec

if TYPE_CHECKING:
    from app.peers import PeerManager, PeerState
    from app.runs.manager import RunManager

logger = logging.getLogger(__name__)

RUN_SECONDS = 300.0
CHECK_INTERVAL = 2.0
PROFILE = (
    {"protocol": "tcp", "connections": 2, "rate": 10.0},
    {"protocol": "udp", "connections": 1, "rate": 5.0},
)


def _echo_port(state: PeerState, protocol: str) -> int | None:
    """The port of the peer's first echo listener of ``protocol`` (validated when polled)."""
    for item in state.listeners:
        if item.get("protocol") == protocol and item.get("mode") == "echo":
            port = item.get("port")
            return port if isinstance(port, int) and 0 < port < 65_536 else None
    return None


async def serve_demo(peers: PeerManager, runs: RunManager) -> None:
    """Keep the demo profile's runs going to every peer that is up, until cancelled."""
    running: dict[tuple[str, str], Any] = {}
    while True:
        for state in peers.states.values():
            if state.status != "up":
                continue
            for item in PROFILE:
                key = (state.config.name, str(item["protocol"]))
                run = running.get(key)
                if run is not None and not run.done.is_set():
                    continue
                port = _echo_port(state, str(item["protocol"]))
                if port is None:
                    continue
                target = Endpoint(str(item["protocol"]), state.config.host, port)
                # The port is the peer's word: checked by the spec like any target (port 0
                # and ports past 65535 are refused there), and a refusal is only logged.
                try:
                    spec = parse_run_spec(
                        {
                            "target": target.url,
                            "pattern": "rate",
                            "rate": item["rate"],
                            "connections": item["connections"],
                            "duration": RUN_SECONDS,
                            "size": 64,
                        }
                    )
                    running[key] = await runs.start(spec, principal="demo")
                except SocketlabError as exc:
                    logger.warning("demo run to %s not started: %s", target, exc.message)
        await trio.sleep(CHECK_INTERVAL)
