"""``/ws``: the live feed of the dashboard.

A new subscriber first gets the full state, then the hub's coalesced diffs. The writer is
the only task that awaits the socket; when it falls behind, the hub drops messages for it
alone and flags it, and it catches up with a fresh full state (see :mod:`app.hub`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, current_app, websocket

if TYPE_CHECKING:
    from app.lab import Lab

live = Blueprint("live", __name__)


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"))


@live.websocket("/ws")
async def feed() -> None:
    lab: Lab = current_app.config["lab"]
    await websocket.accept()
    async with lab.hub.subscribe() as sub, trio.open_nursery() as nursery:

        async def read_until_closed() -> None:
            # The browser only sends pings; reading notices a close and keeps frames moving.
            while True:
                await websocket.receive()

        async def end_at_shutdown() -> None:
            await lab.shutdown.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(end_at_shutdown)
        nursery.start_soon(read_until_closed)
        await websocket.send(_dumps(lab.full_state()))
        async for message in sub.receive_channel:
            if sub.resync:
                sub.resync = False
                sub.drain_nowait()
                message = _dumps(lab.full_state())
            await websocket.send(message)
