"""The run history's routes: search the runs, label them, delete them, read a histogram.

``GET /api/runs`` (in :mod:`app.web.api`) answers with :func:`search_runs`; the routes here
act on one run. Labels and deletes are stored by :class:`~app.history.RunHistory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request
from quart_schema import document_querystring, document_request, document_response

from app.history import RunFilter, RunHistory
from app.runs.histogram import coarse_buckets, decode, fine_buckets, markers
from app.validation import validate
from app.web.history_schemas import (
    HistogramQuery,
    LabelRequest,
    RunHistogram,
    RunLabels,
    RunsQuery,
)
from app.web.openapi import document_empty
from app.web.query import check_query, query_args
from app.web.schemas import document_errors

if TYPE_CHECKING:
    from app.web.deps import WebDeps

history_api = Blueprint("history_api", __name__, url_prefix="/api")
history_api.before_request(check_query)


def _deps() -> WebDeps:
    deps: WebDeps = current_app.config["deps"]
    return deps


def _history() -> RunHistory:
    return RunHistory(_deps().store)


async def search_runs(deps: WebDeps, query: RunsQuery) -> list[dict[str, Any]]:
    """Runs that match ``query``, newest first, running ones first, each with its labels.

    A running run is shown as it is now (its live summary), not as stored when it started.
    """
    where = RunFilter(query.q, query.target, query.pattern, query.status, query.label)
    stored = await RunHistory(deps.store).search(where, query.limit, query.offset)
    live = {run.id: run for run in deps.runs.running()}
    items = []
    for doc in stored:
        run = live.pop(doc["id"], None)
        items.append(doc if run is None else run.to_dict(series=False) | {"labels": doc["labels"]})
    # Running runs the store does not list (yet), on the first page only.
    extra = [run.to_dict(series=False) for run in live.values()] if query.offset == 0 else []
    extra = [doc for doc in extra if where.matches(doc, [])]
    return (extra + items)[: query.limit]


async def with_labels(doc: dict[str, Any]) -> dict[str, Any]:
    """A run document with its labels."""
    return doc | {"labels": await _history().labels(doc["id"])}


@history_api.get("/runs/<run_id>/histogram")
@document_querystring(HistogramQuery)
@document_response(RunHistogram)
@document_errors(404, 422, 503)
async def run_histogram(run_id: str) -> dict[str, Any]:
    """The run's RTT histogram in fine buckets, with markers at its summary's p50, p90,
    p99 and p99.9 (live while it runs: the closed seconds, as its summary)."""
    per_doubling = query_args(HistogramQuery).per_doubling
    run = _deps().runs.live_run(run_id)
    if run is not None:
        # In memory (running, or ended and being stored): the histogram and the summary of
        # the same moment, with no checkpoint between them.
        status, summary = run.status, run.summary()
        buckets, resolution = fine_buckets(run.stats.total, per_doubling), "fine"
    else:
        doc = await _deps().runs.get(run_id)
        status, summary = doc["status"], doc.get("summary") or {}
        encoded = await _history().histogram(run_id)
        if encoded is not None:
            buckets, resolution = fine_buckets(decode(encoded), per_doubling), "fine"
        else:
            buckets, resolution = coarse_buckets(summary.get("histogram") or []), "coarse"
    return {
        "id": run_id,
        "status": status,
        "resolution": resolution,
        "per_doubling": per_doubling if resolution == "fine" else None,
        "count": sum(b["count"] for b in buckets),
        "buckets": buckets,
        "markers": markers(summary.get("rtt_ms") or {}),
    }


@history_api.post("/runs/<run_id>/labels")
@document_request(LabelRequest)
@document_response(RunLabels)
@document_errors(404, 409, 415, 422, 503)
async def add_label(run_id: str) -> dict[str, Any]:
    """Put a label on a run (``{"label": "baseline"}``); answers with its labels."""
    body = validate(LabelRequest, await request.get_json(silent=True))
    return {"id": run_id, "labels": await _history().add_label(run_id, body.label)}


@history_api.delete("/runs/<run_id>/labels/<label>")
@document_response(RunLabels)
@document_errors(404, 422, 503)
async def remove_label(run_id: str, label: str) -> dict[str, Any]:
    """Take a label off a run; answers with its labels."""
    checked = validate(LabelRequest, {"label": label})
    return {"id": run_id, "labels": await _history().remove_label(run_id, checked.label)}


@history_api.delete("/runs/<run_id>")
@document_empty(204, "deleted, with its series, histogram and labels")
@document_errors(404, 409, 503)
async def delete_run(run_id: str) -> tuple[str, int]:
    """Delete an ended run from the history (409 while it runs: stop it first)."""
    await _history().delete(run_id)
    return "", 204
