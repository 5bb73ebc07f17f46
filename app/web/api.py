"""The JSON API under ``/api``. Auth, Host and content-type checks happen in the factory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request

from app.errors import SpecError
from app.runs.spec import parse_run_spec

if TYPE_CHECKING:
    from app.lab import Lab

api = Blueprint("api", __name__, url_prefix="/api")


def _lab() -> Lab:
    lab: Lab = current_app.config["lab"]
    return lab


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SpecError(f"{name} must be an integer, got {raw!r}", name) from None
    if not low <= value <= high:
        raise SpecError(f"{name} must be between {low} and {high}", name)
    return value


async def _json_body() -> Any:
    body = await request.get_json(silent=True)
    if body is None:
        raise SpecError("the body must be a JSON document", "body")
    return body


@api.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@api.get("/listeners")
async def list_listeners() -> dict[str, Any]:
    return {"items": [listener.to_dict() for listener in _lab().listeners]}


@api.get("/connections")
async def list_connections() -> dict[str, Any]:
    offset = _int_arg("offset", 0, 0, 10_000_000)
    limit = _int_arg("limit", 500, 1, 5000)
    rows, total = _lab().registry.rows(offset=offset, limit=limit)
    return {"items": rows, "total": total, "offset": offset, "limit": limit}


@api.post("/runs")
async def create_run() -> tuple[dict[str, Any], int]:
    spec = parse_run_spec(await _json_body())
    run = await _lab().runs.start(spec)
    return {"id": run.id, "status": run.status}, 201


@api.get("/runs")
async def list_runs() -> dict[str, Any]:
    limit = _int_arg("limit", 100, 1, 1000)
    return {"items": await _lab().runs.list(limit)}


@api.get("/runs/<run_id>")
async def get_run(run_id: str) -> dict[str, Any]:
    return await _lab().runs.get(run_id)


@api.post("/runs/<run_id>/stop")
async def stop_run(run_id: str) -> dict[str, Any]:
    run = _lab().runs.stop(run_id)
    await run.done.wait()
    return {"id": run.id, "status": run.status}
