"""The dashboard in a real browser (Debian's Chromium) against a real ``socketlab serve``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, start_served_lab

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedLab]:
    served = start_served_lab(tmp_path / "data")
    try:
        yield served
    finally:
        assert served.stop() == 0
        if served.process.stdout:
            served.process.stdout.close()


def test_dashboard_shows_a_live_connection_and_fires_a_run(served: ServedLab) -> None:
    with chromium_page() as page:
        page.goto(served.login_url)
        # The login URL moved the token into a cookie and out of the address bar.
        assert page.url == f"http://127.0.0.1:{served.web_port}/"
        page.wait_for_selector("#status:text('live')", timeout=5000)
        page.wait_for_selector("#listeners tbody tr", timeout=5000)

        client = socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
        try:
            client.sendall(b"hello")
            assert client.recv(5) == b"hello"
            remote = f"127.0.0.1:{client.getsockname()[1]}"
            row = page.locator("#connections tbody tr", has_text=remote)
            row.wait_for(state="visible", timeout=1000)
            assert "tcp" in row.inner_text()
            screenshot(page, "overview")
        finally:
            client.close()
        row.wait_for(state="detached", timeout=2000)

        target = page.input_value("#fire-target")
        assert target == f"tcp://127.0.0.1:{served.listeners['tcp']}"
        page.fill("input[name=duration]", "1")
        page.fill("input[name=connections]", "4")
        page.click("#fire-button")
        page.wait_for_selector("#run-progress:not([hidden])", timeout=2000)
        page.wait_for_selector("#run-result:not([hidden])", timeout=10000)
        status = page.inner_text("#result-table tr[data-key=status] td")
        received = page.inner_text("#result-table tr[data-key=received] td")
        assert status == "finished"
        assert int(received.replace(",", "")) > 0
        page.wait_for_selector("#runs tbody tr", timeout=2000)
        screenshot(page, "fire-result")


def test_dashboard_without_login_shows_the_sign_in_page(served: ServedLab) -> None:
    with chromium_page() as page:
        response = page.goto(f"http://127.0.0.1:{served.web_port}/")
        assert response is not None
        assert response.status == 401
        assert page.locator("input#token").is_visible()
