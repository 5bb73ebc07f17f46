"""Hostile JSON on every JSON route and on the WebSocket: refused as the client's error.

The routes come from the app's OpenAPI document (as in tests/test_query.py), so a new route
that takes a body is in the table the day it is added. Every body that is not a JSON
document (nested thousands deep, cut short, not UTF-8, ``NaN``, a lone surrogate) answers
422 ``{"error", "field": "body"}``, as a malformed body always has; large documents within
the 64 KiB cap answer 4xx; a larger body answers 413. Nothing answers 5xx and nothing is
logged as an error (a traceback is an ERROR record). On the WebSocket each bad view message
is answered with an error message and the feed stays open (see
:func:`test_the_websocket_answers_hostile_json_with_an_error_and_stays_open` for why).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.web.factory import MAX_BODY_BYTES, create_web
from app.wire import jsondoc
from tests.helpers import WebSocketClient, http, lab_settings, websocket_handshake


def _openapi() -> dict[str, Any]:
    web = create_web(Lab(lab_settings(Path("unused"))).web_deps())
    doc: dict[str, Any] = web.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return doc


DOC = _openapi()
MUTATIONS = sorted(
    (method.upper(), path, "requestBody" in op)
    for path, ops in DOC["paths"].items()
    for method, op in ops.items()
    if path.startswith("/api/") and method.upper() in ("POST", "PUT", "PATCH", "DELETE")
)
JSON_ROUTES = [(m, p) for m, p, takes_body in MUTATIONS if takes_body]
OTHER_MUTATIONS = [(m, p) for m, p, takes_body in MUTATIONS if not takes_body]

# Not a JSON document, or not one the lab takes: 422 naming the body on every JSON route.
NOT_A_DOCUMENT: list[tuple[str, bytes]] = [
    ("open arrays", b"[" * 60_000),
    ("open objects", b'{"a":' * 12_000),
    ("closed arrays 5000 deep", b"[" * 5_000 + b"]" * 5_000),
    ("objects 5000 deep", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
    ("a field 40 deep", b'{"target": ' + b"[" * 40 + b"]" * 40 + b"}"),
    ("a field 33 deep", b'{"spec": ' + b'{"a":' * 32 + b"1" + b"}" * 32 + b"}"),
    ("cut short", b'{"target": "tcp://127.0.0.1:1"'),
    ("not json", b"{not json"),
    ("trailing comma", b'{"count": 1,}'),
    ("two documents", b'{"count": 1}{"count": 2}'),
    ("single quotes", b"{'count': 1}"),
    ("NaN", b"NaN"),
    ("Infinity in a field", b'{"target": "tcp://127.0.0.1:1", "duration": Infinity}'),
    ("-Infinity in a field", b'{"target": "tcp://127.0.0.1:1", "rate": -Infinity}'),
    ("a lone surrogate", b'{"target": "\\ud800"}'),
    ("a lone surrogate as a key", b'{"\\udfff": 1}'),
    ("not utf-8", b'{"target": "\xff\xfe"}'),
    ("latin-1", b'{"name": "caf\xe9"}'),
    ("a byte order mark", b'\xef\xbb\xbf{"count": 1}'),
    ("utf-16", '{"count": 1}'.encode("utf-16")),
    ("a 5000-digit number", b'{"count": ' + b"9" * 5_000 + b"}"),
    ("a NUL byte", b"\x00"),
    ("empty", b""),
    ("whitespace", b"  \r\n\t "),
]
# JSON documents that are not objects: 422 (the field is the route's: body, or none).
NOT_AN_OBJECT: list[tuple[str, bytes]] = [
    ("null", b"null"),
    ("an array", b"[]"),
    ("a string", b'"text"'),
    ("a number", b"1"),
    ("a flat array near the cap", b"[" + b"0," * 30_000 + b"0]"),
]
# JSON objects, large but within the body cap: 4xx (which field is the route's business).
LARGE: list[tuple[str, bytes]] = [
    ("a 60 kB string", json.dumps({"target": "a" * 60_000}).encode()),
    ("a 60 kB name", json.dumps({"name": "x" * 60_000, "url": "y"}).encode()),
    ("4000 keys", json.dumps({f"k{i}": i for i in range(4_000)}).encode()),
    ("a wide list", json.dumps({"target": [[]] * 15_000}).encode()),
    ("escapes", b'{"target": "' + b"\\u0041" * 10_000 + b'"}'),
    ("brackets in a string", json.dumps({"target": "[{" * 20_000}).encode()),
]


def _nested(depth: int) -> list[Any]:
    doc: list[Any] = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nope", path)


def error_doc(status: int, body: bytes) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:200])
    doc = json.loads(body)
    assert isinstance(doc, dict) and set(doc) == {"error", "field"}, doc
    assert isinstance(doc["error"], str) and doc["error"], doc
    return doc


def no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


async def post(lab: Lab, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    assert lab.web_port is not None
    response = await http(
        lab.web_port,
        method,
        concrete(path),
        raw_body=body,
        headers={"Content-Type": "application/json"},
    )
    return response.status, response.body


def test_the_table_has_every_route_that_takes_a_body() -> None:
    assert {
        ("POST", "/api/runs"),
        ("POST", "/api/listeners"),
        ("POST", "/api/presets"),
        ("POST", "/api/send"),
        ("POST", "/api/peers/{name}/runs"),
    } <= set(JSON_ROUTES)
    assert all(len(body) <= MAX_BODY_BYTES for _, body in NOT_A_DOCUMENT + NOT_AN_OBJECT + LARGE)


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
async def test_a_body_that_is_not_a_json_document_is_422_naming_the_body(
    lab: Lab, method: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name, body in NOT_A_DOCUMENT:
        status, answer = await post(lab, method, path, body)
        doc = error_doc(status, answer)
        assert (status, doc["field"]) == (422, "body"), (name, doc)
    for name, body in NOT_AN_OBJECT:
        status, answer = await post(lab, method, path, body)
        doc = error_doc(status, answer)
        assert status == 422 and doc["field"] == "body", (name, doc)
    no_error_logged(caplog)
    assert await lab.runs.list() == []


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
async def test_large_and_oversized_bodies_are_4xx(
    lab: Lab, method: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(lab.listeners)
    for name, body in LARGE:
        status, answer = await post(lab, method, path, body)
        assert status != 413, name  # within the cap: read and judged
        error_doc(status, answer)
    for body in (b"[" * (MAX_BODY_BYTES + 1), b'{"target": "' + b"a" * MAX_BODY_BYTES + b'"}'):
        status, answer = await post(lab, method, path, body)
        assert status == 413
        error_doc(status, answer)
    no_error_logged(caplog)
    assert await lab.runs.list() == []
    assert len(lab.listeners) == before


@pytest.mark.parametrize(
    ("method", "path"), OTHER_MUTATIONS, ids=[f"{m} {p}" for m, p in OTHER_MUTATIONS]
)
async def test_a_route_without_a_body_ignores_hostile_json(
    lab: Lab, method: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    for _, body in NOT_A_DOCUMENT[:6]:
        status, _ = await post(lab, method, path, body)
        assert status < 500
    no_error_logged(caplog)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", []),
        ('{"a": [{"b": {"c": null}}]}', {"a": [{"b": {"c": None}}]}),
        ("[" * 32 + "]" * 32, _nested(32)),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"[[[[{{{{"', "[[[[{{{{"),
        (b'{"caf\xc3\xa9": 1}', {"caf\u00e9": 1}),
    ],
)
def test_jsondoc_takes_plain_json(text: str | bytes, expected: Any) -> None:
    assert jsondoc.loads(text) == expected


@pytest.mark.parametrize(("name", "body"), NOT_A_DOCUMENT)
def test_jsondoc_refuses_with_a_value_error(name: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        jsondoc.loads(body)


def test_jsondoc_counts_depth_as_arrays_and_objects_nested() -> None:
    assert jsondoc.loads("[" * 32 + "]" * 32, max_depth=32) is not None
    with pytest.raises(ValueError, match="nested deeper than 32"):
        jsondoc.loads("[" * 33 + "]" * 33, max_depth=32)
    with pytest.raises(ValueError, match="nested deeper than 2"):
        jsondoc.loads('{"a": [1, {"b": 2}]}', max_depth=2)
    assert jsondoc.loads('{"a": [1, 2], "b": {"c": 3}}', max_depth=2)


async def _next(client: WebSocketClient, kind: str) -> Any:
    while True:
        message = await client.receive_json()
        if message["type"] == kind:
            return message


async def test_the_websocket_answers_hostile_json_with_an_error_and_stays_open(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad view message is answered, not punished with a close.

    That is the better answer for a browser: the dashboard keeps its live feed (a close
    would make it reconnect and start again from a full state), its code gets the error as
    a message it can show, and every bad message, nested or not, is treated alike. It costs
    the server nothing: a message is refused by its length before it is parsed, and at most
    a few error answers wait for the writer. Only a frame over the transport's own cap
    (1 MiB) ends the socket, with a close code saying so.
    """
    from wsproto.events import BytesMessage, TextMessage

    assert lab.web_port is not None
    hostile: list[str | bytes] = [
        "[" * 100_000,
        '{"type": "view", "q": ' + "[" * 2_000 + "]" * 2_000 + "}",
        '{"type": "view", "offset": ' + "[" * 40 + "]" * 40 + "}",
        "{" * 500_000,
        '{"type": "view", "q": "' + "a" * 500_000 + '"}',
        '{"type": "view", "offset": NaN}',
        '{"type": "view", "q": "\\ud800"}',
        "{not json",
        "",
        b'{"type": "view", "q": "\xff"}',
        b"[" * 1000,
    ]
    with trio.fail_after(20):
        status, client, stream = await websocket_handshake(lab.web_port)
        async with stream:
            assert status == 101 and client is not None
            assert (await client.receive_json())["type"] == "full"
            for message in hostile:
                if isinstance(message, bytes):
                    await stream.send_all(client.ws.send(BytesMessage(message)))
                else:
                    await stream.send_all(client.ws.send(TextMessage(message)))
                error = await _next(client, "error")
                assert error["field"] == "body", error
            await stream.send_all(
                client.ws.send(TextMessage(json.dumps({"type": "view", "seq": 7, "limit": 5})))
            )
            page = await _next(client, "conns")
            while page["seq"] != 7:
                page = await _next(client, "conns")
            assert page["limit"] == 5
    no_error_logged(caplog)


async def test_a_websocket_frame_over_the_cap_closes_with_a_reason(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    from wsproto.events import CloseConnection, TextMessage

    assert lab.web_port is not None
    with trio.fail_after(20):
        status, client, stream = await websocket_handshake(lab.web_port)
        async with stream:
            assert status == 101 and client is not None
            await stream.send_all(client.ws.send(TextMessage("[" * (2 * 1024 * 1024))))
            code = None
            while code is None:
                data = await stream.receive_some(65536)
                assert data, "the connection ended without a close frame"
                client.ws.receive_data(data)
                for event in client.ws.events():
                    if isinstance(event, CloseConnection):
                        code = event.code
    assert code == 1009  # message too big
    no_error_logged(caplog)
