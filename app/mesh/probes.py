"""The two probe flows of one mesh pair: UDP and TCP, to the peer's mesh echo listeners.

Theory of operation: each flow sends a probe every ``1 / rate`` seconds, on a schedule
that never catches up (a probe whose time has passed is skipped, not sent late, so the
load never exceeds the rate), and matches the echoes by their sequence number
(:class:`~app.mesh.window.ProbeWindow`). A probe is ``size`` bytes: a magic, the flow's
nonce (a reply of an earlier connection is not this one's) and the sequence number.

Resource handling: the UDP flow keeps one connected socket; the TCP flow one connection,
opened again one second after it breaks, and read by ``TCP_INFO`` every second for the
kernel's retransmits (summed over the connections the flow has had).

Error handling: every socket error is the flow's ``error`` (with its time) and never ends
the flow: UDP's ECONNREFUSED (the ICMP of a stopped peer) is counted and sending goes on; a
broken TCP connection, or one whose oldest probe waits more than two timeouts, is closed
and opened again.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket as stdsocket
import struct

import trio

from app import tcpinfo
from app.mesh.window import ProbeWindow
from app.peerhttp import one_line
from app.runs.targets import TargetPolicy

_PROBE = struct.Struct("!4sIQ")
MAGIC = b"SLMP"
RECONNECT_DELAY = 1.0
CONNECT_TIMEOUT = 2.0
SAMPLE_INTERVAL = 1.0
# The ranges runs never reach (app.runs.targets): a DNS answer cannot aim probes there.
_POLICY = TargetPolicy()


class ProbeTargetError(OSError):
    """The peer's address is one probes never go to, or does not resolve."""


def encode(nonce: int, seq: int, size: int) -> bytes:
    return _PROBE.pack(MAGIC, nonce, seq).ljust(size, b"\0")


def decode(data: bytes, nonce: int) -> int | None:
    """The sequence number of one of this flow's probes, or None for anything else."""
    if len(data) < _PROBE.size:
        return None
    magic, got, seq = _PROBE.unpack_from(data)
    return seq if magic == MAGIC and got == nonce else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return one_line(f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}")
    return one_line(str(exc)) or type(exc).__name__


async def resolve(host: str, port: int, kind: int) -> tuple[int, tuple[str, int]]:
    """The first address of ``host`` (family, sockaddr), never an always-denied one.

    Raises:
        ProbeTargetError: It does not resolve, or to an address probes never go to.
    """
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=kind)
    except OSError as exc:
        raise ProbeTargetError(f"{host} does not resolve: {exc}") from None
    if not infos:
        raise ProbeTargetError(f"{host} does not resolve")
    family, _, _, _, sockaddr = infos[0]
    address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
    reason = _POLICY.denied_reason(address)
    if reason is not None:
        raise ProbeTargetError(f"{host} resolves to {address}, which is {reason}: never probed")
    return family, (str(sockaddr[0]), int(sockaddr[1]))


class Flow:
    """One probe flow's state: its window, its last error and whether it is connected."""

    def __init__(self, window: float, timeout: float, *, tcp: bool) -> None:
        self.window = ProbeWindow(window, timeout)
        self.tcp = tcp
        self.error: str | None = None
        self.error_at: float | None = None
        self.started = trio.current_time()
        self.connected = not tcp

    def failed(self, exc: BaseException) -> None:
        self.error, self.error_at = _describe(exc), trio.current_time()


class Schedule:
    """Probe times every ``period`` seconds from now; missed ones are skipped."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.next = trio.current_time()

    async def wait(self) -> None:
        now = trio.current_time()
        if self.next < now:
            # Behind (a loaded loop, a reconnect): skip the missed probes, never burst.
            self.next += (now - self.next) // self.period * self.period
            if self.next < now:
                self.next += self.period
        await trio.sleep_until(self.next)
        self.next += self.period


async def serve_udp_flow(flow: Flow, host: str, port: int, rate: float, size: int) -> None:
    """Probe ``host:port`` over UDP at ``rate`` probes a second until cancelled."""
    window = flow.window
    while True:
        try:
            family, address = await resolve(host, port, stdsocket.SOCK_DGRAM)
            with trio.socket.socket(family, stdsocket.SOCK_DGRAM) as sock:
                await sock.connect(address)
                nonce = int.from_bytes(os.urandom(4), "big")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_udp_replies, flow, sock, nonce, size)
                    schedule = Schedule(1.0 / rate)
                    seq = window.total_sent
                    while True:
                        await schedule.wait()
                        window.sent(seq, trio.current_time())
                        try:
                            await sock.send(encode(nonce, seq, size))
                        except OSError as exc:  # ECONNREFUSED after an ICMP: go on
                            flow.failed(exc)
                        seq += 1
        except OSError as exc:
            flow.failed(exc)
        await trio.sleep(RECONNECT_DELAY)


async def _udp_replies(flow: Flow, sock: trio.socket.SocketType, nonce: int, size: int) -> None:
    window = flow.window
    while True:
        try:
            data = await sock.recv(max(size, 2048))
        except OSError as exc:  # a stopped peer's ICMP port unreachable: counted, go on
            flow.failed(exc)
            continue
        seq = decode(data, nonce)
        if seq is not None:
            window.reply(seq, trio.current_time())


async def serve_tcp_flow(flow: Flow, host: str, port: int, rate: float, size: int) -> None:
    """Probe ``host:port`` over one TCP connection at ``rate`` a second until cancelled."""
    closed_retrans = 0  # the kernel's retransmits of the connections already closed
    while True:
        try:
            family, address = await resolve(host, port, stdsocket.SOCK_STREAM)
            sock = trio.socket.socket(family, stdsocket.SOCK_STREAM)
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await sock.connect(address)
            except BaseException:
                sock.close()
                raise
            stream = trio.SocketStream(sock)
            retrans = [closed_retrans]
            try:
                async with stream:
                    flow.connected = True
                    await _tcp_connection(flow, stream, rate, size, retrans)
            finally:
                flow.connected = False
                closed_retrans = retrans[0]
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            flow.failed(exc)
        await trio.sleep(RECONNECT_DELAY)


class _Broken(OSError):
    pass


async def _tcp_connection(
    flow: Flow, stream: trio.SocketStream, rate: float, size: int, retrans: list[int]
) -> None:
    """Probe over ``stream`` until it breaks; ``retrans[0]`` ends as the flow's total."""
    window = flow.window
    nonce = int.from_bytes(os.urandom(4), "big")
    base = retrans[0]

    def sample() -> None:
        tcp = tcpinfo.sample(stream.socket)
        if tcp is not None and tcp.total_retrans is not None:
            retrans[0] = base + tcp.total_retrans
        window.retransmits(trio.current_time(), retrans[0])

    async def replies() -> None:
        buffer = bytearray()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise _Broken("the peer closed the connection")
            buffer += data
            while len(buffer) >= size:
                seq = decode(bytes(buffer[:size]), nonce)
                del buffer[:size]
                if seq is not None:
                    window.reply(seq, trio.current_time())

    async def sampler() -> None:
        while True:
            sample()
            await trio.sleep(SAMPLE_INTERVAL)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replies)
            nursery.start_soon(sampler)
            schedule = Schedule(1.0 / rate)
            seq = window.total_sent
            while True:
                await schedule.wait()
                now = trio.current_time()
                oldest = window.overdue_since(now)
                if oldest is not None and now - oldest > 2 * window.timeout:
                    raise _Broken(f"no echo for {now - oldest:.1f} s")
                window.sent(seq, now)
                await stream.send_all(encode(nonce, seq, size))
                seq += 1
    except BaseExceptionGroup as group:
        # One of the connection's tasks broke it: that error is the flow's.
        matched = group.subgroup((OSError, trio.BrokenResourceError))
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    finally:
        sample()
