"""Fixtures: an in-process lab on port 0 with a real SQLite file in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import settings

from app.lab import Lab
from app.web.server import serve_web
from tests.helpers import TOKEN, lab_settings

# Hypothesis' default deadline (200 ms per example) is a timing assertion: on a loaded
# machine a slow example fails a property that holds. Properties are judged by what they
# compute; the time they take is not theirs to assert.
settings.register_profile("socketlab", deadline=None)
settings.load_profile("socketlab")


@asynccontextmanager
async def running_lab(
    nursery: trio.Nursery, data_dir: Path, **overrides: Any
) -> AsyncIterator[Lab]:
    """A lab served in ``nursery`` (settings from :func:`lab_settings`), stopped on exit."""
    lab = Lab(lab_settings(data_dir, **overrides), web=serve_web)
    await nursery.start(lab.serve)
    try:
        yield lab
    finally:
        lab.request_shutdown()
        with trio.fail_after(10):
            await lab.stopped.wait()


@pytest.fixture
async def lab(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Lab]:
    """A running lab: TCP and UDP echo listeners, the web server, all on free ports."""
    async with running_lab(nursery, tmp_path / "data") as lab:
        yield lab


@pytest.fixture
async def edge(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Lab]:
    """A lab that another (``hub_lab``) has as its peer."""
    async with running_lab(nursery, tmp_path / "edge") as lab:
        yield lab


@pytest.fixture
async def hub_lab(nursery: trio.Nursery, tmp_path: Path, edge: Lab) -> AsyncIterator[Lab]:
    """A lab with the edge as its peer, told the edge's token (it sends none unless told)."""
    peers = (f"http://127.0.0.1:{edge.web_port}",)
    async with running_lab(nursery, tmp_path / "hub", peers=peers, peer_token=TOKEN) as lab:
        yield lab


def listener_port(lab: Lab, protocol: str) -> int:
    return next(item.port for item in lab.listeners if item.spec.protocol == protocol)
