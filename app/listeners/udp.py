"""UDP listener: one socket, flows keyed by peer address, drained in batches.

Theory of operation: the socket is a plain non-blocking stdlib socket. The loop waits until
it is readable (``trio.lowlevel.wait_readable``), then reads datagrams until the kernel has
none left (or a batch limit, for fairness), instead of paying one scheduler round per
datagram. Every peer address is a flow (a registry row) that is forgotten after
``idle_timeout`` seconds of silence, or when the API closes its row. One loop serves every
mode: plain echo replies inline, every other mode gets each datagram through its handler
function.

Limits: at most ``max_connections`` flows are tracked; a datagram from a new peer past that
is dropped and counted in ``rejected`` (there is no connection to refuse). A datagram larger
than ``max_message_size`` is counted as ``oversized`` and dropped.

Reflection: a UDP source address can be forged, so every reply passes a
:class:`ReplyGuard` first (no replies to source ports below 1024; for sources outside
loopback, no reply larger than its request and at most ``reply_rate`` replies per second).

Error handling: a failed ``sendto`` (full send buffer, ICMP error from an earlier reply) is
counted and the datagram is dropped. Nothing a peer sends can end the loop.

Kernel drops: datagrams the kernel discarded because the receive buffer was full never reach
the loop. :func:`read_kernel_drops` reads the socket's drop counter (the ``drops`` column of
``/proc/net/udp``/``udp6``) so they can be shown; it costs nothing on the hot path.
"""

from __future__ import annotations

import ipaddress
import os
import socket as stdsocket
from pathlib import Path
from typing import Any, NoReturn

import trio

from app.listeners.base import DatagramHandler, Listener
from app.registry import Conn, Registry

# Datagrams handled per wake-up before yielding to other tasks: enough to amortise the
# scheduler round, small enough that a flood cannot starve the web server.
_BATCH = 64
# Receive buffer of a StatsD listener when none is given: about 40,000 small datagrams.
STATSD_RCVBUF = 8 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(stdsocket, "SO_RCVBUFFORCE", 33)


# Source ports below this are servers' (DNS 53, NTP 123, ...): where reflected traffic
# would be aimed. HAProxy refuses them by default for the same reason.
MIN_SOURCE_PORT = 1024
_UNSEEN = object()
_SILENT = object()


class ReplyGuard:
    """The reflection limits of one UDP listener; sans-IO (the caller passes the time).

    A datagram's source can be forged: without limits, an attacker's datagram carrying a
    victim's address makes the listener send to the victim. Before every reply:

    1. a source port below :data:`MIN_SOURCE_PORT` gets no reply;
    2. a source outside loopback gets no reply larger than its request (no amplification)
       and at most ``rate`` replies per second (a token bucket as deep as one second of
       it; ``rate`` 0 means no limit).

    Loopback sources are exempt from 2: they cannot be forged from off the machine (the
    kernel drops loopback sources arriving on other interfaces), and the lab's own load
    tests and the respond mode's longer replies to local tools must keep working.

    Resource handling: state is kept per source while its flow lives; the UDP server calls
    :meth:`forget` when it forgets the flow, so the table is bounded by ``max_connections``.
    """

    __slots__ = ("_state", "burst", "dropped", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.dropped = 0
        # Per source: None (free), _SILENT (never answered) or [tokens, last time].
        self._state: dict[Any, Any] = {}

    def _classify(self, addr: Any, now: float) -> Any:
        if addr[1] < MIN_SOURCE_PORT:
            state: Any = _SILENT
        else:
            try:
                ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            except ValueError:
                loopback = False
            else:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                loopback = ip.is_loopback
            state = None if loopback else [self.burst, now]
        self._state[addr] = state
        return state

    def allow(self, addr: Any, request_size: int, reply_size: int, now: float) -> bool:
        """Whether a reply of ``reply_size`` bytes to ``addr`` may go; counts refusals."""
        state = self._state.get(addr, _UNSEEN)
        if state is _UNSEEN:
            state = self._classify(addr, now)
        if state is None:
            return True
        if state is _SILENT or reply_size > request_size:
            self.dropped += 1
            return False
        if not self.rate:
            return True
        tokens = min(self.burst, state[0] + (now - state[1]) * self.rate)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            self.dropped += 1
            return False
        state[0] = tokens - 1.0
        return True

    def forget(self, addr: Any) -> None:
        self._state.pop(addr, None)

    def __len__(self) -> int:
        return len(self._state)


def bind_udp(host: str, port: int, rcvbuf: int | None = None) -> stdsocket.socket:
    """A bound, non-blocking UDP socket on ``host:port``."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == stdsocket.AF_INET6:
            sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
        if rcvbuf is not None:
            try:
                # Beyond net.core.rmem_max when the process may (CAP_NET_ADMIN).
                sock.setsockopt(stdsocket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def read_kernel_drops(sock: stdsocket.socket) -> int | None:
    """Datagrams the kernel dropped for ``sock`` since it was created (blocking file I/O).

    Returns:
        The count, or None where the kernel does not expose it (not Linux, no /proc).
    """
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    table = "udp6" if sock.family == stdsocket.AF_INET6 else "udp"
    try:
        lines = Path("/proc/net", table).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if len(fields) >= 13 and fields[9] == inode:
            return int(fields[12])
    return None


def _open_flow(
    listener: Listener,
    registry: Registry,
    flows: dict[Any, Conn],
    local: Any,
    addr: Any,
) -> Conn:
    flow = registry.open("udp", local, addr, listener_id=listener.id)
    flows[addr] = flow
    listener.connections += 1
    listener.accepted += 1

    def forget() -> None:
        # DELETE /api/connections/{id} on a flow: there is no socket to close, so the flow
        # is forgotten; its next datagram starts a new one.
        if flows.get(addr) is flow:
            del flows[addr]
            listener.connections -= 1
            listener.closed_by_api += 1
            if listener.reply_guard is not None:
                listener.reply_guard.forget(addr)
        registry.close(flow)

    flow.close_hook = forget
    return flow


async def serve_udp_listener(
    listener: Listener,
    registry: Registry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``listener`` forever; reports the bound port through ``task_status``."""
    rcvbuf = listener.spec.rcvbuf
    if rcvbuf is None and listener.spec.mode == "statsd":
        # A collector must ride out bursts and pauses (a flush, a collection) without the
        # kernel dropping datagrams: StatsD's most common complaint.
        rcvbuf = STATSD_RCVBUF
    sock = bind_udp(listener.host, listener.port, rcvbuf)
    flows: dict[Any, Conn] = {}
    listener.reply_guard = ReplyGuard(listener.spec.reply_rate)
    try:
        listener.port = sock.getsockname()[1]
        local = sock.getsockname()
        mode = listener.mode
        handler = None if mode.udp_fast_echo else mode.datagram_handler(sock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_expire_flows, listener, registry, flows)
            nursery.start_soon(mode.run)
            task_status.started(listener.port)
            await _drain_loop(listener, registry, sock, local, flows, handler)
    finally:
        sock.close()
        for conn in flows.values():
            registry.close(conn)
        listener.connections = 0
    raise AssertionError("unreachable")  # pragma: no cover


async def _drain_loop(
    listener: Listener,
    registry: Registry,
    sock: stdsocket.socket,
    local: object,
    flows: dict[Any, Conn],
    handler: DatagramHandler | None,
) -> NoReturn:
    """Wait until ``sock`` is readable, then read datagrams until EAGAIN (or a batch).

    Every datagram is counted against its flow first. Then, with ``handler`` None (plain
    echo), it is sent back inline, without a call per datagram; otherwise it goes to
    ``handler``, which sends and counts any reply itself.
    """
    max_size = listener.spec.max_message_size
    max_flows = listener.spec.max_connections
    # One byte more than allowed, so an oversized datagram is seen as such, not truncated.
    buf = bytearray(max_size + 1)
    view = memoryview(buf)
    recvfrom_into = sock.recvfrom_into
    sendto = sock.sendto
    assert listener.reply_guard is not None
    allow = listener.reply_guard.allow
    current_time = trio.current_time
    while True:
        await trio.lowlevel.wait_readable(sock)
        now = current_time()
        for _ in range(_BATCH):
            try:
                n, addr = recvfrom_into(buf)
            except BlockingIOError:
                break
            except OSError:
                # An ICMP error queued for an earlier reply surfaces here; it is not fatal.
                listener.errors += 1
                continue
            flow = flows.get(addr)
            if flow is None:
                if listener.connections >= max_flows:
                    listener.rejected += 1
                    continue
                flow = _open_flow(listener, registry, flows, local, addr)
            flow.bytes_in += n
            flow.msgs_in += 1
            listener.bytes_in += n
            listener.msgs_in += 1
            flow.touch()
            if n > max_size:
                listener.oversized += 1
                continue
            if handler is not None:
                handler(view, n, addr, flow)
                continue
            if not allow(addr, n, n, now):
                continue
            try:
                sendto(view[:n], addr)
            except OSError:
                listener.errors += 1
                continue
            flow.bytes_out += n
            flow.msgs_out += 1
            listener.bytes_out += n
            listener.msgs_out += 1
        else:
            await trio.lowlevel.checkpoint()


def send_reply(
    listener: Listener,
    sock: stdsocket.socket,
    flow: Conn,
    data: Any,
    addr: Any,
    request_size: int | None = None,
) -> None:
    """Send one reply datagram and count it; a failed send is counted, never raised.

    The reply passes the listener's :class:`ReplyGuard` first; ``request_size`` is the
    size of the datagram it answers (``len(data)`` when not given: an echo).
    """
    guard = listener.reply_guard
    n_reply = len(data)
    if guard is not None and not guard.allow(
        addr, n_reply if request_size is None else request_size, n_reply, trio.current_time()
    ):
        return
    try:
        sock.sendto(data, addr)
    except OSError:
        listener.errors += 1
        return
    n = len(data)
    flow.bytes_out += n
    flow.msgs_out += 1
    listener.bytes_out += n
    listener.msgs_out += 1


async def _expire_flows(listener: Listener, registry: Registry, flows: dict[Any, Conn]) -> None:
    """Forget flows that have been silent for ``idle_timeout`` seconds."""
    idle = listener.spec.idle_timeout
    period = min(max(idle / 4, 0.05), 5.0)
    while True:
        await trio.sleep(period)
        cutoff = trio.current_time() - idle
        for addr, flow in list(flows.items()):
            if flow.last_active < cutoff and not flow.dirty:
                del flows[addr]
                if listener.reply_guard is not None:
                    listener.reply_guard.forget(addr)
                registry.close(flow)
                listener.connections -= 1
                listener.idle_closed += 1
