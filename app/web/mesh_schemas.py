"""Pydantic models of the mesh's documents: a pair, a node's row, the merged matrix.

They document ``/api/mesh*`` in the OpenAPI document and check what a peer answers to
``GET /api/mesh/row`` (:mod:`app.peerhttp`): a node takes from another only what these
allow, with names, lists and numbers bounded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import FailFast, Field

from app.mesh.config import MAX_PEERS_LIMIT
from app.web.schemas import Strict

# A node's name goes into a path (``/api/mesh/pairs/SRC/DST/series``): no separators.
NAME_PATTERN = r"^[^\s/?#%\\]{1,128}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Count = Annotated[int, Field(ge=0)]
Ms = Annotated[float, Field(ge=0)]


class MeshFlowFigures(Strict):
    """One probe flow's figures over the mesh window (null where nothing was measured)."""

    sent: Count = Field(description="probes decided in the window (answered or lost)")
    received: Count = Field(description="probes answered")
    lost: Count = Field(description="probes with no echo within the probe timeout")
    loss_pct: float | None = Field(description="lost over sent, in percent")
    duplicates: Count
    reordered: Count = Field(description="echoes that came after a later probe's")
    rtt_p50_ms: Ms | None
    rtt_p99_ms: Ms | None
    jitter_ms: Ms | None = Field(description="RFC 3550 jitter of the round-trip times")
    retransmits: Count | None = Field(
        description="TCP: segments the kernel retransmitted in the window; null for UDP"
    )


class MeshPair(Strict):
    """What ``src`` measures to ``dst``: one UDP and one TCP probe flow."""

    src: Name
    dst: Name
    address: Annotated[str, Field(max_length=300)] = Field(
        description="the mesh echo probed (host:port)"
    )
    state: Literal["unknown", "ok", "failing"] = Field(
        description="ok: both flows echoed within the fail time and had no error since"
    )
    since: float | None = Field(description="unix time the pair became what it is")
    last_error: Annotated[str, Field(max_length=400)] | None = Field(
        description="the newest error of either flow (kept after it recovers)"
    )
    error_at: float | None = Field(description="unix time of last_error")
    udp: MeshFlowFigures | None
    tcp: MeshFlowFigures | None


Pairs = Annotated[list[MeshPair], FailFast(), Field(max_length=MAX_PEERS_LIMIT)]


class MeshRowDoc(Strict):
    """A node's own outgoing row: what it measures to each of its peers."""

    node: Name = Field(description="this node's name in the matrix")
    enabled: bool = Field(description="false: the node is not in mesh mode (nothing else set)")
    port: int | None = Field(ge=1, le=65535, description="its mesh echo port (TCP and UDP)")
    rate: float = Field(gt=0, description="probes per second of each flow")
    window: float = Field(gt=0, description="seconds the figures cover")
    at: float | None = Field(description="unix time the figures were taken")
    ignored_peers: Count = Field(description="peers found beyond max_peers, not measured")
    pairs: Pairs


class MeshRowState(Strict):
    """A row of the matrix as this node has it."""

    src: Name
    url: str | None = Field(description="the node's API (null for this node)")
    status: Literal["ok", "unreachable", "unknown"] = Field(
        description="unreachable: its row could not be fetched; its pairs show failing"
    )
    error: str | None = Field(description="why its row could not be fetched")
    since: float | None = Field(description="unix time of the status")
    at: float | None = Field(description="unix time its figures were taken")
    pairs: Pairs


class MeshMatrix(Strict):
    """The all-pairs matrix: this node's row and the rows its peers report."""

    node: Name = Field(description="the node that answered")
    enabled: bool
    nodes: Annotated[list[Name], Field(max_length=MAX_PEERS_LIMIT + 1)]
    rows: Annotated[list[MeshRowState], Field(max_length=MAX_PEERS_LIMIT + 1)]


class MeshSeries(Strict):
    """A pair's figures once a second (the last ten minutes), columns as named."""

    src: Name
    dst: Name
    columns: list[str]
    points: Annotated[list[list[float | None]], FailFast(), Field(max_length=3600)]
