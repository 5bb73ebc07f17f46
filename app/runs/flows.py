"""Which flow serves which run: one row per (pattern, protocol).

A row names the flow function (one per connection or UDP flow) and its preparation, which
runs once per run before the flows start and may return a background task the run keeps
going beside them (the pingpong multiplexer). Adding a pattern is one row here, its flow
module, its spec model and its tests.

The reverse direction (``reverse`` and ``bidir`` runs of bulk, rate and burst) has one row
per protocol in :data:`REVERSE_FLOWS`: whatever the pattern, the source keeps the schedule
and this end receives. :func:`flow_kinds` says which kinds of flow a run starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from app.runs.bulk import tcp_bulk_flow
from app.runs.context import FlowContext
from app.runs.mux import Multiplexer
from app.runs.mux_udp import UdpMultiplexer
from app.runs.openloop import tcp_openloop_flow, udp_openloop_flow
from app.runs.packet import packet_flow
from app.runs.pingpong import tcp_pingpong_flow, udp_pingpong_flow
from app.runs.reverse import tcp_reverse_flow, udp_reverse_flow, with_reverse_side
from app.runs.scenario import prepare_steps, scenario_flow
from app.runs.spec import RunSpec

Flow = Callable[[FlowContext, int, int | None], Awaitable[None]]
Background = Callable[[], Awaitable[None]]
Preparation = Callable[[FlowContext], Background | None]


def no_preparation(ctx: FlowContext) -> Background | None:
    """Flows that need nothing shared beyond the context."""
    return None


def with_multiplexer(ctx: FlowContext) -> Background | None:
    """One driver task serves every plain TCP or UDP pingpong flow of the run."""
    mux = UdpMultiplexer(ctx) if ctx.protocol == "udp" else Multiplexer(ctx)
    ctx.mux = mux
    return mux.run


@dataclass(frozen=True)
class FlowKind:
    """How one (pattern, protocol) runs: its flow function and its preparation."""

    flow: Flow
    prepare: Preparation = no_preparation


# Protocols are the target's: TLS pingpong is served per connection (an SSLStream each),
# and rate, burst and UDP bulk (a blast at the rate cap) are open-loop schedules.
FLOWS: dict[tuple[str, str], FlowKind] = {
    ("pingpong", "tcp"): FlowKind(tcp_pingpong_flow, with_multiplexer),
    ("pingpong", "udp"): FlowKind(udp_pingpong_flow, with_multiplexer),
    ("pingpong", "tls"): FlowKind(tcp_pingpong_flow),
    ("rate", "tcp"): FlowKind(tcp_openloop_flow),
    ("rate", "udp"): FlowKind(udp_openloop_flow),
    ("rate", "tls"): FlowKind(tcp_openloop_flow),
    ("burst", "tcp"): FlowKind(tcp_openloop_flow),
    ("burst", "udp"): FlowKind(udp_openloop_flow),
    ("burst", "tls"): FlowKind(tcp_openloop_flow),
    ("bulk", "tcp"): FlowKind(tcp_bulk_flow),
    ("bulk", "udp"): FlowKind(udp_openloop_flow),
    ("bulk", "tls"): FlowKind(tcp_bulk_flow),
    ("packet", "tcp"): FlowKind(packet_flow),
    ("packet", "udp"): FlowKind(packet_flow),
    ("packet", "tls"): FlowKind(packet_flow),
    ("scenario", "tcp"): FlowKind(scenario_flow, prepare_steps),
    ("scenario", "udp"): FlowKind(scenario_flow, prepare_steps),
    ("scenario", "tls"): FlowKind(scenario_flow, prepare_steps),
}

# The flows of the reverse direction, by the target's protocol.
REVERSE_FLOWS: dict[str, FlowKind] = {
    "tcp": FlowKind(tcp_reverse_flow, with_reverse_side),
    "tls": FlowKind(tcp_reverse_flow, with_reverse_side),
    "udp": FlowKind(udp_reverse_flow, with_reverse_side),
}


def one_flow(kinds: tuple[FlowKind, ...]) -> Flow:
    """The flow function of one connection: the kind's own, or for a bidir run the forward
    and the reverse flow side by side (an error in one ends both: the flow's boundary)."""
    if len(kinds) == 1:
        return kinds[0].flow

    async def side_by_side(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
        async with trio.open_nursery() as nursery:
            for kind in kinds:
                nursery.start_soon(kind.flow, ctx, flow_id, quota)

    return side_by_side


def flow_kinds(spec: RunSpec, protocol: str) -> tuple[FlowKind, ...]:
    """The kinds of flow a run starts, ``connections`` of each: forward, reverse or both."""
    if spec.reverse:
        return (REVERSE_FLOWS[protocol],)
    forward = FLOWS[spec.pattern, protocol]
    return (forward, REVERSE_FLOWS[protocol]) if spec.bidir else (forward,)
