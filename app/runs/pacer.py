"""When each message of an open-loop flow goes: its schedule, and the pacer that keeps it.

Theory of operation: a :class:`Schedule` maps a message's index to the second (after the
run's start) at which it is due. It is piecewise: a live edit of the run (a new rate, a
new number of connections, a pause or a resume; :mod:`app.runs.control`) starts a new
segment at the first index not handed out yet, so every message already sent keeps the
intended time it was sent at (its reply's latency is measured from that), and the next one
follows the new schedule. A paused segment is due at infinity.

The :class:`Pacer` of a flow waits for each message to be due, stamps its probe header and
says when to measure it from. A sender that is late does not wait: it catches up instead of
shifting the schedule, and its messages keep their intended times, so a stall of the target
shows. A message sent less than :data:`TIMER_SLACK_NS` after its intended time is measured
from when it really went out: that much lateness is the sender's timer, not the target
(without a precise timer epoll wakes up to a millisecond late, and at rates above 1,000
msg/s per flow the messages due meanwhile go out together). Anything later (a stall of this
process or a blocked send) still counts. A sender catching up (or a burst) yields to the
event loop once every :data:`CATCH_UP_BATCH` messages.

Live edits cost nothing per message: :meth:`Pacer.retime` is called by the edit (once per
flow, on the event loop), rewrites the schedule and wakes the sleeping sender, which looks
at the schedule again; a pause is seen in the branch that already ends a flow at its send
deadline. So an edit takes effect at the next message, well within one tick.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import trio

from app.runs.timer import PreciseTimer
from app.wire import probe

if TYPE_CHECKING:
    from app.runs.context import FlowContext

perf_ns = time.perf_counter_ns
# How late a sender may be before its lateness counts as latency: a little more than
# epoll's millisecond granularity, for the platforms without a precise timer.
TIMER_SLACK_NS = 2_000_000
_WARMUP = probe.FLAG_WARMUP
# A sender behind its schedule yields to the event loop once per this many messages.
CATCH_UP_BATCH = 32


class Schedule:
    """Message ``i`` of one flow is due ``base + ((i - start) // per_slot) * period``
    seconds after the run's start, in the segment that holds ``i``."""

    __slots__ = ("_past", "base", "per_slot", "period", "start")

    def __init__(self, base: float, period: float, per_slot: int = 1) -> None:
        self.start = 0
        self.base = base
        self.period = period
        self.per_slot = per_slot
        self._past: list[tuple[int, float, float, int]] = []

    def at(self, i: int) -> float:
        """Seconds after the run's start at which message ``i`` is (or was) due."""
        if i >= self.start:
            return self.base + ((i - self.start) // self.per_slot) * self.period
        for start, base, period, per_slot in reversed(self._past):
            if i >= start:
                return base + ((i - start) // per_slot) * period
        return self.base  # unreachable: the first segment starts at 0

    def retime(self, start: int, base: float, period: float) -> None:
        """From message ``start`` on, the schedule starts at ``base`` with ``period``."""
        if start > self.start:
            self._past.append((self.start, self.base, self.period, self.per_slot))
        self.start, self.base, self.period = start, base, period


def plan(ctx: FlowContext, flow_id: int, offset: float) -> tuple[float, float, int]:
    """The schedule of a flow from ``offset`` seconds after the start: its first due time,
    its period and the messages per period, from the run's live settings.

    Rate: the run's rate shared by its connections, the flows offset by a fraction of a
    period so that together they are evenly spaced. Burst: ``burst`` messages every
    ``interval``, on the run's grid of intervals (all flows together). Paused: never.
    """
    control = ctx.control
    spec = control.spec
    if spec.pattern == "burst":
        gap = spec.interval
        base = math.ceil(offset / gap - 1e-9) * gap if offset > 0 else 0.0
        return (math.inf if control.paused else base), gap, spec.burst
    n = spec.connections
    rate = spec.message_rate or 1.0
    period = n / rate
    slot = ctx.slots.get(flow_id)
    if slot is None or control.paused:  # retired, or paused
        return math.inf, period, 1
    return offset + period * slot / n, period, 1


class Pacer:
    """Waits for each message of one flow to be due, stamps its header, and says when to
    measure it from (see the module's docstring).

    Messages are indexed from 0 in schedule order; the header's sequence number counts the
    warm-up messages and the counted ones apart, each from 0 (:attr:`first` is the index of
    the first counted message).

    Resource handling: use it as a context manager; it closes its timer and leaves the
    run's live edits (:class:`~app.runs.control.RunControl`) when the flow ends.
    """

    __slots__ = (
        "ctx",
        "first",
        "flow_id",
        "retimed",
        "retired",
        "schedule",
        "stats",
        "timer",
        "unslept",
        "upcoming",
    )

    def __init__(self, ctx: FlowContext, flow_id: int, timer: PreciseTimer | None = None) -> None:
        self.ctx = ctx
        self.flow_id = flow_id
        self.timer = timer or PreciseTimer()
        self.stats = ctx.stats
        self.first: int | None = None
        self.unslept = 0  # messages sent in a row without waiting
        self.upcoming = 0  # the first index not handed out yet
        self.retimed = False
        self.retired = False
        # A flow added by an edit is scheduled from when it joined; the others from the
        # start (one started late by the ramp-up catches up, as before).
        self.schedule = Schedule(*plan(ctx, flow_id, ctx.joined.get(flow_id, 0.0)))

    def __enter__(self) -> Pacer:
        self.ctx.control.pacers.add(self)
        self.ctx.retirers[self.flow_id] = self.retire
        return self

    def __exit__(self, *exc: object) -> None:
        self.ctx.control.pacers.discard(self)
        self.ctx.retirers.pop(self.flow_id, None)
        self.timer.close()

    def retime(self, now: float) -> None:
        """Follow the run's live settings from the next message on (called by an edit)."""
        base, period, _ = plan(self.ctx, self.flow_id, now - self.ctx.clock0)
        self.schedule.retime(self.upcoming, math.inf if self.retired else base, period)
        self.retimed = True
        self.timer.wake()

    def retire(self) -> None:
        """Send nothing more: the run has fewer connections now. Replies still in flight
        are waited for, as at the end of the run."""
        self.retired = True
        self.retime(trio.current_time())

    def intended_ns(self, seq: int) -> int:
        """The intended send time (``perf_counter_ns``) of counted message ``seq``."""
        return self.ctx.perf0 + int(self.schedule.at(seq + (self.first or 0)) * 1e9)

    async def _held(self) -> bool:
        """While the run is paused (and time is left), wait for it to resume: True then."""
        control = self.ctx.control
        if self.retired or not control.paused:
            return False
        deadline = self.ctx.send_deadline
        with trio.move_on_at(deadline):
            await control.wait_resumed()
        return trio.current_time() < deadline

    async def next(self, index: int, buf: bytearray) -> tuple[int, int, bool] | None:
        """Wait for message ``index`` and write its probe header into ``buf``.

        Returns the time to measure the message's latency from (ns, the sender's clock),
        its size and whether it is counted (not warm-up), or ``None`` when the message
        would be due after the send deadline (or the flow was retired).
        """
        ctx = self.ctx
        while True:
            offset = self.schedule.at(index)
            due = ctx.clock0 + offset
            if due >= ctx.send_deadline:
                if await self._held():
                    continue
                return None
            intended = ctx.perf0 + int(offset * 1e9)
            now = perf_ns()
            if intended > now:
                self.retimed = False
                await self.timer.sleep_until_ns(intended, due)
                if self.retimed:
                    continue  # edited while it slept: the message is due at another time
                now = perf_ns()
                self.unslept = 0
            else:
                # Catching up: yield now and then, so the listeners and receivers on this
                # loop (an echo of this lab, this flow's own replies) drain their sockets
                # instead of dropping what a backlog sent back to back would queue.
                self.unslept += 1
                if self.unslept >= CATCH_UP_BATCH:
                    self.unslept = 0
                    await trio.lowlevel.checkpoint()
                    if self.retimed and self.schedule.at(index) != offset:
                        self.retimed = False
                        continue
                    now = perf_ns()
            break
        self.upcoming = index + 1
        lateness = now - intended
        if lateness < 0:  # trio's fallback sleep may end a few microseconds early
            lateness = 0
        counted = intended >= ctx.measure_from_ns
        if counted:
            if self.first is None:
                self.first = index
            seq, flags = index - self.first, 0
            stats = self.stats
            stats.paced_sends += 1
            stats.send_lateness_ns += lateness
            if lateness > stats.send_lateness_max_ns:
                stats.send_lateness_max_ns = lateness
            if lateness >= TIMER_SLACK_NS:
                stats.late_sends += 1
        else:
            seq, flags = index, _WARMUP
        size = ctx.sizes[index % len(ctx.sizes)]
        if size >= probe.HEADER_SIZE:
            probe.encode_into(buf, ctx.run_tag, self.flow_id, seq, now, flags=flags)
        return (now if lateness < TIMER_SLACK_NS else intended), size, counted
