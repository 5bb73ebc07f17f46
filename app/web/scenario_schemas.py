"""Models of the scenario routes: saved scenarios, the text view's parse, the dry run and its
transcript. Each field is defined here once; the routes validate with these models and
``/openapi.json`` documents them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import FailFast, Field

from app.web.schemas import Strict
from app.wire.scenario import Scenario

_NAME = Field(min_length=1, max_length=80, pattern=r"^[^/\x00-\x1f\x7f]+$")


class SavedScenarioBody(Strict):
    """A scenario to keep: ``{"name", "scenario"}`` (``POST /api/scenarios``)."""

    name: str = _NAME
    scenario: Scenario


class ScenarioEditBody(Strict):
    """The new steps of a saved scenario (``PUT /api/scenarios/{name}``)."""

    scenario: Scenario


class SavedScenario(Strict):
    """A saved scenario."""

    name: str
    scenario: Scenario
    created_at: float = Field(description="Unix time")
    updated_at: float = Field(description="Unix time")


class SavedScenarioList(Strict):
    """Saved scenarios, by name."""

    items: Annotated[list[SavedScenario], FailFast()]


class ScenarioTextBody(Strict):
    """A scenario written as text, to check and turn into its document."""

    text: str = Field(max_length=256 * 1024)
    format: Literal["json", "toml"] = "toml"


class ScenarioDoc(Strict):
    """A scenario document that validates (and compiles)."""

    scenario: Scenario


class DryRunBody(Strict):
    """One session of a scenario against ``target``: the steps inline or a saved one's name."""

    target: str = Field(examples=["tcp://127.0.0.1:9000"])
    scenario: Scenario | str = Field(description="the steps, or the name of a saved scenario")
    insecure: bool = Field(False, description="tls:// only: accept any certificate")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to connect")


class Bytes(Strict):
    """Bytes, as hex and as text with escapes (as the packet tool shows them)."""

    bytes: int = Field(ge=0)
    hex: str
    text: str


class Exchange(Strict):
    """One step of the session as it ended: what it sent or received, passed or why not."""

    step: str = Field(description="the step's path, as the per-step figures name it")
    action: str = Field(description="send, expect, capture, delay, close, reconnect")
    ok: bool
    kind: str | None = Field(description="why it failed: mismatch, timeout, refused, ...")
    sent: Bytes | None = Field(description="a send's bytes (the first 4096)")
    received: Bytes | None = Field(description="an expect's reply (the first 4096)")
    latency_ms: float | None = Field(description="an expect's reply time from the last send")


class DryRunResult(Strict):
    """The transcript of one session, step by step."""

    target: str
    ok: bool = Field(description="every step passed")
    error: str | None = Field(description="why the session failed, in words")
    failed_step: str | None
    duration_s: float
    exchanges: Annotated[list[Exchange], FailFast()]
    left_off: int = Field(ge=0, description="steps past the transcript's bound, not shown")
