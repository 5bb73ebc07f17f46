"""Models of the packet tool's routes: saved packets, sends and the send log. Each field is
defined here once; the routes validate with these models and ``/openapi.json`` documents
them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import FailFast, Field

from app.web.query import QueryInt
from app.web.schemas import Reply, SendRequest, Strict


class SavedPacketBody(Strict):
    """A packet to keep: ``{"name", "target", "payload", "hex", "timeout"}``."""

    name: str = Field(min_length=1, max_length=80, pattern=r"^[^/\x00-\x1f\x7f]+$")
    target: str = Field(examples=["udp://127.0.0.1:9000"])
    payload: str = Field(min_length=1, examples=["PING\\r\\n"])
    hex: bool = Field(False, description="payload is hex ('de ad be ef')")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for the reply")


class SavedPacket(SavedPacketBody):
    """A saved packet."""

    created_at: float = Field(description="Unix time")
    updated_at: float = Field(description="Unix time")


class SavedPacketList(Strict):
    """Saved packets, by name."""

    items: Annotated[list[SavedPacket], FailFast()]


class PacketSendBody(SendRequest):
    """One message to send and log (no run is made); ``name`` says which saved packet."""

    name: str | None = Field(None, max_length=80, description="the saved packet sent, if any")


class PacketLogEntry(Strict):
    """One send: what went where, and what came back (``reply``) or why not (``error``)."""

    seq: int
    at: float = Field(description="Unix time of the send")
    name: str | None
    target: str
    payload: str
    hex: bool
    status: Literal["reply", "no_reply", "error"]
    reply: Reply | None
    error: str | None = Field(description="why there is no reply, in words")
    error_kind: str | None = Field(description="refused, reset, tls, ... (errors_by_kind)")


class PacketLog(Strict):
    """The send log, newest first."""

    items: Annotated[list[PacketLogEntry], FailFast()]


class PacketLogQuery(Strict):
    limit: QueryInt = Field(100, ge=1, le=1000, description="entries at most, newest first")


class PacketLogCleared(Strict):
    """How many log entries were deleted."""

    deleted: int
