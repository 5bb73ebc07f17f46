"""Scenarios: a named list of steps over one session, as a document and as a program.

A scenario asks a server a sequence of questions and checks the answers, the way expect(1)
does for one terminal, for a line protocol, a device or a homemade RPC::

    name = "redis"
    [[steps]]
    send = "PING\\r\\n"
    [[steps]]
    expect = "+PONG"                 # the next line, its \\r\\n left out
    [[steps]]
    send = "SET k{counter} v{counter}\\r\\n"
    [[steps]]
    expect = "+OK"
    [[steps]]
    send = "GET k{counter}\\r\\n"
    [[steps]]
    expect = "$"                     # the bulk string's length line: "$2", "$3", ...
    match = "prefix"
    [[steps]]
    expect = "v{counter}"            # an expectation is a template too
    [[steps]]
    capture = "(?P<value>v[0-9]+)"   # searched in the last reply
    [[steps]]
    repeat = 3
    steps = [
      { delay = [0.01, 0.05] },
      { send = "ECHO {value}\\r\\n" },
      { expect = "$", match = "prefix" },
    ]

Steps, each an object with exactly one action key:

- ``send``: bytes to send, written in ``encoding`` (``text`` with the escapes of
  :func:`app.wire.payload.parse_escaped`, or ``hex``), a template with the respond rules'
  macros (``{counter}`` is the session's number, ``{time}``, ``{unix}``, ``{random}``,
  ``{random:N}``) and ``{name}`` for a variable captured by an earlier step.
- ``expect``: the next reply, framed by ``line`` (up to ``\\n``; a ``\\r`` before it and the
  ``\\n`` are left out, as respond listeners frame lines), by ``length`` (exactly ``length``
  bytes) or by ``read`` (what one read returns), compared by ``match``: ``exact``,
  ``prefix``, ``contains`` (each a template, as ``send`` is) or ``regex`` (RE2, linear time,
  on the raw bytes); within ``timeout`` seconds.
- ``capture``: an RE2 regex with named groups, searched in the last reply; each group becomes
  a variable for later steps. No match fails the step.
- ``delay``: seconds to wait, a number or ``[low, high]`` for a uniform draw.
- ``repeat`` (a count) or ``repeat_for`` (seconds) with ``steps``: a block run again.
- ``close`` (end the session here) and ``reconnect`` (a new connection, variables kept).

Theory of operation: :class:`Scenario` is the pydantic model of the document (the API and
OpenAPI follow from it); :func:`compile_scenario` checks what a model cannot (templates and
regexes compile, variables are captured before they are used, nesting and size bounds) and
flattens the steps into a :class:`Program`: instructions with jumps for repeated blocks, each
tagged with its step's path (``steps.6.steps.1``), which is the name the per-step figures
and every error use. The program is run by :class:`app.wire.conversation.Conversation`,
without I/O. Every error is a :class:`~app.errors.SpecError` naming the step and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.errors import SpecError
from app.validation import validate
from app.wire.regex import Regex, RegexError, compile_regex
from app.wire.template import RuleError, Template, compile_template, is_macro

__all__ = [
    "MAX_STEPS",
    "Program",
    "Scenario",
    "compile_scenario",
    "parse_scenario",
]

# Steps in one scenario, nested ones included, and blocks nested in one another.
MAX_STEPS = 1024
MAX_DEPTH = 4
# The longest reply an expect step waits for, by default and at most.
DEFAULT_MAX_REPLY = 65_536
MAX_REPLY = 1 << 20
ACTIONS = ("send", "expect", "capture", "delay", "repeat", "repeat_for", "close", "reconnect")
_ONE_ACTION = "a step has exactly one of " + ", ".join(ACTIONS)


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendStep(_Step):
    """Send bytes: text with escapes or hex, a template with macros and variables."""

    send: str = Field(max_length=MAX_REPLY, description="bytes to send (a template)")
    encoding: Literal["text", "hex"] = Field("text", description="how send is written")


class ExpectStep(_Step):
    """Wait for the next reply and compare it."""

    expect: str = Field(max_length=MAX_REPLY, description="what the reply must be or hold")
    match: Literal["exact", "prefix", "contains", "regex"] = "exact"
    encoding: Literal["text", "hex"] = Field("text", description="how expect is written")
    framing: Literal["line", "length", "read"] = Field(
        "line", description="line: up to \\n; length: `length` bytes; read: one read"
    )
    length: int | None = Field(None, ge=1, le=MAX_REPLY, description="bytes, framing=length")
    timeout: float = Field(5.0, gt=0, le=300, description="seconds to wait for the reply")

    @model_validator(mode="after")
    def _length_with_its_framing(self) -> ExpectStep:
        if (self.framing == "length") != (self.length is not None):
            raise ValueError("length: needed with framing = length, and only with it")
        if self.match == "regex" and self.encoding == "hex":
            raise ValueError("encoding: a regex is RE2 source; write bytes as \\xNN in it")
        return self


class CaptureStep(_Step):
    """Named regex groups of the last reply into variables."""

    capture: str = Field(min_length=1, max_length=4096, description="RE2 with (?P<name>...)")


class DelayStep(_Step):
    """Wait: fixed seconds or a uniform draw from a range."""

    delay: float | tuple[float, float] = Field(description="seconds, or [low, high]")

    @model_validator(mode="after")
    def _in_range(self) -> DelayStep:
        low, high = self.delay if isinstance(self.delay, tuple) else (self.delay, self.delay)
        if not 0 <= low <= high <= 3600:
            raise ValueError("delay: seconds from 0 to 3600, low <= high")
        return self


class RepeatStep(_Step):
    """Run ``steps`` again: ``repeat`` times, or for ``repeat_for`` seconds."""

    repeat: int | None = Field(None, ge=1, le=1_000_000, description="times")
    repeat_for: float | None = Field(None, gt=0, le=86_400, description="seconds")
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _one_bound(self) -> RepeatStep:
        if (self.repeat is None) == (self.repeat_for is None):
            raise ValueError("repeat: give repeat (times) or repeat_for (seconds), one of them")
        return self


class CloseStep(_Step):
    """End the session here."""

    close: Literal[True]


class ReconnectStep(_Step):
    """Close the connection and open a new one; variables are kept."""

    reconnect: Literal[True]


def _action(value: Any) -> str | None:
    """The action key of a step document (its discriminator), None unless exactly one."""
    if isinstance(value, Mapping):
        keys = [key for key in ACTIONS if key in value]
    else:
        keys = [key for key in ACTIONS if getattr(value, key, None) is not None]
    if "repeat_for" in keys and set(keys) <= {"repeat", "repeat_for"}:
        return "step:repeat"  # the model says which of the two to keep
    return f"step:{keys[0]}" if len(keys) == 1 else None


Step = Annotated[
    Annotated[SendStep, Tag("step:send")]
    | Annotated[ExpectStep, Tag("step:expect")]
    | Annotated[CaptureStep, Tag("step:capture")]
    | Annotated[DelayStep, Tag("step:delay")]
    | Annotated[RepeatStep, Tag("step:repeat")]
    | Annotated[CloseStep, Tag("step:close")]
    | Annotated[ReconnectStep, Tag("step:reconnect")],
    Discriminator(_action, custom_error_type="step", custom_error_message=_ONE_ACTION),
]
RepeatStep.model_rebuild()


class Scenario(BaseModel):
    """A scenario: its steps, and the longest reply an expect step waits for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    max_reply: int = Field(
        DEFAULT_MAX_REPLY, ge=1, le=MAX_REPLY, description="bytes an expect step buffers"
    )


# --- the program ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    path: str
    template: Template


@dataclass(frozen=True, slots=True)
class Expect:
    path: str
    match: str
    needle: Template  # empty for a regex
    regex: Regex | None
    framing: str
    length: int
    timeout: float


@dataclass(frozen=True, slots=True)
class Capture:
    path: str
    regex: Regex
    names: tuple[tuple[str, int], ...]  # (variable, group number)


@dataclass(frozen=True, slots=True)
class Delay:
    path: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Close:
    path: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    path: str


@dataclass(frozen=True, slots=True)
class Loop:
    """The start of a repeated block; ``end`` is the index just past its :class:`Again`."""

    path: str
    times: int | None
    seconds: float | None
    end: int


@dataclass(frozen=True, slots=True)
class Again:
    """The end of a repeated block: back to ``start`` (its :class:`Loop`) while it lasts."""

    path: str
    start: int


Instruction = Send | Expect | Capture | Delay | Close | Reconnect | Loop | Again


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled scenario: instructions, the paths of its steps in order, its bounds."""

    name: str | None
    code: tuple[Instruction, ...]
    steps: tuple[str, ...]  # the path of every step that is counted (send, expect, ...)
    max_reply: int
    scenario: Scenario


def _regex(source: str, path: str) -> Regex:
    try:
        return compile_regex(source)
    except RegexError as exc:
        raise SpecError(f"{path}: the regex is {exc}", path) from None


class _Compiler:
    def __init__(self) -> None:
        self.code: list[Instruction] = []
        self.steps: list[str] = []
        self.variables: set[str] = set()
        self.count = 0

    def block(self, steps: list[Any], prefix: str, depth: int) -> None:
        for index, step in enumerate(steps):
            self.step(step, f"{prefix}.{index}", depth)

    def step(self, step: Any, path: str, depth: int) -> None:
        self.count += 1
        if self.count > MAX_STEPS:
            raise SpecError(f"{path}: more than {MAX_STEPS} steps in one scenario", path)
        if isinstance(step, RepeatStep):
            if depth >= MAX_DEPTH:
                raise SpecError(f"{path}: blocks nest at most {MAX_DEPTH} deep", path)
            start = len(self.code)
            self.code.append(Loop(path, step.repeat, step.repeat_for, 0))
            self.block(step.steps, f"{path}.steps", depth + 1)
            self.code.append(Again(path, start))
            self.code[start] = Loop(path, step.repeat, step.repeat_for, len(self.code))
            return
        self.steps.append(path)
        self.code.append(self.simple(step, path))

    def template(self, text: str, encoding: str, field: str) -> Template:
        try:
            return compile_template(
                text, "hex" if encoding == "hex" else "text", field, frozenset(self.variables)
            )
        except RuleError as exc:
            raise SpecError(exc.message, field) from None

    def simple(self, step: Any, path: str) -> Instruction:
        if isinstance(step, SendStep):
            return Send(path, self.template(step.send, step.encoding, f"{path}.send"))
        if isinstance(step, ExpectStep):
            field = f"{path}.expect"
            if step.match == "regex":
                regex: Regex | None = _regex(step.expect, field)
                needle: Template = ()
            else:
                regex, needle = None, self.template(step.expect, step.encoding, field)
                if not needle:
                    raise SpecError(f"{field}: empty; expect what the reply holds", field)
            return Expect(path, step.match, needle, regex, step.framing, step.length or 0,
                          step.timeout)  # fmt: skip
        if isinstance(step, CaptureStep):
            field = f"{path}.capture"
            regex = _regex(step.capture, field)
            if not regex.groupindex:
                raise SpecError(f"{field}: the regex names no group, (?P<name>...)", field)
            for name in regex.groupindex:
                if is_macro(name):
                    raise SpecError(f"{field}: a group named {name!r} hides the macro", field)
            self.variables.update(regex.groupindex)
            return Capture(path, regex, tuple(sorted(regex.groupindex.items())))
        if isinstance(step, DelayStep):
            low, high = step.delay if isinstance(step.delay, tuple) else (step.delay,) * 2
            return Delay(path, low, high)
        if isinstance(step, CloseStep):
            return Close(path)
        return Reconnect(path)


def compile_scenario(scenario: Scenario) -> Program:
    """The program of ``scenario``.

    Raises:
        SpecError: Naming the step and field (``steps.3.send``): a template or regex that
            does not compile, a variable used before a step captures it, a capture without
            named groups, too many steps, blocks nested too deep.
    """
    compiler = _Compiler()
    compiler.block(scenario.steps, "steps", 0)
    return Program(
        scenario.name, tuple(compiler.code), tuple(compiler.steps), scenario.max_reply, scenario
    )


def parse_scenario(doc: Any) -> Program:
    """Validate a scenario document (parsed JSON or TOML) and compile it.

    Raises:
        SpecError: Naming the step and field at fault.
    """
    return compile_scenario(validate(Scenario, doc, whole="scenario"))
