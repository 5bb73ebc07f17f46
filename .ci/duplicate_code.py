"""Fail when pylint's duplicate-code check finds more repeated blocks in ``app`` than allowed.

Theory of operation: pylint's similarity checker (R0801, its default minimum of 4 lines,
comments, docstrings and imports ignored) reports each block of lines that appears in more
than one module. The budget is a ceiling that only goes down: a change may remove repeated
blocks, never add one. Every block found is printed, so the output says where to look.
Exit status 0 within the budget, 1 over it (or when pylint itself fails).

Usage: ``python .ci/duplicate_code.py [package]`` from the repository root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# 18 when the budget was introduced; the core redesign halves it.
MAX_REPEATED_BLOCKS = 9
# pylint's exit status is a bit field: 1 fatal, 2 error, 4 warning, 8 refactor, 16
# convention, 32 usage error. R0801 is a refactor message (8); 1 and 32 mean no verdict.
_PYLINT_FAILED = 1 | 32


def main(package: str = "app") -> int:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pylint",
            "--disable=all",
            "--enable=duplicate-code",
            "--score=no",
            package,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode & _PYLINT_FAILED:
        print(result.stdout, result.stderr, sep="\n")
        print(f"pylint failed (exit status {result.returncode})")
        return 1
    print(result.stdout, end="")
    found = result.stdout.count(": R0801: ")
    verdict = "over" if found > MAX_REPEATED_BLOCKS else "within"
    print(f"{found} repeated block(s) in {package}: {verdict} the budget of {MAX_REPEATED_BLOCKS}")
    return 1 if found > MAX_REPEATED_BLOCKS else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
