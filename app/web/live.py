"""``/ws``: the live feed of the dashboard.

The protocol, server to browser (JSON text frames):

- ``{"type": "full", "t", "total", "listeners", "runs", "interval"}`` first, and again
  whenever this browser fell behind and missed ticks;
- ``{"type": "tick", ...same fields..., "point"?}`` every snapshot interval, shared by every
  subscriber (``point`` is the lab's new per-second sample, see :mod:`app.timeseries`; each
  live run carries its latest interval as ``point`` too);
- ``{"type": "conns", "seq", "offset", "limit", "matched", "total", "ids"?, "cols"?,
  "rows"?}``: this browser's page of connections, only when it changed (see
  :mod:`app.connview`): ``ids`` is the page's order, ``rows`` the rows it lacks, as arrays
  in ``cols`` order;
- ``{"type": "error", "error", "field"}`` for a message it could not accept.

Browser to server: ``{"type": "view", "offset", "limit", "sort", "desc", "listener", "run",
"protocol", "q", "seq"}``, answered at once with a ``conns`` message carrying that ``seq``.

Resource handling: one writer task is the only one that awaits the socket. Ticks reach it
through the hub's bounded, dropping buffer; view changes through a small local channel
that never blocks the reader. A browser that falls behind loses ticks (the hub counts
them) and catches up with a full state; computing its page costs only its own writer.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, current_app, websocket

from app.connview import ConnWindow, parse_view
from app.errors import SpecError

if TYPE_CHECKING:
    from app.lab import Lab

live = Blueprint("live", __name__)

# Ticks waiting for the writer beyond the hub's own buffer: one, so that back-pressure from a
# slow socket lands in the hub, which drops and asks for a resync.
_INBOX = 1
# View changes and errors waiting: a burst of keystrokes coalesces into the latest view.
_NOTES = 8


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"))


@live.websocket("/ws")
async def feed() -> None:
    lab: Lab = current_app.config["lab"]
    await websocket.accept()
    window = ConnWindow()
    inbox_in, inbox = trio.open_memory_channel[tuple[bool, str]](_INBOX)
    notes_in, notes = trio.open_memory_channel[str](_NOTES)
    async with lab.hub.subscribe() as sub, trio.open_nursery() as nursery:
        epoch = -1

        async def send_page() -> None:
            nonlocal epoch
            registry = lab.registry
            if (
                lab.conn_epoch == epoch
                and not window.view_changed
                and not window.stale(registry.get, len(registry))
            ):
                return
            epoch = lab.conn_epoch
            message = window.update(
                lab.registry, len(lab.registry), time.time() - trio.current_time()
            )
            if message is not None:
                await websocket.send(_dumps(message))

        async def read_views() -> None:
            while True:
                data = await websocket.receive()
                try:
                    window.set_view(parse_view(data))
                    note = ""
                except SpecError as exc:
                    note = _dumps({"type": "error", **exc.to_dict()})
                try:
                    notes_in.send_nowait(note)
                except trio.WouldBlock:
                    pass  # the writer is already due to send the latest view

        async def forward_ticks() -> None:
            async for message in sub.receive_channel:
                await inbox_in.send((True, message))

        async def forward_notes() -> None:
            # Notes join the ticks so that the writer has one channel to wait on.
            async for note in notes:
                await inbox_in.send((False, note))

        async def end_at_shutdown() -> None:
            await lab.shutdown.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(end_at_shutdown)
        nursery.start_soon(read_views)
        nursery.start_soon(forward_ticks)
        nursery.start_soon(forward_notes)
        await websocket.send(_dumps(lab.full_state()))
        await send_page()
        async for is_tick, message in inbox:
            if is_tick:
                if sub.resync:
                    sub.resync = False
                    sub.drain_nowait()
                    window.reset()
                    message = _dumps(lab.full_state())
                await websocket.send(message)
            elif message:
                await websocket.send(message)
            await send_page()
