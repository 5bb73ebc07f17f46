"""JSON documents from untrusted text: strict, and bounded in depth.

Theory of operation: :func:`loads` is ``json.loads`` with three things refused that the
standard library lets through, each of which turned a client's mistake (or an attacker's
body) into a server error instead of a 4xx:

- *depth*: the C decoder recurses once per ``[`` or ``{``, so ``[[[[...`` a few thousand
  levels deep raises ``RecursionError``, which no caller expects from a parser. Here it is
  a ``ValueError``, and so is any document nested deeper than ``max_depth`` (no input the
  lab takes is deeper than a handful of levels, and a deep document costs every later
  walk over it: validation, storage, encoding);
- *constants*: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259) and would
  reach float fields as values no cap compares sensibly;
- *lone surrogates*: ``"\\ud800"`` decodes to a ``str`` that cannot be encoded as UTF-8,
  so storing, logging or answering it fails later, far from the input.

The checks cost nothing for ordinary documents: depth is walked only when the text holds
more brackets than ``max_depth`` (a count in C), and surrogates are looked for only when the
text holds a ``\\uD8..``-``\\uDF..`` escape.

Everything wrong is a ``ValueError`` (``json.JSONDecodeError`` is one), so callers keep the
one ``except ValueError`` they have for malformed JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any body, view message or file the lab reads (a run spec with a payload and
# rules is about four levels), shallow enough that walking a document never recurses far.
MAX_DEPTH = 32
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(doc: Any, max_depth: int) -> bool:
    """Whether ``doc`` has arrays or objects nested deeper than ``max_depth`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``text``.

    Args:
        text: The document (bytes are UTF-8).
        max_depth: The most arrays and objects nested in one another.

    Raises:
        ValueError: ``text`` is not JSON (or, as bytes, not UTF-8), is nested deeper than
            ``max_depth``, or holds ``NaN``/``Infinity`` or a string with a lone surrogate.
    """
    if isinstance(text, bytes):
        # JSON between systems is UTF-8 (RFC 8259 section 8.1); a byte that is not is
        # refused (UnicodeDecodeError is a ValueError), as is a byte order mark.
        text = text.decode("utf-8")
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    if (
        isinstance(doc, dict | list)
        and text.count("[") + text.count("{") > max_depth  # else it cannot be deeper
        and _depth_exceeds(doc, max_depth)
    ):
        raise ValueError(f"nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            # Pairs were joined into one character by the decoder; what is left is lone.
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate (not UTF-8)") from None
    return doc
