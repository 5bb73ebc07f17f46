"""Live connections and UDP flows, with counters the hot path bumps and timed snapshots.

Theory of operation: every TCP connection (inbound or made by a run) and every UDP flow is a
:class:`Conn` row. The per-message code touches only plain integer attributes of that row
(``bytes_in += n``) and, the first time after a snapshot, appends the row to a dirty list.
A timer (the lab's snapshot loop, about 4 Hz) calls :meth:`Registry.take_diff`, which looks
only at rows opened, closed or dirtied since the previous call. That keeps the cost of a
snapshot proportional to what changed, not to how many connections are open, which is what
lets 10,000 idle connections cost nothing per tick.

A TCP row also holds its socket, so the kernel's view of it (:mod:`app.tcpinfo`) can be read
by whoever looks at the row (a dashboard page, the API's page, a run's ticker), and is read
once more when the row closes: the growth of its retransmit counters goes to the lab's
per-direction :class:`~app.tcpinfo.TcpSums` (and a run's), which only ever grow.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

from app.endpoint import host_port
from app.tcpinfo import SupportsGetsockopt, TcpSample, TcpSums, refresh, to_doc

_CLOCK: Callable[[], float] = trio.current_time


class Conn:
    """One live TCP connection or UDP flow.

    Only the owning task writes the counters. ``close_hook`` (when set) closes the real
    socket, so ``Registry.close_connection`` is a real close, not a cosmetic one.
    """

    __slots__ = (
        "_reg",
        "bytes_in",
        "bytes_out",
        "close_hook",
        "closed",
        "dirty",
        "id",
        "last_active",
        "listener_id",
        "local",
        "msgs_in",
        "msgs_out",
        "opened_at",
        "peer_gone",
        "protocol",
        "remote",
        "run_id",
        "tcp",
        "tcp_at",
        "tcp_sock",
        "tcp_sums",
    )

    def __init__(
        self,
        registry: Registry,
        conn_id: str,
        protocol: str,
        local: str,
        remote: str,
        listener_id: str | None,
        run_id: str | None,
    ) -> None:
        self._reg = registry
        self.id = conn_id
        self.protocol = protocol
        self.local = local
        self.remote = remote
        self.listener_id = listener_id
        self.run_id = run_id
        self.opened_at = time.time()
        self.last_active = _CLOCK()
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.dirty = False
        self.closed = False
        self.close_hook: Callable[[], None] | None = None
        # A listener's UDP flow: forgets the flow when its peer (a run of this lab) closed.
        self.peer_gone: Callable[[], None] | None = None
        # The kernel's view (app.tcpinfo): the socket to ask, the last answer and when it
        # came (trio time), and the sums its retransmits are added to.
        self.tcp_sock: SupportsGetsockopt | None = None
        self.tcp: TcpSample | None = None
        self.tcp_at = 0.0
        self.tcp_sums: tuple[TcpSums, ...] = ()

    def touch(self) -> None:
        """Mark the row changed since the last snapshot (cheap: one flag test)."""
        if not self.dirty:
            self.dirty = True
            self._reg._dirty.append(self)

    def row(self, *, tcp: bool = False, wall_offset: float | None = None) -> dict[str, Any]:
        """The JSON row the API and the dashboard show; ``tcp``: with the kernel's view.

        ``wall_offset`` (``time.time() - trio.current_time()``) is read now when not given;
        a page of rows reads it once for all of them.
        """
        if wall_offset is None:
            wall_offset = time.time() - _CLOCK()
        row: dict[str, Any] = {
            "id": self.id,
            "protocol": self.protocol,
            "local": self.local,
            "remote": self.remote,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "msgs_in": self.msgs_in,
            "msgs_out": self.msgs_out,
            "opened_at": self.opened_at,
            "last_activity": self.last_active + wall_offset,
        }
        if self.run_id is not None:
            row["run_id"] = self.run_id
        else:
            row["listener_id"] = self.listener_id
        if tcp:
            row["tcp"] = to_doc(self.protocol, self.tcp, round(self.tcp_at + wall_offset, 3))
        return row


def format_address(address: Any) -> str:
    """``host:port`` for IPv4, ``[host]:port`` for IPv6, ``str()`` for anything else."""
    if isinstance(address, tuple) and len(address) >= 2:
        return host_port(str(address[0]), address[1])
    return str(address)


class Registry:
    """All live connections and flows of the lab, and the diffs between snapshots."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._conns: dict[str, Conn] = {}
        self._added: list[Conn] = []
        self._removed: list[str] = []
        self._dirty: list[Conn] = []
        # Kernel retransmits of TCP connections, inbound (to listeners) and outbound (runs).
        self.tcp_inbound = TcpSums()
        self.tcp_outbound = TcpSums()
        self._inbound_sums = (self.tcp_inbound,)

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(self._conns.values())

    def open(
        self,
        protocol: str,
        local: Any,
        remote: Any,
        *,
        listener_id: str | None = None,
        run_id: str | None = None,
        sock: SupportsGetsockopt | None = None,
        tcp_sums: tuple[TcpSums, ...] = (),
    ) -> Conn:
        """Add a row for a new connection or flow and return it.

        Args:
            sock: A TCP connection's socket, for the kernel's view of it (left out for UDP).
            tcp_sums: Where else its retransmits are added up (a run's sums).
        """
        conn = Conn(
            self,
            f"c{next(self._ids)}",
            protocol,
            format_address(local),
            format_address(remote),
            listener_id,
            run_id,
        )
        if sock is not None and protocol != "udp":
            conn.tcp_sock = sock
            if run_id is None:
                # One tuple shared by every inbound row that adds to no other sums.
                conn.tcp_sums = (*self._inbound_sums, *tcp_sums) if tcp_sums else self._inbound_sums
            else:
                conn.tcp_sums = (self.tcp_outbound, *tcp_sums)
        self._conns[conn.id] = conn
        self._added.append(conn)
        return conn

    def close(self, conn: Conn) -> None:
        """Remove a row; idempotent. A TCP row's kernel figures are read one last time (the
        caller closes the socket after this)."""
        if conn.closed:
            return
        if conn.tcp_sock is not None:
            refresh(conn, _CLOCK())
            conn.tcp_sock = None
        conn.closed = True
        conn.close_hook = conn.peer_gone = None
        if self._conns.pop(conn.id, None) is not None:
            self._removed.append(conn.id)

    def get(self, conn_id: str) -> Conn | None:
        return self._conns.get(conn_id)

    def close_connection(self, conn_id: str) -> bool:
        """Close the real socket behind a row. Returns False for an unknown id."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return False
        hook = conn.close_hook
        if hook is not None:
            hook()
        else:
            self.close(conn)
        return True

    def peers_gone(self, addresses: Iterable[str], port: int) -> int:
        """End the listeners' UDP flows whose peer was one of ``addresses`` (the closed
        client sockets of a run that ended), on a listener at ``port``.

        UDP has no FIN: without this a lab's own listener would count the flows of a
        finished run as open until its idle timeout. Called once per run (a pass over the
        rows); returns how many flows ended.
        """
        gone = set(addresses)
        if not gone:
            return 0
        suffix = f":{port}"
        ended = [
            conn
            for conn in self._conns.values()
            if conn.listener_id is not None
            and conn.protocol == "udp"
            and conn.remote in gone
            and conn.local.endswith(suffix)
        ]
        for conn in ended:
            hook = conn.peer_gone
            if hook is not None:
                hook()
            else:
                self.close(conn)
        return len(ended)

    def rows(
        self,
        *,
        offset: int = 0,
        limit: int = 1000,
        predicate: Callable[[Conn], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of rows, oldest first, and the number of rows that match.

        The page's TCP rows are sampled (:mod:`app.tcpinfo`) and carry the kernel's view.
        """
        conns = self._conns.values()
        matching = [c for c in conns if predicate(c)] if predicate else list(conns)
        page = matching[offset : offset + limit]
        now = _CLOCK()
        for conn in page:
            refresh(conn, now)
        wall_offset = time.time() - now
        return [c.row(tcp=True, wall_offset=wall_offset) for c in page], len(matching)

    def detail(self, conn_id: str) -> dict[str, Any] | None:
        """One row with the kernel's view read now; ``None`` for an unknown id."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return None
        refresh(conn, _CLOCK())
        return conn.row(tcp=True)

    def take_diff(self, *, rows: bool = True) -> dict[str, list[Any]]:
        """What changed since the previous call: added rows, updated ids, removed ids.

        ``rows=False`` gives the added rows' ids instead of the rows, for a caller that only
        needs to know what changed: 10,000 connections opened in one tick then cost a
        list of ids, not 10,000 rows built for nobody.

        A row opened and closed between two calls appears in neither list. Updated rows
        get their ``last_active`` time here (the hot path does not read a clock) and are
        given by id only: building a full row for every busy connection four times a
        second is work nobody reads; views build the rows they show. Cost is proportional
        to the rows that changed.
        """
        now = _CLOCK()
        added_ids: set[str] = set()
        added = []
        for conn in self._added:
            if not conn.closed:
                added_ids.add(conn.id)
                conn.dirty = False
                added.append(conn.row() if rows else conn.id)
        updated = []
        for conn in self._dirty:
            conn.dirty = False
            conn.last_active = now
            if conn.closed or conn.id in added_ids:
                continue
            updated.append(conn.id)
        added_set = {c.id for c in self._added}
        removed = [cid for cid in self._removed if cid not in added_set]
        self._added.clear()
        self._dirty.clear()
        self._removed.clear()
        return {"added": added, "updated": updated, "removed": removed}
