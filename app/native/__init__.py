"""Compiled fast paths, and the switch that turns them off.

Theory of operation: ``_fast`` is a small C extension compiled at install time
(:mod:`app.native.build`). :data:`FAST` is that module, or ``None`` when it was not built
or ``SOCKETLAB_NO_NATIVE=1`` is set; every caller keeps its pure-Python code for that case,
and ``make test`` runs the tests of those paths once more with the fallback forced.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FAST: ModuleType | None = None
if os.environ.get("SOCKETLAB_NO_NATIVE") != "1":
    try:
        FAST = importlib.import_module("app.native._fast")
    except ImportError:  # not built: no compiler at install time
        FAST = None
