"""The packet tool: one message sent, its reply (or error) logged, without making a run.

A person trying packets by hand sends dozens of them; each one stored as a run would bury
the run history. The packet tool sends through the same engine, target policy, caps and
audit as a ``packet`` run (``POST /api/send`` still makes one, for scripts that want it),
but what it keeps is one line of its send log (:mod:`app.packets_store`).

Error handling: a target the policy refuses raises :class:`~app.errors.TargetNotAllowedError`
(audited, nothing sent, nothing logged). Everything else that goes wrong on the way (refused,
reset, TLS, no reply) is the send's result: logged with ``status`` ``error`` and the reason,
never shown as if it were a reply.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from app.audit import AuditLog
from app.endpoint import Endpoint
from app.errors import ConflictError, TargetNotAllowedError
from app.packets_store import PacketStore
from app.registry import Registry
from app.runs.caps import check_run_caps
from app.runs.engine import ReceivingEnd, execute
from app.runs.spec import RunSpec
from app.runs.stats import RunStats
from app.runs.targets import TargetPolicy
from app.settings import Settings

# Sends going at once, at most: each holds a socket for up to its timeout (60 s).
MAX_CONCURRENT_SENDS = 16

# What each error kind means, for a person reading the log (the kind alone is jargon).
ERROR_REASONS = {
    "refused": "connection refused: nothing listens on that port",
    "unreachable": "unreachable: the host or port answered with ICMP unreachable",
    "reset": "connection reset by the peer",
    "timeout": "timed out",
    "tls": "TLS handshake failed",
    "dns": "the name does not resolve",
}


class PacketTool:
    """Send packets and keep the log. ``store`` holds saved packets and the log.

    Args:
        store: Saved packets and the send log.
        registry: Where the send's connection shows while it goes.
        settings: The run caps (a send is held to them like a packet run).
        policy: Which targets may be sent to.
        audit: Who sent what (as for runs, with no run id).
        receiving_end: The lab, for sends to its own sinks.
    """

    def __init__(
        self,
        store: PacketStore,
        registry: Registry,
        settings: Settings,
        policy: TargetPolicy,
        audit: AuditLog,
        receiving_end: ReceivingEnd,
    ) -> None:
        self.store = store
        self._registry = registry
        self._settings = settings
        self._policy = policy
        self._audit = audit
        self._receiving_end = receiving_end
        self._going = 0

    async def send(
        self,
        spec: RunSpec,
        *,
        name: str | None = None,
        principal: str = "local",
        client: str | None = None,
    ) -> dict[str, Any]:
        """Send ``spec``'s one message, log what happened, and return the log entry.

        Raises:
            ConflictError: Too many sends are going.
            SpecError: The spec exceeds a cap.
            TargetNotAllowedError: The policy refuses the target (audited, nothing sent).
            StoreUnavailableError: The send happened but could not be logged.
        """
        check_run_caps(spec, self._settings)
        if self._going >= MAX_CONCURRENT_SENDS:
            limit = MAX_CONCURRENT_SENDS
            raise ConflictError(f"{self._going} sends are going (the limit is {limit})", None)
        self._going += 1
        try:
            return await self._send(spec, name, principal, client)
        finally:
            self._going -= 1

    async def _send(
        self, spec: RunSpec, name: str | None, principal: str, client: str | None
    ) -> dict[str, Any]:
        endpoint = spec.target
        requested_at = time.time()
        audit = audit_entry(spec, principal, client, requested_at)
        resolved = await checked_target(self._policy, self._audit, spec, audit)

        s = self._settings
        outcome = await execute(
            f"packet-{secrets.token_hex(5)}",
            spec,
            endpoint,
            RunStats(),
            self._registry,
            stop=trio.CancelScope(),
            resolver=resolved,
            receiving_end=self._receiving_end,
            max_bytes=s.max_run_bytes,
            max_rate=s.max_run_rate,
            max_bitrate=s.max_run_bitrate,
            max_duration=s.max_run_duration,
        )
        entry = packet_result(outcome.status, outcome.error, outcome.summary, spec.timeout)
        await self._audit.record(
            audit | {"started_at": requested_at, "ended_at": time.time(), "outcome": "sent"}
        )
        payload = spec.payload
        return await self.store.log_send(
            {
                "at": requested_at,
                "name": name,
                "target": endpoint.url,
                "payload": payload.text or "",
                "hex": payload.kind == "hex",
                **entry,
            }
        )


def audit_entry(
    spec: RunSpec, principal: str, client: str | None, requested_at: float
) -> dict[str, Any]:
    """The audit record of a send that makes no run (no run id); ``outcome`` comes later."""
    return {
        "run_id": None,
        "principal": principal,
        "client": client,
        "target": spec.target.url,
        "spec": spec.model_dump(mode="json"),
        "requested_at": requested_at,
    }


async def checked_target(
    policy: TargetPolicy, audit: AuditLog, spec: RunSpec, entry: dict[str, Any]
) -> Callable[[Endpoint], Awaitable[tuple[int, tuple[Any, ...]]]]:
    """The target of ``spec`` checked by ``policy`` once, as the engine's resolver: it
    gives that address (or raises the error resolving it gave).

    Raises:
        TargetNotAllowedError: The policy refuses the target (audited with ``entry``).
    """
    try:
        pinned: tuple[int, tuple[Any, ...]] | OSError = await policy.resolve(spec.target)
    except TargetNotAllowedError as exc:
        await audit.record(entry | {"outcome": f"refused: {exc.message}"})
        raise
    except OSError as exc:
        pinned = exc

    async def resolved(_: Endpoint) -> tuple[int, tuple[Any, ...]]:
        if isinstance(pinned, OSError):
            raise pinned
        return pinned

    return resolved


def packet_result(
    status: str, error: str | None, summary: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """What one send came to: ``reply`` (bytes came back), ``no_reply`` or ``error``, with
    the reply, or the error kind and its reason in words."""
    reply = summary.get("reply")
    kinds = summary.get("errors_by_kind") or {}
    if reply and reply.get("bytes"):
        return {"status": "reply", "reply": reply, "error": None, "error_kind": None}
    if kinds or status == "failed":
        kind = next(iter(sorted(kinds)), None)
        reason = ERROR_REASONS.get(kind or "")
        message = error or kind or "failed"
        if reason is not None and reason not in message:
            message = f"{message}: {reason}" if message != kind else reason
        return {"status": "error", "reply": None, "error": message, "error_kind": kind}
    return {
        "status": "no_reply",
        "reply": None,
        "error": f"no reply within {timeout:g} s",
        "error_kind": None,
    }
