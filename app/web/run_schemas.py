"""Pydantic models of a run's documents: the run, its summary, its series, its live settings.

They describe what ``GET /api/runs`` and ``/api/runs/{run_id}`` answer (and what a peer's
lab may answer, :mod:`app.peerhttp`), as :mod:`app.web.schemas` says of every response model.
A run's summary and its per-second points grow with the patterns and are open: the fields
listed are guaranteed, others may appear.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import FailFast, Field

from app.runs.receivers import MAX_RECEIVERS
from app.web.schemas import Open, RunSpecBody, RunStatus, Strict


class RunRef(Strict):
    """A run's id and status."""

    id: str = Field(examples=["3f2a9c1b7d4e"])
    status: RunStatus


class RttMs(Open):
    """Round-trip times in milliseconds; null when nothing was measured."""

    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    mean: float | None = None


class StepSample(Strict):
    """A reply a step did not accept, as hex and as text (bounded)."""

    kind: str
    hex: str
    text: str


class StepRow(Strict):
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


class ScenarioFigures(Strict):
    """A scenario run's sessions and steps."""

    sessions: int = Field(ge=0)
    sessions_failed: int = Field(ge=0)
    worst_step: str | None = Field(description="the step that failed most (null: none failed)")
    steps: list[StepRow]


class PacketReply(Open):
    """What came back to a packet run, as hex and as text."""

    bytes: int
    hex: str
    text: str
    rtt_ms: float | None
    note: str | None = Field(None, description="why there is no reply, when there is none")


class Bottleneck(Open):
    """Whether socketlab itself limited the run (CPU, event-loop lag)."""

    cpu_pct: float
    loop_lag_ms_p99: float
    loop_lag_ms_max: float
    limited: bool
    reason: str


class SendLateness(Open):
    """How late an open-loop sender sent, after each message's intended time."""

    mean: float = Field(description="ms")
    max: float = Field(description="ms")
    late_sends: int = Field(description="sends 2 ms or more late: their lateness is latency")


class RunTcp(Strict):
    """The kernel's figures summed over a TCP run's connections (Linux ``TCP_INFO``), read
    once a second and at each close."""

    retransmits: int | None = Field(description="segments retransmitted (ss retrans:…/N)")
    bytes_retrans: int | None = Field(description="bytes retransmitted")
    sampled: int = Field(description="connections whose figures were read")
    reason: str | None = Field(description="why the figures are null")


class ReceiverRow(Strict):
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


class RunSummary(Strict):
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


class SeriesPoint(Open):
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


class RunEditMark(Strict):
    """One live edit: when (seconds since the start) and what it changed."""

    t: float
    rate_target: float | None = None
    connections: int | None = None
    paused: bool | None = None


class RunControlDoc(Strict):
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


class RunDoc(Strict):
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


class RunList(Strict):
    """Runs, newest first (running ones first)."""

    items: list[RunDoc]
