"""Fixtures: an in-process lab on port 0 with a real SQLite file in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from app.lab import Lab
from tests.helpers import lab_settings


@pytest.fixture
async def lab(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Lab]:
    """A running lab: TCP and UDP echo listeners, the web server, all on free ports."""
    lab = Lab(lab_settings(tmp_path / "data"))
    await nursery.start(lab.serve)
    try:
        yield lab
    finally:
        lab.request_shutdown()
        with trio.fail_after(10):
            await lab.stopped.wait()


def listener_port(lab: Lab, protocol: str) -> int:
    return next(item.port for item in lab.listeners if item.spec.protocol == protocol)
