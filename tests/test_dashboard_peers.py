"""The peers section and the kill switch, in Debian's Chromium against two real labs."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import TOKEN, ServedLab, start_served_lab

pytestmark = pytest.mark.browser


@pytest.fixture
def two_labs(tmp_path: Path) -> Iterator[tuple[ServedLab, ServedLab]]:
    edge = start_served_lab(tmp_path / "edge")
    hub = None
    try:
        peer = f"http://127.0.0.1:{edge.web_port}"
        hub = start_served_lab(tmp_path / "hub", "--peer", peer, "--peer-token", TOKEN)
        yield hub, edge
    finally:
        for lab in (hub, edge):
            if lab is not None:
                assert lab.stop() == 0
                lab.close_stdout()


def test_peers_section_shows_a_peer_and_runs_on_it(two_labs: tuple[ServedLab, ServedLab]) -> None:
    hub, edge = two_labs
    with chromium_page() as page:
        page.goto(hub.login_url)
        page.goto(f"http://127.0.0.1:{hub.web_port}/#peers")
        row = page.locator("#peers-table tbody tr", has_text="up")
        row.wait_for(state="visible", timeout=8000)
        assert f"127.0.0.1:{edge.web_port}" in row.inner_text()
        assert f"tcp:{edge.listeners['tcp']}" in row.inner_text()
        page.fill("#peer-run-form input[name=target]", f"tcp://127.0.0.1:{edge.listeners['tcp']}")
        page.fill("#peer-run-form input[name=duration]", "1")
        page.click("#peer-run-button")
        page.wait_for_selector("#peer-run-status[data-status=finished]", timeout=15000)
        assert "replies" in page.inner_text("#peer-run-status")
        screenshot(page, "peers")


def test_the_kill_switch_stops_every_run(two_labs: tuple[ServedLab, ServedLab]) -> None:
    import json
    import urllib.request

    hub, _ = two_labs
    base = f"http://127.0.0.1:{hub.web_port}"

    def call(method: str, path: str, body: object = None) -> dict[str, object]:
        request = urllib.request.Request(
            base + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            doc: dict[str, object] = json.loads(response.read())
            return doc

    target = f"udp://127.0.0.1:{hub.listeners['udp']}"
    ids = [str(call("POST", "/api/runs", {"target": target, "duration": 60})["id"]) for _ in "ab"]
    with chromium_page() as page:
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(hub.login_url)
        page.click("#kill-switch")
        page.wait_for_selector("#kill-result:has-text('stopped 2 runs')", timeout=10000)
    assert [call("GET", f"/api/runs/{run_id}")["status"] for run_id in ids] == [
        "stopped",
        "stopped",
    ]


class _HtmlEverywhere(http.server.BaseHTTPRequestHandler):
    """A peer that answers every call with a web page instead of the API's JSON."""

    def do_GET(self) -> None:  # the name http.server calls
        body = b"<!doctype html><html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_peer_that_answers_badly_is_shown_failing_with_the_reason(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub = None
    try:
        peer = f"http://127.0.0.1:{server.server_address[1]}"
        hub = start_served_lab(tmp_path / "hub", "--peer", peer)
        with chromium_page() as page:
            page.goto(hub.login_url)
            page.goto(f"http://127.0.0.1:{hub.web_port}/#peers")
            row = page.locator("#peers-table tbody tr[data-status=failing]")
            row.wait_for(state="visible", timeout=8000)
            text = row.inner_text()
            assert "failing" in text and "GET /api/listeners: the answer is not JSON" in text
    finally:
        if hub is not None:
            assert hub.stop() == 0
            hub.close_stdout()
        server.shutdown()
        server.server_close()
        thread.join(5)
