"""The flows of one run: started over the ramp-up, added or retired by live edits.

Theory of operation: :meth:`FlowSet.run` starts one task per quota (spread over
``ramp_up`` seconds) and returns when every flow has ended. :meth:`FlowSet.resize` is how a
live edit of ``connections`` (:mod:`app.runs.control`) reaches the run: new flows get new
ids (a retired flow's id is never used again, so a sink's per-flow figures stay whole) and
join the open-loop schedule from now; the newest flows are retired first. A flow that can
be retired gently registers how in the context's ``retirers`` (open-loop pacers, the
pingpong driver): it sends nothing more and waits for its replies, as at the end of the
run. The others (TCP bulk, TLS pingpong) are ended as a close from the API ends them: the
bytes they have in flight are neither received nor lost.

Each flow's task is also the per-flow error boundary: a bug that raises in one flow ends
that flow only (counted as an ``internal`` error and logged with the run and flow ids).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from app.runs.context import FlowContext
from app.runs.error_kinds import error_detail

logger = logging.getLogger(__name__)

Flow = Callable[[FlowContext, int, int | None], Awaitable[None]]


class FlowSet:
    """The flow tasks of one run.

    Args:
        ctx: The run's shared context (its ``slots`` are kept here).
        flow: The pattern's flow function.
        quotas: Messages per flow (``None``: until the send deadline), one per connection.
    """

    def __init__(self, ctx: FlowContext, flow: Flow, quotas: list[int | None]) -> None:
        self.ctx = ctx
        self.flow = flow
        self.quotas = quotas
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[int, trio.CancelScope] = {}
        self._next_id = len(quotas)
        ctx.slots = {i: i for i in range(len(quotas))}

    async def run(self) -> None:
        """Start the flows and return when all have ended."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._start_all)
        self._nursery = None

    async def _start_all(self) -> None:
        ctx, quotas = self.ctx, self.quotas
        n = len(quotas)
        ramp_up = ctx.spec.ramp_up
        for i, quota in enumerate(quotas):
            if quota == 0:
                continue
            if ramp_up and n > 1:
                await trio.sleep_until(ctx.clock0 + ramp_up * i / (n - 1))
            if i in ctx.slots:  # not retired by an edit during the ramp-up
                self._start(i, quota)

    def _start(self, flow_id: int, quota: int | None) -> None:
        assert self._nursery is not None
        scope = self._scopes[flow_id] = trio.CancelScope()
        self.ctx.stats.flows += 1
        self._nursery.start_soon(self._guarded, flow_id, quota, scope)

    async def _guarded(self, flow_id: int, quota: int | None, scope: trio.CancelScope) -> None:
        # The per-flow boundary: cancellation is not an Exception and still propagates.
        try:
            with scope:
                await self.flow(self.ctx, flow_id, quota)
        except Exception as exc:
            logger.exception("run %s: flow %d failed", self.ctx.run_id, flow_id)
            self.ctx.stats.flow_failed("internal", error_detail(exc))
        finally:
            self._scopes.pop(flow_id, None)
            self.ctx.slots.pop(flow_id, None)

    def resize(self, connections: int) -> None:
        """Keep ``connections`` flows sending: start new ones, or retire the newest."""
        ctx = self.ctx
        sending = sorted(ctx.slots)
        if self._nursery is None:
            return
        if connections < len(sending):
            for flow_id in sending[connections:]:
                del ctx.slots[flow_id]
                retire = ctx.retirers.get(flow_id)
                if retire is not None:
                    retire()
                elif flow_id in self._scopes:
                    self._scopes[flow_id].cancel()
        else:
            offset = trio.current_time() - ctx.clock0
            for _ in range(connections - len(sending)):
                flow_id = self._next_id
                self._next_id += 1
                ctx.slots[flow_id] = -1
                ctx.joined[flow_id] = offset
                self._start(flow_id, None)
        # Each sending flow's place among them: its phase in an open-loop schedule.
        for slot, flow_id in enumerate(sorted(ctx.slots)):
            ctx.slots[flow_id] = slot
