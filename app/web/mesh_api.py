"""The mesh: ``/api/mesh`` (the merged matrix), ``/api/mesh/row`` (this node's own row,
what other nodes ask for) and ``/api/mesh/pairs/SRC/DST/series`` (one pair's series)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app
from quart_schema import document_response

from app.errors import NotFoundError
from app.web.mesh_schemas import MeshMatrix, MeshRowDoc, MeshSeries
from app.web.query import check_query
from app.web.schemas import document_errors

if TYPE_CHECKING:
    from app.mesh.manager import MeshManager
    from app.web.deps import WebDeps

mesh_api = Blueprint("mesh_api", __name__, url_prefix="/api")
mesh_api.before_request(check_query)

_NOT_MESH = "this node is not in mesh mode (start it with --mesh)"


def _mesh() -> MeshManager | None:
    deps: WebDeps = current_app.config["deps"]
    return deps.mesh


@mesh_api.get("/mesh")
@document_response(MeshMatrix)
async def get_matrix() -> dict[str, Any]:
    """The all-pairs matrix: this node's row and each peer's (a peer whose row cannot be
    fetched is ``unreachable``, its pairs ``failing``); empty when not in mesh mode."""
    mesh = _mesh()
    if mesh is None:
        return {"node": socket.gethostname(), "enabled": False, "nodes": [], "rows": []}
    return mesh.matrix()


@mesh_api.get("/mesh/row")
@document_response(MeshRowDoc)
async def get_row() -> dict[str, Any]:
    """This node's own row: what it measures to each of its peers (other nodes ask it).
    A node not in mesh mode answers ``enabled: false`` and is not probed."""
    mesh = _mesh()
    if mesh is None:
        return {
            "node": socket.gethostname(),
            "enabled": False,
            "port": None,
            "rate": 1.0,
            "window": 1.0,
            "at": None,
            "ignored_peers": 0,
            "pairs": [],
        }
    return mesh.row()


@mesh_api.get("/mesh/pairs/<src>/<dst>/series")
@document_response(MeshSeries)
@document_errors(404, 409, 502)
async def get_series(src: str, dst: str) -> dict[str, Any]:
    """One pair's figures once a second; a pair of another node's is asked of that node."""
    mesh = _mesh()
    if mesh is None:
        raise NotFoundError(_NOT_MESH, None)
    doc = mesh.series(src, dst)
    if doc is None and src != mesh.name:
        doc = await mesh.peer_series(src, dst)
    if doc is None:
        raise NotFoundError(f"no mesh pair {src} → {dst}", "dst")
    return doc
