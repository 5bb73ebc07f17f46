"""Pydantic models of the API's responses and query strings, for ``/openapi.json``.

Request bodies and query strings are documented with the models that validate them
(``RunSpecBody``: the run spec models, one per pattern, chosen by ``pattern``; ``SendRequest``;
the ``*Query`` models, checked by :mod:`app.web.query`), so the documentation cannot drift
from the validation. Responses are built as plain dicts by the
routes; these models describe them, and ``tests/test_openapi.py`` checks real responses
against them, so a route that changes its output without changing its model fails a test.

Top-level documents forbid unknown keys. A run's summary and its per-second points grow with
the patterns and are open: the fields listed are guaranteed, others may appear.

The same models check what a peer answers (:mod:`app.peerhttp`): a lab takes from another
lab only what these documents allow, which is why their lists fail fast (one error for a
list of a million bad items). A listener's documents are in :mod:`app.web.listener_schemas`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, FailFast, Field, RootModel
from quart_schema import document_response

from app.events import EVENT_KINDS
from app.runs.spec import RunSpec
from app.tcpinfo import TcpInfo
from app.web.query import ASCII_INTEGER, QueryInt

T = TypeVar("T", bound=Callable[..., Any])

RunStatus = Literal["running", "paused", "finished", "stopped", "failed"]


class Strict(BaseModel):
    """A document that forbids keys it does not list (the base of every API model)."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A document that may hold keys beyond those it lists (it grows with the patterns)."""

    model_config = ConfigDict(extra="allow")


class ErrorResponse(Strict):
    """What went wrong, and which input it is about (a field name, a header, or null)."""

    error: str = Field(description="one line, meant for a person")
    field: str | None = Field(description="the field, header or parameter at fault, if any")


def document_errors(*status_codes: int) -> Callable[[T], T]:
    """Document ``ErrorResponse`` bodies for each of ``status_codes`` on a route.

    401 (missing or wrong token) is added to every authenticated route automatically.
    """

    def decorator(func: T) -> T:
        for status in status_codes:
            func = document_response(ErrorResponse, status)(func)
        return func

    return decorator


class RunSpecBody(RootModel[RunSpec]):
    """A run spec: the fields of its pattern and only those (one model per pattern)."""


class Health(Strict):
    """The lab is up (no token needed); ``degraded`` while the store cannot write."""

    status: Literal["ok", "degraded"]
    reason: str | None = Field(
        None,
        description="why the lab is degraded (e.g. disk full, database locked), with how "
        "many writes wait in memory; absent when ok",
    )


class ConnectionRow(Strict):
    """One live TCP connection or UDP flow; ``listener_id`` (inbound) or ``run_id`` (a run's)."""

    id: str
    protocol: str
    local: str = Field(examples=["127.0.0.1:9000"])
    remote: str = Field(examples=["127.0.0.1:53122"])
    bytes_in: int
    bytes_out: int
    msgs_in: int
    msgs_out: int
    opened_at: float = Field(description="Unix time")
    last_activity: float = Field(description="Unix time")
    listener_id: str | None = None
    run_id: str | None = None
    tcp: TcpInfo | None = Field(
        default=None,
        description="the kernel's view of a TCP connection (read when the row is served); "
        "its figures are null for a UDP flow or where the platform has no TCP_INFO, and "
        "its reason says why",
    )


class ConnectionPage(Strict):
    """A page of live connections, oldest first."""

    items: Annotated[list[ConnectionRow], FailFast()]
    total: int
    offset: int
    limit: int


class PageQuery(Strict):
    offset: QueryInt = Field(0, ge=0, le=10_000_000, description="rows to skip")
    limit: QueryInt = Field(500, ge=1, le=5000, description="rows to return")


class LimitQuery(Strict):
    limit: QueryInt = Field(100, ge=1, le=1000, description="runs to return, newest first")


class SendRequest(Strict):
    """One message to send, as text with escapes (``\\r\\n``, ``\\x00``) or as hex."""

    target: str = Field(examples=["tcp://127.0.0.1:9000"])
    payload: str = Field(min_length=1, examples=["PING\\r\\n"])
    hex: bool = Field(False, description="payload is hex ('de ad be ef')")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for the reply")
    insecure: bool = Field(False, description="tls: accept any server certificate")


class Reply(Open):
    """What came back, as hex and as text with escapes."""

    bytes: int
    hex: str
    text: str
    rtt_ms: float | None


class SendResult(Strict):
    """The run that sent the message, and its reply (null when none came)."""

    id: str
    status: RunStatus
    reply: Reply | None
    error: str | None
    errors_by_kind: dict[str, int]


class ExportQuery(Strict):
    format: Literal["json", "csv"] = Field(
        "json", description="json: the whole run; csv: its per-second series"
    )


class SeriesQuery(Strict):
    seconds: Annotated[int, Field(ge=1), ASCII_INTEGER] | None = Field(
        None, description="only the last N seconds, at most the seconds kept (all kept)"
    )


class ListenerRates(Strict):
    connections: int
    bytes_in: float = Field(description="per second")
    bytes_out: float = Field(description="per second")
    msgs_in: float = Field(description="per second")


class LabPoint(ListenerRates):
    """One second of the whole lab: totals, and each listener's share by id."""

    t: float = Field(description="Unix time")
    listeners: dict[str, ListenerRates]


class LabSeries(Strict):
    """The lab's per-second totals, oldest first."""

    interval: float = Field(description="seconds between points")
    points: list[LabPoint]


class Preset(Strict):
    """A saved run spec."""

    name: str
    spec: RunSpecBody


class PresetDoc(Preset):
    created_at: float
    updated_at: float


class PresetList(Strict):
    """Saved presets, by name."""

    items: list[PresetDoc]


class ConnectionClosed(Strict):
    """The connection's socket was closed."""

    id: str
    closed: Literal[True]


class StoppedRuns(Strict):
    """How many runs were running and are now stopped and stored."""

    stopped: int


class AuditQuery(Strict):
    limit: QueryInt = Field(100, ge=1, le=10_000, description="entries, newest first")


class AuditEntry(Strict):
    """Who asked for a run, from where, and how it ended (refused requests too)."""

    seq: int
    run_id: str | None
    principal: str
    client: str | None
    target: str | None
    spec: dict[str, Any] | None
    requested_at: float
    started_at: float | None
    ended_at: float | None
    outcome: str


class AuditList(Strict):
    """The audit log, newest first."""

    items: list[AuditEntry]


class PeerInfo(Strict):
    """A peer node as last polled: up or down, its listeners and first connections."""

    name: str = Field(description="the peer's host name (host:port when two share a host)")
    url: str
    status: Literal["unknown", "up", "down", "failing"] = Field(
        description="down: it cannot be reached; failing: it answered, but not as its API "
        "documents (too big, too slow, malformed, or its token refused)"
    )
    error: str | None = Field(description="why it is down or failing")
    last_seen: float | None = Field(description="unix time of the last good poll")
    listeners: list[dict[str, Any]]
    connections: list[dict[str, Any]] = Field(description="the first page, up to 100")
    connection_total: int


class PeerList(Strict):
    items: list[PeerInfo]


class PeerRunRef(Strict):
    """A run started on a peer. ``id`` is this node's copy (``peer~remote_id``)."""

    id: str
    peer: str
    remote_id: str
    status: RunStatus


_KINDS = "|".join(EVENT_KINDS)


class EventsQuery(Strict):
    types: str | None = Field(
        None,
        pattern=rf"^({_KINDS})(,({_KINDS}))*$",
        description=f"comma-separated: {', '.join(EVENT_KINDS)} (all when not given)",
    )
    run: str | None = Field(
        None, max_length=200, description="follow one run; the stream ends with it"
    )
