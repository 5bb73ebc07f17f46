"""One subscriber's window onto the connections table: filter, sort, page, diff.

Theory of operation: a browser never receives the whole table. It sends a
:class:`ConnView` (filters, sort column, offset and limit); its :class:`ConnWindow` selects the
matching rows, sorts them, cuts the page and compares it with the page it sent last time.
:meth:`ConnWindow.update` returns only what the browser does not have yet: the rows of the
page whose counters changed, the page's order of ids when it changed, and the counts. So the
feed carries at most ``limit`` rows per tick whatever the number of connections, and nothing
at all while the page is unchanged, which is what keeps 10,000 connections under a few kB/s.

The selection is plain Python over the registry's rows, O(n log n) when sorted by a counter;
the caller runs it only when the registry changed, the view did, or the kernel's figures of a
row on the page did.

The kernel's view of a TCP row (:mod:`app.tcpinfo`) travels as :data:`TCP_COLUMNS` after
the counters. It is read only for the rows a page shows (the caller's ``sample`` hook, once
per tick), so idle rows off screen cost nothing. Sorting by a kernel column needs every
matching row's figures: those are read again when older than :data:`SORT_SAMPLE_AGE`, so a
sort over 10,000 rows costs their sampling (about 30 ms) once per that age, not per tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from app import tcpinfo
from app.errors import SpecError
from app.tcpinfo import TcpSample
from app.validation import validate
from app.wire import jsondoc

# Columns of a row as the feed sends it: arrays in this order, named once per message.
COLUMNS = (
    "id",
    "protocol",
    "owner",
    "local",
    "remote",
    "bytes_in",
    "bytes_out",
    "msgs_in",
    "msgs_out",
    "opened_at",
    "last_active",
    *tcpinfo.FIELDS,
    "tcp_reason",
)
# The kernel's columns (app.tcpinfo.TcpInfo), sortable: their values are the API's.
TCP_COLUMNS = (*tcpinfo.FIELDS, "tcp_reason")
SortKey = Literal[
    "id",
    "protocol",
    "owner",
    "local",
    "remote",
    "bytes_in",
    "bytes_out",
    "msgs_in",
    "msgs_out",
    "opened_at",
    "last_active",
    "state",
    "srtt_ms",
    "rttvar_ms",
    "retrans",
    "total_retrans",
    "lost",
    "reordering",
    "snd_cwnd",
    "unacked",
    "delivery_bits_per_s",
    "bytes_retrans",
]
# The most rows one page may hold: a page is what a screen shows, and this bounds one
# message to about 60 kB even when every row on it changed.
MAX_LIMIT = 500
ANY = "*"
# A view message is a few short fields (about 200 bytes); anything much larger is refused
# before it is parsed, so a client cannot make each message cost a megabyte of decoding.
MAX_VIEW_MESSAGE = 4096
# Seconds a row's kernel figures may be old when a view sorts by one of them.
SORT_SAMPLE_AGE = 5.0


class ConnRow(Protocol):
    """What a window reads from a connection (see :class:`app.registry.Conn`)."""

    id: str
    protocol: str
    local: str
    remote: str
    listener_id: str | None
    run_id: str | None
    opened_at: float
    last_active: float
    bytes_in: int
    bytes_out: int
    msgs_in: int
    msgs_out: int
    tcp: TcpSample | None  # the kernel's figures last read, None before (or for UDP)


# A hook that reads the kernel's figures of the rows given (app.tcpinfo.refresh_all with a
# clock), with how old (seconds) a row's figures may stay unread.
Sampler = Callable[[list[ConnRow], float], object]


class ConnView(BaseModel):
    """What one browser looks at. Empty filters match everything; ``*`` matches any owner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset: int = Field(default=0, ge=0, le=10_000_000, description="first row of the page")
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT, description="rows per page")
    sort: SortKey = Field(default="id", description="column to sort by; id is the opening order")
    desc: bool = Field(default=False, description="sort descending")
    listener: str = Field(default="", max_length=64, description="listener id, '*' any listener")
    run: str = Field(default="", max_length=64, description="run id, '*' any run")
    protocol: Literal["", "tcp", "udp", "tls"] = Field(default="", description="protocol")
    q: str = Field(default="", max_length=200, description="text in an address, or an id")
    seq: int = Field(default=0, ge=0, description="the browser's view number, echoed back")


def parse_view(text: str | bytes) -> ConnView:
    """Validate one ``{"type": "view", ...}`` message from a browser.

    Raises:
        SpecError: Too large, not JSON (nested too deep included), not a view message, or
            a field out of range (named).
    """
    if len(text) > MAX_VIEW_MESSAGE:
        raise SpecError(f"a feed message is at most {MAX_VIEW_MESSAGE} characters", "body")
    try:
        doc = jsondoc.loads(text)
    except ValueError:
        raise SpecError("a feed message must be a JSON object", "body") from None
    if not isinstance(doc, dict) or doc.pop("type", None) != "view":
        raise SpecError('a feed message must be {"type": "view", ...}', "type")
    return validate(ConnView, doc)


def _owner(conn: ConnRow) -> str:
    return f"run:{conn.run_id}" if conn.run_id is not None else (conn.listener_id or "")


_SORT_KEYS: dict[str, Callable[[ConnRow], Any]] = {
    "protocol": lambda c: c.protocol,
    "owner": _owner,
    "local": lambda c: c.local,
    "remote": lambda c: c.remote,
    "bytes_in": lambda c: c.bytes_in,
    "bytes_out": lambda c: c.bytes_out,
    "msgs_in": lambda c: c.msgs_in,
    "msgs_out": lambda c: c.msgs_out,
    "opened_at": lambda c: c.opened_at,
    "last_active": lambda c: c.last_active,
}


def _tcp_key(index: int) -> Callable[[ConnRow], Any]:
    # Rows without the figure (UDP, not read) sort below every row that has it.
    def key(conn: ConnRow) -> Any:
        tcp = conn.tcp
        value = None if tcp is None else tcp[index]
        return -1 if value is None else value

    return key


# A sample holds the API's fields in the same order, in the kernel's units (srtt_us for
# srtt_ms, ...): the order is the same, so is the sort.
for _index, _name in enumerate(tcpinfo.FIELDS):
    _SORT_KEYS[_name] = _tcp_key(_index)


def predicate(view: ConnView) -> Callable[[ConnRow], bool] | None:
    """A test for the view's filters, or None when it has none."""
    tests: list[Callable[[ConnRow], bool]] = []
    if view.listener == ANY:
        tests.append(lambda c: c.listener_id is not None and c.run_id is None)
    elif view.listener:
        listener = view.listener
        tests.append(lambda c: c.listener_id == listener)
    if view.run == ANY:
        tests.append(lambda c: c.run_id is not None)
    elif view.run:
        run = view.run
        tests.append(lambda c: c.run_id == run)
    if view.protocol:
        protocol = view.protocol
        tests.append(lambda c: c.protocol == protocol)
    if view.q:
        needle = view.q.strip().lower()
        if needle:
            tests.append(
                lambda c: needle in c.remote.lower() or needle in c.local.lower() or needle == c.id
            )
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda c: all(test(c) for test in tests)


def select(
    conns: Iterable[ConnRow], view: ConnView, sample: Sampler | None = None
) -> tuple[list[ConnRow], int, int]:
    """The page of ``view``: its rows, the number of matching rows, and the page's offset.

    ``conns`` must iterate in opening order (the registry does). An offset past the end is
    moved back to the last page, so deleting rows never leaves a browser on an empty page.
    ``sample`` reads the kernel's figures of the page's rows (and of every matching row,
    at most every :data:`SORT_SAMPLE_AGE` seconds, when the sort is by one of them).
    """
    test = predicate(view)
    matched = [c for c in conns if test(c)] if test is not None else list(conns)
    if sample is not None and view.sort in tcpinfo.FIELDS:
        sample(matched, SORT_SAMPLE_AGE)
    key = _SORT_KEYS.get(view.sort)
    if key is not None:
        # Python's sort is stable: ties stay in opening order, so pages do not shuffle.
        matched.sort(key=key, reverse=view.desc)
    elif view.desc:
        matched.reverse()
    offset = view.offset
    if offset >= len(matched) and matched:
        offset = (len(matched) - 1) // view.limit * view.limit
    elif not matched:
        offset = 0
    page = matched[offset : offset + view.limit]
    if sample is not None:
        sample(page, 0.0)
    return page, len(matched), offset


def encode(conn: ConnRow, wall_offset: float) -> list[Any]:
    """A row in :data:`COLUMNS` order; ``wall_offset`` turns the monotonic clock into epoch."""
    return [
        conn.id,
        conn.protocol,
        _owner(conn),
        conn.local,
        conn.remote,
        conn.bytes_in,
        conn.bytes_out,
        conn.msgs_in,
        conn.msgs_out,
        round(conn.opened_at, 3),
        round(conn.last_active + wall_offset, 1),
        *tcpinfo.columns(conn.protocol, conn.tcp),
    ]


class ConnWindow:
    """The page one subscriber has, and what to send it next."""

    def __init__(self, view: ConnView | None = None) -> None:
        self.view = view or ConnView()
        self.view_changed = True
        self._ids: list[str] = []
        self._counters: dict[str, tuple[object, ...]] = {}
        self._counts: tuple[int, int, int] = (-1, -1, -1)

    def set_view(self, view: ConnView) -> None:
        self.view = view
        self.view_changed = True

    def reset(self) -> None:
        """Forget what was sent: the next update carries the whole page."""
        self._ids = []
        self._counters = {}
        self._counts = (-1, -1, -1)
        self.view_changed = True

    def sample(self, get: Callable[[str], ConnRow | None], sample: Sampler) -> bool:
        """Read the kernel's figures of the rows of the page sent last (once per tick).

        Returns whether any of them changed, so the page must be sent again.
        """
        rows = [conn for conn in map(get, self._ids) if conn is not None]
        sample(rows, 0.0)
        return any(self._counters.get(conn.id, (None,))[-1] is not conn.tcp for conn in rows)

    def stale(self, exists: Callable[[str], object], total: int) -> bool:
        """Whether the page sent last may be out of date though no tick reported a change.

        The registry's diffs hide a connection that opened and closed between two ticks;
        if a page was computed in between (a view changed), it may show that connection.
        So a row of the page that no longer exists, or a different total, means recompute.
        Costs one lookup per row of the page.
        """
        if total != self._counts[1]:
            return True
        return any(exists(conn_id) is None for conn_id in self._ids)

    def update(
        self,
        conns: Iterable[ConnRow],
        total: int,
        wall_offset: float,
        sample: Sampler | None = None,
    ) -> dict[str, Any] | None:
        """The ``conns`` message for this subscriber, or None when it already has it all.

        Args:
            conns: Every live row, in opening order.
            total: The number of live rows (shown next to the number that match).
            wall_offset: ``time.time() - trio.current_time()``, for the last-active column.
            sample: Reads the kernel's figures of rows (see :func:`select`).
        """
        view = self.view
        page, matched, offset = select(conns, view, sample)
        forced = self.view_changed
        self.view_changed = False
        ids = [c.id for c in page]
        rows = []
        counters: dict[str, tuple[object, ...]] = {}
        for conn in page:
            # The sample last: a new reading is a new object (see sample()).
            now = (conn.bytes_in, conn.bytes_out, conn.msgs_in, conn.msgs_out, conn.tcp)
            counters[conn.id] = now
            if forced or self._counters.get(conn.id) != now:
                rows.append(encode(conn, wall_offset))
        counts = (matched, total, offset)
        order_changed = ids != self._ids
        if not (forced or rows or order_changed or counts != self._counts):
            return None
        self._counters = counters
        self._counts = counts
        message: dict[str, Any] = {
            "type": "conns",
            "seq": view.seq,
            "offset": offset,
            "limit": view.limit,
            "matched": matched,
            "total": total,
        }
        if forced or order_changed:
            message["ids"] = ids
        self._ids = ids
        if rows:
            message["cols"] = COLUMNS
            message["rows"] = rows
        return message
