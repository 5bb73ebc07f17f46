"""A small tmpfs mounted for one test: a disk that fills up, or one that is read-only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (``size=2m``, ``ro``) on ``path``; unmount it at the end.

    Skips the test, saying why, where mounting is not permitted (not root, no
    CAP_SYS_ADMIN, a container without it).
    """
    path.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("there is no mount command on this machine")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10, check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the disk is full; returns it (delete it to free)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass  # ENOSPC: the disk is full
    # The last page may have taken part of a chunk; small writes fill what is left.
    with filler.open("ab", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError:
            pass
    return filler
