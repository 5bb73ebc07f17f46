"""Rule-based replies ("smart responses") and line framing, without I/O.

Theory of operation: a :class:`Rule` pairs a matcher (exact, prefix, contains, suffix or a
bytes regex) with a reply template. Regexes are RE2 (:mod:`app.wire.regex`), which matches in
time linear in the message, so no line a client sends can stall the loop. Everything that
can be wrong with a rule is found when it is built (:meth:`Rule.from_dict` or the
constructor raise :class:`RuleError` naming the field): the pattern is decoded or compiled
once, and the template is compiled (:mod:`app.wire.template`) to a tuple of literal byte
strings and fields, so rendering a reply cannot fail.

A :class:`Responder` holds a list of rules, an optional default reply and one hit counter per
rule. ``respond(message, now)`` returns the reply of the first rule that matches (and counts
the hit), else the rendered default reply, else None (stay silent). Time and randomness are
passed in, so replies are deterministic under test.

Reply templates::

    {counter}      hits of this rule, this one included (1 on the first reply)
    {time}         ISO-8601 UTC time with milliseconds, e.g. 2023-11-14T22:13:20.000Z
    {unix}         whole Unix seconds
    {random}       a random unsigned 32-bit integer, in decimal
    {random:N}     N random hex digits (1 <= N <= 1024)
    {0} .. {N}     regex groups by number ({0} is the whole match); regex rules only
    {name}         a named regex group, (?P<name>...); regex rules only
    {{ and }}      literal braces

Literal text in a template (and a non-regex pattern) is written in ``encoding``: ``"text"``
is UTF-8 with the escapes of :func:`app.wire.payload.parse_escaped` (``\\r \\n \\t \\\\
\\xNN`` ...), ``"hex"`` is hex digits as :func:`app.wire.payload.parse_hex` reads them. A
regex pattern is always regex source in RE2 syntax, matched against the raw bytes (write
``\\x00`` in the regex itself for a byte); backreferences and lookaround are refused. Fields
render as ASCII text; captures are inserted as raw bytes.

:class:`LineFramer` cuts a TCP byte stream into lines for rules that answer per line.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from app.errors import ProtocolError
from app.wire.regex import Regex, RegexError, RegexMatch, compile_regex
from app.wire.template import (
    Encoding,
    Part,
    RuleError,
    compile_parts,
    decode_literal,
    render_parts,
    uses_groups,
)

__all__ = [
    "ENCODINGS",
    "MATCH_KINDS",
    "FrameTooLongError",
    "LineFramer",
    "Responder",
    "Rule",
    "RuleError",
]

MatchKind = Literal["exact", "prefix", "contains", "suffix", "regex"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "contains", "suffix", "regex")
ENCODINGS: tuple[Encoding, ...] = ("text", "hex")

_RULE_KEYS = ("match", "pattern", "reply", "encoding")


class FrameTooLongError(ProtocolError, ValueError):
    """A line grew past ``max_line`` bytes without a newline.

    Args:
        max_line: The limit that was passed.
        lines: Complete lines that came before the long one in the same ``feed``, so a
            caller can still answer them before closing the connection.
    """

    def __init__(self, max_line: int, lines: list[bytes] | None = None) -> None:
        super().__init__(f"line longer than {max_line} bytes", None)
        self.max_line = max_line
        self.lines = lines if lines is not None else []


def _compile(pattern: str, *, captures: bool = True) -> Regex:
    try:
        return compile_regex(pattern, captures=captures)
    except RegexError as exc:
        raise RuleError(f"pattern is {exc}", "pattern") from None


@dataclass(frozen=True, slots=True)
class Rule:
    """One match-and-reply rule; immutable, so rules can be shared between responders.

    Args:
        match: How ``pattern`` is compared with a message: ``exact``, ``prefix``,
            ``contains``, ``suffix`` or ``regex`` (an RE2 search on the bytes).
        pattern: The bytes to look for, in ``encoding``; for ``regex``, the regex source.
        reply: The reply template (see the module docstring).
        encoding: How literal bytes in ``pattern`` and ``reply`` are written.

    Raises:
        RuleError: Naming the field at fault: an unknown ``match`` or ``encoding``, an empty
            or undecodable pattern, a regex RE2 refuses (backreferences, lookaround) or
            that is too complex, a bad template.
    """

    match: MatchKind
    pattern: str
    reply: str
    encoding: Encoding = "text"
    _needle: bytes = field(init=False, repr=False, compare=False)
    _regex: Regex | None = field(init=False, repr=False, compare=False)
    _parts: tuple[Part, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.match not in MATCH_KINDS:
            raise RuleError(
                f"match must be one of {', '.join(MATCH_KINDS)}, not {self.match!r}", "match"
            )
        if self.encoding not in ENCODINGS:
            raise RuleError(
                f"encoding must be one of {', '.join(ENCODINGS)}, not {self.encoding!r}",
                "encoding",
            )
        regex: Regex | None = None
        needle = b""
        if self.match == "regex":
            if not self.pattern:
                raise RuleError("pattern is empty", "pattern")
            regex = _compile(self.pattern)
        else:
            needle = decode_literal(self.pattern, self.encoding, "pattern")
            if not needle:
                raise RuleError("pattern is empty", "pattern")
        parts = compile_parts(self.reply, self.encoding, "reply", regex)
        if regex is not None and regex.groups and not uses_groups(parts):
            # Without submatches RE2 finds a match with its DFA alone: far faster.
            regex = _compile(self.pattern, captures=False)
        object.__setattr__(self, "_needle", needle)
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_parts", parts)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Rule:
        """Build a rule from its JSON form: ``match``, ``pattern``, ``reply``, ``encoding``.

        ``encoding`` may be missing or null (it defaults to ``"text"``).

        Raises:
            RuleError: Naming the field at fault, including unknown keys and values that
                are not strings.
        """
        if not isinstance(data, Mapping):
            raise RuleError("a rule must be an object", None)
        for key in data:
            if key not in _RULE_KEYS:
                raise RuleError(
                    f"unknown rule field {key!r}; expected {', '.join(_RULE_KEYS)}", str(key)
                )
        values: dict[str, str] = {}
        for key in _RULE_KEYS:
            value = data.get(key)
            if value is None:
                if key == "encoding":
                    continue
                raise RuleError(f"{key} is required", key)
            if not isinstance(value, str):
                raise RuleError(f"{key} must be a string", key)
            values[key] = value
        return cls(
            # __post_init__ checks that match and encoding are among the known names.
            match=cast(MatchKind, values["match"]),
            pattern=values["pattern"],
            reply=values["reply"],
            encoding=cast(Encoding, values.get("encoding", "text")),
        )

    def to_dict(self) -> dict[str, str]:
        """The JSON form that :meth:`from_dict` reads back."""
        return {
            "match": self.match,
            "pattern": self.pattern,
            "reply": self.reply,
            "encoding": self.encoding,
        }

    @property
    def cost(self) -> int:
        """Steps per message byte of a regex rule (its RE2 program size); 0 for the others."""
        return 0 if self._regex is None else self._regex.cost

    def matches(self, message: bytes) -> bool:
        """Whether the rule applies to ``message``."""
        return self._find(message)[0]

    def _find(self, message: bytes) -> tuple[bool, RegexMatch | None]:
        if self._regex is not None:
            found = self._regex.search(message)
            return found is not None, found
        needle = self._needle
        if self.match == "exact":
            return message == needle, None
        if self.match == "prefix":
            return message.startswith(needle), None
        if self.match == "suffix":
            return message.endswith(needle), None
        return needle in message, None

    def reply_to(
        self, message: bytes, *, counter: int, now: float, rng: random.Random
    ) -> bytes | None:
        """Render the reply to ``message``, or None when the rule does not match.

        Args:
            message: The message as framed (a datagram, a read, or a line).
            counter: The value of ``{counter}``.
            now: Unix time for ``{time}`` and ``{unix}``.
            rng: Source of ``{random}``.
        """
        found, match = self._find(message)
        if not found:
            return None
        return render_parts(self._parts, match, counter, now, rng)


class Responder:
    """First-match-wins replies with per-rule hit counters.

    Args:
        rules: The rules, tried in order.
        default_reply: Template for messages no rule matches (no captures; ``{counter}``
            counts default replies), or None to stay silent.
        default_encoding: How literal bytes in ``default_reply`` are written.
        rng: Source of ``{random}``; inject a seeded one for deterministic replies.

    Raises:
        RuleError: ``default_reply`` (field ``"default_reply"``) does not compile.

    Error handling: :meth:`respond` never raises for any message, given a ``now`` that is a
    real clock reading. Its cost is linear in the message: at most about :attr:`cost` steps
    per byte (RE2 does not backtrack), so callers bound it by bounding message size
    (framing does; :mod:`app.listeners.speccheck` checks the product).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        default_reply: str | None = None,
        *,
        default_encoding: Encoding = "text",
        rng: random.Random | None = None,
    ) -> None:
        if default_encoding not in ENCODINGS:
            raise RuleError(
                f"encoding must be one of {', '.join(ENCODINGS)}, not {default_encoding!r}",
                "default_encoding",
            )
        self.rules = tuple(rules)
        self.default_reply = default_reply
        self._default = (
            None
            if default_reply is None
            else compile_parts(default_reply, default_encoding, "default_reply")
        )
        self._hits = [0] * len(self.rules)
        self.default_hits = 0
        self._rng = rng if rng is not None else random.Random()

    def respond(self, message: bytes, now: float) -> bytes | None:
        """The reply to ``message``: the first matching rule's, else the default, else None.

        Args:
            message: The message as framed.
            now: Unix time, for ``{time}`` and ``{unix}``.
        """
        for index, rule in enumerate(self.rules):
            found, match = rule._find(message)
            if found:
                self._hits[index] += 1
                return render_parts(rule._parts, match, self._hits[index], now, self._rng)
        if self._default is None:
            return None
        self.default_hits += 1
        return render_parts(self._default, None, self.default_hits, now, self._rng)

    def adopt(self, other: Responder) -> None:
        """Answer by ``other``'s rules and default from now on, with its (fresh) counters.

        Edits a running listener's rules in place: every connection holds this object, so
        each one answers its next message by the new rules.
        """
        self.rules = other.rules
        self.default_reply = other.default_reply
        self._default = other._default
        self._hits = other._hits
        self.default_hits = other.default_hits

    def hits(self) -> list[int]:
        """How many messages each rule answered, in rule order."""
        return list(self._hits)

    @property
    def cost(self) -> int:
        """Steps per message byte, at most, when every rule is tried: the rules' costs."""
        return sum(rule.cost for rule in self.rules)


class LineFramer:
    """Cuts a byte stream into lines ending in ``\\n`` (a ``\\r`` before it is dropped too).

    Feeding the stream whole or one byte at a time gives the same lines.

    Args:
        max_line: Longest line accepted, terminator excluded.

    Raises:
        ValueError: ``max_line`` is below 1.
    """

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buffer = bytearray()
        self._failed = False

    @property
    def pending(self) -> bytes:
        """Bytes received after the last newline (an unfinished line)."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the lines they complete, without terminators.

        Raises:
            FrameTooLongError: A line is longer than ``max_line``; its ``lines`` holds the
                lines completed before it. The stream cannot be framed past that point, so
                every later ``feed`` raises again: close the connection.
        """
        if self._failed:
            raise FrameTooLongError(self.max_line)
        data = bytes(data)
        lines: list[bytes] = []
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if self._buffer:
                self._buffer += data[start:newline]
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = data[start:newline]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                self._fail(lines)
            lines.append(line)
            start = newline + 1
        self._buffer += data[start:]
        # A trailing \r may still turn out to be part of the terminator: do not count it.
        unfinished = len(self._buffer) - (1 if self._buffer.endswith(b"\r") else 0)
        if unfinished > self.max_line:
            self._fail(lines)
        return lines

    def _fail(self, lines: list[bytes]) -> None:
        self._failed = True
        self._buffer.clear()
        raise FrameTooLongError(self.max_line, lines)
