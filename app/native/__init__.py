"""Compiled fast paths, and the switch that turns them off.

Theory of operation: each ``app/native/_<name>.c`` is a small C extension compiled at
install time (:mod:`app.native.build`). :func:`native` returns that module, or ``None`` when
it was not built or ``SOCKETLAB_NO_NATIVE=1`` is set; every caller keeps its pure-Python
code for that case, and ``make test`` runs the tests of those paths once more with the
fallback forced.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

OFF = os.environ.get("SOCKETLAB_NO_NATIVE") == "1"
SOURCES = sorted(path.stem for path in Path(__file__).parent.glob("_*.c"))


def native(name: str) -> ModuleType | None:
    """The compiled module ``_<name>``, or ``None`` (not built, or turned off)."""
    if OFF:
        return None
    try:
        return importlib.import_module(f"app.native._{name}")
    except ImportError:  # not built: no compiler at install time
        return None


def describe() -> str:
    """Which fast paths this process runs compiled, in words (``--version``, bench reports)."""
    names = [source.removeprefix("_") for source in SOURCES if source != "_probe"]
    if OFF:
        return "fast paths: pure Python (SOCKETLAB_NO_NATIVE=1)"
    built = [name for name in names if native(name) is not None]
    missing = sorted(set(names) - set(built))
    text = f"fast paths compiled: {', '.join(built) or 'none'}"
    return text + (f"; pure Python: {', '.join(missing)} (not built)" if missing else "")
