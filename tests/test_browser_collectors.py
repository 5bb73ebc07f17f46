"""The listener form makes collectors: an influx listener with its precision and an upstream
to forward to, and a graphite listener, added from the dashboard as a person would; what
the API then reports is what the form said, and traffic arrives."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import open_section

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data: Path = tmp_path_factory.mktemp("collectors") / "data"
    served = start_served_lab(data, "--listen", "udp://127.0.0.1:0?mode=influx")
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def _listener(served: ServedLab, port: int) -> dict[str, Any]:
    items = api_call(served, "GET", "/api/listeners")["items"]
    return next(item for item in items if item["port"] == port)


def _add_from_the_form(page: Any, protocol: str, mode: str, fields: dict[str, str]) -> int:
    page.select_option("#lf-protocol", protocol)
    page.select_option("#lf-mode", mode)
    for name, value in fields.items():
        selector = f"#listener-form [name={name}]"
        if page.locator(selector).evaluate("node => node.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    page.click("#listener-add")
    message = page.locator("#listener-msg:not([hidden])")
    message.wait_for(timeout=10000)
    port = int(message.get_attribute("data-port") or 0)
    assert port > 0
    return port


def test_collectors_added_from_the_form_forward_and_collect(served: ServedLab) -> None:
    upstream = next(
        item
        for item in api_call(served, "GET", "/api/listeners")["items"]
        if item["mode"] == "influx"
    )
    with chromium_page() as page:
        open_section(page, served, "listeners")
        page.select_option("#lf-mode", "influx")
        assert page.locator("#listener-form [name=precision]").is_visible()
        page.select_option("#lf-mode", "graphite")
        assert not page.locator("#listener-form [name=precision]").is_visible()
        assert page.locator("#listener-form [name=forward]").is_visible()
        page.select_option("#lf-mode", "echo")
        assert not page.locator("#listener-form [name=forward]").is_visible()
        tap_port = _add_from_the_form(
            page,
            "udp",
            "influx",
            {
                "precision": "s",
                "forward": f"127.0.0.1:{upstream['port']}",
                "max_keys": "100",
            },
        )
        page.locator("#listener-msg").evaluate("node => { node.hidden = true; }")
        graphite_port = _add_from_the_form(
            page, "tcp", "graphite", {"max_keys": "7", "forward": ""}
        )
    tap = _listener(served, tap_port)
    assert tap["options"] == {
        "precision": "s",
        "forward": f"127.0.0.1:{upstream['port']}",
        "max_keys": 100,
    }
    assert _listener(served, graphite_port)["options"] == {"max_keys": 7}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"room,floor=2 temp=21.5 1700000000", ("127.0.0.1", tap_port))
    deadline = time.monotonic() + 20
    while _listener(served, upstream["port"])["influx"]["received"] < 1:
        assert time.monotonic() < deadline, "the forwarded line did not arrive upstream"
        time.sleep(0.05)  # another process's counters: there is no event to wait on
    assert _listener(served, tap_port)["influx"]["forwarded"] == 1
