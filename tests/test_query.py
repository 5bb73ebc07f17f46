"""app/web/query.py: every /api query string is checked by the model its route documents.

Odd values (``²`` is a digit to ``str.isdigit()`` but not to ``int()``, fullwidth and Arabic
digits, ``1e3``, NUL, huge numbers, the empty string) answer 4xx ``{"error", "field"}``, with
the query key as the field, on every route that takes a query string; unknown and repeated
keys are refused (422) on every route, as unknown keys of a JSON body are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from werkzeug.datastructures import MultiDict

from app.errors import SpecError
from app.lab import Lab
from app.web.factory import create_web
from app.web.query import parse_query
from app.web.schemas import AuditQuery, ExportQuery, PageQuery
from tests.helpers import http, lab_settings

ODD_VALUES = (
    "²",
    "-1",
    "1.5",
    "abc",
    "9" * 30,
    "99999999999",
    "",
    "\uff11",  # fullwidth one
    "٣",
    "\x00",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "+1",
    "1_0",
    "1.0",
    "é",
)


def _openapi() -> dict[str, Any]:
    web = create_web(Lab(lab_settings(Path("unused"))).web_deps())
    doc: dict[str, Any] = web.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return doc


DOC = _openapi()
# (method, path, query key, schema) of every documented query parameter under /api.
QUERY_PARAMETERS = sorted(
    (method.upper(), path, parameter["name"], str(parameter.get("schema")))
    for path, ops in DOC["paths"].items()
    for method, op in ops.items()
    if path.startswith("/api/")
    for parameter in op.get("parameters", [])
    if parameter["in"] == "query"
)
OPERATIONS = sorted(
    (method.upper(), path)
    for path, ops in DOC["paths"].items()
    for method in ops
    if path.startswith("/api/")
)


def concrete(path: str) -> str:
    """A path with every ``{param}`` filled with an id that names nothing."""
    return re.sub(r"\{[^}]+\}", "nope", path)


def error_doc(status: int, body: Any) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and set(body) == {"error", "field"}, body
    assert isinstance(body["error"], str) and body["error"], body
    return body


def test_every_route_with_a_query_string_is_in_the_table() -> None:
    routes = {(m, p) for m, p, _, _ in QUERY_PARAMETERS}
    assert {
        ("GET", "/api/connections"),
        ("GET", "/api/runs"),
        ("GET", "/api/series"),
        ("GET", "/api/audit"),
        ("GET", "/api/telemetry"),
        ("GET", "/api/runs/{run_id}/export"),
    } <= routes
    # Bounds are documented in JSON Schema's words (minimum/maximum), which clients read.
    for _, _, key, schema in QUERY_PARAMETERS:
        assert "'ge'" not in schema and "'le'" not in schema, (key, schema)


@pytest.mark.parametrize(
    ("method", "path", "key", "schema"),
    QUERY_PARAMETERS,
    ids=[f"{m} {p} {k}" for m, p, k, _ in QUERY_PARAMETERS],
)
async def test_an_odd_query_value_is_4xx_naming_the_key(
    lab: Lab, method: str, path: str, key: str, schema: str
) -> None:
    assert lab.web_port is not None
    integer = "integer" in schema
    # Free text (a search) takes "abc" or "1.5" as it is: only empty or unprintable is odd.
    text = "'type': 'string'" in schema and "enum" not in schema and "format" not in schema
    for value in ("", "\x00", "a\x01b") if text else ODD_VALUES:
        response = await http(lab.web_port, method, f"{concrete(path)}?{key}={quote(value)}")
        doc = error_doc(response.status, response.json())
        if integer or response.status == 422:
            # Every odd value is a bad integer; a string parameter may also name nothing (404).
            assert (response.status, doc["field"]) == (422, key), (value, doc)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_an_unknown_or_repeated_query_key_is_refused_on_every_route(
    lab: Lab, method: str, path: str
) -> None:
    assert lab.web_port is not None
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    unknown = await http(lab.web_port, method, f"{concrete(path)}?colour=red", body=body)
    assert (unknown.status, error_doc(unknown.status, unknown.json())["field"]) == (422, "colour")
    keys = [k for m, p, k, _ in QUERY_PARAMETERS if (m, p) == (method, path)]
    for key in keys:
        twice = await http(lab.web_port, method, f"{concrete(path)}?{key}=1&{key}=2", body=body)
        assert (twice.status, error_doc(twice.status, twice.json())["field"]) == (422, key)


async def test_audit_limit_superscript_two_is_422_not_a_server_error(lab: Lab) -> None:
    assert lab.web_port is not None
    response = await http(lab.web_port, "GET", "/api/audit?limit=%C2%B2")
    assert response.status == 422
    assert response.json()["field"] == "limit"


async def test_good_query_values_are_taken(lab: Lab) -> None:
    assert lab.web_port is not None
    page = (await http(lab.web_port, "GET", "/api/connections?offset=0&limit=7")).json()
    assert (page["offset"], page["limit"]) == (0, 7)
    assert (await http(lab.web_port, "GET", "/api/audit?limit=10000")).status == 200
    assert (await http(lab.web_port, "GET", "/api/runs?limit=1")).status == 200
    too_many = await http(lab.web_port, "GET", "/api/audit?limit=10001")
    assert (too_many.status, too_many.json()["field"]) == (422, "limit")


@pytest.mark.parametrize(
    ("model", "args", "expected"),
    [
        (PageQuery, [], {"offset": 0, "limit": 500}),
        (PageQuery, [("offset", "10"), ("limit", "5000")], {"offset": 10, "limit": 5000}),
        (AuditQuery, [("limit", "007")], {"limit": 7}),
        (ExportQuery, [("format", "csv")], {"format": "csv"}),
    ],
)
def test_parse_query_takes_plain_values(
    model: Any, args: list[tuple[str, str]], expected: dict[str, Any]
) -> None:
    assert parse_query(model, MultiDict(args)).model_dump() == expected


@pytest.mark.parametrize(
    ("model", "args", "field"),
    [
        (AuditQuery, [("limit", "²")], "limit"),
        (AuditQuery, [("limit", "1"), ("limit", "1")], "limit"),
        (AuditQuery, [("limt", "1")], "limt"),
        (PageQuery, [("offset", "10000001")], "offset"),
        (PageQuery, [("limit", "0")], "limit"),
        (ExportQuery, [("format", "")], "format"),
        (ExportQuery, [("format", "JSON")], "format"),
    ],
)
def test_parse_query_refuses_naming_the_key(
    model: Any, args: list[tuple[str, str]], field: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_query(model, MultiDict(args))
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")
