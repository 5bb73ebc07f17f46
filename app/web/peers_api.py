"""Peers and the event stream: ``/api/peers``, ``/api/events``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, current_app, request
from quart_schema import document_querystring, document_request, document_response

from app.errors import NotFoundError, SpecError
from app.runs.spec import parse_run_spec
from app.web.openapi import document_text
from app.web.schemas import (
    EventsQuery,
    PeerList,
    PeerRunRef,
    RunDoc,
    RunSpecBody,
    document_errors,
)

if TYPE_CHECKING:
    from app.lab import Lab
    from app.peers import PeerManager

peers_api = Blueprint("peers_api", __name__, url_prefix="/api")

# With no event for this long, the stream sends a heartbeat line: it keeps proxies from
# closing an idle stream, and writing is how a reader that went away is noticed.
HEARTBEAT = 1.0
EVENT_TYPES = ("run", "connection")


def _lab() -> Lab:
    lab: Lab = current_app.config["lab"]
    return lab


def _peers() -> PeerManager:
    peers = _lab().peers
    if peers is None:
        raise NotFoundError("this node has no peers (start it with --peer URL)", "peer")
    return peers


@peers_api.get("/peers")
@document_response(PeerList)
async def list_peers() -> dict[str, Any]:
    """Every configured peer: up or down, its listeners and first page of connections."""
    peers = _lab().peers
    return {"items": [] if peers is None else [s.to_dict() for s in peers.states.values()]}


@peers_api.post("/peers/<name>/runs")
@document_request(RunSpecBody)
@document_response(PeerRunRef, 201)
@document_errors(404, 409, 415, 422)
async def start_peer_run(name: str) -> tuple[dict[str, Any], int]:
    """Start a run on a peer; this node keeps a copy that follows it (id ``peer~remote``)."""
    body = await request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object", "body")
    parse_run_spec(body)  # refuse a bad spec here, with our own error shape
    return await _peers().start_run(name, body), 201


@peers_api.get("/peers/<name>/runs/<run_id>")
@document_response(RunDoc)
@document_errors(404, 409)
async def get_peer_run(name: str, run_id: str) -> Any:
    """A run as the peer reports it, live."""
    return await _peers().get_run(name, run_id)


@peers_api.get("/events")
@document_querystring(EventsQuery)
@document_text("application/x-ndjson", "one JSON event per line, until the client leaves")
@document_errors(404, 422)
async def events() -> Response:
    """NDJSON stream of events: ``run.interval``, ``run.ended``, ``connection.opened``,
    ``connection.closed``, plus ``heartbeat`` and ``dropped``.

    Query: ``types=run,connection`` to filter; ``run=ID`` to follow one run, ending the
    stream after its ``run.ended``.
    """
    lab = _lab()
    types = set((request.args.get("types") or ",".join(EVENT_TYPES)).split(","))
    unknown = types - set(EVENT_TYPES)
    if unknown:
        raise SpecError(f"types: unknown event type {sorted(unknown)[0]!r}", "types")
    run_id = request.args.get("run")

    async def ended_line(run_id: str) -> bytes:
        doc = await lab.runs.get(run_id)
        line = {
            "type": "run.ended",
            "run_id": run_id,
            "status": doc["status"],
            "error": doc.get("error"),
            "summary": doc.get("summary"),
        }
        return (json.dumps(line) + "\n").encode()

    if run_id is not None and run_id not in lab.runs.live:
        # Already over (or never existed): answer with its end at once, or 404.
        return Response(await ended_line(run_id), mimetype="application/x-ndjson")

    async def stream() -> AsyncIterator[bytes]:
        async with lab.hub_events_subscription() as sub:
            run = lab.runs.live.get(run_id) if run_id is not None else None
            if run_id is not None and (run is None or run.done.is_set()):
                # It ended between the request and the subscription.
                yield await ended_line(run_id)
                return
            while not lab.shutdown.is_set():
                line = None
                with trio.move_on_after(HEARTBEAT):
                    line = await sub.receive_channel.receive()
                if sub.resync:
                    sub.resync = False
                    lost = sub.drain_nowait()
                    dropped = {"type": "dropped", "count": sub.dropped + lost}
                    yield (json.dumps(dropped) + "\n").encode()
                    continue
                if line is None:
                    yield b'{"type":"heartbeat"}\n'
                    continue
                event = json.loads(line)
                if event["type"].split(".", 1)[0] not in types:
                    continue
                if run_id is not None and event.get("run_id") != run_id:
                    continue
                yield line.encode()
                if run_id is not None and event["type"] == "run.ended":
                    return

    response = Response(stream(), mimetype="application/x-ndjson")
    response.timeout = None
    response.headers["Cache-Control"] = "no-store"
    return response
