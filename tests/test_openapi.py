"""/openapi.json and /docs: every API route of the app is documented with its schemas, the
document is valid OpenAPI, real answers match it, and the docs page needs no internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
import trio
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from app.lab import Lab
from app.runs.spec import MODELS
from app.web.factory import create_web
from tests.conftest import listener_port
from tests.helpers import http, wait_for, wait_for_async

# Mutating routes that take no body: add a route here only when it really has none.
BODYLESS = {
    ("POST", "/api/runs/{run_id}/stop"),
    ("POST", "/api/runs/{run_id}/pause"),
    ("POST", "/api/runs/{run_id}/resume"),
    ("POST", "/api/runs/stop-all"),
    ("POST", "/api/listeners/{listener_id}/flush"),
}
# Routes that answer without the token.
OPEN_PATHS = {"/api/health"}
HOW_TO = (
    "document it with quart_schema's document_request / document_response / "
    "document_querystring (models in app/web/schemas.py; see app/web/api.py)"
)


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_operations(lab: Lab) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every HTTP route under /api in the app's url_map."""
    web = create_web(lab.web_deps())
    operations = []
    for rule in web.url_map.iter_rules():
        if rule.websocket or not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods or ()):
            if method not in ("HEAD", "OPTIONS"):
                operations.append((method, openapi_path(rule.rule)))
    return operations


async def openapi(lab: Lab) -> dict[str, Any]:
    response = await http(web_port(lab), "GET", "/openapi.json", token=None)
    assert response.status == 200
    doc: dict[str, Any] = response.json()
    return doc


async def test_the_document_is_valid_openapi_3_1(lab: Lab) -> None:
    doc = await openapi(lab)
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


async def test_every_api_route_is_documented_with_its_schemas(lab: Lab) -> None:
    doc = await openapi(lab)
    operations = api_operations(lab)
    assert ("POST", "/api/runs") in operations  # the url_map is the real one
    problems = []
    for method, path in operations:
        operation = doc["paths"].get(path, {}).get(method.lower())
        if operation is None:
            problems.append(f"{method} {path} is missing from /openapi.json")
            continue
        where = f"{method} {path}"
        if not operation.get("summary"):
            problems.append(f"{where} has no summary (give the view a docstring)")
        responses = {int(code): body for code, body in operation["responses"].items()}
        ok = {code: body for code, body in responses.items() if 200 <= code < 300}
        if not ok:
            problems.append(f"{where} documents no 2xx response: {HOW_TO}")
        for code, body in ok.items():
            if code != 204 and not any(c.get("schema") for c in body.get("content", {}).values()):
                problems.append(f"{where} documents {code} without a schema: {HOW_TO}")
        if 403 not in responses:
            problems.append(f"{where} does not document the Host/Origin refusal (403)")
        if path not in OPEN_PATHS and 401 not in responses:
            problems.append(f"{where} needs the token but does not say so")
        if path in OPEN_PATHS and operation.get("security") != []:
            problems.append(f"{where} needs no token but says it does")
        if method in ("POST", "PUT", "PATCH") and (method, path) not in BODYLESS:
            content = operation.get("requestBody", {}).get("content", {})
            if not content.get("application/json", {}).get("schema"):
                problems.append(f"{where} has no request body schema: {HOW_TO}")
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        if path.startswith("/api/")
        for method in item
    }
    for stale in sorted(documented - set(operations)):
        problems.append(f"{stale[0]} {stale[1]} is documented but is not a route")
    assert problems == [], "\n".join(problems)


async def test_the_run_request_schema_is_the_model_that_validates_runs(lab: Lab) -> None:
    doc = await openapi(lab)
    body = doc["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    # One model per pattern, told apart by ``pattern``: each lists exactly its own fields.
    assert schema["discriminator"]["propertyName"] == "pattern"
    components = doc["components"]["schemas"]
    documented = {}
    for ref in schema["oneOf"]:
        model = components[ref["$ref"].rsplit("/", 1)[1]]
        documented[model["properties"]["pattern"]["const"]] = model
    assert set(documented) == set(MODELS)
    for pattern, model in documented.items():
        expected = MODELS[pattern].model_json_schema()
        assert set(model["properties"]) == set(expected["properties"])
        assert model.get("required", []) == expected.get("required", [])
    # The documented 422 is the API's own error shape.
    error = doc["paths"]["/api/runs"]["post"]["responses"]["422"]["content"]["application/json"]
    assert error["schema"]["required"] == ["error", "field"]


def response_validator(doc: dict[str, Any], path: str, method: str, status: int) -> Any:
    operation = doc["paths"][path][method]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    # Component references resolve against a root that carries the components.
    return Draft202012Validator({**schema, "components": doc["components"]})


async def test_real_answers_match_their_documented_schemas(lab: Lab) -> None:
    port = web_port(lab)
    doc = await openapi(lab)
    tcp = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    udp = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    created = await http(port, "POST", "/api/runs", body={"target": tcp, "count": 50})
    response_validator(doc, "/api/runs", "post", 201).validate(created.json())
    finished_id = created.json()["id"]

    async def finished() -> bool:
        answer = await http(port, "GET", f"/api/runs/{finished_id}")
        return bool(answer.json()["status"] == "finished")

    await wait_for_async(finished, timeout=20)
    running_id = (
        await http(port, "POST", "/api/runs", body={"target": udp, "duration": 60})
    ).json()["id"]
    await wait_for(lambda: lab.runs.live[running_id].stats.received > 5)
    statsd = await http(
        port, "POST", "/api/listeners", body={"url": "udp://127.0.0.1:0?mode=statsd"}
    )
    response_validator(doc, "/api/listeners", "post", 201).validate(statsd.json())
    statsd_id, statsd_port = statsd.json()["id"], statsd.json()["port"]
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.sendto(b"hits:1|c\nlat:5|ms\ntemp:3|g\nusers:a|s", ("127.0.0.1", statsd_port))
    statsd_listener = lab.listeners.get(statsd_id)
    await wait_for(lambda: statsd_listener.to_dict()["statsd"]["metrics_received"] == 4)
    flushed = await http(port, "POST", f"/api/listeners/{statsd_id}/flush")
    response_validator(doc, "/api/listeners/{listener_id}/flush", "post", 200).validate(
        flushed.json()
    )
    preset = await http(
        port, "POST", "/api/presets", body={"name": "p1", "spec": {"target": tcp, "count": 3}}
    )
    assert preset.status == 201, preset.body
    response_validator(doc, "/api/presets", "post", 201).validate(preset.json())
    values = {"run_id": finished_id, "listener_id": statsd_id}

    checked = []
    for method, path in api_operations(lab):
        if method != "GET":
            continue
        names = re.findall(r"{([^}]+)}", path)
        if any(name not in values for name in names):
            continue
        content = doc["paths"][path]["get"]["responses"].get("200", {}).get("content", {})
        if "application/json" not in content:
            continue  # undocumented: the test above names it
        url = path.format(**values)
        answer = await http(port, "GET", url)
        assert answer.status == 200, (url, answer.body)
        response_validator(doc, path, "get", 200).validate(answer.json())
        checked.append(path)
    # The running run, in the list and on its own.
    running = await http(port, "GET", f"/api/runs/{running_id}")
    response_validator(doc, "/api/runs/{run_id}", "get", 200).validate(running.json())
    assert running.json()["status"] == "running"
    stopped = await http(port, "POST", f"/api/runs/{running_id}/stop")
    response_validator(doc, "/api/runs/{run_id}/stop", "post", 200).validate(stopped.json())
    missing = await http(port, "GET", "/api/runs/nope")
    assert missing.status == 404
    response_validator(doc, "/api/runs/{run_id}", "get", 404).validate(missing.json())
    assert {"/api/health", "/api/listeners", "/api/connections", "/api/runs"} <= set(checked)
    assert {"/api/runs/{run_id}", "/api/telemetry", "/api/presets"} <= set(checked)
    stopped_listener = await http(port, "DELETE", f"/api/listeners/{statsd_id}")
    response_validator(doc, "/api/listeners/{listener_id}", "delete", 200).validate(
        stopped_listener.json()
    )


async def test_a_response_that_drifts_from_its_schema_is_caught(lab: Lab) -> None:
    """The check above can fail: an undocumented key in a listener is refused."""
    doc = await openapi(lab)
    listeners = (await http(web_port(lab), "GET", "/api/listeners")).json()
    listeners["items"][0]["surprise"] = 1
    validator = response_validator(doc, "/api/listeners", "get", 200)
    assert not validator.is_valid(listeners)


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)


async def test_the_docs_page_uses_only_local_assets(lab: Lab) -> None:
    port = web_port(lab)
    page = await http(port, "GET", "/docs", token=None)
    assert page.status == 200
    html = page.body.decode()
    assert html.lower().startswith("<!doctype html>")
    assert "://" not in html, "the docs page must not load anything from another host"
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 2
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await http(port, "GET", url, token=None)
        assert asset.status == 200, url
        assert len(asset.body) > 1000, url
    assert '"/openapi.json"' in html


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_the_api_description_is_open_but_the_api_is_not(lab: Lab, path: str) -> None:
    port = web_port(lab)
    assert (await http(port, "GET", path, token=None)).status == 200
    assert (await http(port, "GET", "/api/runs", token=None)).status == 401
    # The Host check still applies to them (DNS rebinding).
    refused = await http(port, "GET", path, token=None, host="attacker.example")
    assert refused.status == 403
