"""The run spec: one model per pattern validates API bodies, CLI options and stored specs.

Each pattern's model has only the fields that pattern uses, so a field it would ignore is
refused by name (``rate`` on a pingpong run is a 422 naming ``rate``). The engine and the
flows read every attribute of every pattern (``spec.rate``, ``spec.in_flight``...): where a
pattern has no such field, its model answers with the fixed value it runs with
(:mod:`app.runs.fixed_fields`).
:func:`parse_run_spec` picks the model by ``pattern`` (default ``pingpong``), so an error's
location is the user's field name; :data:`RunSpec` is the union, discriminated by
``pattern``, for annotations and the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from app.errors import SpecError
from app.runs.directions import OneWay, bidir_field, check_directions, reverse_field
from app.runs.fixed_fields import (
    DEFAULT_BURST,
    DEFAULT_CONNECTIONS,
    DEFAULT_IN_FLIGHT,
    DEFAULT_INTERVAL,
    DEFAULT_SIZE,
    AwaitsReplies,
    NoBursts,
    OneInFlight,
    OwnBytes,
    Unpaced,
)
from app.runs.multicast_spec import (
    NoMulticast,
    check_multicast,
    iface_field,
    loopback_field,
    ttl_field,
)
from app.runs.payload_spec import PayloadSpec
from app.runs.target_spec import Target
from app.validation import validate
from app.wire.scenario import Program, Scenario, compile_scenario

# The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
MAX_UDP_SIZE = 65_507
MAX_TCP_SIZE = 1_048_576
DEFAULT_DURATION = 5.0


PATTERN_HELP = (
    "pingpong: closed loop; rate: open loop at a fixed rate; bulk: maximum throughput "
    "(UDP: at the rate cap); burst: K messages back to back every interval; packet: one "
    "message and its reply; scenario: a scenario's steps over many sessions"
)
# Fields that exclude each other: the models refuse both, the CLI makes them alternatives.
EXCLUSIVE = (("duration", "count", "iterations"), ("rate", "bitrate"), ("reverse", "bidir"))


class _Base(BaseModel):
    """The fields every pattern has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target
    pattern: str = Field(description=PATTERN_HELP)
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for each reply")
    insecure: bool = Field(
        False,
        description="tls only: accept any server certificate (a self-signed one, such as "
        "this lab's own TLS listeners serve)",
    )

    @model_validator(mode="before")
    @classmethod
    def _only_own_fields(cls, data: Any) -> Any:
        # A field of another pattern is named, not lumped with unknown keys.
        if isinstance(data, dict):
            for name in data:
                if name not in cls.model_fields and name in FIELD_PATTERNS:
                    *others, last = FIELD_PATTERNS[name]
                    users = f"{', '.join(others)} and {last}" if others else last
                    pattern = get_args(cls.model_fields["pattern"].annotation)[0]
                    raise ValueError(
                        f"{name}: a {pattern} run does not use {name} (it applies to {users})"
                    )
        return data

    @model_validator(mode="after")
    def _insecure_is_for_tls(self) -> Self:
        # Refused like a field the pattern ignores: a plain target has no certificate.
        if self.insecure and self.target.protocol != "tls":
            raise ValueError(
                f"insecure: a {self.target.protocol}:// target has no certificate to accept "
                "(insecure applies to tls:// only)"
            )
        return self

    @property
    def largest_size_cap(self) -> int:
        return MAX_UDP_SIZE if self.target.protocol == "udp" else MAX_TCP_SIZE


class _Common(_Base):
    """The fields of every pattern that sends a payload of its own."""

    payload: PayloadSpec = Field(default_factory=PayloadSpec)  # type: ignore[arg-type]


def _connections() -> Any:
    return Field(DEFAULT_CONNECTIONS, ge=1, le=100_000, description="TCP connections or UDP flows")


def _duration() -> Any:
    return Field(
        None, gt=0, le=86_400, description="seconds to run (default 5 when count is not given)"
    )


def _ramp_up() -> Any:
    return Field(0.0, ge=0, le=3600, description="seconds over which connections start")


class _Load(_Common):
    """The fields of the patterns that send many messages over many flows."""

    connections: int = _connections()
    size: int = Field(DEFAULT_SIZE, ge=1, le=MAX_TCP_SIZE, description="message size in bytes")
    size_max: int | None = Field(
        None, ge=1, le=MAX_TCP_SIZE, description="if given, sizes vary from size to size_max"
    )
    duration: float | None = _duration()
    count: int | None = Field(None, ge=1, le=1_000_000_000, description="messages to send in all")
    warmup: float = Field(0.0, ge=0, le=3600, description="seconds excluded from the statistics")
    ramp_up: float = _ramp_up()

    @model_validator(mode="after")
    def _load_consistent(self) -> Self:
        if self.duration is not None and self.count is not None:
            raise ValueError("count: give duration or count, not both")
        if self.size_max is not None and self.size_max < self.size:
            raise ValueError("size_max: must be at least size")
        if self.target.protocol == "udp" and self.largest_size > MAX_UDP_SIZE:
            raise ValueError(f"size: a UDP datagram carries at most {MAX_UDP_SIZE} bytes")
        return self

    @property
    def largest_size(self) -> int:
        return self.size_max or self.size

    @property
    def mean_size(self) -> float:
        return (self.size + self.largest_size) / 2

    @property
    def effective_duration(self) -> float | None:
        if self.count is None and self.duration is None:
            return DEFAULT_DURATION
        return self.duration


class _Paced(_Load):
    """A load with a message rate (or a bitrate it is computed from)."""

    rate: float | None = Field(
        None, gt=0, le=10_000_000, description="messages per second, all connections together"
    )
    bitrate: float | None = Field(
        None, gt=0, le=100e9, description="bits per second of payload, instead of rate"
    )

    @model_validator(mode="after")
    def _one_pace(self) -> Self:
        if self.rate is not None and self.bitrate is not None:
            raise ValueError("bitrate: give rate or bitrate, not both")
        return self

    @property
    def message_rate(self) -> float | None:
        """Messages per second for all connections together, from rate or bitrate."""
        if self.rate is not None:
            return self.rate
        if self.bitrate is not None:
            return self.bitrate / (8 * self.mean_size)
        return None


def _expect_replies() -> Any:
    return Field(
        None,
        description="false: the target answers nothing (a sink), so nothing counts as lost; "
        "by default false for this lab's own sinks, true otherwise",
    )


class PingpongSpec(NoMulticast, OneWay, Unpaced, NoBursts, AwaitsReplies, _Load):
    """Closed loop: each flow sends its next message when a reply has come back."""

    # The one pattern whose name may be left out: a spec without one is a pingpong run.
    pattern: Literal["pingpong"] = Field("pingpong", description=PATTERN_HELP)
    in_flight: int = Field(
        DEFAULT_IN_FLIGHT, ge=1, le=1024, description="messages in flight per flow"
    )


class RateSpec(NoBursts, OneInFlight, _Paced):
    """Open loop at a fixed rate; latency from each message's intended send time."""

    pattern: Literal["rate"] = Field(description=PATTERN_HELP)
    expect_replies: bool | None = _expect_replies()
    reverse: bool = reverse_field()
    bidir: bool = bidir_field()
    ttl: int | None = ttl_field()
    iface: str | None = iface_field()
    loopback: bool | None = loopback_field()

    @model_validator(mode="after")
    def _has_rate(self) -> Self:
        if self.message_rate is None:
            raise ValueError("rate: the rate pattern needs rate or bitrate")
        check_directions(self)
        check_multicast(self)
        return self


class BulkSpec(NoMulticast, NoBursts, OneInFlight, _Paced):
    """Maximum throughput: a TCP stream as fast as it goes, or a UDP blast at a rate cap."""

    pattern: Literal["bulk"] = Field(description=PATTERN_HELP)
    expect_replies: bool | None = _expect_replies()
    reverse: bool = reverse_field()
    bidir: bool = bidir_field()

    @model_validator(mode="after")
    def _pace_by_protocol(self) -> Self:
        check_directions(self)
        if self.target.protocol == "udp":
            if self.message_rate is None:
                raise ValueError("rate: a UDP bulk run needs a rate cap (rate or bitrate)")
            return self
        for name in ("rate", "bitrate", "size_max"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name}: a {self.target.protocol.upper()} bulk run writes size bytes at a "
                    f"time as fast as it can; {name} applies to UDP bulk only"
                    if name != "size_max"
                    else f"size_max: a {self.target.protocol.upper()} bulk run writes size "
                    "bytes at a time; sizes do not vary"
                )
        if self.target.protocol == "tls" and self.size > 65_536:
            raise ValueError("size: TLS records carry at most 65536 bytes per write here")
        return self


class BurstSpec(Unpaced, OneInFlight, _Load):
    """``burst`` messages back to back every ``interval`` seconds."""

    pattern: Literal["burst"] = Field(description=PATTERN_HELP)
    expect_replies: bool | None = _expect_replies()
    burst: int = Field(DEFAULT_BURST, ge=1, le=1_000_000, description="messages per burst")
    interval: float = Field(DEFAULT_INTERVAL, gt=0, le=3600, description="seconds between bursts")
    reverse: bool = reverse_field()
    bidir: bool = bidir_field()
    ttl: int | None = ttl_field()
    iface: str | None = iface_field()
    loopback: bool | None = loopback_field()

    @model_validator(mode="after")
    def _directions(self) -> Self:
        check_directions(self)
        check_multicast(self)
        return self


_NO_PAYLOAD = PayloadSpec()  # type: ignore[call-arg]  # every field has a default


class PacketSpec(
    NoMulticast, OneWay, Unpaced, NoBursts, OneInFlight, AwaitsReplies, OwnBytes, _Common
):
    """One message and its reply, shown as hex and text."""

    pattern: Literal["packet"] = Field(description=PATTERN_HELP)

    @model_validator(mode="after")
    def _fits(self) -> Self:
        raw = self.payload.raw()
        if raw is not None and len(raw) > self.largest_size_cap:
            raise ValueError("payload.text: longer than one datagram can carry")
        return self

    # One message on one flow, sent at once: the load fields have their fixed values.
    @property
    def connections(self) -> int:
        return DEFAULT_CONNECTIONS

    @property
    def duration(self) -> float | None:
        return None

    @property
    def effective_duration(self) -> float | None:
        return None

    @property
    def count(self) -> int | None:
        return None

    @property
    def ramp_up(self) -> float:
        return 0.0


class ScenarioSpec(
    NoMulticast, OneWay, Unpaced, NoBursts, OneInFlight, AwaitsReplies, OwnBytes, _Base
):
    """A scenario's steps (app.wire.scenario) over ``connections`` sessions at once, one
    session after another on each, for ``duration`` seconds or ``iterations`` sessions."""

    pattern: Literal["scenario"] = Field(description=PATTERN_HELP)
    scenario: Scenario = Field(description="the steps: send, expect, capture, delay, repeat")
    connections: int = _connections()
    duration: float | None = _duration()
    iterations: int | None = Field(None, ge=1, le=100_000_000, description="sessions in all")
    ramp_up: float = _ramp_up()
    _program: Program = PrivateAttr()

    @model_validator(mode="after")
    def _compiles(self) -> Self:
        if self.duration is not None and self.iterations is not None:
            raise ValueError("iterations: give duration or iterations, not both")
        try:
            self._program = compile_scenario(self.scenario)
        except SpecError as exc:
            raise SpecError(f"scenario.{exc.message}", f"scenario.{exc.field}") from None
        return self

    @property
    def program(self) -> Program:
        """The scenario compiled, once."""
        return self._program

    @property
    def payload(self) -> PayloadSpec:
        return _NO_PAYLOAD

    @property
    def count(self) -> int | None:
        return self.iterations

    @property
    def effective_duration(self) -> float | None:
        if self.iterations is None and self.duration is None:
            return DEFAULT_DURATION
        return self.duration


AnyRunSpec = PingpongSpec | RateSpec | BulkSpec | BurstSpec | PacketSpec | ScenarioSpec
# The type everyone imports; as a pydantic annotation it validates by ``pattern``.
RunSpec: TypeAlias = Annotated[AnyRunSpec, Field(discriminator="pattern")]

MODELS: dict[str, type[AnyRunSpec]] = {
    "pingpong": PingpongSpec,
    "rate": RateSpec,
    "bulk": BulkSpec,
    "burst": BurstSpec,
    "packet": PacketSpec,
    "scenario": ScenarioSpec,
}
PATTERNS = tuple(MODELS)
RUN_SPEC_MODELS = tuple(MODELS.values())

# Every field of any pattern → the patterns that have it (in PATTERNS order).
FIELD_PATTERNS: dict[str, tuple[str, ...]] = {}
for _pattern, _model in MODELS.items():
    for _name in _model.model_fields:
        FIELD_PATTERNS[_name] = (*FIELD_PATTERNS.get(_name, ()), _pattern)
RUN_SPEC_FIELDS = tuple(FIELD_PATTERNS)


def parse_run_spec(data: Any) -> RunSpec:
    """Validate a JSON-like mapping with the model of its ``pattern`` (default pingpong).

    Raises:
        SpecError: The first thing wrong, naming the field.
    """
    if not isinstance(data, dict):
        raise SpecError("body: the run spec must be a JSON object", "body")
    pattern = data.get("pattern", "pingpong")
    model = MODELS.get(pattern) if isinstance(pattern, str) else None
    if model is None:
        raise SpecError(
            f"pattern: must be one of {', '.join(PATTERNS)}, got {pattern!r}", "pattern"
        )
    return validate(model, data)
