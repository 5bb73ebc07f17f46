"""Graphite's plaintext protocol: one line into a :class:`~app.telemetry.points.Point`, no I/O.

Theory of operation: carbon's line receiver reads ``path value timestamp``, fields split
at whitespace; a tagged series writes its tags after the path, ``path;tag=value;tag=value``
(Graphite's tag support). :func:`parse_line` returns a point whose one field is ``value``,
or raises :class:`GraphiteError`; it never raises anything else. :func:`format_point`
writes a point back, so a valid document round-trips.

As carbon: the value and the timestamp are numbers (the timestamp in seconds, a fraction
allowed; ``-1`` means "when it arrived"); a value that is not finite (``nan``, ``inf``) is
refused. Unlike carbon, a line of two fields (no timestamp) is taken at its arrival time,
as ``echo "a.b 1" | nc`` users expect. Tag names cannot hold ``;!^=`` and tag values
cannot be empty, hold ``;`` or start with ``~`` (Graphite's rules); tags are sorted, as
Graphite stores them.
"""

from __future__ import annotations

import math
import re

from app.errors import LineError
from app.telemetry.points import Point, tags_of

__all__ = ["GraphiteError", "format_point", "parse_line"]

# Python's float() also takes "nan", "inf", "1_0"; carbon's float() does too, but then
# drops non-finite values, and the wire has no business sending underscores.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BAD_TAG_NAME = re.compile(r"[;!^=\s]")
_BAD_PATH = re.compile(r"[;\s]")


class GraphiteError(LineError):
    """A line that is not Graphite plaintext."""


def _number(text: str, what: str, line: bytes) -> float:
    if not _NUMBER.fullmatch(text):
        raise GraphiteError(f"{what} {text[:30]!r} is not a number", line)
    number = float(text)
    if not math.isfinite(number):
        raise GraphiteError(f"{what} {text[:30]!r} is out of range", line)
    return number


def _series(text: str, line: bytes) -> tuple[str, list[tuple[str, str]]]:
    path, *parts = text.split(";")
    if not path:
        raise GraphiteError("empty metric path", line)
    tags: list[tuple[str, str]] = []
    for part in parts:
        name, equals, value = part.partition("=")
        if not equals or not name or _BAD_TAG_NAME.search(name):
            raise GraphiteError(f"tag {part[:30]!r} is not name=value", line)
        if not value or value.startswith("~"):
            raise GraphiteError(f"tag {name!r}: empty value or one that starts with '~'", line)
        if any(name == seen for seen, _ in tags):
            raise GraphiteError(f"tag {name!r} given twice", line)
        tags.append((name, value))
    return path, tags


def parse_line(line: bytes) -> Point:
    """Parse one ``path[;tag=value...] value [timestamp]`` line.

    Returns:
        The point, its field ``value``; ``time`` None for no timestamp or ``-1``.

    Raises:
        GraphiteError: Not UTF-8, a missing or extra field, a bad number or tag.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphiteError("line is not UTF-8", line) from None
    parts = text.split()
    if len(parts) not in (2, 3):
        raise GraphiteError(f"expected 'path value timestamp', got {len(parts)} fields", line)
    name, tags = _series(parts[0], line)
    value = _number(parts[1], "value", line)
    stamp: float | None = None
    if len(parts) == 3 and parts[2] != "-1":
        stamp = _number(parts[2], "timestamp", line)
    return Point(name, {"value": value}, tags_of(tags), stamp)


def format_point(point: Point) -> bytes:
    """Write ``point`` (its ``value`` field) as one plaintext line, no newline.

    Raises:
        ValueError: The point has no float ``value`` or its path or tags cannot be written.
    """
    value = point.fields.get("value")
    if not isinstance(value, float) or _BAD_PATH.search(point.name) or not point.name:
        raise ValueError("a Graphite point is a path without ';' or spaces and a float value")
    tags = "".join(f";{name}={tag}" for name, tag in point.tags)
    stamp = "-1" if point.time is None else repr(point.time)
    return f"{point.name}{tags} {value!r} {stamp}".encode()
