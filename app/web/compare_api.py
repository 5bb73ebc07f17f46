"""Compare transports over the API: ``POST /api/compare`` starts the same load over TCP and
UDP at once; ``GET /api/compare/{compare_id}`` gives both runs side by side.

The two runs are ordinary runs (``/api/runs/{run_id}`` knows them); what links them is the
label ``compare-<compare_id>`` both carry (:mod:`app.runs.compare`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, current_app, request
from quart_schema import document_request, document_response

from app.errors import NotFoundError, SpecError
from app.history import RunFilter, RunHistory
from app.runs.compare import (
    COMPARE_ID,
    TRANSPORTS,
    compare_doc,
    compare_label,
    new_compare_id,
    transport_specs,
)
from app.runs.manager import Run
from app.validation import validate
from app.web import security
from app.web.query import check_query
from app.web.run_schemas import RunDoc
from app.web.schemas import document_errors

if TYPE_CHECKING:
    from app.runs.spec import RunSpec
    from app.web.deps import WebDeps

compare_api = Blueprint("compare_api", __name__, url_prefix="/api")
compare_api.before_request(check_query)

Transport = Literal["tcp", "udp"]


def _both() -> list[Transport]:
    return ["tcp", "udp"]


class CompareRequest(BaseModel):
    """A run spec (the fields of its pattern, as ``POST /api/runs`` takes them) whose target
    is ``host:port`` (a ``tcp://`` or ``udp://`` scheme is replaced), and the transports."""

    model_config = ConfigDict(extra="allow")

    target: str = Field(examples=["127.0.0.1:9000"], description="host:port")
    pattern: Literal["pingpong", "rate", "bulk", "burst"] = "pingpong"
    transports: list[Transport] = Field(
        default_factory=_both,
        min_length=1,
        max_length=2,
        description="the transports to run the load over, at once",
    )


class _Transports(BaseModel):
    """The ``transports`` field alone; the rest of the body is the run spec's."""

    model_config = ConfigDict(extra="ignore")

    transports: list[Transport] = Field(default_factory=_both, min_length=1)


class CompareRef(BaseModel):
    """The comparison's id and the run of each transport."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(examples=["9c1b7d4e"])
    runs: dict[Transport, str] = Field(description="transport → run id")


class CompareDoc(BaseModel):
    """Both runs of a comparison, side by side (without their per-second series)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: Literal["running", "finished", "stopped", "failed"] = Field(
        description="running while a run goes, else the worst end: failed, stopped, finished"
    )
    transports: list[Transport]
    runs: dict[Transport, RunDoc]


def _deps() -> WebDeps:
    deps: WebDeps = current_app.config["deps"]
    return deps


@compare_api.post("/compare")
@document_request(CompareRequest)
@document_response(CompareRef, 201)
@document_errors(403, 409, 415, 422, 503)
async def start_compare() -> tuple[dict[str, Any], int]:
    """Start the same load over TCP and over UDP to the same host at once, as two runs
    linked by a compare id (each carries the label ``compare-<id>``)."""
    body = await request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object", "body")
    transports = list(dict.fromkeys(validate(_Transports, body).transports))
    specs = transport_specs({k: v for k, v in body.items() if k != "transports"}, transports)
    deps = _deps()
    compare_id = new_compare_id()
    started: list[Run] = []
    try:
        for spec in specs.values():
            started.append(await _start(deps, spec))
        history = RunHistory(deps.store)
        for run in started:
            await history.add_label(run.id, compare_label(compare_id))
    except BaseException:
        # All or nothing: a comparison with one run missing compares nothing.
        for run in started:
            if run.going:
                deps.runs.stop(run.id)
        raise
    return {"id": compare_id, "runs": {t: r.id for t, r in zip(specs, started, strict=True)}}, 201


async def _start(deps: WebDeps, spec: RunSpec) -> Run:
    principal = security.principal(deps.settings, request)
    return await deps.runs.start(spec, principal=principal, client=request.remote_addr)


@compare_api.get("/compare/<compare_id>")
@document_response(CompareDoc)
@document_errors(404, 503)
async def get_compare(compare_id: str) -> dict[str, Any]:
    """Both runs of a comparison side by side: live while they go, then their results."""
    if not COMPARE_ID.match(compare_id):
        raise NotFoundError(f"no comparison {compare_id!r}", "compare_id")
    deps = _deps()
    label = compare_label(compare_id)
    stored = await RunHistory(deps.store).search(RunFilter(label=label), limit=2 * len(TRANSPORTS))
    runs: dict[str, dict[str, Any]] = {}
    for item in sorted(stored, key=lambda doc: doc["created_at"]):
        doc = await deps.runs.get(item["id"])
        doc.pop("series", None)
        transport = str(doc["spec"]["target"]).partition("://")[0]
        runs.setdefault(transport, doc | {"labels": item["labels"]})
    if not runs:
        raise NotFoundError(f"no comparison {compare_id!r}", "compare_id")
    ordered = {t: runs[t] for t in TRANSPORTS if t in runs}
    return compare_doc(compare_id, ordered)
