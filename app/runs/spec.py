"""The run spec: one model validates API bodies, CLI options and stored specs alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.errors import SpecError
from app.settings import parse_target
from app.validation import spec_error_from as validation_error_to_spec_error
from app.wire.payload import PayloadError, make_payload, parse_escaped, parse_hex

# The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
MAX_UDP_SIZE = 65_507
MAX_TCP_SIZE = 1_048_576
DEFAULT_DURATION = 5.0
PATTERNS = ("pingpong", "rate", "bulk", "burst", "packet")


class PayloadSpec(BaseModel):
    """What the bytes of each message are (the probe header overwrites the first 28)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["random", "zeros", "text", "hex"] = Field(
        "random", description="random bytes, zeros, repeated text (escapes allowed) or hex"
    )
    text: str | None = Field(
        None,
        max_length=65_536,
        description=r"for text: e.g. 'GET / HTTP/1.0\r\n\r\n'; for hex: 'de ad be ef'",
    )

    @model_validator(mode="after")
    def _text_parses(self) -> PayloadSpec:
        if self.kind in ("text", "hex") and not self.text:
            raise ValueError(f"payload.text: give the {self.kind} to send")
        if self.text is not None:
            try:
                (parse_hex if self.kind == "hex" else parse_escaped)(self.text)
            except PayloadError as exc:
                raise ValueError(f"payload.text: {exc}") from None
        return self

    def raw(self) -> bytes | None:
        """The bytes given by text or hex; ``None`` for random and zeros."""
        if self.kind == "hex":
            return parse_hex(self.text or "")
        if self.kind == "text":
            return parse_escaped(self.text or "")
        return None

    def build(self, size: int) -> bytes:
        return make_payload(self.kind, size, text=self.text)


class RunSpec(BaseModel):
    """What to fire, where, for how long, and with which bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(
        description="tcp://host:port, udp://host:port or tls://host:port",
        examples=["tcp://127.0.0.1:9000"],
    )
    pattern: Literal["pingpong", "rate", "bulk", "burst", "packet"] = Field(
        "pingpong",
        description="pingpong: closed loop; rate: open loop at a fixed rate; bulk: maximum "
        "throughput (UDP: at the rate cap); burst: K messages back to back every interval; "
        "packet: one message and its reply",
    )
    connections: int = Field(1, ge=1, le=100_000, description="TCP connections or UDP flows")
    size: int = Field(64, ge=1, le=MAX_TCP_SIZE, description="message size in bytes")
    size_max: int | None = Field(
        None, ge=1, le=MAX_TCP_SIZE, description="if given, sizes vary from size to size_max"
    )
    rate: float | None = Field(
        None, gt=0, le=10_000_000, description="messages per second, all connections together"
    )
    bitrate: float | None = Field(
        None, gt=0, le=100e9, description="bits per second of payload, instead of rate"
    )
    duration: float | None = Field(
        None, gt=0, le=86_400, description="seconds to run (default 5 when count is not given)"
    )
    count: int | None = Field(None, ge=1, le=1_000_000_000, description="messages to send in all")
    warmup: float = Field(0.0, ge=0, le=3600, description="seconds excluded from the statistics")
    ramp_up: float = Field(0.0, ge=0, le=3600, description="seconds over which connections start")
    burst: int = Field(10, ge=1, le=1_000_000, description="burst: messages per burst")
    interval: float = Field(1.0, gt=0, le=3600, description="burst: seconds between bursts")
    in_flight: int = Field(1, ge=1, le=1024, description="pingpong: messages in flight per flow")
    payload: PayloadSpec = Field(default_factory=PayloadSpec)  # type: ignore[arg-type]
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for each reply")
    insecure: bool = Field(False, description="tls: accept any server certificate")

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str) -> str:
        parse_target(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        if self.duration is not None and self.count is not None:
            raise ValueError("count: give duration or count, not both")
        if self.rate is not None and self.bitrate is not None:
            raise ValueError("bitrate: give rate or bitrate, not both")
        if self.size_max is not None and self.size_max < self.size:
            raise ValueError("size_max: must be at least size")
        endpoint = parse_target(self.target)
        if endpoint.protocol == "udp" and self.largest_size > MAX_UDP_SIZE:
            raise ValueError(f"size: a UDP datagram carries at most {MAX_UDP_SIZE} bytes")
        if self.pattern == "rate" and self.message_rate is None:
            raise ValueError("rate: the rate pattern needs rate or bitrate")
        if self.pattern == "bulk" and endpoint.protocol == "udp" and self.message_rate is None:
            raise ValueError("rate: a UDP bulk run needs a rate cap (rate or bitrate)")
        if endpoint.protocol == "tls" and self.pattern == "bulk" and self.size > 65_536:
            raise ValueError("size: TLS records carry at most 65536 bytes per write here")
        raw = self.payload.raw()
        if self.pattern == "packet" and raw is not None and len(raw) > self.largest_size_cap:
            raise ValueError("payload.text: longer than one datagram can carry")
        return self

    @property
    def largest_size(self) -> int:
        return self.size_max or self.size

    @property
    def largest_size_cap(self) -> int:
        return MAX_UDP_SIZE if parse_target(self.target).protocol == "udp" else MAX_TCP_SIZE

    @property
    def mean_size(self) -> float:
        return (self.size + self.largest_size) / 2

    @property
    def message_rate(self) -> float | None:
        """Messages per second for all connections together, from rate or bitrate."""
        if self.rate is not None:
            return self.rate
        if self.bitrate is not None:
            return self.bitrate / (8 * self.mean_size)
        return None

    @property
    def effective_duration(self) -> float | None:
        if self.pattern == "packet":
            return None
        if self.count is None and self.duration is None:
            return DEFAULT_DURATION
        return self.duration


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
        raise validation_error_to_spec_error(exc, data) from None
