"""Helpers for listener tests: a listener manager without the lab, and small socket clients."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from app.listeners.base import Listener
from app.listeners.manager import ListenerManager
from app.listeners.parse import parse_listener
from app.registry import Registry


@asynccontextmanager
async def open_manager() -> AsyncIterator[ListenerManager]:
    """A running :class:`ListenerManager` over a fresh registry; stops every listener after."""
    manager = ListenerManager(Registry())
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        try:
            yield manager
        finally:
            manager.stop_accepting()
            nursery.cancel_scope.cancel()


async def start(manager: ListenerManager, spec: str | dict[str, Any]) -> Listener:
    return await manager.start(parse_listener(spec))


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Read until ``marker`` has arrived (or EOF); returns everything read."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


def udp_client(family: int = socket.AF_INET) -> trio.socket.SocketType:
    return trio.socket.socket(family, socket.SOCK_DGRAM)
