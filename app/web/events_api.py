"""``GET /api/events``: the lab's events as an NDJSON stream, for scripts (``curl -N``).

The stream's transport encodes every event once, as one JSON line, for all its readers
(:data:`NDJSON_ENCODER`); each reader's filter (``types``, ``run``) is checked before an
event is queued for it, so events it skips never fill its buffer. A reader that falls
behind loses events and is told how many (a ``dropped`` line): publishing never awaits it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, current_app
from quart_schema import document_querystring

from app.events import (
    EVENT_KINDS,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    ListenerChanged,
    RunEnded,
    RunInterval,
)
from app.hub import Encoder
from app.web.openapi import document_text
from app.web.query import check_query, query_args
from app.web.schemas import EventsQuery, document_errors

if TYPE_CHECKING:
    from app.web.deps import WebDeps

events_api = Blueprint("events_api", __name__, url_prefix="/api")
events_api.before_request(check_query)

# With no event for this long, the stream sends a heartbeat line: it keeps proxies from
# closing an idle stream, and writing is how a reader that went away is noticed.
HEARTBEAT = 1.0
# Lines buffered per reader before it drops: a reader that far behind gets a ``dropped``.
MAX_BUFFER = 256


def ndjson_line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


NDJSON_ENCODER = Encoder(
    lambda event: (event, ndjson_line(event.doc())),
    frozenset({ConnectionOpened, ConnectionClosed, RunInterval, RunEnded, ListenerChanged}),
)


def _filter(types: set[str], run_id: str | None) -> Any:
    def accepts(event: Event) -> bool:
        if event.TYPE.split(".", 1)[0] not in types:
            return False
        return run_id is None or getattr(event, "run_id", None) == run_id

    return accepts


@events_api.get("/events")
@document_querystring(EventsQuery)
@document_text("application/x-ndjson", "one JSON event per line, until the client leaves")
@document_errors(404, 422)
async def events() -> Response:
    """NDJSON stream of events: ``run.interval``, ``run.ended``, ``connection.opened``,
    ``connection.closed``, ``listener.changed``, plus ``heartbeat`` and ``dropped``.

    Query: ``types=run,connection,listener`` to filter; ``run=ID`` to follow one run,
    ending the stream after its ``run.ended``.
    """
    deps: WebDeps = current_app.config["deps"]
    runs = deps.runs
    query = query_args(EventsQuery)
    types = set((query.types or ",".join(EVENT_KINDS)).split(","))
    run_id = query.run

    async def ended_line(run_id: str) -> bytes:
        doc = await runs.get(run_id)
        ended = RunEnded(run_id, doc["status"], doc.get("error"), doc.get("summary"))
        return ndjson_line(ended.doc())

    if run_id is not None and runs.live_run(run_id) is None:
        # Already over (or never existed): answer with its end at once, or 404.
        return Response(await ended_line(run_id), mimetype="application/x-ndjson")

    async def stream() -> AsyncIterator[bytes]:
        subscription = deps.hub.subscribe(
            MAX_BUFFER, encoder=NDJSON_ENCODER, accepts=_filter(types, run_id)
        )
        async with subscription as sub:
            run = runs.live_run(run_id) if run_id is not None else None
            if run_id is not None and (run is None or run.done.is_set()):
                # It ended between the request and the subscription.
                yield await ended_line(run_id)
                return
            while not deps.shutdown.is_set():
                item = None
                with trio.move_on_after(HEARTBEAT):
                    item = await sub.receive_channel.receive()
                if sub.resync:
                    sub.resync = False
                    lost = sub.drain_nowait()
                    yield ndjson_line({"type": "dropped", "count": sub.dropped + lost})
                    continue
                if item is None:
                    yield b'{"type":"heartbeat"}\n'
                    continue
                event, line = item
                yield line
                if run_id is not None and isinstance(event, RunEnded):
                    return

    response = Response(stream(), mimetype="application/x-ndjson")
    response.timeout = None
    response.headers["Cache-Control"] = "no-store"
    return response
