"""Live edits of a running run: a new rate, a new number of connections, pause and resume.

Theory of operation: every run has one :class:`RunControl`, made with the run and handed to
the engine. What may change while a run goes depends on its pattern (:func:`editable`):

- ``rate`` or ``bitrate``: the open-loop patterns with a rate (``rate``, UDP ``bulk``);
- ``connections``: every pattern but ``packet``, for runs given a duration (a count is
  shared out between the connections when the run starts);
- ``paused``: every pattern but ``packet``.

An edit is checked as a new spec: the run's spec with the edited fields, validated by its
pattern's model and checked against the lab's caps (:mod:`app.runs.caps`), so a rate above
the rate cap is refused as it would be at the start. Nothing of the run's statistics is
reset: the counters, histograms and series go on, and each closed second of the series
carries the settings it ended with (:meth:`RunControl.marks`: ``rate_target``,
``connections``, ``paused``), so an edit shows where it happened.

How an edit reaches the traffic, with nothing added per message: open-loop senders get a
new schedule from their :class:`~app.runs.pacer.Pacer` (woken at once); paced patterns
(pingpong, TCP bulk) are held back by the run's :class:`~app.runs.budget.Budget` while
paused; connections are added or retired by the engine's flow set
(:mod:`app.runs.flowset`), a retired flow sending nothing more and waiting for its replies.

The duration clock: paused time counts. A run of ``duration`` seconds ends that long after
it started whether or not it was paused meanwhile (the caps on duration and on concurrent
runs hold as they are); a paused second is in the series with nothing sent and
``paused: true``. A paused run's status is ``paused``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, Self

import trio
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.errors import ConflictError, SpecError
from app.runs.budget import Budget
from app.runs.caps import check_run_caps
from app.runs.spec import RunSpec, parse_run_spec
from app.settings import Settings


class RunEdit(BaseModel):
    """A live edit of a running run: only the fields given change (``PATCH /api/runs/{id}``)."""

    model_config = ConfigDict(extra="forbid")

    rate: float | None = Field(
        None, gt=0, description="new messages per second, all connections together (rate, UDP bulk)"
    )
    bitrate: float | None = Field(
        None, gt=0, description="new bits per second of payload, instead of rate (rate, UDP bulk)"
    )
    connections: int | None = Field(
        None, ge=1, description="new number of connections or UDP flows (runs with a duration)"
    )
    paused: StrictBool | None = Field(None, description="true pauses the run, false resumes it")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.rate is not None and self.bitrate is not None:
            raise ValueError("bitrate: give rate or bitrate, not both")
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("body: give rate, bitrate, connections or paused")
        return self


class Retimable(Protocol):
    """An open-loop sender that follows the run's live settings (app.runs.pacer)."""

    def retime(self, now: float) -> None: ...


def editable(spec: RunSpec) -> tuple[str, ...]:
    """The fields of ``spec``'s run that may change while it goes (see the module)."""
    if spec.pattern == "packet":
        return ()
    fields: list[str] = []
    if spec.pattern == "rate" or (spec.pattern == "bulk" and spec.target.protocol == "udp"):
        fields += ["rate", "bitrate"]
    if spec.count is None:
        fields.append("connections")
    fields.append("paused")
    return tuple(fields)


def _why_not(spec: RunSpec, field: str) -> str:
    pattern = spec.pattern
    if pattern == "packet":
        return f"{field}: a packet run sends one message; nothing of it changes while it goes"
    if field == "connections":
        return "connections: a run given a count shares it between its connections at the start"
    kind = f"{spec.target.protocol.upper()} {pattern}" if pattern == "bulk" else pattern
    return f"{field}: a {kind} run has no rate to change (only rate and UDP bulk runs do)"


class RunControl:
    """The live settings of one run and the parts of the running engine they reach.

    Args:
        spec: The run's spec as it started.
    """

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec  # the spec as edited so far
        self.editable = editable(spec)
        self._has_rate = "rate" in self.editable  # (kept if editing is turned off)
        self.paused = False
        self.edits: list[dict[str, Any]] = []
        self.pacers: set[Retimable] = set()
        # Set by the engine while the run goes; None before it starts and after it ends.
        self.budget: Budget | None = None
        self.resize: Callable[[int], None] | None = None
        self.clock0: float | None = None
        self.ended = False
        self._resumed = trio.Event()
        self._resumed.set()

    @property
    def rate(self) -> float | None:
        """The message rate the run is held to now (open-loop patterns with a rate)."""
        return self.spec.message_rate if self._has_rate else None

    def marks(self) -> dict[str, Any]:
        """The settings a closed second of the series ended with."""
        return {
            "rate_target": self.rate,
            "connections": self.spec.connections,
            "paused": self.paused,
        }

    def doc(self) -> dict[str, Any]:
        """The live settings for the run's document (``control``)."""
        return {**self.marks(), "editable": list(self.editable), "edits": list(self.edits)}

    async def wait_resumed(self) -> None:
        """Return once the run is not paused."""
        await self._resumed.wait()

    def check(self, edit: RunEdit, settings: Settings) -> RunSpec | None:
        """The run's spec with ``edit`` applied, checked like a new run's (its model, the
        caps); ``None`` when the edit changes no spec field (a pause or a resume).

        Raises:
            SpecError: A field this run cannot change live, or a value its model or the
                caps refuse; naming the field.
            ConflictError: The run is ending.
        """
        if self.ended:
            raise ConflictError("the run is ending; it can no longer be edited", "id")
        given = {k: v for k, v in edit.model_dump().items() if v is not None}
        for field in given:
            if field not in self.editable:
                raise SpecError(_why_not(self.spec, field), field)
        changes = {k: v for k, v in given.items() if k != "paused"}
        if not changes:
            return None
        body = self.spec.model_dump(mode="json", exclude_none=True)
        if "rate" in changes:
            body.pop("bitrate", None)
        if "bitrate" in changes:
            body.pop("rate", None)
        spec = parse_run_spec(body | changes)
        try:
            check_run_caps(spec, settings)
        except SpecError as exc:
            if exc.field in changes:
                raise
            # A cap reached through another field (a count that no longer fits the duration
            # cap at the new rate): the edit is what is refused.
            field = next(iter(changes))
            raise SpecError(f"{field}: {exc.message}", field) from None
        return spec

    def apply(self, spec: RunSpec | None, paused: bool | None) -> None:
        """Take a checked edit (:meth:`check`) into effect now."""
        now = trio.current_time()
        since = 0.0 if self.clock0 is None else now - self.clock0
        edit: dict[str, Any] = {"t": round(since, 3)}
        if spec is not None:
            before = self.spec
            self.spec = spec
            if spec.message_rate != before.message_rate:
                edit["rate_target"] = self.rate
            if spec.connections != before.connections:
                edit["connections"] = spec.connections
                if self.resize is not None:
                    self.resize(spec.connections)
        if paused is not None and paused != self.paused:
            self.paused = paused
            edit["paused"] = paused
            if paused:
                self._resumed = trio.Event()
                if self.budget is not None:
                    self.budget.pause()
            else:
                self._resumed.set()
                if self.budget is not None:
                    self.budget.resume()
        for pacer in list(self.pacers):
            pacer.retime(now)
        if len(edit) > 1:
            self.edits.append(edit)

    def attach(self, budget: Budget, clock0: float, resize: Callable[[int], None]) -> None:
        """The engine's run has started: edits reach its budget and its flows from now."""
        self.budget, self.clock0, self.resize = budget, clock0, resize
        if self.paused:
            budget.pause()

    def detach(self) -> None:
        """The engine's run has ended: no more edits."""
        self.ended = True
        self.budget = self.resize = None
        self._resumed.set()  # nobody waits for a resume that will not come
