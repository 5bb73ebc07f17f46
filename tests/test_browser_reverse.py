"""Both directions from the dashboard: a source listener added from the form, a reverse and
a bidir run fired at it from the run form, and what the page shows against the API."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import open_section

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    served = start_served_lab(tmp_path_factory.mktemp("reverse") / "data")
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def add_source(page: Any, served: ServedLab) -> int:
    open_section(page, served, "listeners")
    page.select_option("#lf-protocol", "udp")
    page.select_option("#lf-mode", "source")
    page.fill("#listener-form input[name=max_rate]", "5000")
    page.fill("#listener-form input[name=max_duration]", "30")
    page.click("#listener-add")
    message = page.locator("#listener-msg")
    message.wait_for(timeout=5000)
    port = int(message.get_attribute("data-port") or 0)
    assert port > 0
    return port


@pytest.mark.parametrize("direction", ["reverse", "bidir"])
def test_a_run_in_both_directions_fires_from_the_form(served: ServedLab, direction: str) -> None:
    with chromium_page() as page:
        port = add_source(page, served)
        listener = next(
            item
            for item in api_call(served, "GET", "/api/listeners")["items"]
            if item["port"] == port
        )
        assert listener["mode"] == "source"
        assert listener["options"]["max_rate"] == 5000
        open_section(page, served, "fire")
        page.fill("#fire-form [name=target]", f"udp://127.0.0.1:{port}")
        page.select_option("#fire-pattern", "rate")
        page.fill("#fire-form [name=rate]", "1000")
        page.select_option("#fire-stop-by", "count")
        page.fill("#fire-form [name=count]", "200")
        page.select_option("#fire-direction", direction)
        page.click("#fire-button")
        page.wait_for_selector("#run-result:not([hidden])", timeout=30000)
        assert page.inner_text("#result-table tr[data-key=status] td") == "finished"
        run_id = page.inner_text("#result-id")
        run = api_call(served, "GET", f"/api/runs/{run_id}")
        assert run["spec"][direction] is True
        summary = run["summary"]
        tag = f"{zlib.crc32(run_id.encode()):08x}"
        source = api_call(served, "GET", f"/api/listeners/{listener['id']}/probes/{tag}")
        # The source's own count equals what this end received, and what the page shows.
        assert source["tx_messages"] == summary["reverse"]["received"] == 200
        assert summary["received"] == 200
        shown = page.inner_text("#result-table tr[data-key=received] td")
        assert shown.startswith("200 msgs"), shown
        if direction == "bidir":
            assert source["received"] == summary["sent"] == 200
