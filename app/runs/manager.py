"""Start, watch and stop runs; store their specs and results.

Resource handling: every run is a task in the manager's nursery with its own cancel scope;
stopping a run cancels that scope, which closes its sockets. The result is stored whatever
ends the run (finish, stop, failure, lab shutdown), inside a shielded, time-bounded scope.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import trio

from app.endpoint import Endpoint
from app.errors import ConflictError, NotFoundError, SpecError, TargetNotAllowedError
from app.registry import Registry
from app.runs.engine import RemoteLookup, execute
from app.runs.spec import RunSpec
from app.runs.stats import RunStats
from app.runs.targets import TargetPolicy
from app.runs.totals import PatternTotals, RunTotals
from app.settings import Settings
from app.store import AuditLog, Store

logger = logging.getLogger(__name__)

# How long storing a run's result may take at the end, even during shutdown.
_STORE_TIMEOUT = 5.0


class Run:
    """One run: its spec, its live statistics and how it ended."""

    def __init__(self, spec: RunSpec) -> None:
        self.id = secrets.token_hex(6)
        self.spec = spec
        self.status = "running"
        self.error: str | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.stats = RunStats()
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()
        self.context: object | None = None
        # The checked address the run connects to (or why the name did not resolve).
        self.pinned: tuple[tuple[int, tuple[Any, ...]] | None, OSError | None] = (None, None)
        self._t0 = 0.0
        self._summary: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.time()
        return end - self.started_at

    @property
    def progress(self) -> float:
        """Fraction done, 0 to 1."""
        if self.status != "running":
            return 1.0
        spec = self.spec
        if spec.pattern == "packet":
            return 0.0
        if spec.count:
            s = self.stats
            return min(1.0, max(s.sent, s.received + s.lost + s.error_count) / spec.count)
        duration = (spec.effective_duration or 1.0) + spec.warmup
        return min(1.0, self.elapsed / duration)

    def live(self) -> dict[str, Any]:
        """The small live record the dashboard and CLI show while a run goes."""
        s = self.stats
        last = s.series[-1] if s.series else None
        return {
            "id": self.id,
            "status": self.status,
            "target": self.spec.target.url,
            "progress": round(self.progress, 4),
            "elapsed": round(self.elapsed, 3),
            "sent": s.sent,
            "received": s.received,
            "errors": s.error_count,
            "msgs_per_s": last["msgs_per_s"] if last else s.received / max(self.elapsed, 1e-3),
            "rtt_p50_ms": last["rtt_ms"]["p50"] if last else None,
            "rtt_p99_ms": last["rtt_ms"]["p99"] if last else None,
        }

    def summary(self) -> dict[str, Any]:
        if self._summary is not None:
            return self._summary
        s = self.stats
        return {
            "sent": s.sent,
            "received": s.received,
            "bytes_sent": s.bytes_sent,
            "bytes_received": s.bytes_received,
            "errors": s.error_count,
            "errors_by_kind": dict(s.errors),
            "lost": s.lost,
            "late": s.late,
            "rtt_ms": None,
        }

    def finish(self) -> None:
        self._summary = self.stats.summary(self.elapsed)

    def latest_point(self) -> dict[str, Any] | None:
        """The newest closed 1 s interval, or ``None`` before the first one."""
        series = self.stats.series
        return series[-1] if series else None

    def to_dict(self, *, series: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "spec": self.spec.model_dump(),
            "summary": self.summary(),
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "progress": round(self.progress, 4),
        }
        if series:
            doc["series"] = list(self.stats.series)
        return doc


class RunManager:
    """All runs of the lab: live ones in memory, every one in the store."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        store: Store | None = None,
        on_tick: Callable[[Run], None] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.store = store
        self.on_tick = on_tick
        self.on_end: Callable[[Run], None] | None = None
        self.policy = TargetPolicy(settings.allow_targets, allow_multicast=settings.allow_multicast)
        self.audit: AuditLog | None = None
        self.remote_lookup: RemoteLookup | None = None
        self.live: dict[str, Run] = {}
        # Counters of every ended run, for /metrics; live runs are added at scrape time.
        self.totals = RunTotals()
        self._nursery: trio.Nursery | None = None
        self.accepting = True

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the nursery that runs live in, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def check_caps(self, spec: RunSpec) -> None:
        """Refuse specs beyond the configured caps, naming the field."""
        s = self.settings
        duration = spec.effective_duration
        if duration is not None and duration > s.max_run_duration:
            raise SpecError(f"duration: at most {s.max_run_duration:g} s per run", "duration")
        if spec.connections > s.max_run_connections:
            raise SpecError(f"connections: at most {s.max_run_connections} per run", "connections")
        rate = spec.message_rate
        if rate is not None and rate > s.max_run_rate:
            raise SpecError(f"rate: at most {s.max_run_rate:g} messages/s per run", "rate")
        if rate is not None and rate * spec.mean_size * 8 > s.max_run_bitrate:
            raise SpecError(f"bitrate: at most {s.max_run_bitrate:g} bit/s per run", "bitrate")
        if spec.count is not None and spec.count * spec.largest_size > s.max_run_bytes:
            raise SpecError(f"count: at most {s.max_run_bytes:g} bytes per run", "count")
        running = sum(1 for r in self.live.values() if r.status == "running")
        if running >= s.max_concurrent_runs:
            raise ConflictError(
                f"{running} runs are going already (the limit is {s.max_concurrent_runs})", None
            )

    async def start(
        self, spec: RunSpec, *, principal: str = "local", client: str | None = None
    ) -> Run:
        """Check, resolve, store and start a run; returns as soon as it is stored.

        The target is resolved here, once, and every address is checked against the target
        policy; the run then connects to that checked address. A name that does not
        resolve still makes a run, which fails with the ``dns`` error kind and is stored.

        Raises:
            ConflictError: The lab is shutting down, or too many runs are going.
            SpecError: The spec exceeds a cap.
            TargetNotAllowedError: The target is refused (audited, no traffic sent).
        """
        if self._nursery is None or not self.accepting:
            raise ConflictError("the lab is shutting down", None)
        self.check_caps(spec)
        endpoint = spec.target
        requested_at = time.time()
        resolved: tuple[int, tuple[Any, ...]] | None = None
        resolve_error: OSError | None = None
        try:
            resolved = await self.policy.resolve(endpoint)
        except TargetNotAllowedError as exc:
            if self.audit is not None:
                await self.audit.record(
                    {
                        "principal": principal,
                        "client": client,
                        "target": spec.target.url,
                        "spec": spec.model_dump(mode="json"),
                        "requested_at": requested_at,
                        "outcome": f"refused: {exc.message}",
                    }
                )
            logger.warning("run refused: %s", exc.message)
            raise
        except OSError as exc:
            resolve_error = exc
        run = Run(spec)
        run.pinned = (resolved, resolve_error)
        if self.store is not None:
            await self.store.insert_run(run.to_dict(series=False))
        if self.audit is not None:
            await self.audit.record(
                {
                    "run_id": run.id,
                    "principal": principal,
                    "client": client,
                    "target": spec.target.url,
                    "spec": spec.model_dump(mode="json"),
                    "requested_at": requested_at,
                    "outcome": "running",
                }
            )
        self.live[run.id] = run
        self._nursery.start_soon(self._run, run)
        logger.info("run %s started: %s %s", run.id, spec.pattern, spec.target)
        return run

    async def _run(self, run: Run) -> None:
        resolved, resolve_error = run.pinned

        async def pinned(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
            if resolve_error is not None:
                raise resolve_error
            assert resolved is not None
            return resolved

        try:
            await execute(
                run,
                self.registry,
                self.on_tick,
                resolver=pinned,
                remote_lookup=self.remote_lookup,
                max_bytes=self.settings.max_run_bytes,
            )
        except Exception as exc:
            logger.exception("run %s failed", run.id)
            run.status = "failed"
            run.error = f"internal error: {exc!r}"
        finally:
            if run.status == "running":
                run.status = "stopped"
            run.ended_at = time.time()
            run.finish()
            # No checkpoint since the status was final: a scrape sees the run either as
            # running or in the totals, never both.
            self.totals.add(run)
            with trio.CancelScope(shield=True), trio.move_on_after(_STORE_TIMEOUT):
                if self.store is not None:
                    await self.store.update_run(
                        run.id,
                        status=run.status,
                        summary=run.summary(),
                        series=run.stats.series,
                        error=run.error,
                        started_at=run.started_at,
                        ended_at=run.ended_at,
                    )
                if self.audit is not None:
                    await self.audit.finish(run.id, run.started_at, run.ended_at, run.status)
            if self.on_end is not None:
                self.on_end(run)
            if self.store is not None:
                # Stored now: readers get it from the store, memory stays bounded.
                self.live.pop(run.id, None)
            run.done.set()
            logger.info("run %s %s", run.id, run.status)

    def stop(self, run_id: str) -> Run:
        run = self.live.get(run_id)
        if run is None:
            raise NotFoundError(f"no running run {run_id!r}", "id")
        run.cancel_scope.cancel()
        return run

    async def stop_running(self) -> int:
        """The kill switch: stop every running run (new ones may start later)."""
        running = [r for r in self.live.values() if r.status == "running"]
        for run in running:
            run.cancel_scope.cancel()
        for run in running:
            await run.done.wait()
        return len(running)

    async def stop_all(self) -> int:
        """Stop every live run and wait until each is stored; returns how many were running."""
        self.accepting = False
        running = [r for r in self.live.values() if r.status == "running"]
        for run in running:
            run.cancel_scope.cancel()
        for run in running:
            await run.done.wait()
        return len(running)

    async def get(self, run_id: str) -> dict[str, Any]:
        run = self.live.get(run_id)
        if run is not None and run.status == "running":
            return run.to_dict()
        if self.store is not None:
            stored = await self.store.get_run(run_id)
            if stored is not None:
                return stored
        if run is not None:
            return run.to_dict()
        raise NotFoundError(f"no run {run_id!r}", "id")

    async def list(self, limit: int = 100) -> list[dict[str, Any]]:
        live = {r.id: r.to_dict(series=False) for r in self.live.values() if r.status == "running"}
        stored = await self.store.list_runs(limit) if self.store is not None else []
        items = [live.pop(r["id"], r) for r in stored]
        items = list(live.values()) + items
        if self.store is None:
            items += [r.to_dict(series=False) for r in self.live.values() if r.status != "running"]
        return items[:limit]

    # Read-only views for the web layer, so it asks the manager instead of reaching into it.

    def live_runs(self) -> tuple[Run, ...]:
        """Runs held in memory now: running, or ended and not stored yet."""
        return tuple(self.live.values())

    def live_run(self, run_id: str) -> Run | None:
        """The run ``run_id`` if it is still held in memory (see :meth:`live_runs`)."""
        return self.live.get(run_id)

    def running(self) -> tuple[Run, ...]:
        """The runs going now."""
        return tuple(run for run in self.live.values() if run.status == "running")

    def totals_now(self) -> dict[tuple[str, str], PatternTotals]:
        """Totals of every run, ended and running, by (protocol, pattern), as fresh copies."""
        return self.totals.snapshot(self.running())
