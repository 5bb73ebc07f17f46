"""The dashboard's ES modules inlined into one classic script, for pages that must work offline.

Theory of operation: a page saved to disk (the HTML report of a run) cannot load
``/static/js/*.js``, and a browser does not import modules from inline scripts. So the
modules a page needs are joined into one script: each module becomes a function that runs
once and returns its exports, and each ``import { a, b as c } from "./m.js"`` becomes
``const { a, b: c } = modules["m.js"]``. The modules are emitted so that a module comes
after every module it imports. The page then runs the very code the dashboard runs (the
same formatters, the same summary rows, the same charts) instead of a copy of it.

Only the module forms the dashboard uses are understood: named imports from relative
paths, and ``export`` in front of ``function``, ``async function``, ``class``, ``const`` and
``let``. Anything else raises :class:`BundleError`, so a module written another way breaks
the report's test instead of the report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./([\w.-]+\.js)";?[ \t]*$', re.M)
_BARE_IMPORT = re.compile(r'^import\s*"\./([\w.-]+\.js)";?[ \t]*$', re.M)
_EXPORT = re.compile(r"^export\s+((?:async\s+)?function\*?|class|const|let)\s+([\w$]+)", re.M)
_ANY_EXPORT_OR_IMPORT = re.compile(r"^(export|import)\b", re.M)


class BundleError(ValueError):
    """A module uses an import or export form the bundler does not understand."""


def _imports(source: str) -> list[tuple[str, str]]:
    """``(names, module)`` of each named import of ``source``."""
    return [(m.group(1), m.group(2)) for m in _IMPORT.finditer(source)]


def _wrap(name: str, source: str) -> str:
    """``source`` as a function assigned to ``modules[name]`` that returns its exports."""
    exports = [m.group(2) for m in _EXPORT.finditer(source)]

    def as_const(match: re.Match[str]) -> str:
        names = ", ".join(
            part.strip().replace(" as ", ": ") for part in match.group(1).split(",") if part.strip()
        )
        return f"const {{ {names} }} = modules[{json.dumps(match.group(2))}];"

    body = _IMPORT.sub(as_const, source)
    body = _BARE_IMPORT.sub("", body)
    body = _EXPORT.sub(lambda m: f"{m.group(1)} {m.group(2)}", body)
    leftover = _ANY_EXPORT_OR_IMPORT.search(body)
    if leftover is not None:
        line = body[leftover.start() :].splitlines()[0]
        raise BundleError(f"{name}: cannot inline {line!r}")
    head = f"modules[{json.dumps(name)}] = (() => {{\n"
    return f"{head}{body}\nreturn {{ {', '.join(exports)} }};\n}})();"


def bundle(js_dir: Path, entry: str) -> str:
    """One classic script that runs ``entry`` (a file of ``js_dir``) and what it imports.

    Raises:
        BundleError: A module uses an import or export form not understood here.
        OSError: A module cannot be read.
    """
    ordered: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise BundleError(f"import cycle: {' -> '.join((*path, name))}")
        if name in seen:
            return
        source = (js_dir / name).read_text(encoding="utf-8")
        for _, dependency in _imports(source):
            visit(dependency, (*path, name))
        seen.add(name)
        ordered.append((name, source))

    visit(entry, ())
    parts = [_wrap(name, source) for name, source in ordered]
    return "(() => {\n'use strict';\nconst modules = {};\n" + "\n".join(parts) + "\n})();\n"
