"""The security matrix: every operation of the OpenAPI document against every refusal rule.

The operations come from the app's own OpenAPI document (built at collection time from the
real app; :func:`test_the_matrix_covers_the_served_openapi_document` checks it against what
``/openapi.json`` serves), so a new route is in the matrix the day it is added.

Rules, one parametrised row per operation and a table of bypass shapes each, as Jupyter's
origin tests do:

- no token, a wrong token, or the token in the query string → 401, on every operation but
  the open ones (``security: []``);
- a foreign Host (DNS rebinding) → 403 on every operation and on the WebSocket;
- a foreign, ``null`` or look-alike Origin → 403 on every mutating operation, and on the
  WebSocket handshake with no upgrade;
- a ``text/plain``, form or multipart body (declared length or chunked) → 415, and nothing
  is created;
- no ``Access-Control-*`` header in any answer, preflights included;
- the token never reaches a log record, in process or in a served lab's stderr.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from app.lab import Lab
from app.web.factory import create_web
from tests.conftest import listener_port
from tests.helpers import TOKEN, Response, http, lab_settings, start_served_lab
from tests.helpers import websocket_handshake as ws_handshake

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, generated from a lab that is not running."""
    web = create_web(Lab(lab_settings(Path("unused"))).web_deps())
    doc: dict[str, Any] = web.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return doc


OPERATIONS = sorted(
    (method.upper(), path, op.get("security") == [])
    for path, ops in _openapi_document()["paths"].items()
    for method, op in ops.items()
)
ALL = [(m, p) for m, p, _ in OPERATIONS]
PROTECTED = [(m, p) for m, p, is_open in OPERATIONS if not is_open]
MUTATIONS = [(m, p) for m, p in ALL if m in MUTATING]
BODIES = [
    (method.upper(), path)
    for path, ops in _openapi_document()["paths"].items()
    for method, op in ops.items()
    if "requestBody" in op
]


def op_id(op: tuple[str, str]) -> str:
    return f"{op[0]} {op[1]}"


def concrete(path: str) -> str:
    """A request path for an OpenAPI path: every ``{param}`` becomes ``x``."""
    return re.sub(r"\{[^}]+\}", "x", path)


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def request(
    port: int,
    method: str,
    path: str,
    *,
    host: str | None = None,
    token: str | None = TOKEN,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    chunked: bool = False,
    status_only: bool = False,
) -> Response:
    """One HTTP/1.1 request with exactly the given Host and headers, read by its framing.

    A JSON ``{}`` body goes with mutating methods unless ``body`` is given; ``chunked``
    sends the body in two chunks with no Content-Length. ``status_only`` stops at the
    head (for streams that never end).
    """
    hdrs = [("Host", f"127.0.0.1:{port}" if host is None else host), ("Connection", "close")]
    if token is not None:
        hdrs.append(("Authorization", f"Bearer {token}"))
    if body is None and method in MUTATING:
        body = b"{}"
        hdrs.append(("Content-Type", "application/json"))
    hdrs += headers or []
    if body and chunked:
        hdrs.append(("Transfer-Encoding", "chunked"))
    elif body:
        hdrs.append(("Content-Length", str(len(body))))
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            out = conn.send(h11.Request(method=method, target=path, headers=hdrs))
            if body:
                half = len(body) // 2
                for part in (body[:half], body[half:]) if chunked else (body,):
                    out += conn.send(h11.Data(data=part))
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            status, rheaders, chunks = 0, {}, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    rheaders = {k.decode().lower(): v.decode() for k, v in event.headers}
                    if status_only:
                        break
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
    no_cors(rheaders)
    return Response(status, rheaders, b"".join(chunks))


def no_cors(headers: dict[str, str]) -> None:
    cors = [k for k in headers if k.lower().startswith("access-control-")]
    assert cors == [], f"CORS headers sent: {cors}"


async def nothing_changed(lab: Lab) -> None:
    """No run, preset, audit row or listener came into being."""
    port = web_port(lab)
    assert await lab.runs.list() == []
    assert (await http(port, "GET", "/api/audit")).json()["items"] == []
    assert (await http(port, "GET", "/api/presets")).json()["items"] == []
    assert len(lab.listeners) == 2


# --- The matrix is the whole API --------------------------------------------------------


def test_the_matrix_covers_every_api_route_of_the_app() -> None:
    web = create_web(Lab(lab_settings(Path("unused"))).web_deps())
    routes = set()
    for rule in web.url_map.iter_rules():
        if rule.websocket or not (rule.rule.startswith("/api/") or rule.rule == "/metrics"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert routes == set(ALL)
    assert ("POST", "/api/runs") in MUTATIONS
    assert [(m, p) for m, p, is_open in OPERATIONS if is_open] == [("GET", "/api/health")]


async def test_the_matrix_covers_the_served_openapi_document(lab: Lab) -> None:
    served = (await http(web_port(lab), "GET", "/openapi.json", token=None)).json()
    assert {(m.upper(), p) for p, item in served["paths"].items() for m in item} == set(ALL)


# --- 401 --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", PROTECTED, ids=op_id)
async def test_every_operation_refuses_a_missing_or_wrong_token(
    lab: Lab, op: tuple[str, str]
) -> None:
    method, path = op
    port = web_port(lab)
    path = concrete(path)
    attempts = [
        await request(port, method, path, token=None),
        await request(port, method, path, token="wrong-" + TOKEN),
        await request(port, method, path, token=TOKEN[:-1]),
        await request(port, method, path, token=TOKEN + "x"),
        # Never from the query string of an API call (histories, proxies and logs keep it).
        await request(port, method, f"{path}?token={TOKEN}", token=None),
        await request(port, method, path, token=None, headers=[("X-Token", TOKEN)]),
        await request(port, method, path, token=None, headers=[("Authorization", TOKEN)]),
        await request(
            port, method, path, token=None, headers=[("Authorization", f"Basic {TOKEN}")]
        ),
    ]
    for response in attempts:
        assert response.status == 401, (path, response.status, response.body)
        assert response.json() == {"error": "missing or wrong token", "field": "Authorization"}
    # The control: the same request with the token gets past auth.
    assert (await request(port, method, path, status_only=True)).status != 401
    if method == "GET":
        await nothing_changed(lab)


async def test_the_open_operation_answers_without_a_token(lab: Lab) -> None:
    response = await request(web_port(lab), "GET", "/api/health", token=None)
    assert (response.status, response.json()) == (200, {"status": "ok"})


# --- 403 for a foreign Host -------------------------------------------------------------

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "localhost.evil.test:{port}",
    "127.0.0.1:{port}.evil.test",
    "127.0.0.1:{port}@evil.test",
    "127.0.0.2:{port}",
    "[::2]:{port}",
    "0.0.0.0:{port}",
    "LOCALHOST.:{port}",
    # Lenient parsing let these pass as a loopback name: one strict parser refuses them.
    "[::1]evil",
    "[::1]evil:{port}",
    "[::1]:{port}evil",
    "[127.0.0.1]:{port}",
    "[localhost]:{port}",
    "[::1]:",
    "[::1",
    "::1",
    "::1:{port}",
    "[::1%25lo]:{port}",
    "[::1]:{port}:{port}",
    "127.0.0.1:",
    "127.0.0.1:0{port}",
    "127.0.0.1:{port}0",
    "127.0.0.1:99999",
    "127.0.0.1:0",
    "127.0.0.1:{port}:{port}",
    "127.0.0.1 :{port}",
    "user@127.0.0.1:{port}",
    "localhost..:{port}",
    ".localhost:{port}",
    "[::ffff:127.0.0.1]:{port}",
    "a" * 64 + ":{port}",
    "",
]
GOOD_HOSTS = [
    "127.0.0.1:{port}",
    "localhost:{port}",
    "LocalHost:{port}",
    "[::1]:{port}",
    # The same IPv6 literal, not compressed: compared in its compressed form.
    "[0:0:0:0:0:0:0:1]:{port}",
]


def host_value(template: str, port: int) -> str:
    return template.format(port=port, wrong=port + 1 if port < 65535 else port - 1)


@pytest.mark.parametrize("op", ALL, ids=op_id)
async def test_every_operation_refuses_a_foreign_host(lab: Lab, op: tuple[str, str]) -> None:
    method, path = op
    port = web_port(lab)
    for template in FOREIGN_HOSTS:
        host = host_value(template, port)
        response = await request(port, method, concrete(path), host=host)
        assert response.status in (400, 403), (host, response.status, response.body)
        if response.status == 403:
            assert response.json()["field"] == "Host"
        else:
            assert host == ""  # h11 refuses an empty Host before the app sees it
    for template in GOOD_HOSTS:
        host = host_value(template, port)
        response = await request(port, "GET", "/api/health", host=host)
        assert response.status == 200, host
    if method == "GET":
        await nothing_changed(lab)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("LocalHost", ("localhost", None)),
        ("lab-peer_1.example.:65535", ("lab-peer_1.example.", 65535)),
        ("[::1]", ("::1", None)),
        ("[::1]:8000", ("::1", 8000)),
        ("[0:0:0:0:0:0:0:1]:1", ("::1", 1)),
        ("[FD00::A]:8000", ("fd00::a", 8000)),
        ("[::1]evil", ("", None)),
        ("[::1]evil:8000", ("", None)),
        ("[::1]:8000evil", ("", None)),
        ("[127.0.0.1]:8000", ("", None)),
        ("[localhost]", ("", None)),
        ("[fe80::1%25eth0]:8000", ("", None)),
        ("[fe80::1%eth0]", ("", None)),
        ("[::1", ("", None)),
        ("[::1]:", ("", None)),
        ("::1", ("", None)),
        ("::1:8000", ("", None)),
        ("127.0.0.1:", ("", None)),
        ("127.0.0.1:0", ("", None)),
        ("127.0.0.1:08000", ("", None)),
        ("127.0.0.1:65536", ("", None)),
        ("127.0.0.1:²", ("", None)),
        ("127.0.0.1:٨٠٠٠", ("", None)),
        ("127.0.0.1:+80", ("", None)),
        ("127.0.0.1:8000:8000", ("", None)),
        ("user@127.0.0.1", ("", None)),
        ("127.0.0.1/", ("", None)),
        ("local host", ("", None)),
        ("localhost..", ("", None)),
        (".localhost", ("", None)),
        ("a" * 64, ("", None)),
        ("lab%2eexample", ("", None)),
        ("\uff4cocalhost", ("", None)),  # a fullwidth l
        ("", ("", None)),
    ],
)
def test_host_is_a_bracketed_ipv6_literal_or_a_name_each_with_an_optional_port(
    value: str, parsed: tuple[str, int | None]
) -> None:
    from app.web.security import split_host

    assert split_host(value) == parsed


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "passes"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "http", True),
        ("HTTP://LOCALHOST:8000", "localhost:8000", "http", True),
        ("http://[::1]:8000", "[::1]:8000", "http", True),
        ("http://127.0.0.1", "127.0.0.1", "http", True),
        ("http://127.0.0.1:80", "127.0.0.1", "http", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
        # The scheme must be the one served: a page loaded over https is not this server's.
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "http", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),
        ("ws://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "https", True),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "wss", True),
        ("https://127.0.0.1", "127.0.0.1:443", "https", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "https", False),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "wss", False),
        # Host and port exactly, nothing around them.
        ("http://127.0.0.1:8001", "127.0.0.1:8000", "http", False),
        ("http://127.0.0.1", "127.0.0.1:8000", "http", False),
        ("http://localhost:8000", "127.0.0.1:8000", "http", False),
        ("http://127.0.0.1:8000/", "127.0.0.1:8000", "http", False),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000", "http", False),
        ("http://[::1]evil:8000", "[::1]evil:8000", "http", False),
        ("http://[127.0.0.1]:8000", "[127.0.0.1]:8000", "http", False),
        ("http://127.0.0.1:8000", "", "http", False),
        ("null", "127.0.0.1:8000", "http", False),
        # Configured origins pass as written, whatever the scheme served.
        ("https://lab.example", "lab.example", "http", True),
        ("https://lab.example/", "lab.example", "http", False),
    ],
)
def test_origin_is_exactly_the_served_scheme_and_the_host(
    origin: str, host: str, scheme: str, passes: bool
) -> None:
    from app.web.security import origin_allowed

    settings = lab_settings(Path("unused"), allowed_origins=("https://lab.example",))
    assert origin_allowed(settings, origin, host, scheme) is passes


# --- 403 for a foreign Origin -----------------------------------------------------------

FOREIGN_ORIGINS = [
    "http://evil.example",
    "null",
    "http://localhost.evil.test",
    "http://localhost.evil.test:{port}",
    "http://127.0.0.1:{wrong}",
    "http://localhost:{wrong}",
    "http://127.0.0.1",
    "http://127.0.0.1.evil.test:{port}",
    "http://127.0.0.1:{port}.evil.test",
    "http://127.0.0.1:{port}@evil.test",
    "http://evil.test#@127.0.0.1:{port}",
    "https://evil.example",
    "https://evil.example:{port}",
    "https://127.0.0.1.evil.test:{port}",
    "ws://evil.example",
    "file://",
    "",
    # The right host and port in another scheme: this server serves plain HTTP.
    "https://127.0.0.1:{port}",
    "HTTPS://127.0.0.1:{port}",
    "ws://127.0.0.1:{port}",
    "wss://127.0.0.1:{port}",
    "ftp://127.0.0.1:{port}",
    # The right origin with something more, or spelt as no browser sends it.
    "http://127.0.0.1:{port}/",
    "http://127.0.0.1:{port}/api",
    "http://user@127.0.0.1:{port}",
    "http://127.0.0.1:0{port}",
    "http://127.0.0.1:{port}:{port}",
    "http://[127.0.0.1]:{port}",
    "http//127.0.0.1:{port}",
    "http:/127.0.0.1:{port}",
    "127.0.0.1:{port}",
]


def origin_value(template: str, port: int) -> str:
    return template.format(port=port, wrong=port + 1 if port < 65535 else port - 1)


@pytest.mark.parametrize("op", MUTATIONS, ids=op_id)
async def test_every_mutation_refuses_a_foreign_origin(lab: Lab, op: tuple[str, str]) -> None:
    method, path = op
    port = web_port(lab)
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    spec = json.dumps({"target": target, "count": 1}).encode()
    for template in FOREIGN_ORIGINS:
        origin = origin_value(template, port)
        response = await request(
            port,
            method,
            concrete(path),
            headers=[("Origin", origin), ("Content-Type", "application/json")],
            body=spec,
        )
        assert response.status == 403, (origin, response.status, response.body)
        assert response.json() == {"error": "cross-origin request refused", "field": "Origin"}
    await nothing_changed(lab)


async def test_a_same_origin_post_is_accepted(lab: Lab) -> None:
    # The control for the rows above: the lab's own page may post.
    port = web_port(lab)
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    for origin in (f"http://127.0.0.1:{port}", f"HTTP://127.0.0.1:{port}"):
        response = await request(
            port,
            "POST",
            "/api/presets",
            headers=[("Origin", origin), ("Content-Type", "application/json")],
            body=json.dumps({"name": "p", "spec": {"target": target}}).encode(),
        )
        assert response.status in (200, 201), response.body


@pytest.mark.parametrize("template", FOREIGN_ORIGINS)
async def test_the_websocket_refuses_a_foreign_origin_without_upgrading(
    lab: Lab, template: str
) -> None:
    port = web_port(lab)
    origin = origin_value(template, port)
    with trio.fail_after(5):
        status, client, stream = await ws_handshake(port, origin=origin)
        async with stream:
            assert (status, client) == (403, None), origin
    assert lab.hub.subscriber_count == 0


def _idna_ok(template: str) -> bool:
    try:
        template.partition(":")[0].encode("idna")
    except UnicodeError:
        return False
    return True


@pytest.mark.parametrize("template", [h for h in FOREIGN_HOSTS[:-1] if _idna_ok(h)])
async def test_the_websocket_refuses_a_foreign_host_without_upgrading(
    lab: Lab, template: str
) -> None:
    port = web_port(lab)
    host = host_value(template, port)
    with trio.fail_after(5):
        status, client, stream = await ws_handshake(port, host=host)
        async with stream:
            assert (status, client) == (403, None), host
    assert lab.hub.subscriber_count == 0


# wsproto's client will not send a Host it cannot IDNA-encode; werkzeug on the server could
# not route one either (a 500 before any handler ran), so these go as raw bytes.
@pytest.mark.parametrize("template", [h for h in FOREIGN_HOSTS[:-1] if not _idna_ok(h)])
async def test_the_websocket_refuses_a_host_werkzeug_cannot_route(
    lab: Lab, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = web_port(lab)
    host = host_value(template, port)
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    )
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(handshake.encode())
            head = b""
            while b"\r\n" not in head:
                chunk = await stream.receive_some(65536)
                assert chunk, head
                head += chunk
    assert head.startswith(b"HTTP/1.1 403 "), head
    assert lab.hub.subscriber_count == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_websocket_upgrades_for_its_own_origin(lab: Lab) -> None:
    port = web_port(lab)
    with trio.fail_after(5):
        status, client, stream = await ws_handshake(
            port, origin=f"http://localhost:{port}", host=f"localhost:{port}"
        )
        async with stream:
            assert status == 101
            assert client is not None
            assert (await client.receive_json())["type"] == "full"


# --- 415 for bodies that are not JSON ---------------------------------------------------

NOT_JSON = [
    ("text/plain", b'{"target": "tcp://127.0.0.1:PORT", "count": 1}'),
    ("text/plain;charset=utf-8", b'{"target": "tcp://127.0.0.1:PORT", "count": 1}'),
    ("application/x-www-form-urlencoded", b"target=tcp%3A%2F%2F127.0.0.1%3APORT&count=1"),
    (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="target"\r\n\r\n'
        b"tcp://127.0.0.1:PORT\r\n--b--\r\n",
    ),
    ("application/json-patch+json", b'{"target": "tcp://127.0.0.1:PORT", "count": 1}'),
    ("text/json", b'{"target": "tcp://127.0.0.1:PORT", "count": 1}'),
    (None, b'{"target": "tcp://127.0.0.1:PORT", "count": 1}'),
]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("op", MUTATIONS, ids=op_id)
async def test_every_mutation_refuses_a_body_that_is_not_json(
    lab: Lab, op: tuple[str, str], chunked: bool
) -> None:
    method, path = op
    port = web_port(lab)
    target_port = str(listener_port(lab, "tcp")).encode()
    # The real path where a run would start, so that a wrongly accepted body would show.
    for content_type, body in NOT_JSON:
        headers = [] if content_type is None else [("Content-Type", content_type)]
        response = await request(
            port,
            method,
            concrete(path),
            headers=headers,
            body=body.replace(b"PORT", target_port),
            chunked=chunked,
        )
        assert response.status == 415, (content_type, response.status, response.body)
        assert response.json()["field"] == "Content-Type"
    # A Content-Type that is not JSON is refused even with no body at all.
    empty = await request(
        port, method, concrete(path), headers=[("Content-Type", "text/plain")], body=b""
    )
    assert empty.status == 415
    await nothing_changed(lab)


async def test_a_json_body_sent_chunked_is_accepted(lab: Lab) -> None:
    port = web_port(lab)
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    response = await request(
        port,
        "POST",
        "/api/runs",
        headers=[("Content-Type", "application/json; charset=utf-8")],
        body=json.dumps({"target": target, "count": 1}).encode(),
        chunked=True,
    )
    assert response.status == 201, response.body


@pytest.mark.parametrize("op", MUTATIONS, ids=op_id)
async def test_a_json_body_that_is_not_utf8_is_refused_not_a_server_error(
    lab: Lab, op: tuple[str, str]
) -> None:
    method, path = op
    port = web_port(lab)
    for body in (b"\xff\xfe{}", b'{"target": "\xe9"}', b"\x80"):
        response = await request(
            port,
            method,
            concrete(path),
            headers=[("Content-Type", "application/json")],
            body=body,
        )
        # Refused as a bad body (routes that take none ignore it): never a 500.
        assert response.status < 500, (body, response.status, response.body)
        if op in BODIES:
            assert response.status == 422
            assert response.json()["field"] == "body"
    await nothing_changed(lab)


# --- No CORS, preflights included -------------------------------------------------------


@pytest.mark.parametrize("op", ALL, ids=op_id)
async def test_a_preflight_gets_no_cors_headers(lab: Lab, op: tuple[str, str]) -> None:
    method, path = op
    port = web_port(lab)
    for token in (None, TOKEN):
        response = await request(
            port,
            "OPTIONS",
            concrete(path),
            token=token,
            headers=[
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", method),
                ("Access-Control-Request-Headers", "authorization, content-type"),
            ],
        )
        assert response.status < 500
        # request() has asserted: no Access-Control-* header at all.


# --- The token is never logged ----------------------------------------------------------


def _assert_token_absent(text: str) -> None:
    assert TOKEN not in text
    # Nor a large piece of it (a prefix cut by a formatter, say).
    assert TOKEN[: len(TOKEN) // 2] not in text


async def test_the_token_never_reaches_a_log_record(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = web_port(lab)
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    login = await http(port, "GET", f"/?token={TOKEN}", token=None)
    assert login.status == 303
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    assert (await http(port, "GET", "/", token=None, headers={"Cookie": cookie})).status == 200
    assert (await http(port, "GET", "/?token=wrong", token=None)).status == 401
    created = await http(port, "POST", "/api/runs", body={"target": target, "count": 5})
    assert created.status == 201
    assert (await http(port, "POST", "/api/runs", body={"target": "tcp://10.0.0.1:9"})).status
    assert (await http(port, "GET", f"/api/listeners?token={TOKEN}", token=None)).status == 401
    assert (await http(port, "GET", "/api/listeners", token=TOKEN + "x")).status == 401
    assert (await http(port, "GET", "/api/runs")).status == 200
    assert (await http(port, "GET", "/api/nothing")).status == 404
    with trio.fail_after(5):
        status, client, stream = await ws_handshake(port)
        async with stream:
            assert status == 101
            assert client is not None
            assert (await client.receive_json())["type"] == "full"
            await stream.send_all(client.ws.send(_text_message('{"type": "nonsense"}')))
            while (await client.receive_json())["type"] != "error":
                pass
        refused, _, refused_stream = await ws_handshake(port, token=TOKEN + "x")
        await refused_stream.aclose()
        assert refused == 401
    run = lab.runs.live.get(created.json()["id"])
    if run is not None:
        with trio.fail_after(10):
            await run.done.wait()
    # The lab was heard (started, refused, ended a run): the checks below can fail.
    messages = [record.getMessage() for record in caplog.records]
    assert sum("run " in message for message in messages) >= 3, messages
    for record in caplog.records:
        _assert_token_absent(record.getMessage())
        _assert_token_absent(repr(record.args))
        _assert_token_absent(str(record.exc_text or ""))
    _assert_token_absent(caplog.text)


def _text_message(text: str) -> Any:
    from wsproto.events import TextMessage

    return TextMessage(data=text)


async def test_a_served_lab_never_writes_the_token_to_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log:
        served = start_served_lab(tmp_path / "data", "--log-level", "debug", stderr=log)
    try:
        port = served.web_port
        login = await http(port, "GET", f"/?token={TOKEN}", token=None)
        assert login.status == 303
        echo = served.listeners["tcp"]
        created = await http(
            port, "POST", "/api/runs", body={"target": f"tcp://127.0.0.1:{echo}", "count": 5}
        )
        assert created.status == 201
        assert (await http(port, "GET", "/api/runs")).status == 200
        assert (await http(port, "GET", f"/api/runs?token={TOKEN}", token=None)).status == 401
        with trio.fail_after(5):
            status, client, stream = await ws_handshake(port)
            async with stream:
                assert status == 101
                assert client is not None
                await client.receive_json()
    finally:
        code = served.stop()
    assert code == 0
    assert served.process.stdout is not None
    rest_of_stdout = served.process.stdout.read()
    served.process.stdout.close()
    text = log_path.read_text()
    assert "shutting down" in text  # the debug log was written: the check below can fail
    _assert_token_absent(text)
    # The login URL is printed once, at start, by design; nothing else prints the token.
    assert served.login_url.endswith(f"?token={TOKEN}")
    _assert_token_absent(rest_of_stdout)
