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
list of a million bad items) and a listener's port is a port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, FailFast, Field, RootModel, create_model
from pydantic.fields import FieldInfo
from quart_schema import document_response

from app.events import EVENT_KINDS
from app.listeners.spec import ListenerSpec
from app.runs.receivers import MAX_RECEIVERS
from app.runs.spec import RunSpec
from app.tcpinfo import TcpInfo
from app.web.query import ASCII_INTEGER, QueryInt

T = TypeVar("T", bound=Callable[..., Any])

RunStatus = Literal["running", "paused", "finished", "stopped", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorResponse(_Strict):
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


class Health(_Strict):
    """The lab is up (no token needed); ``degraded`` while the store cannot write."""

    status: Literal["ok", "degraded"]
    reason: str | None = Field(
        None,
        description="why the lab is degraded (e.g. disk full, database locked), with how "
        "many writes wait in memory; absent when ok",
    )


class ListenerInfo(_Strict):
    """A listener: where it binds, its mode, limits, live totals and its mode's own section."""

    id: str = Field(examples=["l1"])
    protocol: Literal["tcp", "udp", "tls"]
    host: str
    port: int = Field(ge=1, le=65_535)
    mode: Literal["echo", "sink", "respond", "statsd", "source", "influx", "graphite", "syslog"]
    url: str = Field(
        description="a URL that starts the same listener again",
        examples=["tcp://127.0.0.1:9000?mode=echo"],
    )
    options: dict[str, Any] = Field(description="options not at their defaults")
    connections: int = Field(description="open TCP connections or live UDP flows")
    accepted: int
    rejected: int = Field(description="refused by max_connections")
    accept_failures: int = Field(
        0,
        description="accepts that failed for lack of descriptors or memory (EMFILE, ...), "
        "or waited because listener connections used their share of descriptors (the rest "
        "is the web server's reserve)",
    )
    idle_closed: int = Field(description="closed after idle_timeout")
    closed_by_api: int
    bytes_in: int
    bytes_out: int
    msgs_in: int
    msgs_out: int
    errors: int
    oversized: int = Field(description="messages dropped for exceeding max_message_size")
    max_connections: int
    idle_timeout: float
    max_message_size: int
    started_at: float = Field(description="Unix time")
    tls: dict[str, Any] | None = Field(None, description="tls: the certificate's fingerprint")
    reflection_dropped: int | None = Field(
        None,
        description="udp: replies not sent by the reflection limits (source port below 1024; "
        "for sources outside loopback, a reply larger than its request or over reply_rate)",
    )
    impairment: dict[str, Any] | None = Field(None, description="echo: added delay, loss, ...")
    respond: dict[str, Any] | None = Field(None, description="respond: rules and hit counters")
    statsd: dict[str, Any] | None = Field(None, description="statsd: collector counters")
    influx: dict[str, Any] | None = Field(None, description="influx: collector counters")
    graphite: dict[str, Any] | None = Field(None, description="graphite: collector counters")
    syslog: dict[str, Any] | None = Field(
        None, description="syslog: collector counters and messages per severity"
    )
    probe: dict[str, Any] | None = Field(None, description="sink: one-way figures per run")
    source: dict[str, Any] | None = Field(
        None, description="source: streams sending now, requests refused, what each run got"
    )
    kernel_loss: dict[str, Any] | None = Field(
        None,
        description="kernel_loss: percent, direction, nftables chain, packets dropped so far "
        "by direction, and whether tc netem is available (or why not)",
    )


class ProbeFigures(_Strict):
    """What a sink listener counted of one run's probes (warm-up left out): zeros before
    the first; only ``framed: false`` from a TCP sink without ``message_size``."""

    flows: int | None = Field(None, ge=0, description="flows seen (live)")
    evicted: int | None = Field(None, ge=0, description="flows forgotten, counts kept")
    received: int | None = Field(None, ge=0, description="messages, duplicates included")
    duplicates: int | None = Field(None, ge=0)
    reordered: int | None = Field(None, ge=0)
    lost: int | None = Field(None, ge=0, description="gaps in the sequence numbers seen")
    loss_pct: float | None = Field(None, ge=0)
    jitter_ms: float | None = Field(None, ge=0, description="RFC 3550, mean over flows")
    framed: bool | None = Field(None, description="false: a TCP sink that counts bytes only")
    rx_bytes: int | None = Field(None, ge=0, description="counted bytes received")
    rx_seconds: float | None = Field(None, ge=0, description="first to last arrival")
    rx_bits_per_s: float | None = Field(
        None, ge=0, description="receiver-side throughput over rx_seconds"
    )
    rx_series: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        max_length=3600,
        description="receiver-side bits per second, one per second since the first arrival",
    )
    tx_messages: int | None = Field(
        None, ge=0, description="source: messages it sent of the run (warm-up left out)"
    )
    tx_bytes: int | None = Field(None, ge=0, description="source: bytes of those messages")
    tx_warmup: int | None = Field(None, ge=0, description="source: warm-up messages it sent")
    tx_streams: int | None = Field(None, ge=0, description="source: streams the run asked for")


class ListenerList(_Strict):
    """Every running listener."""

    # Lists fail fast here and below: a peer's answer of a million bad items costs one
    # validation error, not a million (app.peerhttp checks peers' answers with these).
    items: Annotated[list[ListenerInfo], FailFast()]


class ConnectionRow(_Strict):
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


class ConnectionPage(_Strict):
    """A page of live connections, oldest first."""

    items: Annotated[list[ConnectionRow], FailFast()]
    total: int
    offset: int
    limit: int


class PageQuery(_Strict):
    offset: QueryInt = Field(0, ge=0, le=10_000_000, description="rows to skip")
    limit: QueryInt = Field(500, ge=1, le=5000, description="rows to return")


class LimitQuery(_Strict):
    limit: QueryInt = Field(100, ge=1, le=1000, description="runs to return, newest first")


class RunRef(_Strict):
    """A run's id and status."""

    id: str = Field(examples=["3f2a9c1b7d4e"])
    status: RunStatus


class RttMs(_Open):
    """Round-trip times in milliseconds; null when nothing was measured."""

    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    mean: float | None = None


class StepSample(_Strict):
    """A reply a step did not accept, as hex and as text (bounded)."""

    kind: str
    hex: str
    text: str


class StepRow(_Strict):
    """One step of a scenario over every session of the run."""

    step: str = Field(description="its path in the scenario, e.g. steps.3")
    action: str = Field(description="send, expect, capture, delay, close or reconnect")
    count: int = Field(ge=0)
    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    errors_by_kind: dict[str, int]
    latency_ms: dict[str, float | None] | None = Field(
        description="expect steps: from the last send to the reply (min, p50..p999, max, mean)"
    )
    samples: list[StepSample] = Field(max_length=3)


class ScenarioFigures(_Strict):
    """A scenario run's sessions and steps."""

    sessions: int = Field(ge=0)
    sessions_failed: int = Field(ge=0)
    worst_step: str | None = Field(description="the step that failed most (null: none failed)")
    steps: list[StepRow]


class PacketReply(_Open):
    """What came back to a packet run, as hex and as text."""

    bytes: int
    hex: str
    text: str
    rtt_ms: float | None
    note: str | None = Field(None, description="why there is no reply, when there is none")


class Bottleneck(_Open):
    """Whether socketlab itself limited the run (CPU, event-loop lag)."""

    cpu_pct: float
    loop_lag_ms_p99: float
    loop_lag_ms_max: float
    limited: bool
    reason: str


class SendLateness(_Open):
    """How late an open-loop sender sent, after each message's intended time."""

    mean: float = Field(description="ms")
    max: float = Field(description="ms")
    late_sends: int = Field(description="sends 2 ms or more late: their lateness is latency")


class RunTcp(_Strict):
    """The kernel's figures summed over a TCP run's connections (Linux ``TCP_INFO``), read
    once a second and at each close."""

    retransmits: int | None = Field(description="segments retransmitted (ss retrans:…/N)")
    bytes_retrans: int | None = Field(description="bytes retransmitted")
    sampled: int = Field(description="connections whose figures were read")
    reason: str | None = Field(description="why the figures are null")


class ReceiverRow(_Strict):
    """One receiver of a run to a multicast group: a socketlab sink on the group (this
    lab's, ``peer`` null, or a peer's) and what it counted of the run; the figures are
    null, and ``error`` says why, when it could not be asked."""

    peer: str | None = Field(description="the peer's name; null: a listener of this lab")
    listener: str = Field(description="the sink listener's id there")
    received: int | None = Field(ge=0, description="datagrams, duplicates included")
    lost: int | None = Field(ge=0, description="sent and never arrived there")
    loss_pct: float | None = Field(ge=0)
    duplicates: int | None = Field(ge=0)
    reordered: int | None = Field(ge=0)
    jitter_ms: float | None = Field(ge=0, description="RFC 3550")
    error: str | None = Field(description="why the figures are null")


class RunSummary(_Strict):
    """Totals of a run: the same keys while it runs and once it has ended; a figure not
    known yet (or not measured by the pattern) is ``null``. While a run goes, the RTT
    figures and the histogram are those of its closed seconds and ``rtt_ms.mean``,
    ``bottleneck``, ``remote`` and ``reply`` are ``null``."""

    sent: int
    received: int
    bytes_sent: int
    bytes_received: int
    lost: int | None = Field(
        description="null when the run expects no replies (a sink): see remote for what arrived"
    )
    loss_pct: float | None
    late: int
    duplicates: int
    reordered: int
    jitter_ms: float | None = Field(
        description="RFC 3550 from the actual send times; UDP replies that carry a header"
    )
    send_lateness_ms: SendLateness | None = Field(
        description="rate, burst and UDP bulk: the sender's own lateness, not in jitter"
    )
    errors: int
    errors_by_kind: Annotated[dict[str, int], FailFast()]
    error_samples: Annotated[dict[str, list[str]], FailFast()] = Field(
        default_factory=dict,
        description="per error kind, its first few distinct messages (at most 3, 200 characters "
        "each): why (a TLS handshake's reason, the system's words for a reset), or what the "
        "kind means; empty in runs stored before it was kept",
    )
    connections_opened: int
    elapsed: float = Field(description="seconds since the run started")
    send_seconds: float = Field(description="seconds over which the rates are computed")
    msgs_per_s: float
    sent_per_s: float
    bits_per_s: float
    bits_per_s_received: float
    rtt_ms: RttMs
    histogram: Annotated[list[Annotated[list[float], FailFast()]], FailFast()] = Field(
        description="[upper bound in ms, count] rows"
    )
    reply: PacketReply | None = Field(description="packet runs, once the reply is in")
    scenario: ScenarioFigures | None = Field(None, description="scenario runs: per step")
    bottleneck: Bottleneck | None = Field(description="once the run has ended")
    remote: dict[str, Any] | None = Field(
        description="the receiver's side, when one of this lab's sinks counted the run: "
        "what arrived (received, duplicates, reordered, jitter_ms) and lost of what was sent"
    )
    remote_error: str | None = Field(
        None, description="why remote is null for a run at a peer's sink (the peer's answer)"
    )
    receivers: list[ReceiverRow] | None = Field(
        None,
        max_length=MAX_RECEIVERS,
        description="a run to a multicast group, once it has ended: every socketlab sink "
        "on the group (this lab's and its peers') and what each counted of the run",
    )
    reverse: dict[str, Any] | None = Field(
        None,
        description="reverse and bidir runs: what the source sent, as this end received it "
        "(received, rx_bytes, lost, duplicates, reordered, jitter_ms, rx_series) and the "
        "source's own count (source: tx_messages, tx_bytes) when it was asked",
    )
    tcp: RunTcp | None = Field(None, description="TCP and TLS runs: the kernel's retransmits")


class SeriesPoint(_Open):
    """One interval of a run, closed at ``t``: counts, rates and RTT of that interval.

    Intervals are a second long; the last one is what is left (up to 1.5 s: a shorter
    remainder joins the second before it), and rates are over each interval's own length."""

    t: float = Field(description="seconds since the run started")
    sent: int
    received: int
    bytes_sent: int
    bytes_received: int
    msgs_per_s: float
    bits_per_s: float
    sent_per_s: float | None = Field(None, description="messages sent per second")
    bits_per_s_received: float | None = Field(None, description="bits received per second")
    rtt_ms: RttMs
    rate_target: float | None = Field(
        None, description="messages/s the run was held to as the second ended (rate, UDP bulk)"
    )
    connections: int | None = Field(None, description="connections the run had as it ended")
    paused: bool | None = Field(None, description="whether the run was paused as it ended")


class RunEditMark(_Strict):
    """One live edit: when (seconds since the start) and what it changed."""

    t: float
    rate_target: float | None = None
    connections: int | None = None
    paused: bool | None = None


class RunControlDoc(_Strict):
    """A live run's settings now, what of them may change, and the edits so far
    (``PATCH /api/runs/{run_id}``)."""

    rate_target: float | None = Field(description="messages/s the run is held to (rate, UDP bulk)")
    connections: int
    paused: bool
    editable: list[str] = Field(description="the fields PATCH accepts for this run")
    edits: list[RunEditMark]
    retransmits: int | None = Field(
        None, description="TCP: segments the kernel retransmitted in that second (null: UDP)"
    )


class RunDoc(_Strict):
    """A run: its spec, status and results. ``series`` only in ``GET /api/runs/{run_id}``."""

    id: str
    status: RunStatus
    spec: RunSpecBody
    summary: RunSummary | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    progress: float | None = Field(None, ge=0, le=1, description="while running, 0 to 1")
    control: RunControlDoc | None = Field(None, description="live settings, while it goes")
    series: Annotated[list[SeriesPoint] | None, FailFast()] = None
    labels: list[str] = Field(default_factory=list, description="sorted; see /labels")


class RunList(_Strict):
    """Runs, newest first (running ones first)."""

    items: list[RunDoc]


class SendRequest(_Strict):
    """One message to send, as text with escapes (``\\r\\n``, ``\\x00``) or as hex."""

    target: str = Field(examples=["tcp://127.0.0.1:9000"])
    payload: str = Field(min_length=1, examples=["PING\\r\\n"])
    hex: bool = Field(False, description="payload is hex ('de ad be ef')")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for the reply")
    insecure: bool = Field(False, description="tls: accept any server certificate")


class Reply(_Open):
    """What came back, as hex and as text with escapes."""

    bytes: int
    hex: str
    text: str
    rtt_ms: float | None


class SendResult(_Strict):
    """The run that sent the message, and its reply (null when none came)."""

    id: str
    status: RunStatus
    reply: Reply | None
    error: str | None
    errors_by_kind: dict[str, int]


class ExportQuery(_Strict):
    format: Literal["json", "csv"] = Field(
        "json", description="json: the whole run; csv: its per-second series"
    )


class SeriesQuery(_Strict):
    seconds: Annotated[int, Field(ge=1), ASCII_INTEGER] | None = Field(
        None, description="only the last N seconds, at most the seconds kept (all kept)"
    )


class ListenerRates(_Strict):
    connections: int
    bytes_in: float = Field(description="per second")
    bytes_out: float = Field(description="per second")
    msgs_in: float = Field(description="per second")


class LabPoint(ListenerRates):
    """One second of the whole lab: totals, and each listener's share by id."""

    t: float = Field(description="Unix time")
    listeners: dict[str, ListenerRates]


class LabSeries(_Strict):
    """The lab's per-second totals, oldest first."""

    interval: float = Field(description="seconds between points")
    points: list[LabPoint]


class Preset(_Strict):
    """A saved run spec."""

    name: str
    spec: RunSpecBody


class PresetDoc(Preset):
    created_at: float
    updated_at: float


class PresetList(_Strict):
    """Saved presets, by name."""

    items: list[PresetDoc]


def _listener_request() -> type[BaseModel]:
    """``{"url", ...options}``: the options are ListenerSpec's, so they validate the same."""
    fields: dict[str, Any] = {
        "url": (
            str,
            Field(
                description="protocol://host:port, options in the query string allowed",
                examples=["udp://127.0.0.1:8125?mode=statsd"],
            ),
        )
    }
    for name, info in ListenerSpec.model_fields.items():
        if name not in ("protocol", "host", "port"):
            fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, default=None))
    model: type[BaseModel] = create_model(  # type: ignore[call-overload, unused-ignore]
        "ListenerRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A listener to start: its URL, and options as keys (the body wins over the "
        "URL's query string). Only the options of the listener's mode and protocol apply.",
        **fields,
    )
    return model


ListenerRequest = _listener_request()


class ListenerStopped(_Strict):
    """The listener stopped; its port is free. ``listener`` is its final document."""

    id: str
    status: Literal["stopped"]
    listener: ListenerInfo


class ConnectionClosed(_Strict):
    """The connection's socket was closed."""

    id: str
    closed: Literal[True]


class StatsdCounter(_Strict):
    value: float = Field(description="the interval's total, scaled by 1/sample rate")
    rate: float | None = Field(description="per second over the interval")


class StatsdSnapshot(_Strict):
    """One StatsD interval. Keys are ``name`` or ``name|#tag,tag`` (sorted tags)."""

    counters: dict[str, StatsdCounter]
    gauges: dict[str, float]
    timers: dict[str, dict[str, float]] = Field(
        description="count, min, max, mean, sum and the configured percentiles (p50, ...)"
    )
    sets: dict[str, int] = Field(description="distinct members")
    events: list[dict[str, Any]] = Field(description="DogStatsD events of the interval")
    service_checks: dict[str, dict[str, Any]] = Field(description="last run per check")
    flushed_at: float | None
    interval: float | None
    metrics_received: int
    events_received: int
    service_checks_received: int
    bad_lines: int
    overflow: int


class StoppedRuns(_Strict):
    """How many runs were running and are now stopped and stored."""

    stopped: int


class AuditQuery(_Strict):
    limit: QueryInt = Field(100, ge=1, le=10_000, description="entries, newest first")


class AuditEntry(_Strict):
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


class AuditList(_Strict):
    """The audit log, newest first."""

    items: list[AuditEntry]


class PeerInfo(_Strict):
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


class PeerList(_Strict):
    items: list[PeerInfo]


class PeerRunRef(_Strict):
    """A run started on a peer. ``id`` is this node's copy (``peer~remote_id``)."""

    id: str
    peer: str
    remote_id: str
    status: RunStatus


_KINDS = "|".join(EVENT_KINDS)


class EventsQuery(_Strict):
    types: str | None = Field(
        None,
        pattern=rf"^({_KINDS})(,({_KINDS}))*$",
        description=f"comma-separated: {', '.join(EVENT_KINDS)} (all when not given)",
    )
    run: str | None = Field(
        None, max_length=200, description="follow one run; the stream ends with it"
    )
