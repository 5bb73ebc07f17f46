"""Models of the listener routes of :mod:`app.web.listeners_api`: respond rules, kept
listeners that did not start again, and a StatsD collector's history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import FailFast, Field

from app.web.schemas import StatsdSnapshot, Strict


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
