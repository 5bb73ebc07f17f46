"""The JSON API under ``/api``. Auth, Host and content-type checks happen in the factory."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, current_app, request
from quart_schema import document_querystring, document_request, document_response, security_scheme

from app.errors import ConflictError, NotFoundError, SpecError
from app.runs.spec import parse_run_spec
from app.store import Store
from app.validation import validate
from app.web import security
from app.web.history_api import search_runs, with_labels
from app.web.history_schemas import RunsQuery
from app.web.listener_schemas import (
    ListenerInfo,
    ListenerList,
    ListenerRequest,
    ListenerStopped,
    ProbeFigures,
    StatsdSnapshot,
)
from app.web.openapi import document_empty, document_text
from app.web.query import check_query, query_args
from app.web.run_schemas import RunDoc, RunList, RunRef
from app.web.schemas import (
    ConnectionClosed,
    ConnectionPage,
    ConnectionRow,
    Health,
    LabSeries,
    PageQuery,
    Preset,
    PresetList,
    RunSpecBody,
    SeriesQuery,
    document_errors,
)

if TYPE_CHECKING:
    from app.web.deps import WebDeps

api = Blueprint("api", __name__, url_prefix="/api")
api.before_request(check_query)


def _deps() -> WebDeps:
    deps: WebDeps = current_app.config["deps"]
    return deps


async def _json_body() -> Any:
    body = await request.get_json(silent=True)
    if body is None:
        raise SpecError("the body must be a JSON document", "body")
    return body


@api.get("/health")
@security_scheme([])
@document_response(Health)
async def health() -> dict[str, Any]:
    """Liveness check, without a token (for healthchecks and load balancers).

    ``{"status": "ok"}``, or ``{"status": "degraded", "reason": ...}`` while the store
    cannot write (a full disk, a lock held by another process): runs' results then wait in
    memory and are retried, and new runs are refused with 503. Degraded still answers 200:
    the process is alive and holds results not yet stored, so a liveness probe that
    restarted it on a non-200 answer would lose exactly what it is keeping.
    """
    reason = _deps().store.degraded()
    if reason is not None:
        return {"status": "degraded", "reason": reason}
    return {"status": "ok"}


@api.get("/listeners")
@document_response(ListenerList)
async def list_listeners() -> dict[str, Any]:
    """Every running listener with its live totals."""
    return {"items": [listener.to_dict() for listener in _deps().listeners]}


@api.get("/connections")
@document_querystring(PageQuery)
@document_response(ConnectionPage)
@document_errors(422)
async def list_connections() -> dict[str, Any]:
    """A page of live connections and UDP flows, oldest first."""
    page = query_args(PageQuery)
    rows, total = _deps().registry.rows(offset=page.offset, limit=page.limit)
    return {"items": rows, "total": total, "offset": page.offset, "limit": page.limit}


@api.post("/runs")
@document_request(RunSpecBody)
@document_response(RunRef, 201)
@document_errors(409, 415, 422, 503)
async def create_run() -> tuple[dict[str, Any], int]:
    """Start a run; answers as soon as it is stored (201) with its id.

    503 while the store cannot write (see ``/api/health``): nothing was started. A
    ``scenario`` run may name a saved scenario (``"scenario": "name"``) instead of giving
    its steps: the run's stored spec holds the saved steps it ran (422 when none is saved
    by that name).
    """
    body = await _deps().scenarios.resolve_run_body(await _json_body())
    spec = parse_run_spec(body)
    run = await _deps().runs.start(
        spec, principal=security.principal(_deps().settings, request), client=request.remote_addr
    )
    return {"id": run.id, "status": run.status}, 201


@api.get("/runs")
@document_querystring(RunsQuery)
@document_response(RunList)
@document_errors(422, 503)
async def list_runs() -> dict[str, Any]:
    """Runs, newest first (running ones first), without their per-second series; the
    filters (``q``, ``target``, ``pattern``, ``status``, ``label``) search the history."""
    return {"items": await search_runs(_deps(), query_args(RunsQuery))}


@api.get("/runs/<run_id>")
@document_response(RunDoc)
@document_errors(404, 503)
async def get_run(run_id: str) -> dict[str, Any]:
    """One run with its summary, per-second series (live while it runs) and labels."""
    return await with_labels(await _deps().runs.get(run_id))


@api.post("/runs/<run_id>/stop")
@document_response(RunRef)
@document_errors(404)
async def stop_run(run_id: str) -> dict[str, Any]:
    """Stop a running run; answers once its result is stored. No body."""
    run = _deps().runs.stop(run_id)
    await run.done.wait()
    return {"id": run.id, "status": run.status}


@api.get("/series")
@document_querystring(SeriesQuery)
@document_response(LabSeries)
@document_errors(422)
async def lab_series() -> dict[str, Any]:
    """The lab's per-second totals (connections, bytes in and out per listener), oldest first."""
    series = _deps().series
    seconds = query_args(SeriesQuery).seconds
    if seconds is None:
        seconds = series.capacity
    elif seconds > series.capacity:
        # The bound is the lab's (its series length), so it is checked here, not in the model.
        raise SpecError(f"seconds: must be at most {series.capacity}", "seconds")
    return {"interval": series.interval, "points": series.points(seconds)}


class PresetBody(BaseModel):
    """A saved run spec: ``{"name": "...", "spec": {...a POST /api/runs body...}}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, pattern=r"^[^/\x00-\x1f\x7f]+$")
    spec: dict[str, Any]


def _presets_store() -> Store:
    return _deps().store


@api.get("/presets")
@document_response(PresetList)
@document_errors(409, 503)
async def list_presets() -> dict[str, Any]:
    """Saved run presets, by name."""
    return {"items": await _presets_store().list_presets()}


@api.post("/presets")
@document_request(PresetBody)
@document_response(Preset, 201)
@document_response(Preset, 200)
@document_errors(409, 415, 422, 503)
async def save_preset() -> tuple[dict[str, Any], int]:
    """Save (or replace) a preset; the spec must be one ``POST /api/runs`` would accept.

    409 when a new name would pass the lab's cap on presets (``--max-presets``).
    """
    preset = validate(PresetBody, await _json_body())
    name = preset.name.strip()
    if not name:
        raise SpecError("name: give the preset a name", "name")
    spec = parse_run_spec(preset.spec).model_dump(mode="json", exclude_unset=True)
    created = await _presets_store().put_preset(name, spec, time.time())
    return {"name": name, "spec": spec}, 201 if created else 200


@api.delete("/presets/<name>")
@document_empty(204, "deleted")
@document_errors(404, 409, 503)
async def delete_preset(name: str) -> tuple[str, int]:
    """Delete a preset."""
    if not await _presets_store().delete_preset(name):
        raise NotFoundError(f"no preset {name!r}", "name")
    return "", 204


# Listeners at run time, connections and telemetry.


@api.post("/listeners")
@document_request(ListenerRequest)
@document_response(ListenerInfo, 201)
@document_errors(409, 415, 422)
async def create_listener() -> tuple[dict[str, Any], int]:
    """Start a listener; answers 201 with its document once it is bound.

    Body: ``{"url": "tcp://127.0.0.1:0?mode=echo", ...options}``: the URL, with options
    in its query string and/or as keys of the body (the body wins). Options are those of
    :class:`app.listeners.spec.ListenerSpec`: ``mode`` (echo, sink, respond, statsd,
    source, influx, graphite, syslog),
    ``max_connections``, ``idle_timeout``, ``max_message_size``; echo: ``delay``,
    ``jitter``, ``loss``, ``duplicate``, ``seed``; sink: ``message_size``; respond:
    ``rules`` (list of ``{"match", "pattern", "reply", "encoding"}``), ``rules_file``,
    ``default_reply``, ``encoding``, ``framing``; statsd: ``flush_interval``,
    ``max_keys``, ``percentiles``; collectors (statsd, influx, graphite, syslog):
    ``max_keys``, ``forward`` (``host:port`` of an upstream, an allowed target: 403 with
    field ``forward`` when it is not); influx: ``precision``; udp: ``rcvbuf``; tls:
    ``cert``, ``key``; any mode:
    ``kernel_loss`` (percent the kernel drops, through nftables) and
    ``kernel_loss_direction`` (``in``, ``out``, ``both``).

    The answer is the listener's document (``GET /api/listeners/{id}``): ``port`` is the
    bound port (useful with port 0). The listener is kept in the store and started again,
    on that port and with its options, when the lab restarts (``GET
    /api/listeners/failed`` lists those that could not start again). 422 names the option
    at fault, or ``url`` when the bind policy refuses the address or port (loopback only
    unless the operator allowed more with ``--allow-bind``; no privileged port; not the
    dashboard's port), or ``kernel_loss`` with the reason when this lab cannot drop packets
    (no root, no nft); 409 when the address is in use or cannot be bound, or the cap on
    listeners is reached.
    """
    import trio

    from app.listeners.parse import parse_listener

    body = await _json_body()
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object with a url", "body")
    _refuse_file_options(body)
    # Reading a rules file or checking certificate paths is file I/O: off the event loop.
    spec = await trio.to_thread.run_sync(parse_listener, body)
    listener = await _deps().listeners.start_requested(spec)
    return listener.to_dict(), 201


# Options that name files on the lab's machine. Over the API they would let a token holder
# make the lab open any file it can reach, so they are taken only at start-up (config file
# or command line); over the API, rules go inline and TLS gets a self-signed certificate.
_FILE_OPTIONS = ("rules_file", "cert", "key")


def _refuse_file_options(body: dict[str, Any]) -> None:
    from urllib.parse import parse_qsl, urlsplit

    url = body.get("url")
    query: dict[str, str] = {}
    if isinstance(url, str):
        try:
            query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        except ValueError:
            query = {}
    for name in _FILE_OPTIONS:
        if name in body or name in query:
            raise SpecError(
                f"{name}: file options are taken only at start-up (config file or command "
                "line); give rules inline, or let TLS listeners make their own certificate",
                name,
            )


@api.get("/listeners/<listener_id>")
@document_response(ListenerInfo)
@document_errors(404)
async def get_listener(listener_id: str) -> dict[str, Any]:
    """One listener's document: counters, limits, options and its mode's section."""
    return _deps().listeners.get(listener_id).to_dict()


@api.get("/listeners/<listener_id>/probes/<run_tag>")
@document_response(ProbeFigures)
@document_errors(404, 422)
async def listener_probes(listener_id: str, run_tag: str) -> dict[str, Any]:
    """What a sink counted of one run: ``run_tag`` is the run's probe tag in 8 hex digits
    (the keys of the listener's ``probe.runs``). Zeros before the run's first probe; 404
    for an unknown listener or one that is not a sink. A lab whose run aims at a peer's
    sink asks this once the run has sent everything."""
    if len(run_tag) != 8 or not all(c in "0123456789abcdefABCDEF" for c in run_tag):
        raise SpecError("run_tag: 8 hex digits, as in the listener's probe.runs", "run_tag")
    figures = _deps().listeners.get(listener_id).receiving_end(int(run_tag, 16))
    if figures is None:
        raise NotFoundError(f"listener {listener_id} is not a sink", "id")
    return figures


@api.delete("/listeners/<listener_id>")
@document_response(ListenerStopped)
@document_errors(404, 503)
async def delete_listener(listener_id: str) -> dict[str, Any]:
    """Stop a listener: its socket and every connection close; answers once the port is free.

    Returns ``{"id": ..., "status": "stopped", "listener": <final document>}``; 404 for an
    unknown id. A listener started through the API is kept across restarts until it is
    stopped here; 503 while the store cannot write (it then keeps serving, so that it does
    not come back at the next start after a stop that seemed to work).
    """
    listener = await _deps().listeners.stop(listener_id)
    return {"id": listener.id, "status": "stopped", "listener": listener.to_dict()}


@api.get("/listeners/<listener_id>/certificate")
@document_text("application/x-pem-file", "the PEM certificate")
@document_errors(404)
async def listener_certificate(listener_id: str) -> tuple[str, int, dict[str, str]]:
    """The PEM certificate a ``tls://`` listener serves (self-signed ones included), for
    clients to trust; 404 for other listeners."""
    from app.errors import NotFoundError

    listener = _deps().listeners.get(listener_id)
    if listener.cert_pem is None:
        raise NotFoundError(f"listener {listener_id} has no certificate", "id")
    return listener.cert_pem, 200, {"Content-Type": "application/x-pem-file"}


@api.post("/listeners/<listener_id>/flush")
@document_response(StatsdSnapshot)
@document_errors(404, 409)
async def flush_listener(listener_id: str) -> dict[str, Any]:
    """Flush a statsd listener now (ends its interval early); returns the flushed snapshot.

    404 for an unknown id, 409 when the listener is not a statsd collector.
    """
    from app.listeners.modes.statsd import StatsdMode

    listener = _deps().listeners.get(listener_id)
    if not isinstance(listener.mode, StatsdMode):
        raise ConflictError(f"listener {listener_id} is not a statsd listener", "id")
    return dict(await listener.mode.flush_in_steps())


@api.get("/connections/<conn_id>")
@document_response(ConnectionRow)
@document_errors(404)
async def get_connection(conn_id: str) -> dict[str, Any]:
    """One live connection, with the kernel's view of it (``tcp``) read now. 404 when the
    id names no live connection."""
    row = _deps().registry.detail(conn_id)
    if row is None:
        raise NotFoundError(f"no connection {conn_id!r}", "id")
    return row


@api.delete("/connections/<conn_id>")
@document_response(ConnectionClosed)
@document_errors(404)
async def close_connection(conn_id: str) -> dict[str, Any]:
    """Close one live connection: its real socket is closed (the peer sees EOF). For a UDP
    flow the listener forgets it (its next datagram starts a new flow). 404 when the id
    names no live connection."""
    from app.errors import NotFoundError

    if not _deps().registry.close_connection(conn_id):
        raise NotFoundError(f"no connection {conn_id!r}", "id")
    return {"id": conn_id, "closed": True}
