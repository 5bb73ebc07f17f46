"""UDP listener: one socket, flows keyed by peer address, drained in batches.

Theory of operation: the socket is a plain non-blocking stdlib socket. The loop waits until
it is readable (``trio.lowlevel.wait_readable``), then reads datagrams until the kernel has
none left (or a batch limit, for fairness), instead of paying one scheduler round per
datagram. Every peer address is a flow (a registry row) that is forgotten after
``idle_timeout`` seconds of silence.

Error handling: a failed ``sendto`` (full send buffer, ICMP error from an earlier reply) is
counted and the datagram is dropped; a datagram larger than ``max_message_size`` is counted
as oversized and dropped. Nothing a peer sends can end the loop.
"""

from __future__ import annotations

import socket as stdsocket
from typing import NoReturn

import trio

from app.listeners.base import Listener
from app.registry import Conn, Registry

# Datagrams handled per wake-up before yielding to other tasks: enough to amortise the
# scheduler round, small enough that a flood cannot starve the web server.
_BATCH = 64


def bind_udp(host: str, port: int) -> stdsocket.socket:
    """A bound, non-blocking UDP socket on ``host:port``."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == stdsocket.AF_INET6:
            sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_udp_listener(
    listener: Listener,
    registry: Registry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``listener`` (UDP echo) forever; reports the bound port through ``task_status``."""
    sock = bind_udp(listener.host, listener.port)
    flows: dict[object, Conn] = {}
    try:
        listener.port = sock.getsockname()[1]
        local = sock.getsockname()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_expire_flows, listener, registry, flows)
            task_status.started(listener.port)
            await _echo_loop(listener, registry, sock, local, flows)
    finally:
        sock.close()
        for conn in flows.values():
            registry.close(conn)
        listener.connections = 0
    raise AssertionError("unreachable")  # pragma: no cover


async def _echo_loop(
    listener: Listener,
    registry: Registry,
    sock: stdsocket.socket,
    local: object,
    flows: dict[object, Conn],
) -> NoReturn:
    max_size = listener.spec.max_message_size
    # One byte more than allowed, so an oversized datagram is seen as such, not truncated.
    buf = bytearray(max_size + 1)
    view = memoryview(buf)
    recvfrom_into = sock.recvfrom_into
    sendto = sock.sendto
    while True:
        await trio.lowlevel.wait_readable(sock)
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
                flow = registry.open("udp", local, addr, listener_id=listener.id)
                flows[addr] = flow
                listener.connections += 1
                listener.accepted += 1
            flow.bytes_in += n
            flow.msgs_in += 1
            listener.bytes_in += n
            listener.msgs_in += 1
            flow.touch()
            if n > max_size:
                listener.oversized += 1
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


async def _expire_flows(listener: Listener, registry: Registry, flows: dict[object, Conn]) -> None:
    """Forget flows that have been silent for ``idle_timeout`` seconds."""
    idle = listener.spec.idle_timeout
    period = min(max(idle / 4, 0.05), 5.0)
    while True:
        await trio.sleep(period)
        cutoff = trio.current_time() - idle
        for addr, flow in list(flows.items()):
            if flow.last_active < cutoff and not flow.dirty:
                del flows[addr]
                registry.close(flow)
                listener.connections -= 1
