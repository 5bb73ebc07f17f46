"""Run routes beyond the basic contract: export and the one-packet tool."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, current_app, request
from quart_schema import document_querystring, document_request, document_response

from app.errors import SpecError
from app.runs.spec import parse_run_spec
from app.web import security
from app.web.openapi import document_text
from app.web.schemas import (
    AuditList,
    AuditQuery,
    ExportQuery,
    RunDoc,
    SendRequest,
    SendResult,
    StoppedRuns,
    document_errors,
)

if TYPE_CHECKING:
    from app.lab import Lab

runs_api = Blueprint("runs_api", __name__, url_prefix="/api")

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


def _lab() -> Lab:
    lab: Lab = current_app.config["lab"]
    return lab


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
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise SpecError("format must be json or csv", "format")
    doc = await _lab().runs.get(run_id)
    if fmt == "json":
        body, mimetype = json.dumps(doc, indent=2), "application/json"
    else:
        body, mimetype = series_csv(doc), "text/csv"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="socketlab-run-{run_id}.{fmt}"'
    return response


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
    body = await request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object", "body")
    payload = body.get("payload")
    if not isinstance(payload, str) or not payload:
        raise SpecError("payload: give the text (or hex) to send", "payload")
    unknown = set(body) - {"target", "payload", "hex", "timeout", "insecure"}
    if unknown:
        raise SpecError(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    spec = parse_run_spec(
        {
            "target": body.get("target"),
            "pattern": "packet",
            "timeout": body.get("timeout", 2.0),
            "insecure": bool(body.get("insecure", False)),
            "payload": {"kind": "hex" if body.get("hex") else "text", "text": payload},
        }
    )
    run = await _lab().runs.start(
        spec, principal=security.principal(_lab(), request), client=request.remote_addr
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
    stopped = await _lab().runs.stop_running()
    return {"stopped": stopped}


@runs_api.get("/audit")
@document_querystring(AuditQuery)
@document_response(AuditList)
@document_errors(422)
async def audit_log() -> dict[str, Any]:
    """Who asked for which run, when it ran and how it ended (refused requests included)."""
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise SpecError("limit must be an integer from 1 to 10000", "limit")
    return {"items": await _lab().runs.audit_entries(int(raw))}
