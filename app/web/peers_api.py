"""Peers: ``/api/peers`` (the event stream is in :mod:`app.web.events_api`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request
from quart_schema import document_request, document_response

from app.errors import NotFoundError, SpecError
from app.runs.spec import parse_run_spec
from app.web.query import check_query
from app.web.run_schemas import RunDoc
from app.web.schemas import PeerList, PeerRunRef, RunSpecBody, document_errors

if TYPE_CHECKING:
    from app.peers import PeerManager
    from app.web.deps import WebDeps

peers_api = Blueprint("peers_api", __name__, url_prefix="/api")
peers_api.before_request(check_query)


def _deps() -> WebDeps:
    deps: WebDeps = current_app.config["deps"]
    return deps


def _peers() -> PeerManager:
    peers = _deps().peers
    if peers is None:
        raise NotFoundError("this node has no peers (start it with --peer URL)", "peer")
    return peers


@peers_api.get("/peers")
@document_response(PeerList)
async def list_peers() -> dict[str, Any]:
    """Every configured peer: up or down, its listeners and first page of connections."""
    peers = _deps().peers
    return {"items": [] if peers is None else [s.to_dict() for s in peers.states.values()]}


@peers_api.post("/peers/<name>/runs")
@document_request(RunSpecBody)
@document_response(PeerRunRef, 201)
@document_errors(404, 409, 415, 422, 502)
async def start_peer_run(name: str) -> tuple[dict[str, Any], int]:
    """Start a run on a peer; this node keeps a copy that follows it (id ``peer~remote``).

    409 when the peer cannot be reached (or this lab is at its cap), 502 when it answered
    badly; the peer's own refusals (422, 409, ...) are relayed with their status.
    """
    body = await request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object", "body")
    parse_run_spec(body)  # refuse a bad spec here, with our own error shape
    return await _peers().start_run(name, body), 201


@peers_api.get("/peers/<name>/runs/<run_id>")
@document_response(RunDoc)
@document_errors(404, 409, 422, 502)
async def get_peer_run(name: str, run_id: str) -> Any:
    """A run as the peer reports it, live (422 when ``run_id`` is not a run id)."""
    return await _peers().get_run(name, run_id)
