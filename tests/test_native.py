"""The compiled fast paths are built by the install, and one variable turns them off.

``make test`` runs the tests of every fast path twice: with the compiled module, and with
``SOCKETLAB_NO_NATIVE=1`` over its pure-Python twin. Built means built: a ``make test``
whose install could not compile them fails here instead of testing the fallback twice.
"""

from __future__ import annotations

import os
import subprocess
import sys

from app.native import FAST

FORCED_OFF = os.environ.get("SOCKETLAB_NO_NATIVE") == "1"


def test_the_fast_paths_are_compiled_unless_turned_off() -> None:
    assert (FAST is None) == FORCED_OFF


def test_socketlab_no_native_turns_them_off() -> None:
    code = "from app.native import FAST; print(FAST is None)"
    env = {**os.environ, "SOCKETLAB_NO_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr
