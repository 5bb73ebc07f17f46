"""The plain UDP echo over the compiled drain (``app/native/_udpecho.c``).

Theory of operation: a plain echo (no impairments) spends its time in Python per datagram:
the read, the flow lookup, the counters, the reply. Here one ``Echo.drain`` call does that
in C for a whole pass (``recvmmsg`` a batch, count it per flow, ``sendmmsg`` the same
buffers back, spin a few empty reads as :func:`app.listeners.udp._drain_loop` does), and
Python works once per call: it adds the call's totals to the listener and folds the
per-flow counts of the slots it touched into their registry rows (:meth:`KnownFlows.fold`),
so the rows and ``/metrics`` are exact at every checkpoint, which is when anyone else reads
them.

Which datagrams C serves: only those from a source Python registered as a known flow
(:meth:`KnownFlows.add`): a flow Python opened itself, whose source the reply guard answers
without a limit (:attr:`~app.wire.replyguard.ReplyGuard.free`: loopback, a port from 1024
up). Everything else is handed back (``Echo.handoffs``) and served here as the Python loop
would: a new source opens a flow (or is counted in ``rejected`` past ``max_connections``), a
datagram longer than ``max_message_size`` is counted ``oversized``, a source outside loopback
passes the reply guard per reply. A flow that is forgotten (idle timeout, closed from the
API, its peer's run ended) leaves C's table at once (``UdpFlows.on_forget``), so its next
datagram is handed back and opens a new flow.

Used when the module is built and neither ``SOCKETLAB_NO_NATIVE=1`` nor
``SOCKETLAB_NO_MMSG=1`` is set (:func:`native_echo`); otherwise the Python loop serves.
"""

from __future__ import annotations

import socket as stdsocket
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

import trio

from app.listeners.base import Listener
from app.mmsg import MAX_ADDRS, SLOTS, decode_sockaddr, mmsg_available
from app.native import native
from app.registry import Conn
from app.wire.replyguard import ReplyGuard

_udpecho = native("udpecho")
# Datagrams served between checkpoints: as the Python loop's one full batch.
BUDGET = SLOTS


class Flows(Protocol):
    """What this loop uses of the listener's :class:`~app.listeners.udp.UdpFlows`."""

    rows: dict[Any, Conn]
    sock: stdsocket.socket
    guard: ReplyGuard
    on_forget: Callable[[Any], None] | None

    def open(self, addr: Any) -> Conn | None: ...

    def reply(
        self, flow: Conn, data: bytes | memoryview, addr: Any, request_size: int | None = None
    ) -> None: ...


def native_echo(sock: stdsocket.socket, max_size: int) -> Any | None:
    """The compiled drain for ``sock``, or None where the Python loop must serve."""
    if _udpecho is None or not mmsg_available():
        return None
    if sock.family not in (stdsocket.AF_INET, stdsocket.AF_INET6):
        return None
    return _udpecho.Echo(sock.fileno(), sock.family, max_size, SLOTS)


class KnownFlows:
    """The flows the compiled drain serves: a slot each, and the fold of their counts.

    Resource handling: a slot is given back (and reused) when its flow is forgotten; C's
    arrays grow to the highest slot in use, so they are bounded by the flows tracked.
    """

    __slots__ = ("addresses", "by_slot", "echo", "slot_of", "spare")

    def __init__(self, echo: Any) -> None:
        self.echo = echo
        # Decoded sources of handed-back datagrams, by raw sockaddr (as app.mmsg keeps them).
        self.addresses: dict[bytes, Any] = {}
        self.by_slot: list[Conn | None] = []
        self.slot_of: dict[Any, int] = {}
        self.spare: list[int] = []

    def add(self, addr: Any, raw: bytes, flow: Conn) -> None:
        """From now on C serves ``addr`` (``raw``: its sockaddr) and counts for ``flow``."""
        if self.spare:
            slot = self.spare.pop()
            self.by_slot[slot] = flow
        else:
            slot = len(self.by_slot)
            self.by_slot.append(flow)
        self.echo.add(raw, slot)
        self.slot_of[addr] = slot

    def forget(self, addr: Any) -> None:
        """``addr``'s flow is forgotten: its datagrams are handed back again."""
        slot = self.slot_of.pop(addr, None)
        if slot is not None:
            self.echo.forget(slot)
            self.by_slot[slot] = None
            self.spare.append(slot)

    def fold(self) -> None:
        """Add the counts C kept since the last fold to the flows' rows."""
        by_slot = self.by_slot
        for slot, msgs_in, bytes_in, msgs_out, bytes_out in self.echo.take():
            flow = by_slot[slot]
            assert flow is not None  # forget() runs between folds only
            flow.msgs_in += msgs_in
            flow.bytes_in += bytes_in
            flow.msgs_out += msgs_out
            flow.bytes_out += bytes_out
            if not flow.dirty:
                flow.touch()


async def native_echo_loop(listener: Listener, flows: Flows, echo: Any, spins: int) -> NoReturn:
    """Serve a plain echo over ``echo`` (see the module docstring) forever.

    ``flows`` is the listener's :class:`~app.listeners.udp.UdpFlows`; its ``on_forget``
    is pointed at this loop's table of known flows. ``spins``: the empty reads a busy call
    tries before it reports the socket drained (the Python loop's own, ``udp._SPIN``).
    """
    assert _udpecho is not None
    handoff, error, drained = _udpecho.HANDOFF, _udpecho.ERROR, _udpecho.DRAINED
    known = KnownFlows(echo)
    flows.on_forget = known.forget
    sock = flows.sock
    drain = echo.drain
    fold = known.fold
    while True:
        await trio.lowlevel.wait_readable(sock)
        served = 0
        while True:
            status, read, msgs_in, bytes_in, msgs_out, bytes_out, errors = drain(
                BUDGET - served, spins
            )
            if msgs_in:
                listener.msgs_in += msgs_in
                listener.bytes_in += bytes_in
                listener.msgs_out += msgs_out
                listener.bytes_out += bytes_out
                listener.errors += errors
                fold()
            served += read
            if status == handoff:
                _serve_handoffs(listener, flows, known, echo.handoffs())
            elif status == error:
                # An ICMP error queued for an earlier reply: counted, not fatal (as udp.py).
                listener.errors += 1
                break
            elif status == drained:
                break
            if served >= BUDGET:
                await trio.lowlevel.checkpoint()
                served = 0


def _serve_handoffs(listener: Listener, flows: Flows, known: KnownFlows, items: list[Any]) -> None:
    """Serve the datagrams C handed back, as the Python loop would; register new flows."""
    max_size = listener.spec.max_message_size
    free = flows.guard.free
    family = flows.sock.family
    addresses = known.addresses
    for data, n, raw in items:
        addr = addresses.get(raw)
        if addr is None:
            if len(addresses) >= MAX_ADDRS:
                addresses.clear()  # a flood of forged sources cannot grow it
            addr = addresses[raw] = decode_sockaddr(family, raw)
        flow = flows.rows.get(addr)
        if flow is None:
            flow = flows.open(addr)
            if flow is None:
                continue  # counted in rejected
        flow.bytes_in += n
        flow.msgs_in += 1
        listener.bytes_in += n
        listener.msgs_in += 1
        if not flow.dirty:
            flow.touch()
        if n > max_size:
            listener.oversized += 1
            continue
        flows.reply(flow, data, addr)
        if addr in free and addr not in known.slot_of:
            known.add(addr, raw, flow)
