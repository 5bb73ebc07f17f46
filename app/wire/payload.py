"""Payload encodings (hex, escaped text) and payload generators.

Theory of operation: everything here is a pure function from user text to bytes or back,
with no state and no I/O. Parsing is a single left-to-right scan that either returns the
whole result or raises :class:`PayloadError` naming the offending character by its 0-based
offset in the input, so the API and the CLI can point at it.

Two text forms are accepted:

* **hex** (:func:`parse_hex`): pairs of hex digits. Whitespace, ``:``, ``,`` and ``-``
  separate tokens and are otherwise ignored; a token may start with ``0x``/``0X``. Each
  token must hold an even number of digits, so ``"a b"`` is an error rather than a
  surprising ``b"\\xab"``. ``"de ad be ef"``, ``"DE:AD:BE:EF"``, ``"0xde 0xad"`` and
  ``"0xdeadbeef"`` all parse.
* **escaped text** (:func:`parse_escaped`): characters are UTF-8 encoded, except the
  escapes ``\\r \\n \\t \\\\ \\" \\' \\0 \\xNN``. ``\\xNN`` is one raw byte (``\\xc3`` is
  the byte 0xc3, not U+00C3). ``\\0`` followed by a digit is refused because C and Python
  would read it as an octal escape; write ``\\x00`` instead.

:func:`to_hex` and :func:`to_text` go the other way and are exact inverses of the parsers:
``parse_hex(to_hex(b)) == b`` and ``parse_escaped(to_text(b)) == b`` for any bytes ``b``.

:func:`make_payload` builds a message body of a given size from one of :data:`KINDS`.
"""

import os
import random

__all__ = [
    "KINDS",
    "MAX_PAYLOAD_SIZE",
    "PayloadError",
    "make_payload",
    "parse_escaped",
    "parse_hex",
    "to_hex",
    "to_text",
]

KINDS = ("random", "zeros", "text", "hex")
"""The payload kinds :func:`make_payload` knows."""

# Payloads are built in memory from user input; this keeps one request from asking for
# gigabytes. It is far above the largest UDP datagram (65507 bytes) and above any sensible
# TCP test message.
MAX_PAYLOAD_SIZE = 64 * 1024 * 1024

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEX_SEPARATORS = frozenset(":,-")
_SIMPLE_ESCAPES = {
    "r": 0x0D,
    "n": 0x0A,
    "t": 0x09,
    "\\": 0x5C,
    '"': 0x22,
    "'": 0x27,
    "0": 0x00,
}


class PayloadError(ValueError):
    """A payload spec or its text does not parse.

    Args:
        message: What is wrong, in words a user understands.
        field: The input field that caused it (``"kind"``, ``"size"`` or ``"text"``).
        position: 0-based offset of the offending character in the parsed text, if any.
    """

    def __init__(self, message: str, field: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.position = position


def _is_separator(char: str) -> bool:
    return char.isspace() or char in _HEX_SEPARATORS


def parse_hex(text: str) -> bytes:
    """Parse hex digits written in any of the usual ways.

    Args:
        text: Hex text, e.g. ``"de ad be ef"``, ``"DE:AD:BE:EF"``, ``"0xde,0xad"``.

    Returns:
        The bytes; empty for text that holds only separators.

    Raises:
        PayloadError: A non-hex character, or a token with an odd number of digits. The
            message and ``position`` give the offset of the offending character.
    """
    digits: list[str] = []
    i = 0
    end = len(text)
    while i < end:
        if _is_separator(text[i]):
            i += 1
            continue
        # A token: an optional 0x prefix, then hex digits up to the next separator.
        start = i
        if text.startswith(("0x", "0X"), i):
            i += 2
        first_digit = i
        while i < end and not _is_separator(text[i]):
            char = text[i]
            if char not in _HEX_DIGITS:
                raise PayloadError(
                    f"non-hex character {char!r} at offset {i}", field="text", position=i
                )
            i += 1
        count = i - first_digit
        if count % 2:
            raise PayloadError(
                f"odd number of hex digits ({count}) in {text[start:i]!r} at offset {start}",
                field="text",
                position=start,
            )
        digits.append(text[first_digit:i])
    return bytes.fromhex("".join(digits))


def parse_escaped(text: str) -> bytes:
    r"""Parse text with backslash escapes into bytes.

    Args:
        text: Text such as ``"GET / HTTP/1.0\r\n\r\n"`` (with literal backslashes).

    Returns:
        The UTF-8 encoding of the text with each escape replaced by its byte.

    Raises:
        PayloadError: An unknown or truncated escape, ``\0`` followed by a digit, or a
            character that has no UTF-8 encoding (a lone surrogate). The message and
            ``position`` give its offset.
    """
    out = bytearray()
    i = 0
    end = len(text)
    while i < end:
        slash = text.find("\\", i)
        chunk_end = end if slash < 0 else slash
        if chunk_end > i:
            out += _encode_utf8(text, i, chunk_end)
        if slash < 0:
            break
        i = slash + 1
        if i == end:
            raise PayloadError(
                f"backslash at offset {slash} ends the text; write \\\\ for a backslash",
                field="text",
                position=slash,
            )
        code = text[i]
        if code == "x":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not (pair[0] in _HEX_DIGITS and pair[1] in _HEX_DIGITS):
                raise PayloadError(
                    f"\\x at offset {slash} needs two hex digits", field="text", position=slash
                )
            out.append(int(pair, 16))
            i += 3
            continue
        value = _SIMPLE_ESCAPES.get(code)
        if value is None:
            raise PayloadError(
                f"unknown escape \\{code} at offset {slash}", field="text", position=slash
            )
        if code == "0" and i + 1 < end and text[i + 1] in "0123456789":
            raise PayloadError(
                f"\\0 followed by a digit at offset {slash} is ambiguous (octal?); "
                "write \\x00 for a zero byte",
                field="text",
                position=slash,
            )
        out.append(value)
        i += 1
    return bytes(out)


def _encode_utf8(text: str, start: int, stop: int) -> bytes:
    try:
        return text[start:stop].encode("utf-8")
    except UnicodeEncodeError as exc:
        position = start + exc.start
        raise PayloadError(
            f"character {text[position]!r} at offset {position} cannot be encoded as UTF-8",
            field="text",
            position=position,
        ) from None


def to_hex(data: bytes) -> str:
    """Format bytes as spaced lowercase hex, e.g. ``"de ad be ef"``."""
    return data.hex(" ")


def to_text(data: bytes) -> str:
    r"""Format bytes as escaped text, the inverse of :func:`parse_escaped`.

    Printable ASCII stays as it is (a backslash doubles), CR, LF and TAB become ``\r``,
    ``\n``, ``\t``, and every other byte becomes ``\xNN``.
    """
    return "".join(_TEXT_OF_BYTE[byte] for byte in data)


def _text_of_byte(byte: int) -> str:
    if byte == 0x5C:
        return "\\\\"
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}.get(byte, f"\\x{byte:02x}")


_TEXT_OF_BYTE = tuple(_text_of_byte(byte) for byte in range(256))


def make_payload(
    kind: str, size: int | None = None, text: str | None = None, seed: int | None = None
) -> bytes:
    """Build a message payload.

    Args:
        kind: One of :data:`KINDS`:
            ``"random"``: random bytes, from ``os.urandom`` or, given ``seed``, from a
            seeded generator (the same seed gives the same bytes);
            ``"zeros"``: zero bytes;
            ``"text"``: ``text`` parsed by :func:`parse_escaped`;
            ``"hex"``: ``text`` parsed by :func:`parse_hex`.
        size: Length in bytes. Required for ``"random"`` and ``"zeros"``. For ``"text"``
            and ``"hex"`` the parsed bytes repeat to fill ``size`` (the last copy cut
            short); ``None`` gives them exactly once.
        text: The text for ``"text"`` and ``"hex"``; ignored by the other kinds.
        seed: Seed for ``"random"``; ignored by the other kinds.

    Returns:
        The payload.

    Raises:
        PayloadError: Unknown kind (``field="kind"``), a missing, negative or too large
            size (``field="size"``), missing text, text that does not parse, or empty text
            that cannot fill a non-zero size (``field="text"``).
    """
    if kind not in KINDS:
        raise PayloadError(
            f"unknown payload kind {kind!r}; expected one of {', '.join(KINDS)}", field="kind"
        )
    if size is not None and not 0 <= size <= MAX_PAYLOAD_SIZE:
        raise PayloadError(
            f"payload size must be between 0 and {MAX_PAYLOAD_SIZE}, not {size}", field="size"
        )
    if kind in ("random", "zeros"):
        if size is None:
            raise PayloadError(f"payload kind {kind!r} needs a size", field="size")
        if kind == "zeros":
            return bytes(size)
        if seed is None:
            return os.urandom(size)
        return random.Random(seed).randbytes(size)
    if text is None:
        raise PayloadError(f"payload kind {kind!r} needs text", field="text")
    unit = parse_hex(text) if kind == "hex" else parse_escaped(text)
    if size is None:
        return unit
    if not unit:
        if size:
            raise PayloadError(f"empty {kind} cannot fill {size} bytes", field="text")
        return b""
    return (unit * (size // len(unit) + 1))[:size]
