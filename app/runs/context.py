"""What the flows of one run share: the checked address, the spec, the counters.

:class:`FlowContext` is built by the engine once the target is resolved and is read-only
once the flows start, but for the live edits it carries (``control``, ``slots``). It also
opens a flow's socket (TCP, TLS or UDP) with its registry row; :func:`serve_tcp_flow` and
:func:`serve_udp_flow` wrap a flow's body with the error boundary and the clean-up every
flow shares (the error counted by kind, the row and the socket closed).
"""

from __future__ import annotations

import math
import random
import socket as stdsocket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import trio

from app.endpoint import Endpoint
from app.listeners.modes.sink import ProbeSink
from app.listeners.multicast import configure_sender, is_group
from app.registry import Conn, Registry
from app.runs.budget import Budget
from app.runs.channel import Channel, ConnectError, client_tls_context, connect_stream
from app.runs.control import RunControl
from app.runs.error_kinds import error_detail, error_kind
from app.runs.spec import RunSpec
from app.runs.stats import RunStats
from app.wire import probe

# Sizes drawn in advance for runs with a size range: no random draw per message.
_SIZE_TABLE = 4096


class FlowDriver(Protocol):
    """A task that serves the messages of several flows of one run (app.runs.mux)."""

    async def drive(
        self, sock: stdsocket.socket, conn: Conn, flow_id: int, quota: int | None
    ) -> None: ...


class ReverseReceiver(Protocol):
    """What the reverse flows of a run count into (app.runs.reverse.ReverseSide)."""

    @property
    def sink(self) -> ProbeSink: ...

    def sync(self) -> None:
        """Move what arrived since the last call into the run's counters."""
        ...


class FlowContext:
    """What every flow of one run shares. Read-only once the flows start (but for the live
    edits: ``control``, ``slots``, ``joined``, ``retirers``)."""

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
        # A multicast group: sent to once, every member gets a copy (app.runs.receivers).
        self.multicast = is_group(endpoint.host)
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
        # The run's caps, charged by every flow before each write (app.runs.budget); the
        # engine gives it the lab's caps. Unlimited for a run fired outside a lab.
        self.budget = Budget()
        # False when the target sends nothing back (a sink): no wait for replies, no loss.
        self.expect_replies = True
        self.measure_from_ns = 0
        self.clock0 = 0.0
        self.perf0 = 0
        # Open TCP flows, whose kernel figures the engine's ticker reads once a second.
        self.tcp_flows: set[Conn] = set()
        if self.protocol == "tcp":
            stats.tcp_sums()
        # Plain TCP and UDP pingpong flows are served by one driver task (app.runs.mux),
        # set by the pattern's preparation (app.runs.flows).
        self.mux: FlowDriver | None = None
        # Session numbers of a scenario run, shared by its flows (app.runs.scenario).
        self.sessions: Iterator[int] = iter(())
        # The addresses of the run's UDP sockets: a listener of this lab ends their flows
        # when the run ends (Registry.peers_gone).
        self.udp_clients: list[str] = []
        # Live edits (app.runs.control); the engine hands over the run's own. The flow set
        # (app.runs.flowset) keeps each sending flow's place among them (its phase in an
        # open-loop schedule), when flows added by an edit joined (seconds after the
        # start), and how to retire a flow gently (the flows that know how register it).
        self.control = RunControl(spec)
        self.slots: dict[int, int] = {i: i for i in range(spec.connections)}
        self.joined: dict[int, float] = {}
        self.retirers: dict[int, Callable[[], None]] = {}
        # What the reverse flows receive (reverse and bidir runs; app.runs.reverse).
        self.reverse: ReverseReceiver | None = None
        if spec.size_max is not None and spec.size_max != spec.size:
            rng = random.Random(self.run_tag)
            self.sizes = [rng.randint(spec.size, spec.size_max) for _ in range(_SIZE_TABLE)]
        else:
            self.sizes = [spec.size]

    async def open_tcp(
        self, on_error: Callable[[str, str], None] | None = None
    ) -> tuple[Channel, Conn] | None:
        """Connect one TCP (or TLS) flow to the checked address and give it a registry row.

        A failure gives ``None``: it is counted as the error that ended the flow, or, given
        ``on_error``, told to it (kind and why) to count as its own (a scenario's session
        fails its step, and the flow goes on with the next session).
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
            if on_error is None:
                self.stats.flow_failed(exc.kind, str(exc))
            else:
                on_error(exc.kind, str(exc))
            return None
        self.stats.connections_opened += 1
        row = self.registry.open(
            "tcp",
            channel.getsockname(),
            channel.getpeername(),
            run_id=self.run_id,
            sock=channel.sock,
            tcp_sums=(self.stats.tcp_sums(),),
        )
        self.tcp_flows.add(row)
        return channel, row

    def open_udp(self) -> tuple[stdsocket.socket, Conn] | None:
        """A non-blocking UDP socket connected to the checked address (so ICMP errors reach
        it), with a registry row; ``None`` (counted) when it cannot be made. To a multicast
        group, with the spec's TTL, interface and loop (app.listeners.multicast)."""
        sock = stdsocket.socket(self.family, stdsocket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self.multicast:
                spec = self.spec
                configure_sender(sock, spec.ttl, spec.iface, spec.loopback)
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            self.stats.flow_failed(error_kind(exc), error_detail(exc))
            return None
        self.stats.connections_opened += 1
        row = self.registry.open("udp", sock.getsockname(), sock.getpeername(), run_id=self.run_id)
        self.udp_clients.append(row.local)
        return sock, row

    def message_buffer(self) -> bytearray:
        """A per-flow send buffer holding the payload template (the header goes in front)."""
        return bytearray(self.template)

    def sending(self) -> bool:
        return trio.current_time() < self.send_deadline

    def stop_sending(self) -> None:
        """No flow sends another message (the byte cap is reached); replies in flight are
        still waited for, as at the end of the run's duration."""
        self.send_deadline = -math.inf

    def per_flow_rate(self) -> float | None:
        spec = self.control.spec
        rate = spec.message_rate
        return None if rate is None else rate / spec.connections


TcpBody = Callable[[Channel, Conn], Awaitable[None]]
UdpBody = Callable[[stdsocket.socket, Conn], Awaitable[None]]


async def serve_tcp_flow(ctx: FlowContext, body: TcpBody) -> None:
    """Open one TCP (or TLS) flow and run ``body`` on it.

    Error handling: an ``OSError`` out of ``body`` ends this flow only and is counted by
    its kind, also when it comes out of the body's own nursery (a reset seen by a receiver
    task is a reset, not a bug). Resource handling: the registry row and the channel are
    closed however ``body`` ends. A connection that cannot be made is counted and ``body``
    never runs.
    """
    opened = await ctx.open_tcp()
    if opened is None:
        return
    channel, conn = opened
    try:
        await body(channel, conn)
    except* OSError as group:
        ctx.stats.flow_failed(error_kind(group), error_detail(group))
    finally:
        ctx.tcp_flows.discard(conn)
        ctx.registry.close(conn)  # reads its kernel figures a last time
        channel.close()


async def serve_udp_flow(ctx: FlowContext, body: UdpBody) -> None:
    """Open one UDP flow and run ``body`` on it; the same boundary as :func:`serve_tcp_flow`.

    A connected UDP socket reports an earlier ICMP port-unreachable as
    ``ConnectionRefusedError``: that is the ``unreachable`` kind here, not ``refused``.
    """
    opened = ctx.open_udp()
    if opened is None:
        return
    sock, conn = opened
    with sock:
        try:
            await body(sock, conn)
        except* ConnectionRefusedError as group:
            ctx.stats.flow_failed("unreachable", error_detail(group))
        except* OSError as group:
            ctx.stats.flow_failed(error_kind(group), error_detail(group))
        finally:
            ctx.registry.close(conn)
