r"""Linear-time regexes for respond rules: RE2 on raw bytes, without I/O.

Theory of operation: a respond rule's regex runs on every message any client sends, and a
client needs no token. Python's ``re`` backtracks, so a pattern as plain as ``(a+)+$`` costs
time exponential in the length of a hostile line (27 bytes blocked the loop for 6 s, doubling
per byte). RE2 never backtracks: one search costs at most about ``cost * len(message)``
steps, where :attr:`Regex.cost` is the size of the compiled program. So
:func:`compile_regex` refuses what RE2 cannot match in linear time (backreferences,
lookaround, atomic groups, possessive repeats), and programs larger than
:data:`MAX_PROGRAM_SIZE`; a listener also caps the sum of its rules' costs times its longest
message at :data:`MAX_MESSAGE_WORK` (checked in :mod:`app.listeners.speccheck`).

The syntax is RE2's (https://github.com/google/re2/wiki/Syntax): Python's without the
features above, and these differences for patterns written for Python's ``re`` on bytes:

- Matching is byte by byte (RE2's Latin-1 mode), as before: ``\xff`` is the byte 0xff,
  ``.`` any byte but ``\n``, and a non-ASCII character in the pattern stands for its UTF-8
  bytes.
- ``$`` is the very end of the message; Python's ``$`` also matched before a final ``\n``.
  Write ``\n?$`` to allow one, or ``(?m)$`` for the end of any line.
- ``\Z`` is accepted and read as RE2's ``\z`` (both mean the very end).
- Flags are inline: ``(?i)``, ``(?m)``, ``(?s)`` as in Python, and RE2's ``(?U)``
  (ungreedy); there is no ``(?x)``. ``(?i)`` folds ASCII letters only, as before.
- ``\d``, ``\w``, ``\b`` are ASCII, as before; ``\s`` no longer matches ``\v``.
- Named groups may also be written ``(?<name>...)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import re2

__all__ = ["MAX_MESSAGE_WORK", "MAX_PROGRAM_SIZE", "Regex", "RegexError", "RegexMatch"]

# Typical rules compile to 10-50 RE2 instructions; a pattern past this is a mistake or an
# attack on compile time and memory.
MAX_PROGRAM_SIZE = 4096
# Program size times message length, summed over a listener's rules. Measured worst case
# (RE2 falls back from its DFA to the NFA) is about 13 ns a unit, so a message costs at
# most some 200 ms, and realistic rules well under 5 ms on a 64 KiB line. The bound lets a
# listener with the default 64 KiB messages hold some 256 instructions of regexes (five to
# twenty typical rules); a heavier set needs a smaller max_message_size.
MAX_MESSAGE_WORK = 1 << 24
# RE2's memory budget per regex (program and DFA cache; the default is 8 MiB). A program
# within MAX_PROGRAM_SIZE needs well under this, and when the DFA cache fills RE2 falls back
# to its NFA, which the work cap above already prices in; measured no slower.
_MAX_MEMORY = 1 << 20

# Hints for what Python's re has and RE2 refuses on purpose, by the start of RE2's error.
_HINTS = (
    ("invalid perl operator: (?=", "lookahead is not supported"),
    ("invalid perl operator: (?!", "lookahead is not supported"),
    ("invalid perl operator: (?<=", "lookbehind is not supported"),
    ("invalid perl operator: (?<!", "lookbehind is not supported"),
    ("invalid perl operator: (?>", "atomic groups are not supported"),
    ("invalid perl operator: (?(", "conditionals are not supported"),
    ("invalid perl operator: (?#", "comments are not supported"),
    ("invalid perl operator: (?x", "verbose mode (?x) is not supported"),
)
_BAD_REPEAT = "bad repetition operator: "
_BACKREFERENCE = tuple(f"invalid escape sequence: \\{digit}" for digit in "123456789")
# RE2 quotes only "(?P" of "(?P=name)"; a bad "(?P<name>" gets its own message.
_NAMED_BACKREFERENCE = "invalid perl operator: (?P"


class RegexError(ValueError):
    """A pattern RE2 refuses, or one too large to match in bounded time.

    Args:
        message: What is wrong, worded to follow "the pattern is", with a hint when
            Python's ``re`` would have taken the pattern.
    """


class RegexMatch(Protocol):
    """The part of a match that reply templates use."""

    def group(self, group: int, /) -> bytes | None:
        """The bytes group ``group`` matched (0 is the whole match), None if it did not."""


class Regex:
    """A compiled pattern: :meth:`search` runs in time linear in the message.

    Build one with :func:`compile_regex`.

    Attributes:
        source: The pattern as written.
        groups: How many capturing groups the pattern has (0 without captures).
        groupindex: Group number by name.
        cost: RE2 program size: the per-byte cost of a search, in steps.
    """

    __slots__ = ("_compiled", "cost", "groupindex", "groups", "source")

    def __init__(self, source: str, compiled: Any) -> None:
        self.source = source
        self._compiled = compiled
        self.groups: int = compiled.groups
        index: dict[bytes, int] = compiled.groupindex
        # In Latin-1 mode RE2 allows only ASCII word characters in group names.
        self.groupindex = {name.decode("latin-1"): number for name, number in index.items()}
        self.cost: int = compiled.programsize

    def search(self, message: bytes) -> RegexMatch | None:
        """The leftmost match anywhere in ``message``, like :func:`re.search`."""
        found: RegexMatch | None = self._compiled.search(message)
        return found


def _python_z(source: bytes) -> bytes:
    r"""Rewrite ``\Z`` (Python's end of text) to ``\z`` (RE2's).

    Escapes are two characters, so a left-to-right scan pairs each backslash with the
    character it escapes. ``\Q...\E`` (RE2 only) quotes backslashes, so a pattern with it
    is left alone.
    """
    if b"\\Z" not in source or b"\\Q" in source:
        return source
    out = bytearray()
    i = 0
    while i < len(source):
        if source[i : i + 1] == b"\\":
            pair = source[i : i + 2]
            out += b"\\z" if pair == b"\\Z" else pair
            i += 2
        else:
            out += source[i : i + 1]
            i += 1
    return bytes(out)


def _explain(error: Exception) -> str:
    raw = error.args[0] if error.args else ""
    if isinstance(raw, bytes):
        # RE2 quotes the pattern as Latin-1 read back into UTF-8: undo that for the reader.
        text = raw.decode("utf-8", "replace")
        try:
            text = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    else:
        text = str(raw)
    if text.startswith("pattern too large"):
        return f"too complex a regex: it needs more than RE2's {_MAX_MEMORY >> 20} MiB budget"
    hint = next((hint for start, hint in _HINTS if text.startswith(start)), None)
    if hint is None and (text.startswith(_BACKREFERENCE) or text == _NAMED_BACKREFERENCE):
        hint = "backreferences are not supported"
    if hint is None and text.startswith(_BAD_REPEAT) and text.endswith("+"):
        hint = "possessive repeats are not supported"  # a*+, a++, a?+, a{2}+
    if hint is not None:
        text += f" ({hint}: RE2 matches in linear time)"
    return f"not a valid regex: {text}"


def compile_regex(source: str, *, captures: bool = True) -> Regex:
    """Compile ``source`` for matching raw bytes.

    Args:
        source: The pattern, in RE2 syntax (see the module docstring).
        captures: False when no group but the whole match is ever read: RE2 then finds
            matches with its DFA alone, which is much faster on long messages.

    Raises:
        RegexError: RE2 refuses the pattern (the message says why, with a hint for
            Python-only features), or its program is larger than :data:`MAX_PROGRAM_SIZE`.
    """
    try:
        pattern = source.encode("utf-8")
    except UnicodeEncodeError:
        raise RegexError("not valid Unicode text") from None
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.max_mem = _MAX_MEMORY
    options.never_capture = not captures
    try:
        compiled = re2.compile(_python_z(pattern), options)
    except re2.error as exc:
        raise RegexError(_explain(exc)) from None
    regex = Regex(source, compiled)
    if regex.cost > MAX_PROGRAM_SIZE:
        raise RegexError(
            f"too complex a regex: it compiles to {regex.cost} RE2 instructions, "
            f"at most {MAX_PROGRAM_SIZE}"
        )
    return regex
