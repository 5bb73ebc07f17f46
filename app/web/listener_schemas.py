"""The listener documents of the API and the models of its listener routes.

A listener's document (:class:`ListenerInfo`: where it binds, its limits, live totals and its
mode's own section), what a sink counted of a run's probes, a StatsD interval, and the body
that starts a listener, whose options are :class:`~app.listeners.spec.ListenerSpec`'s so they
validate the same; then the models of :mod:`app.web.listeners_api`: respond rules, kept
listeners that did not start again, and a StatsD collector's history. The same models check
what a peer answers (:mod:`app.peerhttp`), which is why their lists fail fast.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, FailFast, Field, create_model
from pydantic.fields import FieldInfo

from app.listeners.spec import ListenerSpec
from app.web.schemas import Strict


class ListenerInfo(Strict):
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


class ProbeFigures(Strict):
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


class ListenerList(Strict):
    """Every running listener."""

    # Lists fail fast here and below: a peer's answer of a million bad items costs one
    # validation error, not a million (app.peerhttp checks peers' answers with these).
    items: Annotated[list[ListenerInfo], FailFast()]


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


class ListenerStopped(Strict):
    """The listener stopped; its port is free. ``listener`` is its final document."""

    id: str
    status: Literal["stopped"]
    listener: ListenerInfo


class StatsdCounter(Strict):
    value: float = Field(description="the interval's total, scaled by 1/sample rate")
    rate: float | None = Field(description="per second over the interval")


class StatsdSnapshot(Strict):
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


class RulesBody(Strict):
    """A respond listener's new rules: they replace ``rules``, ``default_reply`` and
    ``encoding`` together, validated as when the listener is made."""

    rules: list[dict[str, Any]] = Field(
        default_factory=list, description='[{"match", "pattern", "reply", "encoding"}, ...]'
    )
    default_reply: str | None = None
    encoding: Literal["text", "hex"] = "text"


class FailedListener(Strict):
    """A kept listener that did not start again when the lab started, and why."""

    key: str
    url: str
    spec: dict[str, Any] = Field(description="what was kept: the url and the options")
    error: str


class FailedListenerList(Strict):
    """Kept listeners that did not start again."""

    items: Annotated[list[FailedListener], FailFast()]


class HistoryPoint(Strict):
    """One flush still held raw: each metric's value (at most 200 keys of each section)."""

    t: float | None = Field(description="Unix time of the flush")
    counters: dict[str, float] = Field(description="the interval's total")
    gauges: dict[str, float]
    timers: dict[str, dict[str, float]] = Field(description="count, min, max, mean, pN")
    sets: dict[str, int]


class BadLine(Strict):
    """A line that did not parse, and why."""

    line: str = Field(description="its first 200 bytes")
    error: str


class TelemetryHistory(Strict):
    """A StatsD collector's flushes (oldest first), its last flush that had traffic, and
    the newest lines it could not parse."""

    listener_id: str
    flush_interval: float
    percentiles: list[float] = Field(description="the timer percentiles it reports")
    points: Annotated[list[HistoryPoint], FailFast()]
    last_active_flush: StatsdSnapshot | None = Field(
        description="the last flush in which metrics arrived: kept when traffic stops"
    )
    bad_lines: int
    bad_samples: list[BadLine] = Field(description="the newest 10 bad lines")
