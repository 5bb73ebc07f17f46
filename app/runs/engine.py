"""Running one run: start the flows at the checked address, tick the series, end cleanly.

Theory of operation: :func:`execute` gets the address the manager resolved and checked
(every connection goes to it), builds a :class:`~app.runs.context.FlowContext` shared by
all flows, runs the preparation of the pattern's row in :data:`~app.runs.flows.FLOWS`, then
starts ``connections`` flow tasks, spread over ``ramp_up`` seconds. Flows send until their
quota is used or ``send_deadline`` passes, then wait (at most ``timeout``) for replies
still in flight, so a healthy run ends with ``sent == received``. A ticker closes a 1 s
interval of the statistics every second; a monitor measures event-loop lag and CPU so the
summary can say when socketlab itself was the bottleneck. The engine writes only to the
run's :class:`RunStats`; it returns an :class:`~app.runs.outcome.Outcome` and leaves the
run's record to its caller.

Messages sent before ``warmup`` seconds have passed are sent but not counted: every flow
compares each message's send time with ``measure_from_ns``, and open-loop flows flag them
in the probe header so a sink leaves them out too.

Caps: the lab's caps reach the flows as the context's :class:`~app.runs.budget.Budget`,
charged before every write (the byte cap stops the run within one write of it; the rate
caps pace pingpong and TCP bulk), and the duration cap is a send deadline at most
``max_duration`` seconds after the start, warm-up included, for runs given a count too.

Live edits (:mod:`app.runs.control`): the run's control is attached to its budget (a
pause holds the paced patterns), to its open-loop pacers (a new schedule) and to its
:class:`~app.runs.flowset.FlowSet` (connections added or retired) while the flows go,
and each closed second of the series carries the settings it ended with.

A run aimed at a socketlab sink (this lab's, or a peer's: the :class:`ReceivingEnd` knows
before the run starts) expects no replies unless its spec says ``expect_replies``; one that
expects none claims no loss, and its summary's ``remote`` says what arrived of what was
sent, as the receiving end counted it once the run has sent everything. Reverse and bidir
runs start the reverse flows of :mod:`app.runs.reverse` (instead of, or beside, the
pattern's own) from :func:`~app.runs.flows.flow_kinds`. A receiving end
that cannot be asked (a peer down or answering badly) leaves ``remote`` null and says why
in ``remote_error``; the run ends as it would have.
"""

from __future__ import annotations

import logging
import math
import socket as stdsocket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from app.endpoint import Endpoint
from app.errors import SocketlabError
from app.registry import Registry
from app.runs.budget import Budget
from app.runs.context import FlowContext
from app.runs.control import RunControl
from app.runs.error_kinds import error_detail, error_kind
from app.runs.flows import flow_kinds, one_flow
from app.runs.flowset import FlowSet
from app.runs.flowstats import one_way
from app.runs.outcome import Outcome, conclude
from app.runs.receivers import Receiver, gather
from app.runs.spec import RunSpec
from app.runs.stats import RunStats, new_histogram
from app.tcpinfo import refresh_all

logger = logging.getLogger(__name__)
perf_ns = time.perf_counter_ns

Resolver = Callable[[Endpoint], Awaitable[tuple[int, tuple[Any, ...]]]]
# Between two looks at a receiving end still reading what is in flight; a look that took
# longer (a peer's, over its API) is followed by a pause as long.
_LOOK_INTERVAL = 0.005


class ReceivingEnd(Protocol):
    """Where the figures of a run's receiving end are kept, when it is a socketlab sink."""

    def is_sink(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` is a socketlab sink (asked once, before the run starts)."""
        ...

    async def figures(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        """What the sink at ``endpoint`` counted of the run tagged ``run_tag``, or None.

        Raises:
            SocketlabError: The sink is a peer's that could not be asked.
        """
        ...

    def is_source(self, endpoint: Endpoint) -> bool | None:
        """Whether ``endpoint`` is a socketlab source: True, False (a listener in another
        mode), or None when it is no listener this lab knows of (a relay, another host)."""
        ...

    def receivers_of(self, endpoint: Endpoint) -> list[Receiver]:
        """The socketlab sinks on a multicast group ``endpoint`` (this lab's and its
        peers'), asked when the run has sent everything (:mod:`app.runs.receivers`)."""
        ...


class NoReceivingEnd:
    """For runs fired outside a lab: nobody keeps the receiver's side."""

    def is_sink(self, endpoint: Endpoint) -> bool:
        return False

    async def figures(self, endpoint: Endpoint, run_tag: int) -> dict[str, Any] | None:
        return None

    def is_source(self, endpoint: Endpoint) -> bool | None:
        return None

    def receivers_of(self, endpoint: Endpoint) -> list[Receiver]:
        return []


NO_RECEIVING_END = NoReceivingEnd()


def _no_tick() -> None:
    return None


def _quotas(spec: RunSpec) -> list[int | None]:
    n = spec.connections
    if spec.pattern == "packet":
        return [1]
    if spec.count is None:
        return [None] * n
    base, extra = divmod(spec.count, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


async def resolve(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
    """Resolve the target's host once; returns the family and address to connect to."""
    kind = stdsocket.SOCK_DGRAM if endpoint.protocol == "udp" else stdsocket.SOCK_STREAM
    infos = await trio.socket.getaddrinfo(endpoint.host, endpoint.port, type=kind)
    family, _, _, _, address = infos[0]
    return int(family), tuple(address)


class LoadMonitor:
    """Event-loop lag (sampled every 10 ms) and process CPU while a run goes."""

    PERIOD = 0.01

    def __init__(self) -> None:
        self.lag = new_histogram()
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    async def watch(self) -> None:
        while True:
            t = trio.current_time()
            await trio.sleep(self.PERIOD)
            lag_ns = int((trio.current_time() - t - self.PERIOD) * 1e9)
            self.lag.record_value(max(lag_ns, 1))

    def report(self) -> dict[str, Any]:
        # Below half a second the CPU share is mostly start-up work, not the run's.
        wall = max(time.monotonic() - self.wall0, 0.5)
        cpu_pct = 100.0 * (time.process_time() - self.cpu0) / wall
        if self.lag.get_total_count():
            p99 = self.lag.get_value_at_percentile(99.0) / 1e6
            worst = self.lag.get_max_value() / 1e6
        else:
            p99 = worst = 0.0
        reasons = []
        if cpu_pct >= 90.0:
            reasons.append(f"socketlab used {cpu_pct:.0f} % of a CPU")
        if p99 >= 20.0:
            reasons.append(f"event-loop lag p99 was {p99:.1f} ms")
        return {
            "cpu_pct": round(cpu_pct, 1),
            "loop_lag_ms_p99": round(p99, 3),
            "loop_lag_ms_max": round(worst, 3),
            "limited": bool(reasons),
            "reason": "; ".join(reasons)
            or "socketlab had spare capacity: the figures are the target's",
        }


async def _wait_for_receiving_end(
    receiving_end: ReceivingEnd, endpoint: Endpoint, run_tag: int, stats: RunStats, spec: RunSpec
) -> None:
    """Wait until the sink has seen everything the run sent, at most ``timeout``: it reads
    what is still in flight after the last send, as a sender waits ``timeout`` for its last
    replies. A sink that counts messages has them all; one that counts bytes only (an
    unframed TCP sink) has as many bytes as were sent.

    Raises:
        SocketlabError: The sink is a peer's that could not be asked.
    """
    with trio.move_on_after(spec.timeout):
        while True:
            t = trio.current_time()
            remote = one_way(await receiving_end.figures(endpoint, run_tag), stats.sent)
            if remote is None:
                return
            if "lost" in remote:
                if not remote["lost"]:
                    return
            elif remote.get("rx_bytes", stats.bytes_sent) >= stats.bytes_sent:
                return
            await trio.sleep(max(_LOOK_INTERVAL, trio.current_time() - t))


async def _final_figures(receiving_end: ReceivingEnd, ctx: FlowContext) -> None:
    """The receiving end's figures into ``stats.remote``; why not, into ``remote_error``."""
    stats = ctx.stats
    try:
        with trio.move_on_after(ctx.timeout):
            figures = await receiving_end.figures(ctx.endpoint, ctx.run_tag)
            stats.remote = one_way(figures, stats.sent)
            return
        stats.remote_error = f"the receiving end did not answer within {ctx.timeout:g} s"
    except SocketlabError as exc:
        stats.remote_error = exc.message
    logger.warning("run %s: no figures from the receiving end: %s", ctx.run_id, stats.remote_error)


async def execute(
    run_id: str,
    spec: RunSpec,
    endpoint: Endpoint,
    stats: RunStats,
    registry: Registry,
    *,
    stop: trio.CancelScope,
    resolver: Resolver,
    receiving_end: ReceivingEnd = NO_RECEIVING_END,
    on_tick: Callable[[], None] = _no_tick,
    max_bytes: int | None = None,
    max_rate: float | None = None,
    max_bitrate: float | None = None,
    max_duration: float | None = None,
    control: RunControl | None = None,
) -> Outcome:
    """Run one run to its end and say how it ended.

    Args:
        run_id: The run's id (its probe tag and its registry rows are derived from it).
        spec: What to run.
        endpoint: The run's target, parsed once by the caller.
        stats: Where the run counts; the engine writes nothing else.
        registry: Where the flows' connections are shown.
        stop: Cancelled to stop the run; the run then ends ``stopped``.
        resolver: Gives the family and address to connect to.
        receiving_end: The receiver's side of the run, when a socketlab sink keeps it.
        on_tick: Called after each closed second of the series.
        max_bytes: The run sends at most this many bytes (warm-up included): the write
            that would pass it is not made, and the run stops sending.
        max_rate: Messages per second the self-paced patterns (pingpong, TCP bulk) are
            held to; the open-loop ones were checked against it before the run.
        max_bitrate: Bits of payload per second, the same way.
        max_duration: Seconds the run may send, warm-up included (a count run is stopped
            there; a duration run was checked against it before the run).
        control: The run's live edits (:mod:`app.runs.control`): rate, connections, pause.

    Returns:
        The outcome from :func:`~app.runs.outcome.conclude`.
    """
    clock0 = trio.current_time()
    stats.start(0.0)
    monitor = LoadMonitor()
    try:
        family, address = await resolver(endpoint)
    except OSError as exc:
        stats.record_error(error_kind(exc), error_detail(exc))
        return conclude(spec.pattern, stats, 0.0, failure=f"cannot resolve {endpoint.host}: {exc}")
    ctx = FlowContext(run_id, spec, endpoint, registry, stats, address, family)
    if control is not None:
        ctx.control = control
    control = ctx.control
    ctx.budget = Budget(
        max_bytes=max_bytes,
        max_rate=max_rate,
        max_bitrate=max_bitrate,
        on_exhausted=ctx.stop_sending,
    )
    # A run aimed at a socketlab sink expects no replies unless its spec says so; nor
    # does one to a multicast group, whose receivers each count what arrived (an echo's
    # unicast reply never reaches a socket connected to the group).
    expect = spec.expect_replies
    sink = not ctx.multicast and receiving_end.is_sink(endpoint)
    if expect is None:
        # A reverse or bidir run's target is a source, which answers nothing it is sent.
        expect = not (sink or ctx.multicast or spec.reverse or spec.bidir)
    ctx.expect_replies = stats.expect_replies = expect
    kinds = flow_kinds(spec, endpoint.protocol)
    backgrounds = [b for b in (kind.prepare(ctx) for kind in kinds) if b is not None]
    flow = one_flow(kinds)
    quotas = _quotas(spec)
    if spec.count is None and spec.pattern != "packet":
        quotas = [None] * control.spec.connections  # edited before the flows started
    ctx.clock0 = trio.current_time()
    ctx.perf0 = perf_ns()
    ctx.measure_from_ns = ctx.perf0 + int(spec.warmup * 1e9)
    stats.measure_start = ctx.clock0 + spec.warmup
    duration = spec.effective_duration
    if duration is not None:
        ctx.send_deadline = ctx.clock0 + spec.warmup + duration
    time_cap = math.inf
    if max_duration is not None and ctx.clock0 + max_duration < ctx.send_deadline:
        time_cap = ctx.send_deadline = ctx.clock0 + max_duration
    # A guard against flows that never end: their own deadlines should always come first.
    hard_deadline = ctx.send_deadline + spec.timeout + 1.0

    flows = FlowSet(ctx, flow, quotas)
    control.attach(ctx.budget, ctx.clock0, flows.resize)

    def close_interval() -> None:
        # Each second carries the live settings it ended with, so an edit shows in it.
        stats.tick(trio.current_time() - clock0).update(control.marks())

    async def ticker() -> None:
        next_tick = clock0 + 1.0
        while True:
            await trio.sleep_until(next_tick)
            # The kernel's view of the open TCP flows, once a second: the interval's
            # retransmits (flows that closed were read at their close).
            refresh_all(ctx.tcp_flows, trio.current_time())
            close_interval()
            on_tick()
            next_tick += 1.0

    flows_end = math.inf  # when the flows ended, unless the run was stopped first
    cap_note: str | None = None
    with stop:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            nursery.start_soon(monitor.watch)
            for background in backgrounds:
                nursery.start_soon(background)
            with trio.move_on_at(hard_deadline):
                await flows.run()
            flows_end = trio.current_time()
            control.detach()
            nursery.cancel_scope.cancel()
        # The last, partial interval: a short one joins the point before it, and carries
        # the live settings it ended with.
        last = stats.close_series(trio.current_time() - clock0)
        if last is not None:
            last.update(control.marks())
        cap_note = None
        if ctx.budget.exhausted:
            cap_note = f"stopped at the cap of {max_bytes:,} bytes per run"
        elif flows_end >= time_cap:
            # The flows were still going when the duration cap came (a count run).
            cap_note = f"stopped at the cap of {max_duration:g} s per run"
        stats.bottleneck = monitor.report()
        if cap_note is None and sink:
            # Inside the stop scope: a stop (or the shutdown) cuts this wait short.
            try:
                await _wait_for_receiving_end(receiving_end, endpoint, ctx.run_tag, stats, spec)
            except SocketlabError:
                pass  # asked again below, where the reason is kept
    control.detach()  # (again, for a run stopped while its flows went)
    if cap_note is None and ctx.budget.exhausted:
        cap_note = f"stopped at the cap of {max_bytes:,} bytes per run"  # then stopped
    if stats.bottleneck is None:
        stats.bottleneck = monitor.report()
    if sink:
        await _final_figures(receiving_end, ctx)
    if ctx.multicast:
        # Every receiver waited for at most ``timeout``; a stopped run's asked once.
        stats.receivers = await gather(
            receiving_end.receivers_of(endpoint),
            ctx.run_tag,
            stats.sent,
            trio.current_time() + spec.timeout,
            wait=not (stop.cancelled_caught or cap_note is not None),
        )
    # Every reply is in (or given up on) and a sink has read what arrived: a listener of
    # this lab forgets the run's UDP flows now, not at its idle timeout.
    registry.peers_gone(ctx.udp_clients, endpoint.port)
    return conclude(
        spec.pattern,
        stats,
        trio.current_time() - clock0,
        stopped=stop.cancelled_caught or cap_note is not None,
        note=cap_note,
    )
