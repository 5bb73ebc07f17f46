"""What ``socketlab fire`` loads at its start: not the web stack.

Quart, Hypercorn and the web schemas cost most of a second of CPU to import; a client run
from the command line serves no pages, and that second counts in its CPU per round trip
(bench section d measures the whole process). The command line imports them only for the
commands that need them (``serve``, ``--via`` and the peer URLs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.clierrors import check_lab_url
from app.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
WEB = ("quart", "hypercorn", "quart_schema", "app.web", "app.peers")


def test_the_command_line_starts_without_the_web_stack() -> None:
    code = f"import json, sys, app.cli; print(json.dumps([m for m in {WEB!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    )
    assert json.loads(out.stdout) == []


def test_a_lab_url_is_still_checked_as_before() -> None:
    # check_lab_url imports the peer parser when it is called.
    check_lab_url("http://127.0.0.1:8000", "--via")
    with pytest.raises(SpecError, match="--via"):
        check_lab_url("ftp://nowhere", "--via")
