"""What every listener has: its spec, its live totals, its mode and the scope that stops it.

A listener is split in two: the *server* (``tcp.py``, ``udp.py``: bind, accept or drain,
connection and flow bookkeeping, limits) and the *mode* (``modes/``: what is done with the
bytes). The server calls its mode through the small :class:`Mode` interface, so every mode
works over TCP, TLS and UDP alike: over a stream the mode gives a sans-IO session to the one
read loop (``stream.py``), over UDP a handler called by the one drain loop (``udp.py``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Literal, Protocol

import trio

from app.listeners.kernelloss import KernelLossState
from app.listeners.spec import ListenerSpec
from app.listeners.stream import StreamSession, Transport, serve_stream
from app.registry import Conn
from app.wire.replyguard import ReplyGuard


class DatagramPort(Protocol):
    """A UDP listener's socket as its mode sees it (:class:`~app.listeners.udp.UdpFlows`)."""

    @property
    def sock(self) -> Any:
        """The bound stdlib socket (for its kernel counters; modes do not send on it)."""
        ...

    def reply(
        self, flow: Conn, data: bytes | memoryview, addr: Any, request_size: int | None = None
    ) -> None:
        """Send one reply to ``addr`` through the listener's reflection limits; count it."""
        ...


# A mode's per-datagram entry: (buffer, length, peer address, flow row).
DatagramHandler = Callable[[memoryview, int, Any, Conn], None]
# Why a connection a mode adopted ended: end of stream, closed from the API, silent for the
# idle timeout, an error (given beside), or the listener stopping.
EndReason = Literal["eof", "api", "idle", "error", "shutdown"]
# The server's bookkeeping when an adopted connection ends: (row, socket, why, error). It
# counts the end on the listener, removes the row and closes the socket.
Ended = Callable[[Conn, socket.socket, EndReason, Exception | None], None]


class Mode:
    """What a listener does with its traffic. One instance per listener.

    Over TCP and TLS a mode is a session factory: the server calls :meth:`handle_stream`
    once per connection, inside a cancel scope whose deadline is the idle timeout, and by
    default that runs the one stream loop (:func:`~app.listeners.stream.serve_stream`) with
    the session :meth:`open_session` makes. A mode that serves plain TCP from a loop of
    its own (echo) sets ``adopts_sockets`` and gets each connection through :meth:`adopt`
    instead: no task, no cancel scope per connection. Over UDP the server calls
    :meth:`datagram_handler` once per socket and calls what it returns for each datagram.
    :meth:`run` runs beside the server for the listener's lifetime (flush timers, delay
    lines).

    Error handling: the per-datagram handler must not raise (it is the hot path: count
    instead). ``handle_stream`` may raise ``OSError`` or trio's broken-stream errors; the
    server counts them and ends that connection only.
    """

    name = "echo"
    # True when the UDP server may use its built-in echo loop instead of the handler.
    udp_fast_echo = False
    # True when plain TCP connections go to adopt() instead of a task each (handle_stream).
    adopts_sockets = False

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    async def run(self) -> None:
        """Background work for the listener's lifetime; the default has none."""

    def open_session(self) -> StreamSession:
        """The sans-IO session of one new TCP/TLS connection."""
        raise NotImplementedError

    async def handle_stream(
        self, conn: Conn, transport: Transport, scope: trio.CancelScope
    ) -> None:
        """Serve one TCP/TLS connection until EOF."""
        await serve_stream(self.listener, conn, transport, scope, self.open_session())

    def adopt(self, conn: Conn, sock: socket.socket, ended: Ended) -> None:
        """Serve one plain TCP connection without a task of its own (see ``adopts_sockets``).

        The mode owns ``sock`` (non-blocking) from here on, sets ``conn.close_hook``, applies
        the idle timeout, and calls ``ended`` exactly once when the connection ends,
        whatever ends it; ``ended`` closes the socket. It must not raise.
        """
        raise NotImplementedError

    def datagram_handler(self, port: DatagramPort) -> DatagramHandler:
        """The per-datagram function for the UDP socket behind ``port``."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Mode-specific live state, merged into :meth:`Listener.to_dict`."""
        return {}

    def probe_summary(self, run_tag: int) -> dict[str, Any] | None:
        """One-way statistics of a run's probes as received here (sink mode only)."""
        return None

    def receiving_end(self, run_tag: int) -> dict[str, Any] | None:
        """A run's figures as this listener's end counted them, if it is a sink (or a
        source: what it received, and what it sent, ``tx_*``)."""
        return None


class Listener:
    """One running server. Counters are bumped by its connection handlers (the hot path).

    Resource handling: everything the listener owns (the bound socket, every connection and
    flow, its mode's background tasks) lives inside ``cancel_scope``; cancelling it closes
    them all and frees the port.

    Counters:
        connections: Open TCP connections, or UDP flows tracked now.
        accepted: Connections accepted (TCP) or flows started (UDP) in all.
        rejected: Connections closed at once because ``max_connections`` were open (TCP),
            or datagrams dropped from new peers past ``max_connections`` flows (UDP).
        idle_closed: Connections closed (or flows forgotten) by the idle timeout.
        closed_by_api: Connections closed through ``DELETE /api/connections/{id}``.
        oversized: Datagrams larger than ``max_message_size`` (dropped), or lines longer
            than it (the connection is closed).
        errors: Resets, broken pipes, failed TLS handshakes, send failures.
    """

    def __init__(self, listener_id: str, spec: ListenerSpec) -> None:
        self.id = listener_id
        self.spec = spec
        self.port = spec.port
        self.host = spec.host
        self.cancel_scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.mode: Mode = Mode(self)
        self.tls: dict[str, Any] | None = None
        self.cert_pem: str | None = None  # TLS: the certificate served, for clients to trust
        self.started_at: float | None = None
        # Its key among the listeners kept across restarts (app.listeners.saved), if kept.
        self.saved_key: str | None = None
        self.connections = 0
        self.accepted = 0
        self.rejected = 0
        self.accept_failures = 0
        self.idle_closed = 0
        self.closed_by_api = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.errors = 0
        self.oversized = 0
        # UDP: the reflection limits every reply passes (see app.wire.replyguard).
        self.reply_guard: ReplyGuard | None = None
        # kernel_loss: the nftables chain dropping this listener's packets, once added.
        self.kernel_loss: KernelLossState | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document the API, the dashboard and the CLI show.

        Keys: ``id``, ``protocol``, ``host``, ``port``, ``mode``, ``url`` (with the bound
        port), ``options`` (those not at their defaults), the counters of the class
        docstring, the limits, and the mode's own section: ``respond`` (rules with hit
        counters), ``statsd`` (collector counters, kernel drops), ``probe`` (sink: one-way
        statistics per run), ``impairment`` (echo), ``source`` (streams sent, requests
        refused, what each run was sent), plus ``tls`` (certificate fingerprint) and
        ``kernel_loss`` (percent, direction, chain, packets dropped so far, netem).
        """
        spec = self.spec
        doc: dict[str, Any] = {
            "id": self.id,
            "protocol": spec.protocol,
            "host": self.host,
            "port": self.port,
            "mode": spec.mode,
            "url": self.spec_url(),
            "options": spec.options(),
            "connections": self.connections,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "accept_failures": self.accept_failures,
            "idle_closed": self.idle_closed,
            "closed_by_api": self.closed_by_api,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "msgs_in": self.msgs_in,
            "msgs_out": self.msgs_out,
            "errors": self.errors,
            "oversized": self.oversized,
            "max_connections": spec.max_connections,
            "idle_timeout": spec.idle_timeout,
            "max_message_size": spec.max_message_size,
            "started_at": self.started_at,
        }
        if self.tls is not None:
            doc["tls"] = self.tls
        if self.reply_guard is not None:
            doc["reflection_dropped"] = self.reply_guard.dropped
        if self.kernel_loss is not None:
            doc["kernel_loss"] = self.kernel_loss.to_dict()
        doc.update(self.mode.details())
        return doc

    def probe_summary(self, run_tag: int) -> dict[str, Any] | None:
        """What a sink listener received of the run with probe tag ``run_tag``: ``received``,
        ``lost``, ``loss_pct``, ``duplicates``, ``reordered``, ``jitter_ms``, ``flows``; None
        when this is not a sink or none of that run's probes arrived."""
        return self.mode.probe_summary(run_tag)

    def receiving_end(self, run_tag: int) -> dict[str, Any] | None:
        """What a sink listener has counted of a run, zeros before its first probe (so a
        run asking before it starts learns that its target is a sink); ``{"framed":
        false}`` for a TCP sink without ``message_size`` (it counts no messages); None
        when this is not a sink."""
        return self.mode.receiving_end(run_tag)

    def spec_url(self) -> str:
        """``proto://host:port?mode=...&options`` with the bound port (not 0): a URL that
        starts the same listener again (inline rules are not part of it)."""
        return self.spec.model_copy(update={"port": self.port}).url
