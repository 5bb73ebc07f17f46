"""Turns on the event loop: how long a socket pass may run before others get theirs.

Theory of operation: one task serves many sockets in passes (:class:`app.readyloop.ReadyLoop`),
each pass without a checkpoint, so that a saturated listener spends its time on sockets,
not on scheduler rounds. A pass is as long as a turn of every other task. An HTTP request
to the dashboard's API waits for about six turns between its bytes arriving and its answer
leaving (Hypercorn's reader, the application task it starts, Quart's message channel), so
under a saturated echo its latency is six passes. While requests are being answered the
passes are short (:data:`SHORT_PASS` sockets), and otherwise long (:data:`PASS_SIZE`): the
echo pays for the extra checkpoints only while someone waits for an answer.

:data:`WEB` counts the HTTP requests in flight; the web server raises it around each call
into the application (:func:`counting_requests`). WebSockets are not counted: a dashboard
keeps its socket open for hours and sends a snapshot a few times a second, which long
passes delay by a fraction of a millisecond.
"""

from __future__ import annotations

from typing import Any

# Ready sockets per pass while nobody waits: 32 echoes are about 0.3 ms.
PASS_SIZE = 32
# Ready sockets per pass while an HTTP request is in flight: about 0.06 ms.
SHORT_PASS = 8


class Demand:
    """How many requests are waiting for the event loop's turns (one per process)."""

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0

    def pass_size(self) -> int:
        """Sockets a pass may serve now."""
        return SHORT_PASS if self.requests else PASS_SIZE


WEB = Demand()


def counting_requests(app: Any) -> Any:
    """``app`` (an ASGI application) counting its HTTP requests in :data:`WEB`."""

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        WEB.requests += 1
        try:
            await app(scope, receive, send)
        finally:
            WEB.requests -= 1

    return counted
