"""The run spec: one model validates API bodies, CLI options and stored specs alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.errors import SpecError
from app.settings import parse_target

# The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
MAX_UDP_SIZE = 65_507
DEFAULT_DURATION = 5.0


class RunSpec(BaseModel):
    """What to fire, where, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(
        description="tcp://host:port or udp://host:port", examples=["tcp://127.0.0.1:9000"]
    )
    pattern: Literal["pingpong"] = Field("pingpong", description="traffic pattern")
    connections: int = Field(1, ge=1, le=100_000, description="TCP connections or UDP flows")
    size: int = Field(64, ge=1, le=1_048_576, description="message size in bytes")
    duration: float | None = Field(
        None, gt=0, le=86_400, description="seconds to run (default 5 when count is not given)"
    )
    count: int | None = Field(None, ge=1, le=1_000_000_000, description="messages to send in all")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for each reply")

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str) -> str:
        parse_target(value)
        return value

    @model_validator(mode="after")
    def _one_stop_condition(self) -> RunSpec:
        if self.duration is not None and self.count is not None:
            raise ValueError("give duration or count, not both")
        endpoint = parse_target(self.target)
        if endpoint.protocol == "udp" and self.size > MAX_UDP_SIZE:
            raise ValueError(f"size: a UDP datagram carries at most {MAX_UDP_SIZE} bytes")
        return self

    @property
    def effective_duration(self) -> float | None:
        if self.count is None and self.duration is None:
            return DEFAULT_DURATION
        return self.duration


def validation_error_to_spec_error(exc: ValidationError) -> SpecError:
    """The first problem of a pydantic error, as our one-line ``SpecError``."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    field = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, SpecError):
        return SpecError(inner.message, field or inner.field)
    message = message.removeprefix("Value error, ")
    if field is None and message.startswith("size:"):
        field, message = "size", message.removeprefix("size: ")
    elif field is None and "duration or count" in message:
        field = "count"
    return SpecError(f"{field}: {message}" if field else message, field)


def parse_run_spec(data: Any) -> RunSpec:
    """Validate a JSON-like mapping into a :class:`RunSpec`.

    Raises:
        SpecError: The first thing wrong, naming the field.
    """
    if not isinstance(data, dict):
        raise SpecError("the run spec must be a JSON object", None)
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_spec_error(exc) from None
