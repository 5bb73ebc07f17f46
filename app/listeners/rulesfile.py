"""Rules files: a respond listener's rules read from a JSON or TOML file.

A respond listener may take its rules from ``rules_file`` instead of the ``rules`` of its
JSON body (a URL cannot carry them). The file is read once, when the listener's spec is
parsed (:func:`~app.listeners.parse.parse_listener`), so a restart or a saved listener
keeps the rules it was started with, and an unreadable or malformed file is refused before
anything binds.

Error handling: every failure is a :class:`~app.errors.SpecError` for the field
``rules_file``, naming the file; what the rules themselves say is checked afterwards, as for
rules given in the body (:func:`~app.listeners.speccheck.check_rules`).

Resource handling: at most :data:`MAX_RULES_FILE` bytes (and one more, to see that there is
more) are read, so a wrong path (a log file, ``/dev/zero``) cannot eat memory.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from app.errors import SpecError

__all__ = ["MAX_RULES_FILE", "load_rules_file"]

# Rules files are small; this stops a wrong path (a log file, /dev/zero) from eating memory.
MAX_RULES_FILE = 1024 * 1024


def load_rules_file(path: Path) -> dict[str, Any]:
    """Read a rules file: JSON or TOML (by extension; ``.toml`` is TOML, anything else JSON).

    The file holds either a list of rules (JSON only) or an object/table with ``rules`` and
    optionally ``default_reply`` and ``encoding``. In TOML::

        default_reply = "unknown command\\n"

        [[rules]]
        match = "exact"
        pattern = "PING"
        reply = "PONG {counter}\\n"

        [[rules]]
        match = "regex"
        pattern = '^GET (?P<key>\\w+)'
        reply = "VALUE {key} {unix}\\n"

    Returns:
        ``{"rules": [...], "default_reply": ..., "encoding": ...}`` with only the keys the
        file gives.

    Raises:
        SpecError: The file cannot be read or parsed, or has other keys (field
            ``rules_file``).
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RULES_FILE + 1)
    except OSError as exc:
        raise SpecError(
            f"cannot read rules file {path}: {exc.strerror or exc}", "rules_file"
        ) from None
    if len(raw) > MAX_RULES_FILE:
        raise SpecError(f"rules file {path} is larger than {MAX_RULES_FILE} bytes", "rules_file")
    try:
        text = raw.decode("utf-8")
        doc: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"rules file {path}: {exc}", "rules_file") from None
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, dict):
        raise SpecError(f"rules file {path}: expected a list of rules or an object", "rules_file")
    unknown = set(doc) - {"rules", "default_reply", "encoding"}
    if unknown:
        raise SpecError(
            f"rules file {path}: unknown key {sorted(unknown)[0]!r}; "
            "expected rules, default_reply, encoding",
            "rules_file",
        )
    return doc
