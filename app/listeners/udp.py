"""UDP listener: one socket, flows keyed by peer address, drained in batches.

Theory of operation: the socket is a plain non-blocking stdlib socket. The loop waits until
it is readable (``trio.lowlevel.wait_readable``), then reads datagrams in batches
(``recvmmsg``, replies with ``sendmmsg``: :mod:`app.mmsg`) until the kernel has none left,
with a checkpoint after each full batch for fairness, instead of paying one scheduler
round per datagram. Every peer address is a flow (a registry row) that is forgotten after
``idle_timeout`` seconds of silence, or when the API closes its row; :class:`UdpFlows` keeps
that bookkeeping for every mode. One loop serves every mode: plain echo replies inline,
every other mode gets each datagram through its handler function. Where the compiled drain
is built, a plain echo is served by it instead (:mod:`app.listeners.udpecho`), which hands
back to Python every datagram this loop would treat other than as a plain echo.

Limits: at most ``max_connections`` flows are tracked; a datagram from a new peer past that
is dropped and counted in ``rejected`` (there is no connection to refuse). A datagram larger
than ``max_message_size`` is counted as ``oversized`` and dropped.

Reflection: a UDP source address can be forged, so every reply passes a
:class:`~app.wire.replyguard.ReplyGuard` first (no replies to source ports below 1024; for
sources outside loopback, no reply larger than its request and at most ``reply_rate``
replies per second).

Error handling: a failed ``sendto`` (full send buffer, ICMP error from an earlier reply) is
counted and the datagram is dropped. Nothing a peer sends can end the loop.

Kernel drops: datagrams the kernel discarded because the receive buffer was full never reach
the loop. :func:`read_kernel_drops` reads the socket's drop counter (the ``drops`` column of
``/proc/net/udp``/``udp6``) so they can be shown; it costs nothing on the hot path.
"""

from __future__ import annotations

import os
import socket as stdsocket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import trio

from app.listeners.base import DatagramHandler, Listener
from app.listeners.multicast import Membership
from app.listeners.spec import COLLECTOR_MODES
from app.listeners.udpecho import native_echo, native_echo_loop
from app.mmsg import open_batch
from app.registry import Conn, Registry
from app.wire.replyguard import ReplyGuard

# Datagrams a wake-up reads one at a time (recvfrom_into, each answered at once) before it
# reads in batches (recvmmsg): a ping-pong's few datagrams per wake-up are answered soonest
# that way, measured against batches, while a flood is soon read 64 to a call.
_SINGLES = 16
# Reads a loaded wake-up tries on a drained socket before it waits for readiness again: a
# ping-pong's next requests are a round trip away (tens of microseconds), and a read that
# finds none costs about a microsecond where waiting costs a scheduler round, an epoll_ctl
# and an epoll_wait (about eight). With 10 flows this took the echo from 164k to 188k
# round trips/s and its CPU from 6.0 to 5.2 us a round trip (bench section b, one run of
# each, side by side). A wake-up that found one datagram or none (light traffic) goes
# back to waiting at once.
_SPIN = 16
MSG_TRUNC = getattr(stdsocket, "MSG_TRUNC", 0x20)
# Receive buffer of a collector (StatsD, influx, graphite, syslog) when none is given:
# about 40,000 small datagrams.
STATSD_RCVBUF = 8 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(stdsocket, "SO_RCVBUFFORCE", 33)


def bind_udp(
    host: str, port: int, rcvbuf: int | None = None, membership: Membership | None = None
) -> stdsocket.socket:
    """A bound, non-blocking UDP socket on ``host:port``; given a ``membership`` (``host``
    is a multicast group), bound to the group and port shared with other listeners, and
    joined (:mod:`app.listeners.multicast`)."""
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
        if membership is None:
            sock.bind((host, port))
        else:
            membership.prepare(sock)
            sock.bind(membership.bind_address(port))
            membership.join(sock)
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


class UdpFlows:
    """The flows of one UDP listener: one registry row per peer address, and its replies.

    A flow opens with its peer's first datagram (:meth:`open`) and is forgotten after
    ``idle_timeout`` seconds of silence (:meth:`expire_forever`), when the API closes its
    row (there is no socket to close: its next datagram starts a new flow), or when its
    peer was a run of this lab that has ended (``Conn.peer_gone``). The listener's
    ``connections``, ``accepted``, ``rejected``, ``idle_closed`` and ``closed_by_api`` are
    counted here, and every reply a mode sends goes through :meth:`reply`, past the
    listener's :class:`~app.wire.replyguard.ReplyGuard`.

    Hot path: the drain loop looks flows up in :attr:`rows` itself (a dict lookup per
    datagram); only a new peer costs a call.

    Resource handling: :meth:`close_all` removes every row from the registry; the reply
    guard keeps state only for flows that are tracked.
    """

    __slots__ = ("guard", "listener", "local", "on_forget", "registry", "rows", "sock")

    def __init__(self, listener: Listener, registry: Registry, sock: stdsocket.socket) -> None:
        self.listener = listener
        self.registry = registry
        self.sock = sock
        self.local = sock.getsockname()
        self.rows: dict[Any, Conn] = {}
        self.guard = ReplyGuard(listener.spec.reply_rate)
        listener.reply_guard = self.guard
        # Told of every flow forgotten (the compiled echo's table: app.listeners.udpecho).
        self.on_forget: Callable[[Any], None] | None = None

    def open(self, addr: Any) -> Conn | None:
        """A new flow for ``addr``; None (counted in ``rejected``) past ``max_connections``."""
        listener = self.listener
        if listener.connections >= listener.spec.max_connections:
            listener.rejected += 1
            return None
        flow = self.registry.open("udp", self.local, addr, listener_id=listener.id)
        self.rows[addr] = flow
        listener.connections += 1
        listener.accepted += 1

        def close_from_api() -> None:
            if self.rows.get(addr) is flow:
                self._forget(addr)
                listener.closed_by_api += 1
            self.registry.close(flow)

        def peer_gone() -> None:
            # The peer was a run of this lab that has ended: the flow ends with it.
            if self.rows.get(addr) is flow:
                self._forget(addr)
            self.registry.close(flow)

        flow.close_hook = close_from_api
        flow.peer_gone = peer_gone
        return flow

    def _forget(self, addr: Any) -> None:
        del self.rows[addr]
        self.guard.forget(addr)
        if self.on_forget is not None:
            self.on_forget(addr)
        self.listener.connections -= 1

    async def expire_forever(self) -> NoReturn:
        """Forget flows that have been silent for ``idle_timeout`` seconds, forever."""
        listener = self.listener
        idle = listener.spec.idle_timeout
        period = min(max(idle / 4, 0.05), 5.0)
        while True:
            await trio.sleep(period)
            cutoff = trio.current_time() - idle
            for addr, flow in list(self.rows.items()):
                if flow.last_active < cutoff and not flow.dirty:
                    self._forget(addr)
                    self.registry.close(flow)
                    listener.idle_closed += 1

    def close_all(self) -> None:
        """The listener stopped: every flow's row leaves the registry."""
        for flow in self.rows.values():
            self.registry.close(flow)
        self.rows.clear()
        self.listener.connections = 0

    def reply(
        self, flow: Conn, data: bytes | memoryview, addr: Any, request_size: int | None = None
    ) -> None:
        """Send one reply datagram and count it; a failed send is counted, never raised.

        The reply passes the reply guard first; ``request_size`` is the size of the
        datagram it answers (``len(data)`` when not given: an echo).
        """
        listener = self.listener
        sent = len(data)
        if not self.guard.allow(
            addr, sent if request_size is None else request_size, sent, trio.current_time()
        ):
            return
        try:
            self.sock.sendto(data, addr)
        except OSError:
            listener.errors += 1
            return
        flow.bytes_out += sent
        flow.msgs_out += 1
        listener.bytes_out += sent
        listener.msgs_out += 1


async def serve_udp_listener(
    listener: Listener,
    registry: Registry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``listener`` forever; reports the bound port through ``task_status``."""
    rcvbuf = listener.spec.rcvbuf
    if rcvbuf is None and listener.spec.mode in COLLECTOR_MODES:
        # A collector must ride out bursts and pauses (a flush, a collection) without the
        # kernel dropping datagrams: StatsD's most common complaint.
        rcvbuf = STATSD_RCVBUF
    spec = listener.spec
    membership = Membership.of(listener.host, spec.iface, spec.source)
    sock = bind_udp(listener.host, listener.port, rcvbuf, membership)
    try:
        flows = UdpFlows(listener, registry, sock)
    except BaseException:
        sock.close()
        raise
    try:
        listener.port = flows.local[1]
        mode = listener.mode
        handler = None if mode.udp_fast_echo else mode.datagram_handler(flows)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flows.expire_forever)
            nursery.start_soon(mode.run)
            task_status.started(listener.port)
            echo = None if handler else native_echo(sock, spec.max_message_size)
            if echo is not None:
                await native_echo_loop(listener, flows, echo, _SPIN)
            await _drain_loop(listener, flows, handler)
    finally:
        sock.close()
        flows.close_all()
    raise AssertionError("unreachable")  # pragma: no cover


async def _drain_loop(
    listener: Listener, flows: UdpFlows, handler: DatagramHandler | None
) -> NoReturn:
    """Wait until the socket is readable, then read datagrams in batches until it is drained.

    The first ``_SINGLES`` datagrams of a wake-up are read one at a time; past them, each
    batch is one ``recvmmsg`` (see :mod:`app.mmsg`; ``recvfrom_into`` calls with the
    fallback). Every datagram is counted against its flow first. Then, with ``handler``
    None (plain echo), it is answered: at once, or, when the batch filled every slot (a
    flood), queued so that the batch's replies leave in one ``sendmmsg``; otherwise it goes
    to ``handler``, which replies through ``flows.reply``.
    A batch that did not fill every slot drained the socket: the loop waits for readiness
    again, after ``_SPIN`` more reads when this wake-up was busy. A checkpoint follows
    every ``slots`` datagrams served without one, so a flood cannot starve other tasks.
    """
    max_size = listener.spec.max_message_size
    batch = open_batch(flows.sock, max_size)
    views, sizes, addrs, slots = batch.views, batch.sizes, batch.addrs, batch.slots
    recv, queue_reply, flush = batch.recv, batch.reply, batch.flush
    sock = flows.sock
    sendto = sock.sendto
    get_flow = flows.rows.get
    open_flow = flows.open
    allow = flows.guard.allow
    free = flows.guard.free
    current_time = trio.current_time
    # The flows and sizes of the replies queued in this batch, in queue order: a reply the
    # kernel refuses is taken back out of the counts it was added to.
    replied: list[tuple[Conn, int]] = []
    first = views[0]
    recvfrom_into = sock.recvfrom_into
    while True:
        await trio.lowlevel.wait_readable(sock)
        singles = _SINGLES
        spins = _SPIN
        loaded = False  # more than one datagram this wake-up
        served = 0  # datagrams since the last checkpoint
        while True:
            try:
                single = singles > 0
                if single:
                    # Light traffic: one datagram a call, answered before the next is read.
                    singles -= 1
                    try:
                        sizes[0], addrs[0] = recvfrom_into(first, 0, MSG_TRUNC)
                        count = 1
                    except BlockingIOError:
                        count = 0
                else:
                    count = recv()
            except OSError:
                # An ICMP error queued for an earlier reply surfaces here; it is not fatal.
                # Waiting again (at once, if datagrams are queued behind it) keeps a run of
                # errors from holding the loop without a checkpoint.
                listener.errors += 1
                break
            if not count:
                if loaded and spins:
                    spins -= 1
                    singles = 0
                    continue
                break
            served += count
            loaded = loaded or served > 1
            now = current_time()
            # A batch that filled every slot is a flood: its replies leave together in one
            # sendmmsg. Otherwise each goes at once, so a ping-pong peer is not kept
            # waiting for the rest of the batch (its next request comes that much sooner).
            flood = count == slots
            # The listener's totals are summed here and added once per batch: nothing
            # reads them before this task's next checkpoint.
            bytes_in = msgs_in = bytes_out = msgs_out = 0
            for i in range(count):
                n = sizes[i]
                addr = addrs[i]
                flow = get_flow(addr)
                if flow is None:
                    flow = open_flow(addr)
                    if flow is None:
                        continue
                flow.bytes_in += n
                flow.msgs_in += 1
                bytes_in += n
                msgs_in += 1
                if not flow.dirty:
                    flow.touch()
                if n > max_size:
                    listener.oversized += 1
                    continue
                if handler is not None:
                    handler(views[i], n, addr, flow)
                    continue
                if addr not in free and not allow(addr, n, n, now):
                    continue
                if flood:
                    queue_reply(i, n)
                    replied.append((flow, n))
                else:
                    try:
                        sendto(views[i][:n], addr)
                    except OSError:
                        listener.errors += 1
                        continue
                flow.bytes_out += n
                flow.msgs_out += 1
                bytes_out += n
                msgs_out += 1
            listener.bytes_in += bytes_in
            listener.msgs_in += msgs_in
            listener.bytes_out += bytes_out
            listener.msgs_out += msgs_out
            if replied:
                for k in flush():
                    flow, n = replied[k]
                    flow.bytes_out -= n
                    flow.msgs_out -= 1
                    listener.bytes_out -= n
                    listener.msgs_out -= 1
                    listener.errors += 1
                replied.clear()
            if served >= slots:
                await trio.lowlevel.checkpoint()
                served = 0
                continue
            if single:
                continue  # read on: singly, or in batches once the singles are spent
            if count < slots:
                # A batch that did not fill every slot drained the socket.
                if loaded and spins:
                    spins -= 1
                    continue
                break
