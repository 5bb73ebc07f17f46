"""``/ws``: the live feed of the dashboard.

The protocol, server to browser (JSON text frames):

- ``{"type": "full", "t", "total", "listeners", "runs", "interval"}`` first, and again
  whenever this browser fell behind and missed ticks;
- ``{"type": "tick", ...same fields..., "point"?}`` every snapshot interval, shared by every
  subscriber (``point`` is the lab's new per-second sample, see :mod:`app.timeseries`; each
  live run carries its latest interval as ``point`` too);
- ``{"type": "run.ended", "run_id", "status", "error", "summary"}`` when a run is over and
  stored, as on ``/api/events``: this, not a run missing from a tick, is how a browser learns
  it ended;
- ``{"type": "conns", "seq", "offset", "limit", "matched", "total", "ids"?, "cols"?,
  "rows"?}``: this browser's page of connections, only when it changed (see
  :mod:`app.connview`): ``ids`` is the page's order, ``rows`` the rows it lacks, as arrays
  in ``cols`` order;
- ``{"type": "error", "error", "field"}`` for a message it could not accept.

Browser to server: ``{"type": "view", "offset", "limit", "sort", "desc", "listener", "run",
"protocol", "q", "seq"}``, answered at once with a ``conns`` message carrying that ``seq``.

Resource handling: one writer task is the only one that awaits the socket. Ticks and run ends
reach it through the hub's bounded, dropping buffer (encoded once for all browsers); view
changes wake it through a small local channel that never blocks the reader. A browser that
falls behind loses ticks (the hub counts them) and catches up with a full state; computing
its page costs only its own writer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import trio
from quart import Blueprint, current_app, websocket

from app.connview import ConnRow, ConnWindow, parse_view
from app.errors import SpecError
from app.tcpinfo import refresh_all
from app.web.feed import WS_ENCODER, Feed, dumps, encode_ws

if TYPE_CHECKING:
    from app.registry import Conn
    from app.web.deps import WebDeps

live = Blueprint("live", __name__)

# Items waiting for the writer beyond the hub's own buffer: a tick and a wake-up. Small, so
# that back-pressure from a slow socket lands in the hub, which drops and asks for a resync.
_INBOX = 2
# Error answers to bad view messages kept for the writer; a client sending more is broken.
_MAX_ERRORS = 8
# Bytes per second of connection pages one browser may get at steady state, and the burst
# above it. A page of 500 rows that all change every tick would be ~230 kB/s; past the budget
# the writer skips ticks and the next page carries every change since (the window diffs
# against what was sent), so the feed stays under 200 kB/s with the ticks included. A view
# change is always answered at once.
PAGE_BYTES_PER_S = 120_000
PAGE_BURST_BYTES = 120_000


@live.websocket("/ws")
async def feed() -> None:
    deps: WebDeps = current_app.config["deps"]
    state: Feed = current_app.config["feed"]
    registry = deps.registry
    await websocket.accept()
    window = ConnWindow()
    # (True, tick) from the hub; (False, "") wakes the writer for a new view or an error.
    inbox_in, inbox = trio.open_memory_channel[tuple[bool, str]](_INBOX)
    errors: list[str] = []
    async with (
        deps.hub.subscribe(encoder=WS_ENCODER) as sub,
        trio.open_nursery() as nursery,
    ):
        epoch = -1
        tokens = float(PAGE_BURST_BYTES)
        refilled = trio.current_time()
        # Rows on this page get the kernel's figures once per tick; half a tick's age lets a
        # second browser on the same rows, or the page computed right after, reuse them.
        half_tick = deps.settings.snapshot_interval / 2

        def sample(rows: list[ConnRow], max_age: float) -> bool:
            # The rows are the registry's own (app.registry.Conn), which hold their sockets.
            conns = cast("list[Conn]", rows)
            return refresh_all(conns, trio.current_time(), min_age=max(max_age, half_tick))

        async def send_page(*, tick: bool = False) -> None:
            nonlocal epoch, tokens, refilled
            kernel_changed = tick and window.sample(registry.get, sample)
            if (
                state.conn_epoch == epoch
                and not kernel_changed
                and not window.view_changed
                and not window.stale(registry.get, len(registry))
            ):
                return
            now = trio.current_time()
            tokens = min(PAGE_BURST_BYTES, tokens + (now - refilled) * PAGE_BYTES_PER_S)
            refilled = now
            if tokens <= 0 and not window.view_changed:
                return  # over budget: a later tick sends these changes, coalesced
            epoch = state.conn_epoch
            message = window.update(
                registry, len(registry), time.time() - trio.current_time(), sample
            )
            if message is not None:
                text = dumps(message)
                tokens -= len(text)
                await websocket.send(text)

        async def read_views() -> None:
            while True:
                data = await websocket.receive()
                try:
                    window.set_view(parse_view(data))
                except SpecError as exc:
                    if len(errors) < _MAX_ERRORS:
                        errors.append(dumps({"type": "error", **exc.to_dict()}))
                try:
                    # Straight to the writer: a view change costs one task switch, which
                    # matters when thousands of connections keep the event loop busy.
                    inbox_in.send_nowait((False, ""))
                except trio.WouldBlock:
                    pass  # a tick is waiting: the writer sends the new page right after it

        async def forward_ticks() -> None:
            async for message in sub.receive_channel:
                await inbox_in.send((True, message))

        async def end_at_shutdown() -> None:
            await deps.shutdown.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(end_at_shutdown)
        nursery.start_soon(read_views)
        nursery.start_soon(forward_ticks)
        await websocket.send(encode_ws(state.full()))
        await send_page()
        async for is_tick, message in inbox:
            while errors:
                await websocket.send(errors.pop(0))
            if is_tick:
                if sub.resync:
                    sub.resync = False
                    sub.drain_nowait()
                    window.reset()
                    message = encode_ws(state.full())
                await websocket.send(message)
            await send_page(tick=is_tick)
