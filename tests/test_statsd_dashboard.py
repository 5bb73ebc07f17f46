"""The dashboard's Telemetry tab shows DogStatsD events and service checks."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, api_call, start_served_lab

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("statsd-dashboard") / "data"
    served = start_served_lab(data, "--listen", "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def test_telemetry_shows_events_and_service_checks(served: ServedLab) -> None:
    listeners = api_call(served, "GET", "/api/listeners")["items"]
    port = next(item["port"] for item in listeners if item["mode"] == "statsd")
    with chromium_page() as page:
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=10000)
        page.click("#tabs a[data-tab=telemetry]")
        page.wait_for_selector("section#telemetry:not([hidden])", timeout=2000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(
                b"_e{6,14}:deploy|<b>v1.2</b> up|t:success|#svc:api\n"
                b"_sc|db.up|2|#shard:1|m:replica down",
                ("127.0.0.1", port),
            )
        event = page.locator("#tm-events tbody tr[data-title='deploy'] td")
        event.first.wait_for(timeout=5000)
        # The text is shown as sent, never as markup.
        assert event.all_inner_texts() == ["deploy", "<b>v1.2</b> up", "success", "svc:api"]
        check = page.locator("#tm-checks tbody tr[data-name='db.up|#shard:1'] td")
        check.first.wait_for(timeout=5000)
        assert check.all_inner_texts() == ["db.up|#shard:1", "critical", "replica down"]
        assert "0 bad lines" in page.inner_text("#tm-status")
        screenshot(page, "telemetry-events", scroll_to="#tm-events")
