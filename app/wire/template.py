"""Reply templates: compiled once to literal bytes and fields, rendered without failing.

Theory of operation: a template (the syntax is in :mod:`app.wire.rules`) is compiled to a
tuple of literal byte strings and :class:`TemplateField` s (a macro, a regex group or a
variable a scenario captured); everything that can be wrong with it is found then
(:class:`RuleError` names the field), so rendering cannot fail. Rules render with their
regex match (:func:`render_parts`); a scenario's senders compile with named variables
(:func:`compile_template`) and render with the values captured so far
(:func:`render_template`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from app.errors import SpecError
from app.wire.payload import PayloadError, parse_escaped, parse_hex
from app.wire.regex import Regex, RegexMatch

Encoding = Literal["text", "hex"]
_MAX_RANDOM_DIGITS = 1024


class RuleError(SpecError, ValueError):
    """A rule, template or default reply that does not validate.

    Args:
        message: What is wrong.
        field: The rule field at fault (``"match"``, ``"pattern"``, ``"reply"``,
            ``"encoding"``, ``"default_reply"``), or None for the rule as a whole.
    """


class TemplateField(NamedTuple):
    """A template field: a macro (``counter``, ``time``, ``unix``, ``random``) or a group.

    A group is always held by number, a named group too.
    """

    kind: Literal["counter", "time", "unix", "random", "group", "var"]
    arg: int | str = 0


Part = bytes | TemplateField
_MACROS: dict[str, TemplateField] = {
    "counter": TemplateField("counter"),
    "time": TemplateField("time"),
    "unix": TemplateField("unix"),
    "random": TemplateField("random"),
}


def decode_literal(text: str, encoding: Encoding, field_name: str) -> bytes:
    try:
        return parse_hex(text) if encoding == "hex" else parse_escaped(text)
    except PayloadError as exc:
        raise RuleError(f"{field_name}: {exc.message}", field_name) from None


def _parse_field(
    body: str,
    at: int,
    field_name: str,
    regex: Regex | None,
    variables: frozenset[str] | None = None,
) -> TemplateField:
    shown = body if len(body) <= 40 else body[:37] + "..."
    name, colon, arg = body.partition(":")
    if name == "random" and colon:
        # The length check first: int() refuses strings of thousands of digits.
        if not (arg.isascii() and arg.isdigit() and len(arg) <= 4) or not (
            1 <= int(arg) <= _MAX_RANDOM_DIGITS
        ):
            raise RuleError(
                f"{field_name}: {{random:N}} at offset {at} needs N from 1 to {_MAX_RANDOM_DIGITS}",
                field_name,
            )
        return TemplateField("random", int(arg))
    number = body.isascii() and body.isdigit()
    if colon or not (number or body.isidentifier()):
        raise RuleError(f"{field_name}: unknown field {{{shown}}} at offset {at}", field_name)
    # A long digit string stays a string: no regex has that many groups, and int() would
    # refuse thousands of digits.
    group: int | str = int(body) if number and len(body) <= 6 else body
    is_group = regex is not None and (
        group in regex.groupindex if isinstance(group, str) else group <= regex.groups
    )
    macro = _MACROS.get(body)
    if is_group and macro is not None:
        raise RuleError(
            f"{field_name}: {{{shown}}} at offset {at} is both a macro and a regex group; "
            "rename the group",
            field_name,
        )
    if is_group and regex is not None:
        return TemplateField("group", regex.groupindex[group] if isinstance(group, str) else group)
    if macro is not None:
        return macro
    if variables is not None and body in variables:
        return TemplateField("var", body)
    if variables is not None:
        raise RuleError(
            f"{field_name}: {{{shown}}} at offset {at} is neither a macro nor a variable "
            "captured by an earlier step",
            field_name,
        )
    if regex is None:
        raise RuleError(
            f"{field_name}: {{{shown}}} at offset {at} is not a macro; captures need a regex rule",
            field_name,
        )
    raise RuleError(f"{field_name}: the regex has no group {{{shown}}} (offset {at})", field_name)


def compile_parts(
    template: str,
    encoding: Encoding,
    field_name: str,
    regex: Regex | None = None,
    variables: frozenset[str] | None = None,
) -> tuple[Part, ...]:
    """Compile a reply template to literal byte strings and fields.

    Literal runs are decoded one by one, but first the whole template is decoded with every
    field blanked out by spaces, so that a decoding error reports its offset in the
    template as the user wrote it. A space ends a hex token and is not an escape, so this
    check fails exactly when decoding one of the runs would.
    """
    pieces: list[str | Part] = []  # str: a literal run still to decode
    masked: list[str] = []
    literal_start = 0
    i = 0
    end = len(template)

    def close_literal(stop: int) -> None:
        if stop > literal_start:
            pieces.append(template[literal_start:stop])
            masked.append(template[literal_start:stop])

    while i < end:
        char = template[i]
        if char in "{}" and template.startswith(char * 2, i):
            close_literal(i)
            pieces.append(char.encode())
            masked.append("  ")
            i += 2
            literal_start = i
        elif char == "}":
            raise RuleError(
                f"{field_name}: lone '}}' at offset {i}; write '}}}}' for a brace", field_name
            )
        elif char == "{":
            close = template.find("}", i + 1)
            if close < 0:
                raise RuleError(
                    f"{field_name}: '{{' at offset {i} is never closed; write '{{{{' for a brace",
                    field_name,
                )
            close_literal(i)
            pieces.append(_parse_field(template[i + 1 : close], i, field_name, regex, variables))
            masked.append(" " * (close + 1 - i))
            i = close + 1
            literal_start = i
        else:
            i += 1
    close_literal(end)

    decode_literal("".join(masked), encoding, field_name)
    parts: list[Part] = []
    for piece in pieces:
        part = decode_literal(piece, encoding, field_name) if isinstance(piece, str) else piece
        if isinstance(part, bytes) and parts and isinstance(parts[-1], bytes):
            parts[-1] += part  # adjacent literals render as one
        elif part != b"":
            parts.append(part)
    return tuple(parts)


def uses_groups(parts: Sequence[Part]) -> bool:
    """Whether a template reads a capture group (``{0}`` is the match itself, not a group)."""
    return any(
        isinstance(part, TemplateField) and part.kind == "group" and part.arg for part in parts
    )


def render_parts(
    parts: Sequence[Part],
    match: RegexMatch | None,
    counter: int,
    now: float,
    rng: random.Random,
    values: Mapping[str, bytes] | None = None,
) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, bytes):
            out += part
        elif part.kind == "var":
            if values is not None:
                out += values.get(str(part.arg), b"")
        elif part.kind == "group":
            # Compilation checked the group exists; an unmatched optional group is empty.
            if match is not None:
                out += match.group(int(part.arg)) or b""
        elif part.kind == "counter":
            out += str(counter).encode()
        elif part.kind == "unix":
            out += str(int(now)).encode()
        elif part.kind == "time":
            stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
            out += stamp.replace("+00:00", "Z").encode()
        elif part.arg:
            digits = int(part.arg)
            out += f"{rng.getrandbits(4 * digits):0{digits}x}".encode()
        else:
            out += str(rng.getrandbits(32)).encode()
    return bytes(out)


Template = tuple[Part, ...]


def compile_template(
    template: str, encoding: Encoding, field_name: str, variables: frozenset[str]
) -> Template:
    """A template of macros and named ``variables`` (no regex groups), for senders that
    fill in values captured earlier (:mod:`app.wire.scenario`).

    Raises:
        RuleError: Naming ``field_name``: a field that is neither a macro nor a variable,
            an escape or hex digit that does not decode, a lone brace.
    """
    return compile_parts(template, encoding, field_name, None, variables)


def render_template(
    parts: Template, *, counter: int, now: float, rng: random.Random, values: Mapping[str, bytes]
) -> bytes:
    """The bytes of a :func:`compile_template` template; a variable not set yet is empty."""
    return render_parts(parts, None, counter, now, rng, values)


def is_macro(name: str) -> bool:
    """Whether ``{name}`` is a macro of every template (``counter``, ``time``, ...)."""
    return name in _MACROS
