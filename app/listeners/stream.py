"""The one read loop of every stream (TCP, TLS) listener mode, and the seam modes plug into.

Theory of operation: a mode does not read or write sockets. For each connection it gives
the loop a :class:`StreamSession`, a sans-IO object in the manner of h11: the loop reads,
tells the session that data arrived (:meth:`StreamSession.receive`), and sends back what the
session answers. Everything else lives here once: the byte and message counters of the
connection and its listener, the idle deadline (pushed forward after every read), the read
buffer (small at first, grown x4 up to ``max_message_size`` after a read fills it; given
back to a pool while a plain TCP connection waits for data, so an idle one holds none) and
the end of a connection whose message is too long (:class:`~app.wire.rules.FrameTooLongError`:
counted in ``oversized``, the replies before it sent, then the connection ends).

Plain TCP echo does not come here: it is served by one socket loop per listener
(:mod:`app.listeners.modes.echo`), the lab's hottest path.

Error handling: what the transport raises (resets, broken pipes) and what a session raises
besides ``FrameTooLongError`` propagate to the caller, the per-connection error boundary in
:mod:`app.listeners.tcp`, which counts it and ends that connection only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from app.listeners.spec import ListenerSpec
from app.registry import Conn
from app.sockio import DirectSocket
from app.wire.rules import FrameTooLongError

# First read buffer of a TCP connection. Buffers grow (x4, up to max_message_size) after a
# read fills them, so 10,000 idle or chatty connections cost 40 MB, not 640 MB, while bulk
# senders still get large reads after a few round trips.
FIRST_READ_SIZE = 4096
# Past this many bytes in one read, the loop yields to the rest of the lab after serving it.
STEP_BYTES = 4096
# Read buffers kept for reuse: a connection waiting for data holds none (see serve_stream),
# so 10,000 idle connections hold no buffer, and the busy ones take and give back the same
# few. At most this many bytes of them wait in the pool (grown buffers are large).
MAX_SPARE_BYTES = 4 << 20


class _Spares:
    """Read buffers (with their views) not in use, by size; MAX_SPARE_BYTES of them at most."""

    def __init__(self) -> None:
        self._free: dict[int, list[tuple[bytearray, memoryview]]] = {}
        self._bytes = 0
        self.lent = 0  # buffers held by connections now

    def take(self, size: int) -> tuple[bytearray, memoryview]:
        self.lent += 1
        free = self._free.get(size)
        if free:
            self._bytes -= size
            return free.pop()
        buf = bytearray(size)
        return buf, memoryview(buf)

    def give(self, size: int, pair: tuple[bytearray, memoryview]) -> None:
        self.lent -= 1
        if self._bytes + size <= MAX_SPARE_BYTES:
            self._bytes += size
            self._free.setdefault(size, []).append(pair)


SPARES = _Spares()

# What a session answers: bytes, or views of the read buffer (valid until the next read).
Replies = Sequence[bytes | memoryview]
# Where replies go instead of straight to the transport (impairment's delayed writer).
Outlet = Callable[[Replies], Awaitable[None]]


class Transport(Protocol):
    """The two calls the loop makes: :class:`~app.sockio.DirectSocket` has them, and so
    does :class:`~app.listeners.tcp.StreamTransport` (TLS, or any trio Stream)."""

    def recv_into(self, buffer: bytearray, nbytes: int = 0, /) -> Awaitable[int]: ...

    def send(self, data: memoryview, /) -> Awaitable[int]: ...


class StreamCounters(Protocol):
    """What the loop reads and counts on a listener (:class:`~app.listeners.base.Listener`)."""

    spec: ListenerSpec
    bytes_in: int
    msgs_in: int
    bytes_out: int
    msgs_out: int
    oversized: int


class StreamSession(Protocol):
    """The sans-IO half of one connection: told that data arrived, it answers what to send.

    Attributes:
        whole_reads: Read ``max_message_size`` bytes at a time from the first read (a mode
            whose messages are the reads themselves), instead of growing the buffer.
        light_reads: Optional, False when absent. True when :meth:`receive` costs the same
            whatever the read's size (a sink that only counts, an echo): the loop then
            does not yield after every big read, only when the socket's budget says so.
        messages: Messages received so far (whole reads, lines, fixed-size frames): the
            loop counts ``msgs_in`` from it.
    """

    whole_reads: bool
    messages: int

    def receive(self, view: memoryview, n: int) -> Replies:
        """Take the ``n`` bytes at the start of ``view``; return the replies, in order.

        Raises:
            FrameTooLongError: A message outgrew ``max_message_size``; its ``lines`` are
                the replies still to send before the connection ends.
        """
        ...

    def close(self) -> None:
        """The connection ended (EOF, idle, closed, an error): finish what is pending."""
        ...


async def send_all(transport: Transport, data: bytes | memoryview) -> None:
    """Send every byte of ``data`` (``send`` may take only part of it)."""
    view = memoryview(data)
    sent = 0
    total = len(view)
    while sent < total:
        sent += await transport.send(view[sent:])


async def send_counted(
    listener: StreamCounters, conn: Conn, transport: Transport, data: bytes | memoryview
) -> None:
    """Send one reply whole and count it on ``conn`` and ``listener``."""
    await send_all(transport, data)
    size = len(data)
    conn.bytes_out += size
    conn.msgs_out += 1
    listener.bytes_out += size
    listener.msgs_out += 1


async def serve_stream(
    listener: StreamCounters,
    conn: Conn,
    transport: Transport,
    scope: trio.CancelScope,
    session: StreamSession,
    outlet: Outlet | None = None,
) -> None:
    """Serve one connection with ``session`` until EOF or a too-long message.

    Args:
        listener: Whose limits apply and whose counters are bumped (beside ``conn``'s).
        conn: The connection's registry row.
        transport: The connection.
        scope: The connection's cancel scope; its deadline is moved to ``idle_timeout``
            after each read.
        session: The mode's session for this connection; closed when this returns.
        outlet: Where replies go instead of being sent at once (it sends and counts them
            itself); it may wait, which stops reading: backpressure.
    """
    spec = listener.spec
    max_size = spec.max_message_size
    idle = spec.idle_timeout
    size = max_size if session.whole_reads else min(FIRST_READ_SIZE, max_size)
    # A plain socket can wait for data without a buffer: the connection gives its buffer
    # back while it waits (nothing refers to it then: replies were sent, and what a
    # session or an outlet keeps it copies, since the next read would overwrite it anyway).
    direct = transport if isinstance(transport, DirectSocket) else None
    pair = SPARES.take(size)
    buf, view = pair
    held = True  # whether this connection holds ``pair``
    recv_into = transport.recv_into
    receive = session.receive
    current_time = trio.current_time
    counted = session.messages
    # Past a big read, yield only for a session whose work grows with the read (see
    # StreamSession.light_reads); the transport's budget checkpoints the others.
    step_bytes = max_size + 1 if getattr(session, "light_reads", False) else STEP_BYTES
    try:
        while True:
            if direct is not None and direct.drained:
                SPARES.give(size, pair)
                held = False
                await direct.wait_readable()
                pair = SPARES.take(size)
                held = True
                buf, view = pair
            n = await recv_into(buf, size)
            if not n:
                return
            conn.bytes_in += n
            listener.bytes_in += n
            too_long = False
            try:
                replies: Replies = receive(view, n)
            except FrameTooLongError as exc:
                listener.oversized += 1
                replies = exc.lines
                too_long = True
            done = session.messages - counted
            if done:
                counted += done
                conn.msgs_in += done
                listener.msgs_in += done
            if replies:
                if outlet is None:
                    for reply in replies:
                        await send_counted(listener, conn, transport, reply)
                else:
                    await outlet(replies)
            if too_long:
                return
            conn.touch()
            scope.deadline = current_time() + idle
            if n > step_bytes:
                # A big read was a lot of session work (a respond rule per line): let the
                # rest of the lab run before the next one, whatever the socket's budget.
                await trio.lowlevel.checkpoint()
            if n == size and size < max_size:
                SPARES.give(size, pair)
                size = min(size * 4, max_size)
                pair = SPARES.take(size)
                buf, view = pair
    finally:
        if held:
            SPARES.give(size, pair)
        session.close()
