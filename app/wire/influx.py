"""InfluxDB line protocol: one line into a :class:`~app.telemetry.points.Point`, without I/O.

Theory of operation: a line is ``measurement[,tag=value...] field=value[,field=value...]
[timestamp]``. :func:`parse_line` reads it left to right in three states (measurement and
tags, fields, timestamp) and returns one point or raises :class:`InfluxError`; it never
raises anything else, whatever the bytes. :func:`format_point` writes a point back, so a
valid document round-trips.

Escaping, as InfluxDB documents it: in the measurement ``,`` and space are escaped with a
backslash; in tag keys, tag values and field keys ``,``, ``=`` and space; in string field
values ``"`` and ``\\``. Two backslashes are one; a backslash before any other character is
a literal backslash. A line starting with ``#`` is a comment (:func:`is_comment`).

Field values: floats (``1``, ``-1.5e3``), signed integers (``1i``, 64-bit), unsigned
integers (``1u``, 64-bit), strings (``"text"``) and booleans (``t T true True TRUE`` and
``f F false False FALSE``). A point carries Python ``float``, ``int``, ``str`` and
``bool``: signed and unsigned integers are both ``int`` (:func:`format_point` writes a
value past 2**63-1 as unsigned). The timestamp is an integer in the listener's precision
(``ns``, ``us``, ``ms`` or ``s``), turned into seconds.

Limits: a newline ends a line (a string field with a raw newline in it is an unterminated
string here); names and values are kept whole (the line's length is bounded by the mode).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from app.errors import LineError
from app.telemetry.points import FieldValue, Point, tags_of

__all__ = [
    "PRECISIONS",
    "InfluxError",
    "Precision",
    "format_point",
    "is_comment",
    "parse_line",
]

Precision = Literal["ns", "us", "ms", "s"]
# Timestamp units per second.
PRECISIONS: dict[str, int] = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000, "s": 1}

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = 2**64 - 1
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_UNSIGNED = re.compile(r"\d+")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})

# Characters a backslash escapes in each element (besides the backslash itself).
_MEASUREMENT_SPECIAL = ", "
_KEY_SPECIAL = ",= "


class InfluxError(LineError):
    """A line that is not InfluxDB line protocol."""


def is_comment(line: bytes) -> bool:
    """Whether ``line`` is a comment (``#`` first) or blank: skipped, not counted bad."""
    stripped = line.strip()
    return not stripped or stripped.startswith(b"#")


class _Reader:
    """A cursor over one line's text; the scanning of escaped elements."""

    __slots__ = ("pos", "raw", "text")

    def __init__(self, text: str, raw: bytes) -> None:
        self.text = text
        self.raw = raw
        self.pos = 0

    def fail(self, message: str) -> InfluxError:
        return InfluxError(message, self.raw)

    def element(self, special: str, stops: str) -> str:
        """Read up to (not past) an unescaped character of ``stops``; unescape it."""
        text = self.text
        end = len(text)
        pos = self.pos
        out: list[str] = []
        while pos < end:
            char = text[pos]
            if char == "\\" and pos + 1 < end:
                follow = text[pos + 1]
                if follow in special or follow == "\\":
                    out.append(follow)
                    pos += 2
                    continue
            elif char in stops:
                break
            out.append(char)
            pos += 1
        self.pos = pos
        return "".join(out)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def quoted(self) -> str:
        """Read a string field value; the cursor is on its opening quote."""
        text = self.text
        pos = self.pos + 1
        out: list[str] = []
        end = len(text)
        while pos < end:
            char = text[pos]
            if char == "\\" and pos + 1 < end and text[pos + 1] in '"\\':
                out.append(text[pos + 1])
                pos += 2
                continue
            if char == '"':
                self.pos = pos + 1
                return "".join(out)
            out.append(char)
            pos += 1
        raise self.fail("string field value has no closing quote")


def _field_value(raw_value: str, reader: _Reader, key: str) -> FieldValue:
    if raw_value in _TRUE:
        return True
    if raw_value in _FALSE:
        return False
    suffix = raw_value[-1:]
    if suffix == "i" and _INTEGER.fullmatch(raw_value[:-1]):
        number = int(raw_value[:-1])
        if not _INT64[0] <= number <= _INT64[1]:
            raise reader.fail(f"field {key!r}: integer {raw_value} is out of the 64-bit range")
        return number
    if suffix == "u" and _UNSIGNED.fullmatch(raw_value[:-1]):
        number = int(raw_value[:-1])
        if number > _UINT64:
            raise reader.fail(f"field {key!r}: unsigned {raw_value} is out of the 64-bit range")
        return number
    if _FLOAT.fullmatch(raw_value):
        value = float(raw_value)
        if not math.isfinite(value):
            raise reader.fail(f"field {key!r}: float {raw_value} is out of range")
        return value
    raise reader.fail(f"field {key!r}: {raw_value!r} is not a float, integer, string or boolean")


def _tags(reader: _Reader) -> list[tuple[str, str]]:
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    while reader.peek() == ",":
        reader.pos += 1
        key = reader.element(_KEY_SPECIAL, ",= ")
        if reader.peek() != "=":
            raise reader.fail(f"tag {key!r} has no '=value'")
        reader.pos += 1
        value = reader.element(_KEY_SPECIAL, ",= ")
        if reader.peek() == "=":
            raise reader.fail(f"tag {key!r}: an unescaped '=' in its value")
        if not key or not value:
            raise reader.fail("empty tag key or value")
        if key in seen:
            raise reader.fail(f"tag {key!r} given twice")
        seen.add(key)
        tags.append((key, value))
    return tags


def _fields(reader: _Reader) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    while True:
        key = reader.element(_KEY_SPECIAL, ",= ")
        if reader.peek() != "=":
            raise reader.fail(f"field {key!r} has no '=value'")
        if not key:
            raise reader.fail("empty field key")
        reader.pos += 1
        if reader.peek() == '"':
            fields[key] = reader.quoted()
        else:
            start = reader.pos
            text = reader.text
            end = start
            while end < len(text) and text[end] not in ", ":
                end += 1
            reader.pos = end
            if end == start:
                raise reader.fail(f"field {key!r} has no value")
            fields[key] = _field_value(text[start:end], reader, key)
        if reader.peek() != ",":
            return fields
        reader.pos += 1


_Parts = tuple[str, list[tuple[str, str]], dict[str, FieldValue], str]


def _split_escaped(reader: _Reader) -> _Parts:
    """Measurement, tags, fields and the timestamp's text of a line with escapes."""
    name = reader.element(_MEASUREMENT_SPECIAL, ", ")
    if not name:
        raise reader.fail("empty measurement")
    tags = _tags(reader)
    if reader.peek() != " ":
        raise reader.fail("no space between the measurement (and tags) and the fields")
    reader.pos += 1
    fields = _fields(reader)
    rest = reader.text[reader.pos :]
    if rest and rest[0] != " ":
        raise reader.fail(f"unexpected {rest[:20]!r} after the fields")
    return name, tags, fields, rest.strip(" ")


def _split_plain(text: str, line: bytes) -> _Parts:
    """As :func:`_split_escaped`, for a line without backslashes or quotes (the common
    case): ``str.split`` instead of a loop per character, the same results."""
    head, space, rest = text.partition(" ")
    if not space:
        raise InfluxError("no space between the measurement (and tags) and the fields", line)
    name, *tag_parts = head.split(",")
    if not name:
        raise InfluxError("empty measurement", line)
    tags: list[tuple[str, str]] = []
    for part in tag_parts:
        key, equals, value = part.partition("=")
        if not equals:
            raise InfluxError(f"tag {key!r} has no '=value'", line)
        if "=" in value:
            raise InfluxError(f"tag {key!r}: an unescaped '=' in its value", line)
        if not key or not value:
            raise InfluxError("empty tag key or value", line)
        if any(key == seen for seen, _ in tags):
            raise InfluxError(f"tag {key!r} given twice", line)
        tags.append((key, value))
    field_text, _, stamp = rest.partition(" ")
    fields: dict[str, FieldValue] = {}
    reader = _Reader(text, line)
    for part in field_text.split(","):
        key, equals, value = part.partition("=")
        if not equals:
            raise InfluxError(f"field {key!r} has no '=value'", line)
        if not key:
            raise InfluxError("empty field key", line)
        if not value:
            raise InfluxError(f"field {key!r} has no value", line)
        fields[key] = _field_value(value, reader, key)
    return name, tags, fields, stamp.strip(" ")


def parse_line(line: bytes, precision: Precision = "ns") -> Point:
    """Parse one line (a trailing ``\\r\\n`` or ``\\n`` is ignored).

    Args:
        line: One line of line protocol (not a comment: see :func:`is_comment`).
        precision: The unit of the timestamp.

    Returns:
        The point: ``time`` in seconds since the epoch, or None when the line had none.

    Raises:
        InfluxError: The line is not UTF-8, or a part is missing or malformed; the message
            says which.
    """
    try:
        text = line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError:
        raise InfluxError("line is not UTF-8", line) from None
    if "\\" in text or '"' in text:
        name, tags, fields, rest = _split_escaped(_Reader(text, line))
    else:
        name, tags, fields, rest = _split_plain(text, line)
    stamp: float | None = None
    if rest:
        if not _INTEGER.fullmatch(rest):
            raise InfluxError(f"timestamp {rest[:30]!r} is not an integer", line)
        number = int(rest)
        if not _INT64[0] <= number <= _INT64[1]:
            raise InfluxError(f"timestamp {rest} is out of the 64-bit range", line)
        stamp = number / PRECISIONS[precision]
    return Point(name, fields, tags_of(tags), stamp)


def _escape(text: str, special: str) -> str:
    out = text.replace("\\", "\\\\")
    for char in special:
        out = out.replace(char, "\\" + char)
    return out


def _format_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}u" if value > _INT64[1] else f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_point(point: Point, precision: Precision = "ns") -> bytes:
    """Write ``point`` as one line of line protocol (no newline).

    The timestamp is rounded to ``precision``; a float field is written with ``repr`` so
    it reads back equal.
    """
    head = _escape(point.name, _MEASUREMENT_SPECIAL)
    tags = "".join(f",{_escape(k, _KEY_SPECIAL)}={_escape(v, _KEY_SPECIAL)}" for k, v in point.tags)
    fields = ",".join(
        f"{_escape(k, _KEY_SPECIAL)}={_format_value(v)}" for k, v in point.fields.items()
    )
    line = f"{head}{tags} {fields}"
    if point.time is not None:
        line += f" {round(point.time * PRECISIONS[precision])}"
    return line.encode("utf-8")
