"""Running one run: resolve the target once, start the flows, tick the series, end cleanly.

Theory of operation: :func:`execute` resolves the target (once; every connection goes to the
address that was resolved and checked), builds a :class:`FlowContext` shared by all flows,
then starts ``connections`` flow tasks of the pattern, spread over ``ramp_up`` seconds. Flows
send until their quota is used or ``send_deadline`` passes, then wait (at most ``timeout``)
for replies still in flight, so a healthy run ends with ``sent == received``. A ticker closes
a 1 s interval of the statistics every second; a monitor measures event-loop lag and CPU so
the summary can say when socketlab itself was the bottleneck.

Messages sent before ``warmup`` seconds have passed are sent but not counted: every flow
compares each message's send time with ``measure_from_ns``.
"""

from __future__ import annotations

import logging
import math
import random
import socket as stdsocket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from app.endpoint import Endpoint
from app.registry import Conn, Registry
from app.runs.channel import Channel, ConnectError, client_tls_context, connect_stream
from app.runs.mux import Multiplexer
from app.runs.spec import RunSpec
from app.runs.stats import RunStats, error_kind, new_histogram
from app.wire import probe

if TYPE_CHECKING:
    from app.runs.manager import Run

logger = logging.getLogger(__name__)
perf_ns = time.perf_counter_ns

# Sizes drawn in advance for runs with a size range: no random draw per message.
_SIZE_TABLE = 4096

Resolver = Callable[[Endpoint], Awaitable[tuple[int, tuple[Any, ...]]]]
RemoteLookup = Callable[[Endpoint, int], dict[str, Any] | None]


class FlowContext:
    """What every flow of one run shares. Read-only once the flows start."""

    def __init__(
        self,
        run_id: str,
        spec: RunSpec,
        endpoint: Endpoint,
        registry: Registry,
        stats: RunStats,
        address: tuple[Any, ...],
        family: int,
    ) -> None:
        self.run_id = run_id
        self.run_tag = probe.run_tag_of(run_id)
        self.spec = spec
        self.endpoint = endpoint
        self.protocol = "udp" if endpoint.protocol == "udp" else "tcp"
        self.registry = registry
        self.stats = stats
        self.address = address
        self.family = family
        self.size = spec.size
        self.max_size = spec.largest_size
        self.timeout = spec.timeout
        self.tls: ssl.SSLContext | None = (
            client_tls_context(spec.insecure) if endpoint.protocol == "tls" else None
        )
        self.server_hostname = endpoint.host
        self.template = spec.payload.build(self.max_size)
        self.send_deadline = math.inf
        self.measure_from_ns = 0
        self.clock0 = 0.0
        self.perf0 = 0
        # Plain TCP and UDP pingpong flows are served by one driver task (app.runs.mux).
        self.mux: Multiplexer | None = None
        if spec.size_max is not None and spec.size_max != spec.size:
            rng = random.Random(self.run_tag)
            self.sizes = [rng.randint(spec.size, spec.size_max) for _ in range(_SIZE_TABLE)]
        else:
            self.sizes = [spec.size]

    async def open_tcp(self) -> tuple[Channel, Conn] | None:
        """Connect one TCP (or TLS) flow to the checked address and give it a registry row.

        A failure is counted by its error kind and gives ``None``: the flow just ends.
        """
        try:
            channel = await connect_stream(
                self.family,
                self.address,
                self.timeout,
                tls=self.tls,
                server_hostname=self.server_hostname,
            )
        except ConnectError as exc:
            self.stats.record_error(exc.kind)
            return None
        self.stats.connections_opened += 1
        row = self.registry.open(
            "tcp", channel.getsockname(), channel.getpeername(), run_id=self.run_id
        )
        return channel, row

    def open_udp(self) -> tuple[stdsocket.socket, Conn] | None:
        """A non-blocking UDP socket connected to the checked address (so ICMP errors reach
        it), with a registry row; ``None`` (counted) when it cannot be made."""
        sock = stdsocket.socket(self.family, stdsocket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            self.stats.record_error(error_kind(exc))
            return None
        self.stats.connections_opened += 1
        row = self.registry.open("udp", sock.getsockname(), sock.getpeername(), run_id=self.run_id)
        return sock, row

    def message_buffer(self) -> bytearray:
        """A per-flow send buffer holding the payload template (the header goes in front)."""
        return bytearray(self.template)

    def sending(self) -> bool:
        return trio.current_time() < self.send_deadline

    def per_flow_rate(self) -> float | None:
        rate = self.spec.message_rate
        return None if rate is None else rate / self.spec.connections


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


def _flow_function(spec: RunSpec, protocol: str) -> Callable[..., Awaitable[None]]:
    from app.runs import bulk, openloop, packet, pingpong

    if spec.pattern == "packet":
        return packet.packet_flow
    if spec.pattern == "pingpong":
        return pingpong.udp_pingpong_flow if protocol == "udp" else pingpong.tcp_pingpong_flow
    if spec.pattern == "bulk" and protocol == "tcp":
        return bulk.tcp_bulk_flow
    # rate, burst, and UDP bulk (a blast at the rate cap) are open-loop schedules.
    return openloop.udp_openloop_flow if protocol == "udp" else openloop.tcp_openloop_flow


async def execute(
    run: Run,
    registry: Registry,
    on_tick: Callable[[Run], None] | None = None,
    *,
    resolver: Resolver = resolve,
    remote_lookup: RemoteLookup | None = None,
    max_bytes: int | None = None,
) -> None:
    """Run ``run`` to its end (finished, failed, or stopped by its cancel scope)."""
    spec = run.spec
    endpoint = spec.target
    stats = run.stats
    run.started_at = time.time()
    clock0 = trio.current_time()
    stats.start(0.0)
    monitor = LoadMonitor()
    try:
        family, address = await resolver(endpoint)
    except OSError as exc:
        stats.record_error(error_kind(exc))
        run.status = "failed"
        run.error = f"cannot resolve {endpoint.host}: {exc}"
        return
    ctx = FlowContext(run.id, spec, endpoint, registry, stats, address, family)
    run.context = ctx
    if spec.pattern == "pingpong" and endpoint.protocol in ("tcp", "udp"):
        ctx.mux = Multiplexer(ctx)
    flow = _flow_function(spec, ctx.protocol)
    quotas = _quotas(spec)
    ctx.clock0 = trio.current_time()
    ctx.perf0 = perf_ns()
    ctx.measure_from_ns = ctx.perf0 + int(spec.warmup * 1e9)
    stats.measure_start = ctx.clock0 + spec.warmup
    duration = spec.effective_duration
    if duration is not None:
        ctx.send_deadline = ctx.clock0 + spec.warmup + duration
    # A guard against flows that never end: their own deadlines should always come first.
    hard_deadline = ctx.send_deadline + spec.timeout + 1.0

    async def ticker() -> None:
        next_tick = clock0 + 1.0
        while True:
            await trio.sleep_until(next_tick)
            stats.tick(trio.current_time() - clock0)
            if on_tick is not None:
                on_tick(run)
            next_tick += 1.0

    async def guarded_flow(flow_id: int, quota: int | None) -> None:
        # The per-flow boundary: a bug that raises in one flow ends that flow only (counted
        # as an "internal" error and logged with the run and flow ids); the run goes on
        # with the others. Cancellation is not an Exception and still propagates.
        try:
            await flow(ctx, flow_id, quota)
        except Exception:
            logger.exception("run %s: flow %d failed", run.id, flow_id)
            stats.record_error("internal")

    async def start_flows(flows: trio.Nursery) -> None:
        n = len(quotas)
        for i, quota in enumerate(quotas):
            if quota == 0:
                continue
            if spec.ramp_up and n > 1:
                await trio.sleep_until(ctx.clock0 + spec.ramp_up * i / (n - 1))
            flows.start_soon(guarded_flow, i, quota)

    capped = trio.Event()

    async def byte_cap(flows_scope: trio.CancelScope) -> None:
        # Checked a few times a second, not per message: a run may pass the cap by what
        # it sends in 0.1 s.
        assert max_bytes is not None
        while stats.bytes_sent < max_bytes:  # noqa: ASYNC110 (sampling, not waiting)
            await trio.sleep(0.1)
        run.error = f"stopped at the cap of {max_bytes:,} bytes per run"
        capped.set()
        flows_scope.cancel()

    with run.cancel_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            nursery.start_soon(monitor.watch)
            if ctx.mux is not None:
                nursery.start_soon(ctx.mux.run)
            with trio.move_on_at(hard_deadline) as flows_scope:
                if max_bytes is not None:
                    nursery.start_soon(byte_cap, flows_scope)
                async with trio.open_nursery() as flows:
                    flows.start_soon(start_flows, flows)
            nursery.cancel_scope.cancel()
        # The last, partial interval; an empty one (the drain after the last reply) would
        # only draw a drop to zero at the end of every chart.
        if stats.moved_since_tick() or not stats.series:
            stats.tick(trio.current_time() - clock0)
    stats.bottleneck = monitor.report()
    if remote_lookup is not None:
        stats.remote = remote_lookup(endpoint, ctx.run_tag)
    if run.cancel_scope.cancelled_caught or capped.is_set():
        run.status = "stopped"
    elif spec.pattern == "packet":
        run.status = "failed" if stats.error_count else "finished"
        if stats.error_count:
            run.error = ", ".join(sorted(stats.errors))
    elif stats.received == 0 and stats.bytes_sent == 0 and stats.error_count:
        run.status = "failed"
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(stats.errors.items()))
        run.error = f"nothing got through; errors: {kinds}"
    else:
        run.status = "finished"
