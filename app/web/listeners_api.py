"""Listener routes beyond start/stop: a respond listener's rules edited in place, the kept
listeners that did not start again after a restart (see :mod:`app.listeners.saved`), and a
StatsD collector's history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request
from quart_schema import document_request, document_response

from app.errors import ConflictError
from app.listeners.modes.statsd import StatsdMode
from app.validation import validate
from app.web.listener_schemas import FailedListenerList, ListenerInfo, RulesBody, TelemetryHistory
from app.web.openapi import document_empty
from app.web.query import check_query
from app.web.schemas import document_errors

if TYPE_CHECKING:
    from app.listeners.manager import ListenerManager

listeners_api = Blueprint("listeners_api", __name__, url_prefix="/api")
listeners_api.before_request(check_query)


def _listeners() -> ListenerManager:
    manager: ListenerManager = current_app.config["deps"].listeners
    return manager


@listeners_api.put("/listeners/<listener_id>/rules")
@document_request(RulesBody)
@document_response(ListenerInfo)
@document_errors(404, 409, 415, 422, 503)
async def edit_rules(listener_id: str) -> dict[str, Any]:
    """Replace a respond listener's rules (with ``default_reply`` and ``encoding``).

    Validated as when the listener is made (422 naming ``rules.N.field``); its connections
    answer by the new rules from their next message and the hit counters start again. 409
    for a listener that is not in respond mode. The listener's document (``respond.rules``)
    shows them; a listener kept across restarts comes back with them.
    """
    body = validate(RulesBody, await request.get_json(silent=True))
    listener = await _listeners().edit_rules(listener_id, body.model_dump())
    return listener.to_dict()


@listeners_api.get("/listeners/failed")
@document_response(FailedListenerList)
async def failed_listeners() -> dict[str, Any]:
    """Listeners kept from before the last restart that could not start again, with why
    (their port taken, the bind policy narrowed, the cap on listeners reached)."""
    return {"items": list(_listeners().failed.values())}


@listeners_api.delete("/listeners/failed/<key>")
@document_empty(204, "forgotten")
@document_errors(404, 503)
async def forget_failed_listener(key: str) -> tuple[str, int]:
    """Forget a kept listener that could not start again: it is not tried at the next start."""
    await _listeners().forget(key)
    return "", 204


@listeners_api.get("/telemetry/<listener_id>/history")
@document_response(TelemetryHistory)
@document_errors(404, 409)
async def telemetry_history(listener_id: str) -> dict[str, Any]:
    """A StatsD collector's history: each metric's value at every flush its series still
    hold raw (the newest ``history_points``; ``GET /api/telemetry/series`` has the older
    buckets too), the last flush in which metrics arrived (kept when traffic stops), and
    the newest bad lines with why they were refused. 409 for a listener that is not a
    StatsD collector."""
    listener = _listeners().get(listener_id)
    if not isinstance(listener.mode, StatsdMode):
        raise ConflictError(f"listener {listener_id} is not a statsd listener", "id")
    return listener.mode.history_doc()
