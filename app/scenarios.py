"""Saved scenarios and the dry run: one session of a scenario, with its transcript.

Before firing a scenario over fifty sessions, a person wants to see one session go: what
was sent, what came back, which step passed and which failed and why, as the packet tool
shows one send. :meth:`ScenarioTool.dry_run` runs exactly one session (a ``scenario`` run
spec of one connection and one iteration) through the same engine, target policy, caps and
audit as a run, but keeps no run: it answers with the transcript.

Theory of operation: the engine's scenario flows fill the run's step table; a dry run gives
them a :class:`Transcript`, a step table that keeps every step's result in order, with the
bytes sent and received (``keep`` bytes of each, so the step machine hands them over). Time
is bounded (:data:`DRY_RUN_SECONDS`, and the lab's duration cap), and so is the transcript
(:data:`MAX_EXCHANGES`).

Error handling: a target the policy refuses raises
:class:`~app.errors.TargetNotAllowedError` (audited, nothing sent). What goes wrong in the
session (refused, reset, TLS, a mismatch, a timeout) is the transcript's: the step that
failed, with its kind.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

import trio

from app.audit import AuditLog
from app.errors import ConflictError, NotFoundError, SpecError
from app.packets import audit_entry, checked_target
from app.registry import Registry
from app.runs.caps import check_run_caps
from app.runs.engine import ReceivingEnd, execute
from app.runs.spec import RunSpec, ScenarioSpec, parse_run_spec
from app.runs.stats import RunStats
from app.runs.steps import StepTable
from app.runs.targets import TargetPolicy
from app.scenarios_store import ScenarioStore
from app.settings import Settings
from app.wire.conversation import StepResult
from app.wire.payload import to_hex, to_text
from app.wire.scenario import Program

# A dry run lasts at most this long (and no longer than the lab's duration cap).
DRY_RUN_SECONDS = 30.0
# Bytes of each send and reply the transcript shows, and its steps at most (a repeated
# block makes many: the rest are counted, not shown).
TRANSCRIPT_BYTES = 4096
MAX_EXCHANGES = 500
# Dry runs going at once, at most.
MAX_CONCURRENT_DRY_RUNS = 8


def _bytes(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "hex": to_hex(data), "text": to_text(data)}


class Transcript(StepTable):
    """A step table that also keeps each step's result in order, with its bytes."""

    keep = TRANSCRIPT_BYTES

    def __init__(self, program: Program) -> None:
        super().__init__(program)
        self.exchanges: list[dict[str, Any]] = []
        self.left_off = 0

    def add(self, results: Iterable[StepResult]) -> None:
        results = list(results)
        for result in results:
            if len(self.exchanges) >= MAX_EXCHANGES:
                self.left_off += 1
                continue
            action = self.action_of(result.step)
            received = result.received if action == "expect" or result.kind else b""
            self.exchanges.append(
                {
                    "step": result.step,
                    "action": action,
                    "ok": result.kind is None,
                    "kind": result.kind,
                    "sent": _bytes(result.sent) if action == "send" else None,
                    "received": _bytes(received) if received or action == "expect" else None,
                    "latency_ms": None if result.latency is None else result.latency * 1e3,
                }
            )
        super().add(results)


def scenario_run_body(body: dict[str, Any], saved: dict[str, Any] | None) -> dict[str, Any]:
    """``body`` with its saved scenario's document in place of the name, when one is named.

    Raises:
        SpecError: The named scenario is not saved (``scenario``).
    """
    name = body.get("scenario")
    if not isinstance(name, str):
        return body
    if saved is None:
        raise SpecError(f"scenario: no saved scenario {name!r}", "scenario")
    return body | {"scenario": saved["scenario"]}


class ScenarioTool:
    """Saved scenarios (``store``) and dry runs.

    Args:
        store: The saved scenarios.
        registry: Where a dry run's connection shows while it goes.
        settings: The run caps (a dry run is held to them like a run).
        policy: Which targets may be sent to.
        audit: Who dry-ran what (as for runs, with no run id).
        receiving_end: The lab, for dry runs at its own sinks.
    """

    def __init__(
        self,
        store: ScenarioStore,
        registry: Registry,
        settings: Settings,
        policy: TargetPolicy,
        audit: AuditLog,
        receiving_end: ReceivingEnd,
    ) -> None:
        self.store = store
        self._where = (registry, receiving_end)
        self._settings, self._policy, self._audit = settings, policy, audit
        self._going = 0

    async def resolve_run_body(self, body: Any) -> Any:
        """A run body whose ``scenario`` names a saved one, with that one's steps in it (a
        ``scenario`` pattern body only; any other body as it is).

        Raises:
            SpecError: No saved scenario of that name (422, ``scenario``).
        """
        if not isinstance(body, dict) or body.get("pattern") != "scenario":
            return body
        name = body.get("scenario")
        saved = await self.store.get(name) if isinstance(name, str) else None
        return scenario_run_body(body, saved)

    def dry_run_spec(self, body: dict[str, Any]) -> ScenarioSpec:
        """The run spec of one session: ``target``, ``scenario``, ``insecure``, ``timeout``.

        Raises:
            SpecError: A field is wrong, named as in the run spec (``scenario.steps.1.send``).
        """
        spec = parse_run_spec(
            {key: body[key] for key in ("target", "scenario", "insecure", "timeout") if key in body}
            | {"pattern": "scenario", "connections": 1, "iterations": 1}
        )
        assert isinstance(spec, ScenarioSpec)
        return spec

    async def dry_run(
        self, spec: ScenarioSpec, *, principal: str = "local", client: str | None = None
    ) -> dict[str, Any]:
        """Run one session of ``spec``'s scenario and return its transcript.

        Raises:
            ConflictError: Too many dry runs are going.
            SpecError: The spec exceeds a cap.
            TargetNotAllowedError: The policy refuses the target (audited, nothing sent).
        """
        check_run_caps(spec, self._settings)
        if self._going >= MAX_CONCURRENT_DRY_RUNS:
            limit = MAX_CONCURRENT_DRY_RUNS
            raise ConflictError(f"{self._going} dry runs are going (the limit is {limit})", None)
        self._going += 1
        try:
            return await self._dry_run(spec, principal, client)
        finally:
            self._going -= 1

    async def _dry_run(self, spec: RunSpec, principal: str, client: str | None) -> dict[str, Any]:
        assert isinstance(spec, ScenarioSpec)
        endpoint = spec.target
        requested_at = time.time()
        entry = audit_entry(spec, principal, client, requested_at)
        checked = await checked_target(self._policy, self._audit, spec, entry)

        s = self._settings
        stats = RunStats()
        transcript = Transcript(spec.program)
        stats.steps = transcript
        started = trio.current_time()
        outcome = await execute(
            f"dryrun-{secrets.token_hex(5)}",
            spec,
            endpoint,
            stats,
            self._where[0],
            stop=trio.CancelScope(),
            resolver=checked,
            receiving_end=self._where[1],
            max_bytes=s.max_run_bytes,
            max_rate=s.max_run_rate,
            max_bitrate=s.max_run_bitrate,
            max_duration=min(s.max_run_duration, DRY_RUN_SECONDS),
        )
        ended_at = time.time()
        await self._audit.record(
            entry | {"started_at": requested_at, "ended_at": ended_at, "outcome": "dry run"}
        )
        ok = transcript.sessions == 1 and transcript.sessions_failed == 0
        failed = next((x for x in transcript.exchanges if not x["ok"]), None)
        error = outcome.error
        if error is None and not ok:
            error = (
                f"{failed['step']}: {failed['kind']}" if failed else "the session did not finish"
            )
        return {
            "target": endpoint.url,
            "ok": ok,
            "error": error,
            "failed_step": failed["step"] if failed else None,
            "duration_s": round(trio.current_time() - started, 6),
            "exchanges": transcript.exchanges,
            "left_off": transcript.left_off,
        }

    async def saved(self, name: str) -> dict[str, Any]:
        """The saved scenario ``name``.

        Raises:
            NotFoundError: There is none.
        """
        found = await self.store.get(name)
        if found is None:
            raise NotFoundError(f"no saved scenario {name!r}", "name")
        return found
