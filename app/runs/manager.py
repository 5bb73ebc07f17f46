"""Start, watch and stop runs; store their specs and results.

Resource handling: every run is a task in the manager's nursery with its own cancel scope;
stopping a run cancels that scope, which closes its sockets. The result is stored whatever
ends the run (finish, stop, failure, lab shutdown), inside a shielded, time-bounded scope.

Error handling: storing a result never fails the run or the lab. While the store cannot
write, the result waits in the store's memory (readers of the store see it) and is retried
(:mod:`app.writebehind`); a new run is refused with 503 meanwhile, so a 201 still means
the run is on disk.

A run is carried out by an *executor*: the engine for runs fired from here, or a follower
of the same run on a peer (:mod:`app.peers`). Either way the run goes through the same
caps, store and audit, and ends in one :class:`~app.runs.outcome.Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import trio

from app.audit import AuditLog
from app.endpoint import Endpoint
from app.errors import ConflictError, NotFoundError, SpecError, TargetNotAllowedError
from app.history import RunHistory
from app.registry import Registry
from app.runs.caps import check_run_caps
from app.runs.control import RunEdit
from app.runs.engine import ReceivingEnd, execute
from app.runs.histogram import encode
from app.runs.outcome import Outcome, conclude
from app.runs.run import Run as Run  # re-exported: callers and tests import it from here
from app.runs.spec import RunSpec
from app.runs.targets import TargetPolicy
from app.runs.totals import PatternTotals, RunTotals, run_key
from app.settings import Settings
from app.store import Store

logger = logging.getLogger(__name__)

# How long storing a run's result may take at the end, even during shutdown.
_STORE_TIMEOUT = 5.0


Executor = Callable[[Run], Awaitable[Outcome]]
"""Carries a run out and says how it ended; it writes only to the run's statistics."""

RunCallback = Callable[[Run], None]


class RunManager:
    """All runs of the lab: live ones in memory, every one in the store.

    Args:
        registry: Where runs show their connections.
        settings: The caps (duration, connections, rate, bytes, concurrent runs).
        store: Where every run's spec and result is kept (open before the first run).
        audit: Who asked for which run, and how it ended.
        policy: Which targets runs may go to.
        receiving_end: The receiver's side of a run, when a socketlab sink keeps it.
        on_tick: Called after each closed second of a run.
        on_end: Called once a run has ended and is stored.
    """

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        *,
        store: Store,
        audit: AuditLog,
        policy: TargetPolicy,
        receiving_end: ReceivingEnd,
        on_tick: RunCallback,
        on_end: RunCallback,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._store = store
        self._audit = audit
        self._policy = policy
        self._receiving_end = receiving_end
        self._on_tick = on_tick
        self._on_end = on_end
        self.accepting = True
        self.live: dict[str, Run] = {}
        # Counters of every ended run, for /metrics; live runs are added at scrape time.
        self.totals = RunTotals()
        self._nursery: trio.Nursery | None = None
        # Runs admitted and not yet live (their target is being resolved, their record
        # stored): they hold a place under the concurrent-run cap (see reserve).
        self._starting = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the nursery that runs live in, until cancelled."""
        async with trio.open_nursery() as self._nursery:
            task_status.started()
            await trio.sleep_forever()

    def check_caps(self, spec: RunSpec) -> None:
        """Refuse specs beyond the configured caps, naming the field (:mod:`app.runs.caps`),
        and refuse a run beyond the concurrent-run cap, counting those still starting."""
        s = self._settings
        check_run_caps(spec, s)
        running = len(self.running()) + self._starting
        if running >= s.max_concurrent_runs:
            raise ConflictError(
                f"{running} runs are going already (the limit is {s.max_concurrent_runs})", None
            )

    def running(self) -> list[Run]:
        """The runs going now, paused ones included (local and followed ones)."""
        return [r for r in self.live.values() if r.going]

    # Read-only views for the web layer, so it asks the manager instead of reaching into it.

    def live_runs(self) -> tuple[Run, ...]:
        """Runs held in memory now: running, or ended and not stored yet."""
        return tuple(self.live.values())

    def live_run(self, run_id: str) -> Run | None:
        """The run ``run_id`` if it is still held in memory (see :meth:`live_runs`)."""
        return self.live.get(run_id)

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
            StoreUnavailableError: The store cannot write now (nothing was started).
        """
        with self.reserve(spec):
            return await self._start_local(spec, principal, client)

    async def _start_local(self, spec: RunSpec, principal: str, client: str | None) -> Run:
        run = Run(spec)
        self._check_source(run)
        requested_at = time.time()
        pinned: tuple[int, tuple[Any, ...]] | OSError
        try:
            pinned = await self._policy.resolve(run.endpoint)
        except TargetNotAllowedError as exc:
            await self._audit.record(
                self._audit_entry(run, principal, client, requested_at, f"refused: {exc.message}")
                | {"run_id": None}
            )
            logger.warning("run refused: %s", exc.message)
            raise
        except OSError as exc:
            pinned = exc
        await self._launch(run, partial(self._execute, pinned), principal, client, requested_at)
        return run

    def _check_source(self, run: Run) -> None:
        """Refuse a reverse or bidir run at a listener known not to be a source.

        Raises:
            SpecError: Naming ``reverse`` or ``bidir``.
        """
        spec = run.spec
        if not (spec.reverse or spec.bidir):
            return
        if self._receiving_end.is_source(run.endpoint) is False:
            name = "reverse" if spec.reverse else "bidir"
            raise SpecError(
                f"{name}: {run.endpoint.url} is a socketlab listener that does not send; "
                "a reverse or bidir run needs a listener in mode=source",
                name,
            )

    async def start_followed(
        self,
        spec: RunSpec,
        executor: Executor,
        *,
        run_id: str,
        principal: str = "local",
        client: str | None = None,
    ) -> Run:
        """Start a run that ``executor`` follows elsewhere (a run on a peer), with the same
        store and audit as a local one; no traffic leaves from here. Called inside
        :meth:`reserve` for the same spec, which checked its caps and holds its place.

        Raises:
            StoreUnavailableError: The store cannot write now (nothing was started).
        """
        run = Run(spec, run_id=run_id, followed=True)
        await self._launch(run, executor, principal, client, time.time())
        return run

    def admit(self, spec: RunSpec) -> None:
        """Refuse a run now: the lab is shutting down, or the spec exceeds a cap."""
        if self._nursery is None or not self.accepting:
            raise ConflictError("the lab is shutting down", None)
        self.check_caps(spec)

    @contextmanager
    def reserve(self, spec: RunSpec) -> Iterator[None]:
        """Admit ``spec`` and hold its place under the concurrent-run cap until the run is
        live (or has failed to start). Taken before the first await, so simultaneous
        requests cannot all pass the check before any of them is registered; a run started
        on a peer holds it from before asking the peer until its copy here is live.

        Raises:
            ConflictError: The lab is shutting down, or too many runs are going.
            SpecError: The spec exceeds a cap.
        """
        self.admit(spec)
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1

    @staticmethod
    def _audit_entry(
        run: Run, principal: str, client: str | None, requested_at: float, outcome: str
    ) -> dict[str, Any]:
        return {
            "run_id": run.id,
            "principal": principal,
            "client": client,
            "target": run.spec.target.url,
            "spec": run.spec.model_dump(mode="json"),
            "requested_at": requested_at,
            "outcome": outcome,
        }

    async def _launch(
        self,
        run: Run,
        executor: Executor,
        principal: str,
        client: str | None,
        requested_at: float,
    ) -> None:
        assert self._nursery is not None
        await self._store.insert_run(run.to_dict(series=False))
        await self._audit.record(self._audit_entry(run, principal, client, requested_at, "running"))
        self.live[run.id] = run
        self._nursery.start_soon(self._run, run, executor)
        logger.info("run %s started: %s %s", run.id, run.spec.pattern, run.spec.target)

    async def _execute(self, pinned: tuple[int, tuple[Any, ...]] | OSError, run: Run) -> Outcome:
        """The local executor: the engine, at the address checked when the run started."""

        async def resolved(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
            if isinstance(pinned, OSError):
                raise pinned
            return pinned

        return await execute(
            run.id,
            run.spec,
            run.endpoint,
            run.stats,
            self._registry,
            stop=run.cancel_scope,
            resolver=resolved,
            receiving_end=self._receiving_end,
            on_tick=partial(self._on_tick, run),
            max_bytes=self._settings.max_run_bytes,
            max_rate=self._settings.max_run_rate,
            max_bitrate=self._settings.max_run_bitrate,
            max_duration=self._settings.max_run_duration,
            control=run.control,
        )

    async def _run(self, run: Run, executor: Executor) -> None:
        run.started_at = time.time()
        outcome: Outcome | None = None
        try:
            outcome = await executor(run)
        except Exception as exc:
            logger.exception("run %s failed", run.id)
            outcome = conclude(
                run.spec.pattern, run.stats, run.elapsed, failure=f"internal error: {exc!r}"
            )
        finally:
            if outcome is None:
                # Cancelled from outside (the lab's last resort at shutdown): stopped.
                outcome = conclude(run.spec.pattern, run.stats, run.elapsed, stopped=True)
            run.control.detach()
            ended_at = run.end(outcome)
            # No checkpoint since the status was final: a scrape sees the run either as
            # running or in the totals, never both. A followed run's traffic is counted by
            # the node that sent it, so that a sum over nodes counts it once.
            if not run.followed:
                self.totals.add(run)
            # These never raise for a failing store: what cannot be written now waits in
            # the store's memory, queued before the first checkpoint, and is retried. A
            # scope each, so that a slow disk timing out the first still queues the second.
            with trio.CancelScope(shield=True), trio.move_on_after(_STORE_TIMEOUT):
                await self._store.update_run(
                    run.id,
                    status=run.status,
                    summary=run.summary(),
                    series=run.stats.series,
                    error=run.error,
                    started_at=run.started_at,
                    ended_at=ended_at,
                )
                # The whole HDR histogram, for the history's fine buckets (app.history).
                await RunHistory(self._store).keep_histogram(run.id, encode(run.stats.total))
            with trio.CancelScope(shield=True), trio.move_on_after(_STORE_TIMEOUT):
                await self._audit.finish(run.id, run.started_at, ended_at, run.status)
            self._on_end(run)
            # Stored (or waiting in the store's memory, which readers of the store see):
            # readers get it from the store, the manager's memory stays bounded.
            self.live.pop(run.id, None)
            run.done.set()
            logger.info("run %s %s", run.id, run.status)

    def totals_snapshot(
        self,
    ) -> tuple[dict[tuple[str, str], PatternTotals], dict[tuple[str, str], int]]:
        """For ``/metrics``: totals by (protocol, pattern), ended runs and running ones
        together (read from their summaries), and how many runs of each key are going.
        Runs followed on a peer are the peer's figures and left out."""
        running = [r for r in self.running() if not r.followed]
        counts: dict[tuple[str, str], int] = {}
        for run in running:
            key = run_key(run)
            counts[key] = counts.get(key, 0) + 1
        return self.totals.snapshot(running), counts

    async def audit_entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (refused requests included)."""
        return await self._audit.entries(limit)

    def edit(self, run_id: str, edit: RunEdit) -> Run:
        """Change a running run's rate or connections, or pause or resume it, at once
        (:mod:`app.runs.control`); its statistics go on.

        Raises:
            NotFoundError: No run ``run_id`` is going.
            ConflictError: The run is followed on a peer (edit it there), or ending.
            SpecError: A field this run cannot change live, or a value beyond a cap.
        """
        run = self.live.get(run_id)
        if run is None or not run.going:
            raise NotFoundError(f"no running run {run_id!r}", "id")
        if run.followed:
            raise ConflictError(f"run {run_id} goes on a peer: edit it there", "id")
        spec = run.control.check(edit, self._settings)
        run.control.apply(spec, edit.paused)
        logger.info("run %s edited: %s", run.id, edit.model_dump(exclude_none=True))
        return run

    def stop(self, run_id: str) -> Run:
        run = self.live.get(run_id)
        if run is None:
            raise NotFoundError(f"no running run {run_id!r}", "id")
        run.cancel_scope.cancel()
        return run

    async def stop_running(self) -> int:
        """The kill switch: stop every running run (new ones may start later)."""
        running = self.running()
        for run in running:
            run.cancel_scope.cancel()
        for run in running:
            await run.done.wait()
        return len(running)

    async def stop_all(self) -> int:
        """Stop every live run and wait until each is stored; returns how many were running."""
        self.accepting = False
        return await self.stop_running()

    async def get(self, run_id: str) -> dict[str, Any]:
        run = self.live.get(run_id)
        if run is not None and run.going:
            return run.to_dict()
        stored = await self._store.get_run(run_id)
        if stored is not None:
            return stored
        if run is not None:
            return run.to_dict()
        raise NotFoundError(f"no run {run_id!r}", "id")

    async def list(self, limit: int = 100) -> list[dict[str, Any]]:
        live = {r.id: r.to_dict(series=False) for r in self.running()}
        stored = await self._store.list_runs(limit)
        items = [live.pop(r["id"], r) for r in stored]
        return (list(live.values()) + items)[:limit]
