"""The scenario routes: saved scenarios (create, list, get, edit, delete), a scenario's text
checked and turned into its document, and the dry run of one session. Token-protected like
every ``/api`` route (the factory checks it).

A run names a saved scenario with ``POST /api/runs`` and ``"scenario": "name"`` (a string
instead of the steps): the name is resolved there, before the spec is parsed, so the stored
run spec holds the steps it ran (:meth:`app.scenarios.ScenarioTool.resolve_run_body`).
"""

from __future__ import annotations

import time
import tomllib
from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request
from quart_schema import document_request, document_response

from app.errors import NotFoundError, SpecError
from app.validation import validate
from app.web import security
from app.web.openapi import document_empty
from app.web.query import check_query
from app.web.scenario_schemas import (
    DryRunBody,
    DryRunResult,
    SavedScenario,
    SavedScenarioBody,
    SavedScenarioList,
    ScenarioDoc,
    ScenarioEditBody,
    ScenarioTextBody,
)
from app.web.schemas import document_errors
from app.wire import jsondoc
from app.wire.scenario import parse_scenario

if TYPE_CHECKING:
    from app.scenarios import ScenarioTool

scenarios_api = Blueprint("scenarios_api", __name__, url_prefix="/api")
scenarios_api.before_request(check_query)


def _tool() -> ScenarioTool:
    tool: ScenarioTool = current_app.config["deps"].scenarios
    return tool


def checked_scenario(doc: Any) -> dict[str, Any]:
    """``doc`` validated and compiled, as the model dumps it; errors name ``scenario.*``.

    Raises:
        SpecError: Naming the step and field (``scenario.steps.2.expect``).
    """
    try:
        program = parse_scenario(doc)
    except SpecError as exc:
        field = exc.field or ""
        if field == "scenario" or field.startswith("scenario."):
            raise
        where = f"scenario.{field}" if field else "scenario"
        raise SpecError(f"scenario.{exc.message}" if field else exc.message, where) from None
    dumped: dict[str, Any] = program.scenario.model_dump(mode="json", exclude_none=True)
    return dumped


async def _body(model: Any) -> Any:
    return validate(model, await request.get_json(silent=True))


def _scenario_of(raw: Any) -> dict[str, Any]:
    """The body's ``scenario``, validated and compiled (the model checked its shape)."""
    return checked_scenario(raw.get("scenario") if isinstance(raw, dict) else None)


@scenarios_api.get("/scenarios")
@document_response(SavedScenarioList)
@document_errors(503)
async def list_scenarios() -> dict[str, Any]:
    """Saved scenarios, by name."""
    return {"items": await _tool().store.list()}


@scenarios_api.post("/scenarios")
@document_request(SavedScenarioBody)
@document_response(SavedScenario, 201)
@document_errors(409, 415, 422, 503)
async def create_scenario() -> tuple[dict[str, Any], int]:
    """Save a new scenario by name; 409 when the name is taken (edit it with ``PUT``).

    The scenario must be one a run would take: a bad one is a 422 naming the step and field
    (``scenario.steps.1.expect``).
    """
    raw = await request.get_json(silent=True)
    body = validate(SavedScenarioBody, raw)
    name = body.name.strip()
    if not name:
        raise SpecError("name: give the scenario a name", "name")
    await _tool().store.put(name, _scenario_of(raw), time.time(), create=True)
    return await _tool().saved(name), 201


@scenarios_api.get("/scenarios/<name>")
@document_response(SavedScenario)
@document_errors(404, 503)
async def get_scenario(name: str) -> dict[str, Any]:
    """One saved scenario."""
    return await _tool().saved(name)


@scenarios_api.put("/scenarios/<name>")
@document_request(ScenarioEditBody)
@document_response(SavedScenario)
@document_errors(404, 415, 422, 503)
async def edit_scenario(name: str) -> dict[str, Any]:
    """Replace a saved scenario's steps; runs that named it keep the steps they ran."""
    raw = await request.get_json(silent=True)
    validate(ScenarioEditBody, raw)
    await _tool().store.put(name, _scenario_of(raw), time.time(), create=False)
    return await _tool().saved(name)


@scenarios_api.delete("/scenarios/<name>")
@document_empty(204, "deleted")
@document_errors(404, 503)
async def delete_scenario(name: str) -> tuple[str, int]:
    """Delete a saved scenario."""
    if not await _tool().store.delete(name):
        raise NotFoundError(f"no saved scenario {name!r}", "name")
    return "", 204


@scenarios_api.post("/scenarios/parse")
@document_request(ScenarioTextBody)
@document_response(ScenarioDoc)
@document_errors(415, 422)
async def parse_scenario_text() -> dict[str, Any]:
    """A scenario written as TOML or JSON, checked: its document, or a 422 naming the step
    and field (``text`` for text that does not parse, with the parser's reason)."""
    body = await _body(ScenarioTextBody)
    try:
        doc = tomllib.loads(body.text) if body.format == "toml" else jsondoc.loads(body.text)
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"text: not {body.format.upper()}: {reason}", "text") from None
    return {"scenario": checked_scenario(doc)}


@scenarios_api.post("/scenarios/dry-run")
@document_request(DryRunBody)
@document_response(DryRunResult)
@document_errors(403, 409, 415, 422, 503)
async def dry_run() -> dict[str, Any]:
    """Run ONE session of a scenario against ``target`` and answer with its transcript.

    The same target policy, caps and audit as a run (30 s at most); no run is stored. Each
    step of the session is one exchange: what it sent, what it received (hex and text),
    whether it passed and, if not, the kind (``mismatch``, ``timeout``, ``refused``, ...).
    """
    raw = await request.get_json(silent=True)
    # The scenario itself is checked as a run's is (the errors name scenario.steps.N...).
    validate(DryRunBody, raw | {"scenario": ""} if isinstance(raw, dict) else raw)
    tool = _tool()
    resolved = await tool.resolve_run_body(raw | {"pattern": "scenario"})
    resolved.pop("pattern")
    spec = tool.dry_run_spec(resolved)
    settings = current_app.config["deps"].settings
    return await tool.dry_run(
        spec, principal=security.principal(settings, request), client=request.remote_addr
    )
