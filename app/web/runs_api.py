"""Run routes beyond the basic contract: export, live edits and the one-packet tool."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, current_app, render_template, request
from quart_schema import document_querystring, document_request, document_response

from app import __version__
from app.errors import SpecError
from app.runs.control import RunEdit
from app.runs.spec import parse_run_spec
from app.validation import validate
from app.web import security
from app.web.history_api import with_labels
from app.web.openapi import document_text
from app.web.query import check_query, query_args
from app.web.report import embedded_json, report_assets
from app.web.run_schemas import RunDoc
from app.web.schemas import (
    AuditList,
    AuditQuery,
    ExportQuery,
    SendRequest,
    SendResult,
    StoppedRuns,
    document_errors,
)

if TYPE_CHECKING:
    from app.web.deps import WebDeps

runs_api = Blueprint("runs_api", __name__, url_prefix="/api")
runs_api.before_request(check_query)

SERIES_COLUMNS = (
    "t",
    "sent",
    "received",
    "bytes_sent",
    "bytes_received",
    "msgs_per_s",
    "sent_per_s",
    "bits_per_s",
    "rtt_min_ms",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "rtt_max_ms",
)


REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _deps() -> WebDeps:
    deps: WebDeps = current_app.config["deps"]
    return deps


def series_csv(doc: dict[str, Any]) -> str:
    """One CSV row per 1 s interval of a run, with a comment header naming the run."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SERIES_COLUMNS)
    for point in doc.get("series") or []:
        rtt = point.get("rtt_ms") or {}
        writer.writerow(
            [
                point.get("t"),
                point.get("sent"),
                point.get("received"),
                point.get("bytes_sent"),
                point.get("bytes_received"),
                round(point.get("msgs_per_s") or 0.0, 3),
                round(point.get("sent_per_s") or 0.0, 3),
                round(point.get("bits_per_s") or 0.0, 3),
                rtt.get("min"),
                rtt.get("p50"),
                rtt.get("p99"),
                rtt.get("max"),
            ]
        )
    return out.getvalue()


@runs_api.get("/runs/<run_id>/export")
@document_querystring(ExportQuery)
@document_response(RunDoc)
@document_text("text/csv", "the per-second series as CSV (format=csv)")
@document_errors(404, 422)
async def export_run(run_id: str) -> Response:
    """The run as a JSON document (spec, summary, series) or its series as CSV."""
    fmt = query_args(ExportQuery).format
    doc = await _deps().runs.get(run_id)
    if fmt == "json":
        body, mimetype = json.dumps(doc, indent=2), "application/json"
    else:
        body, mimetype = series_csv(doc), "text/csv"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="socketlab-run-{run_id}.{fmt}"'
    return response


@runs_api.get("/runs/<run_id>/report.html")
@document_text("text/html", "the run as one self-contained HTML page (opens offline)")
@document_errors(404)
async def run_report(run_id: str) -> Response:
    """The run as an HTML report: summary, failures and charts, with no outside asset.

    The page embeds the run document ``GET /api/runs/{run_id}`` answers and draws it with
    the dashboard's own code, inlined, so it can be saved and opened with no network.
    """
    doc = await with_labels(await _deps().runs.get(run_id))
    assets = await report_assets(Path(current_app.static_folder or "static"))
    html = await render_template(
        "report.html",
        version=__version__,
        run_id=doc["id"],
        status=doc["status"],
        generated_at=round(time.time(), 3),
        assets=assets,
        doc_json=embedded_json(doc),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Disposition"] = f'inline; filename="socketlab-run-{run_id}.html"'
    # The page needs nothing from outside itself: say so, and a browser enforces it.
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


@runs_api.patch("/runs/<run_id>")
@document_request(RunEdit)
@document_response(RunDoc)
@document_errors(404, 409, 415, 422)
async def edit_run(run_id: str) -> dict[str, Any]:
    """Edit a running run at once, keeping its statistics: ``rate`` or ``bitrate`` (rate
    and UDP bulk runs), ``connections`` (runs given a duration), ``paused``.

    The edit is checked as a new spec of the run would be (its pattern's model, the lab's
    caps): a field the run cannot change live, or a value beyond a cap, is a 422 naming
    the field. The series shows it from the next second on (``rate_target``,
    ``connections``, ``paused`` in each point; ``control.edits`` lists the edits). Paused
    time counts against the run's duration. Answers the run's document without series;
    404 when no run ``run_id`` is going, 409 for a run followed on a peer.
    """
    body = await request.get_json(silent=True)
    if body is None:
        raise SpecError("the body must be a JSON document", "body")
    edit = validate(RunEdit, body)
    return _deps().runs.edit(run_id, edit).to_dict(series=False)


@runs_api.post("/runs/<run_id>/pause")
@document_response(RunDoc)
@document_errors(404, 409, 422)
async def pause_run(run_id: str) -> dict[str, Any]:
    """Pause a running run (as ``PATCH`` with ``{"paused": true}``): it sends nothing until
    resumed; replies in flight still count. No body."""
    return _set_paused(run_id, True)


@runs_api.post("/runs/<run_id>/resume")
@document_response(RunDoc)
@document_errors(404, 409, 422)
async def resume_run(run_id: str) -> dict[str, Any]:
    """Resume a paused run (as ``PATCH`` with ``{"paused": false}``). No body."""
    return _set_paused(run_id, False)


def _set_paused(run_id: str, paused: bool) -> dict[str, Any]:
    edit = RunEdit.model_validate({"paused": paused})
    return _deps().runs.edit(run_id, edit).to_dict(series=False)


@runs_api.post("/send")
@document_request(SendRequest)
@document_response(SendResult)
@document_errors(409, 415, 422)
async def send_packet() -> tuple[dict[str, Any], int]:
    """Send one message (the packet pattern) and answer with its reply.

    Body: ``{"target", "payload", "hex": false, "timeout": 2, "insecure": false}``. The run
    is stored like any other. Answers ``{"id", "status", "reply": {"hex", "text", "bytes",
    "rtt_ms"} | null, "error"}``.
    """
    send = validate(SendRequest, await request.get_json(silent=True))
    try:
        spec = parse_run_spec(
            {
                "target": send.target,
                "pattern": "packet",
                "timeout": send.timeout,
                "insecure": send.insecure,
                "payload": {"kind": "hex" if send.hex else "text", "text": send.payload},
            }
        )
    except SpecError as exc:
        # The run spec's payload.text is this body's payload: name the field the user sent.
        if exc.field is not None and exc.field.startswith("payload"):
            raise SpecError(exc.message.replace("payload.text", "payload"), "payload") from None
        raise
    run = await _deps().runs.start(
        spec, principal=security.principal(_deps().settings, request), client=request.remote_addr
    )
    await run.done.wait()
    summary = run.summary()
    reply = summary.get("reply")
    if reply is not None and not reply.get("bytes"):
        reply = None
    return {
        "id": run.id,
        "status": run.status,
        "reply": reply,
        "error": run.error or (None if reply else f"no reply within {spec.timeout:g} s"),
        "errors_by_kind": summary.get("errors_by_kind", {}),
    }, 200


@runs_api.post("/runs/stop-all")
@document_response(StoppedRuns)
async def stop_all_runs() -> dict[str, Any]:
    """The kill switch: stop every running run; answers once each is stored."""
    stopped = await _deps().runs.stop_running()
    return {"stopped": stopped}


@runs_api.get("/audit")
@document_querystring(AuditQuery)
@document_response(AuditList)
@document_errors(422)
async def audit_log() -> dict[str, Any]:
    """Who asked for which run, when it ran and how it ended (refused requests included)."""
    return {"items": await _deps().runs.audit_entries(query_args(AuditQuery).limit)}
