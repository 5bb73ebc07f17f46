"""The compiled fast paths are built by the install, and one variable turns them off.

``make test`` runs the tests of every fast path twice: with the compiled modules, and with
``SOCKETLAB_NO_NATIVE=1`` over their pure-Python twins. Built means built: a ``make test``
whose install could not compile them fails here instead of testing the fallback twice.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.native import OFF, SOURCES, native


@pytest.mark.parametrize("source", SOURCES)
def test_every_fast_path_is_compiled_unless_turned_off(source: str) -> None:
    assert (native(source.removeprefix("_")) is None) == OFF


def test_socketlab_no_native_turns_them_off() -> None:
    code = "from app.native import native; print(native('probe') is None)"
    env = {**os.environ, "SOCKETLAB_NO_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


def test_version_says_which_fast_paths_run_compiled() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True, check=True
    ).stdout
    if OFF:
        assert "pure Python (SOCKETLAB_NO_NATIVE=1)" in out
    else:
        names = [s.removeprefix("_") for s in SOURCES if s != "_probe"]
        assert out.startswith("socketlab ") and "not built" not in out
        assert all(name in out for name in names), out
