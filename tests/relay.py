"""Ground truth for the measuring tests: an impairing UDP relay and a delaying TCP relay.

A measuring tool is checked against what the test itself did, never against its own
arithmetic. These relays sit between a socketlab run and its target (an echo or a sink) on
127.0.0.1, impair what the client sends, and log, by probe sequence number, exactly what
they did to each datagram or message: dropped it, sent it twice, held it back behind the
next one of its flow, and how long they delayed it (the times they read, not the times they
meant). Replies pass back unchanged and in order.

The relays read the probe header with their own decoder (:func:`parse_probe`), written from
the layout in the README, not with ``app.wire.probe``: a wrong decoder in the code under
test must not also be the truth it is compared with.

Fates are drawn per datagram from a seeded RNG, one fate each: dropped (``loss`` %),
duplicated (``duplicate`` %), reordered (``reorder`` %: held until the next datagram of the
same client has gone out; the last one of a flow, with no next, goes out in order after
``hold_timeout`` and is logged as passed) or passed. ``delay`` plus a uniform random
``jitter`` (seconds) applies to every copy sent on; with jitter, datagrams may pass each
other, which the log's emission order shows. Delays are waited out on the timerfd timer of
``app.runs.timer``, so a uniform jitter is not rounded to whole milliseconds; the timer only
says when to send, and what the log says is read from the clock.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from app.runs.timer import PreciseTimer

perf_ns = time.perf_counter_ns

PROBE_SIZE = 28
# Receive buffers of the relay's sockets (and of the echo and sink behind it in the tests).
RCVBUF = 4 * 1024 * 1024


@dataclass(frozen=True)
class Probe:
    """The fields of a socketlab probe header, as this module reads them."""

    flags: int
    run_tag: int
    flow: int
    seq: int
    sent_ns: int

    @property
    def warmup(self) -> bool:
        return bool(self.flags & 1)


def parse_probe(data: bytes) -> Probe | None:
    """Read a probe header: ``SL``, version 1, flags, then big-endian u32 run tag, u32 flow,
    u64 sequence and u64 send time, 28 bytes in all; ``None`` for anything else."""
    if len(data) < PROBE_SIZE or data[:2] != b"SL" or data[2] != 1:
        return None

    def number(start: int, end: int) -> int:
        return int.from_bytes(data[start:end], "big")

    return Probe(data[3], number(4, 8), number(8, 12), number(12, 20), number(20, 28))


@dataclass(frozen=True)
class Impairment:
    """What a relay does to the client's traffic: percentages and seconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    seed: int = 1


@dataclass
class Fate:
    """What the relay did to one datagram (or, over TCP, one message)."""

    client: int  # 0, 1, ... in the order clients first sent
    probe: Probe | None
    action: str  # "passed", "dropped", "duplicated", "reordered"
    arrived_ns: int
    emitted_ns: list[int] = field(default_factory=list)

    @property
    def counted(self) -> bool:
        """A message socketlab counts: it carries a probe and is not warm-up."""
        return self.probe is not None and not self.probe.warmup


@dataclass
class RelayLog:
    """Every datagram the relay got from its clients, in arrival order, and every copy it
    sent on, in emission order (``(fate, time)``)."""

    fates: list[Fate] = field(default_factory=list)
    emitted: list[tuple[Fate, int]] = field(default_factory=list)

    def counted(self) -> list[Fate]:
        return [f for f in self.fates if f.counted]

    def count(self, action: str) -> int:
        """Counted datagrams (warm-up left out) whose fate was ``action``."""
        return sum(1 for f in self.counted() if f.action == action)

    def by_client(self) -> dict[int, list[tuple[Fate, int]]]:
        """Counted copies sent on, per client, in emission order."""
        flows: dict[int, list[tuple[Fate, int]]] = {}
        for fate, t in self.emitted:
            if fate.counted:
                flows.setdefault(fate.client, []).append((fate, t))
        return flows

    def added_jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter of the delay this relay added, in the order it sent
        the copies on (the order they reach the target), per client, averaged over clients.

        ``J += (|D| - J) / 16`` with ``D`` the change of the added delay from one copy to the
        next: the jitter a receiver sees when every other hop takes a constant time.
        """
        jitters = [
            rfc3550_ms(t - fate.arrived_ns for fate, t in copies)
            for copies in self.by_client().values()
            if len(copies) > 1
        ]
        return sum(jitters) / len(jitters) if jitters else 0.0


class _Draw:
    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self.rng = random.Random(impairment.seed)

    def action(self) -> str:
        imp = self.impairment
        r = self.rng.random() * 100.0
        if r < imp.loss:
            return "dropped"
        if r < imp.loss + imp.duplicate:
            return "duplicated"
        if r < imp.loss + imp.duplicate + imp.reorder:
            return "reordered"
        return "passed"

    def delay_ns(self) -> int:
        imp = self.impairment
        return int((imp.delay + self.rng.uniform(0.0, imp.jitter)) * 1e9)


async def serve_udp_relay(
    upstream: tuple[str, int],
    impairment: Impairment,
    log: RelayLog,
    *,
    hold_timeout: float = 0.2,
    replies: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Relay UDP from any number of clients to ``upstream``, impairing the clients' side.

    Each client (source address) gets its own socket to ``upstream``, so replies go back to
    the client they answer, unchanged. Reports the relay's port; serves until cancelled.

    With ``replies``, the other way round: what the clients send passes unchanged and
    unlogged, and what ``upstream`` sends back (a socketlab source's stream) is impaired
    and logged, by loss and duplication only (no reordering, no delay).
    """
    draw = _Draw(impairment)
    delayed = bool(impairment.delay or impairment.jitter)
    front = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clients: dict[tuple[str, int], int] = {}
    backs: list[trio.socket.SocketType] = []
    held: dict[int, tuple[Fate, bytes]] = {}

    try:
        async with trio.open_nursery() as nursery:
            # A sender catching up sends its backlog back to back while this relay, on the
            # same event loop, waits its turn: a datagram the kernel dropped for want of
            # buffer would be a loss the log does not show.
            front.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            await front.bind(("127.0.0.1", 0))
            task_status.started(front.getsockname()[1])

            async def send_on(fate: Fate, data: bytes, client: int) -> None:
                t = perf_ns()
                await backs[client].send(data)
                fate.emitted_ns.append(t)
                log.emitted.append((fate, t))

            async def deliver(fate: Fate, data: bytes, client: int, due_ns: int) -> None:
                # A timer to the microsecond: trio's own sleep would round each delay up
                # to epoll's millisecond and flatten the jitter asked for. The log keeps
                # the time each copy really went on either way.
                wait = (due_ns - perf_ns()) / 1e9
                with PreciseTimer() as timer:
                    await timer.sleep_until_ns(due_ns, trio.current_time() + wait)
                await send_on(fate, data, client)

            async def emit(fate: Fate, data: bytes, client: int) -> None:
                if not delayed:
                    await send_on(fate, data, client)
                    return
                nursery.start_soon(deliver, fate, data, client, perf_ns() + draw.delay_ns())

            async def flush_held(client: int, fate: Fate) -> None:
                await trio.sleep(hold_timeout)
                if held.get(client, (None,))[0] is fate:
                    _, data = held.pop(client)
                    fate.action = "passed"  # nothing came after it: it went out in order
                    await emit(fate, data, client)

            async def replies_of(
                back: trio.socket.SocketType, address: tuple[str, int], client: int
            ) -> None:
                while True:
                    try:
                        data = await back.recv(65536)
                    except ConnectionRefusedError:
                        continue
                    if not replies:
                        await front.sendto(data, address)
                        continue
                    action = draw.action()
                    fate = Fate(client, parse_probe(data), action, perf_ns())
                    if action == "reordered":
                        fate.action = "passed"
                    log.fates.append(fate)
                    if action == "dropped":
                        continue
                    for _ in range(2 if action == "duplicated" else 1):
                        t = perf_ns()
                        await front.sendto(data, address)
                        fate.emitted_ns.append(t)
                        log.emitted.append((fate, t))

            while True:
                data, address = await front.recvfrom(65536)
                arrived = perf_ns()
                client = clients.get(address, -1)
                if client < 0:
                    back = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    backs.append(back)
                    back.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                    await back.connect(upstream)
                    client = clients[address] = len(backs) - 1
                    nursery.start_soon(replies_of, back, address, client)
                if replies:
                    await backs[client].send(data)
                    continue
                action = draw.action()
                if action == "reordered" and client in held:
                    action = "passed"  # one held back at a time per client
                fate = Fate(client, parse_probe(data), action, arrived)
                log.fates.append(fate)
                if action == "dropped":
                    continue
                if action == "reordered":
                    held[client] = (fate, data)
                    nursery.start_soon(flush_held, client, fate)
                    continue
                await emit(fate, data, client)
                if action == "duplicated":
                    await emit(fate, data, client)
                if client in held:
                    late, late_data = held.pop(client)
                    await emit(late, late_data, client)
    finally:
        front.close()
        for back in backs:
            back.close()


async def serve_tcp_relay(
    upstream: tuple[str, int],
    impairment: Impairment,
    log: RelayLog,
    *,
    message_size: int,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Relay TCP connections to ``upstream``, delaying each ``message_size``-byte message the
    client sends by ``delay`` plus uniform ``jitter`` (never before the message ahead of it:
    a stream keeps its order). Loss, duplication and reordering do not apply to a stream.

    Every message is logged as a :class:`Fate` (``passed``) with its probe and the times it
    arrived whole and went on. Replies pass back unchanged. Reports the relay's port.
    """
    draw = _Draw(impairment)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    count = 0

    async def handle(client: trio.SocketStream) -> None:
        nonlocal count
        index = count
        count += 1
        async with client, await trio.open_tcp_stream(*upstream) as server:
            send, receive = trio.open_memory_channel[tuple[int, Fate, bytes]](1024)

            async def forward() -> None:
                last_due = 0
                async with receive:
                    async for due, fate, message in receive:
                        due = max(due, last_due)
                        last_due = due
                        now = perf_ns()
                        if due > now:
                            await trio.sleep((due - now) / 1e9)
                        t = perf_ns()
                        await server.send_all(message)
                        fate.emitted_ns.append(t)
                        log.emitted.append((fate, t))

            async def back() -> None:
                async for data in server:
                    await client.send_all(data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(back)
                # The inner nursery lets forward() drain what is queued after the client's
                # end of stream before the reply direction is cancelled.
                async with trio.open_nursery() as inner:
                    inner.start_soon(forward)
                    buffer = b""
                    async with send:
                        async for data in client:
                            buffer += data
                            while len(buffer) >= message_size:
                                message, buffer = buffer[:message_size], buffer[message_size:]
                                arrived = perf_ns()
                                fate = Fate(index, parse_probe(message), "passed", arrived)
                                log.fates.append(fate)
                                await send.send((arrived + draw.delay_ns(), fate, message))
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


def rfc3550_ms(transits_ns: Iterable[int]) -> float:
    """RFC 3550 interarrival jitter of a sequence of transit times, in ms."""
    items = list(transits_ns)
    jitter = 0.0
    for before, after in itertools.pairwise(items):
        jitter += (abs(after - before) - jitter) / 16
    return jitter / 1e6
