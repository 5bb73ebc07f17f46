"""Endpoint: one parser for targets and listener URLs, one helper for ``host:port``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from app.endpoint import Endpoint, bracket, host_port
from app.errors import SpecError
from app.lab import Lab
from tests.conftest import listener_port
from tests.helpers import http

APP = Path(__file__).resolve().parent.parent / "app"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:9000", Endpoint("tcp", "127.0.0.1", 9000)),
        ("udp://[::1]:53", Endpoint("udp", "::1", 53)),
        (" tls://example.org:443/ ", Endpoint("tls", "example.org", 443)),
    ],
)
def test_a_target_parses_into_an_endpoint_that_writes_back_its_url(
    text: str, expected: Endpoint
) -> None:
    endpoint = Endpoint.parse(text)
    assert endpoint == expected
    assert Endpoint.parse(endpoint.url) == endpoint
    assert str(endpoint) == endpoint.url


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ftp://h:1", "scheme"),
        ("tcp://h", "no port"),
        ("tcp://:80", "no host"),
        ("tcp://h:1/x", "path"),
        ("tcp://h:1?mode=echo", "query"),
        ("tcp://h:0", "port 0"),
        ("tcp://h:99999", "not a valid URL"),
    ],
)
def test_a_bad_target_is_a_spec_error_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        Endpoint.parse(text, field="peer_target")
    assert caught.value.field == "peer_target"
    assert words in caught.value.message


def test_a_listener_url_splits_into_endpoint_and_query() -> None:
    endpoint, query = Endpoint.split("udp://[::1]:0?mode=echo", "url", ("tcp", "udp"))
    assert (endpoint, query) == (Endpoint("udp", "::1", 0), "mode=echo")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 80, "127.0.0.1:80"),
        ("::1", 80, "[::1]:80"),
        ("example.org", "8", "example.org:8"),
    ],
)
def test_host_port_brackets_ipv6_literals_only(host: str, port: int | str, expected: str) -> None:
    assert host_port(host, port) == expected
    assert bracket(host) == expected.rsplit(":", 1)[0]


def test_the_bracket_helper_is_the_only_one() -> None:
    # A hand-written IPv6 bracket: f"[{host}]" if ":" in host, or f"[{host}]:{port}".
    pattern = re.compile(r"""\[\{[^}]*\}\](:\{|["'].*\bif\s+["']:["']\s+in\b)""")
    found = [
        f"{path.relative_to(APP)}:{number}: {line.strip()}"
        for path in sorted(APP.rglob("*.py"))
        if path.name != "endpoint.py" or path.parent != APP
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


async def test_a_runs_target_is_parsed_once(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = Endpoint.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Endpoint], text: str, field: str = "target") -> Any:
        calls.append(text)
        return parse(cls, text, field)

    monkeypatch.setattr(Endpoint, "parse", classmethod(counting))
    target = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    assert lab.web_port is not None
    response = await http(lab.web_port, "POST", "/api/runs", body={"target": target, "count": 20})
    assert response.status == 201, response.body
    run = lab.runs.live[response.json()["id"]]
    with trio.fail_after(10):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished"
    assert doc["spec"]["target"] == target
    assert calls == [target]
