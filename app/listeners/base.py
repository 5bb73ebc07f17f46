"""What every listener has: its spec, its live totals, and the cancel scope that stops it."""

from __future__ import annotations

from typing import Any

import trio

from app.settings import ListenerSpec


class Listener:
    """One running server. Counters are bumped by its connection handlers (the hot path).

    Resource handling: everything the listener owns (the bound socket, every connection and
    flow) lives inside ``cancel_scope``; cancelling it closes them all and frees the port.
    """

    def __init__(self, listener_id: str, spec: ListenerSpec) -> None:
        self.id = listener_id
        self.spec = spec
        self.port = spec.port
        self.host = spec.host
        self.cancel_scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.connections = 0
        self.accepted = 0
        self.rejected = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.errors = 0
        self.oversized = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.spec.protocol,
            "host": self.host,
            "port": self.port,
            "mode": self.spec.mode,
            "url": self.spec_url(),
            "connections": self.connections,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "msgs_in": self.msgs_in,
            "msgs_out": self.msgs_out,
            "errors": self.errors,
            "oversized": self.oversized,
            "max_connections": self.spec.max_connections,
            "idle_timeout": self.spec.idle_timeout,
            "max_message_size": self.spec.max_message_size,
        }

    def spec_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.spec.protocol}://{host}:{self.port}?mode={self.spec.mode}"
