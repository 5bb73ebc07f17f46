"""The dashboard in a real browser (Debian's Chromium) against a real ``socketlab serve``.

Every section is driven the way a person would: through the nav, forms and buttons. Each
test saves a 1280x800 screenshot of its section into tests/screenshots/.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import TOKEN, ServedLab, api_call, start_served_lab
from tests.pages import COLOURED_PIXELS

pytestmark = pytest.mark.browser

STATSD_URL = "udp://127.0.0.1:0?mode=statsd&flush_interval=1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("dashboard") / "data"
    served = start_served_lab(
        data,
        "--listen",
        "tcp://127.0.0.1:0?mode=echo",
        "--listen",
        "udp://127.0.0.1:0?mode=echo",
        "--listen",
        STATSD_URL,
    )
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def wait_run(served: ServedLab, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run: dict[str, Any] = api_call(served, "GET", f"/api/runs/{run_id}")
        if run["status"] != "running":
            return run
        time.sleep(0.05)  # polling another process's state: there is no event to wait on
    raise AssertionError(f"run {run_id} did not end")


def open_section(page: Any, served: ServedLab, name: str) -> None:
    if not page.url.startswith(f"http://127.0.0.1:{served.web_port}/"):
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=10000)
    page.click(f"#tabs a[data-tab={name}]")
    page.wait_for_selector(f"section#{name}:not([hidden])", timeout=2000)


def coloured(page: Any, selector: str) -> int:
    return int(page.evaluate(COLOURED_PIXELS, selector))


def points(page: Any, selector: str) -> int:
    return int(page.get_attribute(selector, "data-points") or 0)


def test_the_login_url_signs_in_and_the_token_stays_out_of_the_page(served: ServedLab) -> None:
    with chromium_page() as page:
        page.goto(served.login_url)
        assert page.url == f"http://127.0.0.1:{served.web_port}/"
        page.wait_for_selector("#status:text('live')", timeout=5000)
        assert TOKEN not in page.content()
        assert TOKEN not in page.evaluate("document.cookie")  # HttpOnly: scripts cannot read it
        assert page.is_visible("section#overview")
        assert page.get_attribute("#tabs a[data-tab=overview]", "aria-current") == "page"


def test_dashboard_without_login_shows_the_sign_in_page(served: ServedLab) -> None:
    with chromium_page() as page:
        response = page.goto(f"http://127.0.0.1:{served.web_port}/")
        assert response is not None
        assert response.status == 401
        assert page.locator("input#token").is_visible()


def test_overview_charts_are_rebuilt_after_a_reload_and_in_a_second_browser(
    served: ServedLab,
) -> None:
    with socket.create_connection(("127.0.0.1", served.listeners["tcp"])) as client:
        client.sendall(b"x" * 5000)
        received = 0
        while received < 5000:
            received += len(client.recv(65536))
        target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
        run = api_call(
            served, "POST", "/api/runs", {"target": target, "connections": 4, "duration": 6}
        )
        with chromium_page() as page:
            open_section(page, served, "overview")
            page.locator(f"#ov-runs tbody tr[data-id='{run['id']}']").wait_for(timeout=3000)
            page.wait_for_function(
                "document.querySelector('#chart-throughput').dataset.points >= 3", timeout=6000
            )
            assert coloured(page, "#chart-throughput") > 20
            assert coloured(page, "#chart-conns") > 20
            page.wait_for_selector("#ov-listeners tbody tr", timeout=2000)
            assert page.inner_text("#kpi-listeners") == "3"
            screenshot(page, "overview")
            before = points(page, "#chart-throughput")
            page.reload()
            page.wait_for_selector("#status:text('live')", timeout=5000)
            page.wait_for_function(
                f"document.querySelector('#chart-throughput').dataset.points >= {before}",
                timeout=3000,
            )
            assert coloured(page, "#chart-throughput") > 20
        with chromium_page() as second:
            open_section(second, served, "overview")
            second.wait_for_function(
                f"document.querySelector('#chart-throughput').dataset.points >= {before}",
                timeout=3000,
            )
            assert coloured(second, "#chart-conns") > 20


def test_a_connection_appears_within_a_second_and_disappears_when_closed(
    served: ServedLab,
) -> None:
    with chromium_page() as page:
        open_section(page, served, "connections")
        client = socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
        try:
            client.sendall(b"hello")
            assert client.recv(5) == b"hello"
            remote = f"127.0.0.1:{client.getsockname()[1]}"
            row = page.locator("#conn-table tbody tr", has_text=remote)
            row.wait_for(state="visible", timeout=1000)
            cells = row.locator("td").all_inner_texts()
            assert cells[1] == "tcp"
            assert cells[4] == remote
            assert cells[5] == "5 B"  # bytes in, with its unit
            screenshot(page, "connections-live")
        finally:
            client.close()
        row.wait_for(state="detached", timeout=2000)


def test_closing_a_row_closes_the_real_socket(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "connections")
        client = socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
        with client:
            client.settimeout(5)
            remote = f"127.0.0.1:{client.getsockname()[1]}"
            page.fill("#f-q", str(client.getsockname()[1]))
            row = page.locator("#conn-table tbody tr", has_text=remote)
            row.wait_for(state="visible", timeout=2000)
            row.get_by_role("button", name="Close").click()
            assert client.recv(1) == b""  # EOF: the server closed its end
            row.wait_for(state="detached", timeout=2000)
            assert page.inner_text("#pg-info").startswith("no connection")


def test_the_table_filters_sorts_and_pages_on_the_server(served: ServedLab) -> None:
    clients = [socket.create_connection(("127.0.0.1", served.listeners["tcp"])) for _ in range(12)]
    try:
        ports = [c.getsockname()[1] for c in clients]
        clients[3].sendall(b"z" * 300)
        assert clients[3].recv(300)
        with chromium_page() as page:
            open_section(page, served, "connections")
            page.select_option("#f-listener", "l1")
            page.select_option("#f-limit", "50")
            page.wait_for_function("document.querySelector('#conn-table').dataset.seq == '2'")
            rows = page.locator("#conn-table tbody tr")
            assert rows.count() >= 12
            page.click("#conn-table th[data-sort=bytes_in] button")  # counters sort descending
            page.wait_for_function("document.querySelector('#conn-table').dataset.seq == '3'")
            first = rows.first.locator("td").all_inner_texts()
            assert first[4] == f"127.0.0.1:{ports[3]}"
            assert page.get_attribute("#conn-table th[data-sort=bytes_in]", "aria-sort") == (
                "descending"
            )
            screenshot(page, "connections")
            page.select_option("#f-protocol", "udp")
            page.wait_for_function("document.querySelector('#conn-table').dataset.seq == '4'")
            assert rows.count() == 0
            page.select_option("#f-protocol", "")
            page.select_option("#f-limit", "50")
            page.fill("#f-q", str(ports[7]))
            page.wait_for_function("document.querySelector('#conn-table').dataset.seq >= '5'")
            page.wait_for_function("document.querySelectorAll('#conn-table tbody tr').length == 1")
            assert page.inner_text("#pg-info").startswith("1\u20131 of 1 matching")
    finally:
        for c in clients:
            c.close()


def test_a_run_fired_from_the_form_shows_progress_live_points_and_its_result(
    served: ServedLab,
) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        assert page.input_value("#fire-target") == f"tcp://127.0.0.1:{served.listeners['tcp']}"
        page.fill("input[name=connections]", "4")
        page.fill("input[name=duration]", "4")
        page.click("#fire-button")
        page.wait_for_selector("#run-progress:not([hidden])", timeout=2000)
        # The bar moves: two different values strictly between 0 and 1 while the run goes.
        seen: set[float] = set()
        deadline = time.monotonic() + 6
        while len(seen) < 2 and time.monotonic() < deadline:
            value = float(page.evaluate("document.querySelector('#progress-bar').value"))
            if 0 < value < 1:
                seen.add(round(value, 2))
            page.wait_for_timeout(100)
        assert len(seen) >= 2, seen
        # Live chart points arrive while the run is still going.
        page.wait_for_function(
            "document.querySelector('#chart-run-rtt').dataset.points >= 2"
            " && document.querySelector('#progress-bar').value < 1",
            timeout=5000,
        )
        assert coloured(page, "#chart-run-rtt") > 20
        page.wait_for_selector("#run-result:not([hidden])", timeout=30000)
        assert page.inner_text("#result-table tr[data-key=status] td") == "finished"
        received = page.inner_text("#result-table tr[data-key=received] td")
        assert int(received.split(" ")[0].replace(",", "")) > 0
        p50 = page.inner_text("#result-pct tr[data-key=p50] td")
        assert p50.endswith(" ms")
        assert float(p50.removesuffix(" ms")) > 0
        screenshot(page, "fire")
        drawn = points(page, "#chart-run-rtt")
        assert drawn >= 3

        page.reload()
        page.wait_for_selector("#status:text('live')", timeout=5000)
        open_section(page, served, "fire")
        page.wait_for_function(
            f"document.querySelector('#chart-run-rtt').dataset.points >= {drawn}", timeout=5000
        )
        assert coloured(page, "#chart-run-rtt") > 20
        assert coloured(page, "#chart-run-tput") > 20
        assert page.inner_text("#result-table tr[data-key=status] td") == "finished"


@pytest.mark.parametrize(
    ("pattern", "fields", "expected"),
    [
        ("pingpong", {"connections": "2", "in_flight": "2"}, {"connections": 2, "in_flight": 2}),
        ("rate", {"rate": "400", "size_max": "200"}, {"rate": 400, "size_max": 200}),
        ("bulk", {"connections": "1", "size": "4096"}, {"size": 4096}),
        ("burst", {"burst": "20", "interval": "0.25"}, {"burst": 20, "interval": 0.25}),
    ],
)
def test_every_pattern_fires_from_the_form(
    served: ServedLab, pattern: str, fields: dict[str, str], expected: dict[str, Any]
) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.select_option("#fire-pattern", pattern)
        page.fill("input[name=duration]", "1")
        for name, value in fields.items():
            page.fill(f"#fire-form [name={name}]", value)
        page.click("#fire-button")
        page.wait_for_selector("#run-result:not([hidden])", timeout=30000)
        assert page.inner_text("#result-table tr[data-key=status] td") == "finished"
        run_id = page.inner_text("#result-id")
        run = api_call(served, "GET", f"/api/runs/{run_id}")
        assert run["spec"]["pattern"] == pattern
        assert run["spec"]["duration"] == 1
        for name, value in expected.items():
            assert run["spec"][name] == value
        assert run["summary"]["sent"] > 0


def test_switching_pattern_shows_only_the_fields_of_that_pattern(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.select_option("#fire-pattern", "pingpong")
        assert page.is_visible("input[name=in_flight]")
        assert not page.is_visible("input[name=rate]")  # pingpong sets its own pace
        page.select_option("#fire-pattern", "rate")
        assert page.is_visible("input[name=rate]")
        assert not page.is_visible("input[name=in_flight]")
        assert not page.is_visible("input[name=burst]")
        page.select_option("#fire-pattern", "packet")
        for name in ("size", "connections", "rate", "duration"):
            assert not page.is_visible(f"input[name={name}]"), name
        assert page.is_visible("input[name=timeout]")
        # The shown defaults are the model's.
        page.select_option("#fire-pattern", "burst")
        assert page.get_attribute("input[name=burst]", "placeholder") == "10"
        assert page.get_attribute("input[name=connections]", "placeholder") == "1"


def test_a_packet_run_from_the_form_shows_the_reply(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.fill("#fire-target", f"udp://127.0.0.1:{served.listeners['udp']}")
        page.select_option("#fire-pattern", "packet")
        assert not page.is_visible("input[name=duration]")  # one message: no duration
        page.select_option("#fire-payload-kind", "hex")
        page.fill("input[name=payload_text]", "ca fe")
        page.click("#fire-button")
        page.wait_for_selector("#result-reply:not([hidden])", timeout=10000)
        assert "cafe" in page.inner_text("#result-reply").replace(" ", "")


def test_a_run_can_be_stopped_from_the_form(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.fill("input[name=duration]", "30")
        page.click("#fire-button")
        page.wait_for_selector("#stop-button:not([disabled])", timeout=2000)
        page.wait_for_function("document.querySelector('#progress-bar').value > 0", timeout=5000)
        page.click("#stop-button")
        page.wait_for_selector("#run-result:not([hidden])", timeout=30000)
        assert page.inner_text("#result-table tr[data-key=status] td") == "stopped"


def test_presets_are_saved_loaded_and_deleted_from_the_form(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.select_option("#fire-pattern", "burst")
        page.fill("input[name=connections]", "3")
        page.fill("input[name=burst]", "25")
        page.fill("input[name=interval]", "0.5")
        page.select_option("#fire-stop-by", "count")
        page.fill("input[name=count]", "500")
        page.select_option("#fire-payload-kind", "text")
        page.fill("input[name=payload_text]", "hello\\n")
        page.fill("#preset-name", "burst of 25")
        page.click("#preset-save")
        page.wait_for_selector("#preset-msg:text('saved')", timeout=3000)
        stored = api_call(served, "GET", "/api/presets")["items"]
        spec = next(p["spec"] for p in stored if p["name"] == "burst of 25")
        assert spec["pattern"] == "burst"
        assert (spec["connections"], spec["burst"], spec["interval"], spec["count"]) == (
            3,
            25,
            0.5,
            500,
        )
        assert spec["payload"] == {"kind": "text", "text": "hello\\n"}
        assert "duration" not in spec

        page.reload()
        open_section(page, served, "fire")
        page.wait_for_selector("#preset-select option[value='burst of 25']", state="attached")
        page.select_option("#preset-select", "burst of 25")
        page.wait_for_selector("#preset-msg:text('loaded')", timeout=2000)
        assert page.input_value("#fire-pattern") == "burst"
        assert page.input_value("input[name=burst]") == "25"
        assert page.input_value("input[name=count]") == "500"
        assert page.is_visible("input[name=count]")
        assert not page.is_visible("input[name=duration]")
        page.click("#preset-delete")
        page.wait_for_selector("#preset-msg:text('deleted')", timeout=2000)
        assert all(
            p["name"] != "burst of 25" for p in api_call(served, "GET", "/api/presets")["items"]
        )


def test_runs_history_details_export_and_compare(served: ServedLab) -> None:
    target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
    first = api_call(
        served, "POST", "/api/runs", {"target": target, "connections": 2, "count": 300}
    )
    second = api_call(
        served, "POST", "/api/runs", {"target": target, "connections": 5, "count": 500}
    )
    a, b = wait_run(served, first["id"]), wait_run(served, second["id"])
    assert (a["status"], b["status"]) == ("finished", "finished")
    with chromium_page() as page:
        open_section(page, served, "runs")
        row = page.locator(f"#runs-table tbody tr[data-id='{a['id']}']")
        row.wait_for(timeout=3000)
        assert "finished" in row.inner_text()
        row.get_by_role("link", name=a["id"]).click()
        page.wait_for_selector("#run-detail:not([hidden])", timeout=3000)
        assert page.inner_text("#detail-id") == a["id"]
        received = page.inner_text("#detail-summary tr[data-key=received] td")
        assert received.startswith("300 msgs")
        p99 = page.inner_text("#detail-pct tr[data-key=p99] td")
        assert p99.endswith(" ms")
        assert float(p99.removesuffix(" ms")) == pytest.approx(a["summary"]["rtt_ms"]["p99"], 0.01)
        if a["summary"].get("histogram"):
            assert points(page, "#chart-detail-hist") > 0
            assert coloured(page, "#chart-detail-hist") > 20
        export_json = page.get_attribute("#export-json", "href")
        export_csv = page.get_attribute("#export-csv", "href")
        assert export_json == f"/api/runs/{a['id']}/export?format=json"
        assert export_csv == f"/api/runs/{a['id']}/export?format=csv"
        # The links work with the browser's session cookie alone.
        doc = page.request.get(f"http://127.0.0.1:{served.web_port}{export_json}")
        assert doc.status == 200
        assert doc.json()["id"] == a["id"]
        csv = page.request.get(f"http://127.0.0.1:{served.web_port}{export_csv}")
        assert csv.status == 200
        assert csv.text().count("\n") >= 1
        screenshot(page, "runs")
        screenshot(page, "runs-detail", scroll_to="#chart-detail-series")

        page.check(f"#runs-table tr[data-id='{a['id']}'] input[type=checkbox]")
        page.check(f"#runs-table tr[data-id='{b['id']}'] input[type=checkbox]")
        page.click("#compare-button")
        page.wait_for_selector("#run-compare:not([hidden])", timeout=3000)
        headers = page.locator("#compare-table thead th").all_inner_texts()
        assert {f"run {a['id']}", f"run {b['id']}"} <= set(headers)
        sent = page.locator("#compare-table tr[data-key=sent] td").all_inner_texts()
        order = [h for h in headers if h.startswith("run ")]
        expected = {f"run {a['id']}": "300", f"run {b['id']}": "500"}
        assert sent[:2] == [expected[order[0]], expected[order[1]]]
        screenshot(page, "runs-compare", scroll_to="#compare-table")


def test_telemetry_shows_a_counter_sent_by_a_statsd_client(served: ServedLab) -> None:
    import statsd

    listeners = api_call(served, "GET", "/api/listeners")["items"]
    port = next(item["port"] for item in listeners if item["mode"] == "statsd")
    client = statsd.StatsClient("127.0.0.1", port, prefix="dash")
    with closing(client), chromium_page() as page:
        open_section(page, served, "telemetry")
        client.incr("hits", 7)
        client.gauge("temperature", 21.5)
        client.timing("render", 12)
        row = page.locator("#tm-counters tbody tr[data-name='dash.hits']")
        row.wait_for(timeout=5000)
        # Within an interval the counter shows 7; after a flush, the last flush shows 7.
        page.wait_for_function(
            "[...document.querySelectorAll(\"#tm-counters tr[data-name='dash.hits'] td\")]"
            ".some((td) => td.textContent === '7')",
            timeout=5000,
        )
        gauge = page.locator("#tm-gauges tbody tr[data-name='dash.temperature'] td")
        gauge.last.wait_for(timeout=5000)
        assert gauge.last.inner_text() == "21.5"
        page.locator("#tm-timers tbody tr[data-name='dash.render']").wait_for(timeout=5000)
        screenshot(page, "telemetry")


def test_the_packet_tool_shows_the_reply_in_hex_and_text(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "packet")
        target = f"udp://127.0.0.1:{served.listeners['udp']}"
        assert page.input_value("#packet-target") == target
        page.fill("#packet-payload", "hi\\x01!")
        page.click("#packet-send")
        page.wait_for_selector("#packet-result:not([hidden])", timeout=5000)
        assert page.get_attribute("#reply-hex", "data-hex") == "68690121"
        assert page.inner_text("#reply-hex").startswith("0000  68 69 01 21")
        assert page.inner_text("#packet-rtt").endswith(" ms")
        page.check("input[name=as][value=hex]")
        page.fill("#packet-payload", "de:ad be ef")
        page.click("#packet-send")
        page.wait_for_function(
            "document.querySelector('#reply-hex').dataset.hex === 'deadbeef'", timeout=5000
        )
        screenshot(page, "packet")


def test_a_listener_added_from_the_form_accepts_a_connection_and_can_be_stopped(
    served: ServedLab,
) -> None:
    with chromium_page() as page:
        open_section(page, served, "listeners")
        page.select_option("#lf-protocol", "tcp")
        page.select_option("#lf-mode", "echo")
        page.fill("#listener-form input[name=max_connections]", "5")
        page.fill("#listener-form input[name=idle_timeout]", "60")
        page.fill("#listener-form input[name=delay]", "1")
        page.click("#listener-add")
        message = page.locator("#listener-msg")
        message.wait_for(timeout=5000)
        port = int(message.get_attribute("data-port") or 0)
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
        row = page.locator("#listeners-table tbody tr", has_text=f"127.0.0.1:{port}")
        row.wait_for(timeout=2000)
        cells = row.locator("td").all_inner_texts()
        assert cells[4] == "5"  # max connections, as given in the form
        screenshot(page, "listeners")
        row.get_by_role("button", name="Stop").click()
        row.wait_for(state="detached", timeout=5000)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_bad_listener_option_is_shown_next_to_the_form(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "listeners")
        page.select_option("#lf-protocol", "udp")
        page.fill("#listener-form input[name=loss]", "150")
        page.click("#listener-add")
        page.wait_for_selector("#listener-error:not([hidden])", timeout=3000)
        assert "loss" in page.inner_text("#listener-error")
        assert page.get_attribute("#listener-form input[name=loss]", "aria-invalid") == "true"


def test_every_section_is_reachable_from_the_keyboard(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "overview")
        page.focus("#tabs a[data-tab=overview]")
        for name in (
            "connections",
            "fire",
            "runs",
            "telemetry",
            "packet",
            "scenarios",
            "listeners",
        ):
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.dataset.tab") == name
            page.keyboard.press("Enter")
            page.wait_for_selector(f"section#{name}:not([hidden])", timeout=2000)
            page.focus(f"#tabs a[data-tab={name}]")


@pytest.mark.parametrize("section", ["overview", "connections", "fire", "runs", "listeners"])
def test_sections_fit_a_phone_screen(served: ServedLab, section: str) -> None:
    with chromium_page(390, 844) as page:
        open_section(page, served, section)
        page.wait_for_timeout(300)  # let the charts take their width (a resize observer)
        screenshot(page, f"phone-{section}")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0


def test_a_banner_says_when_the_lab_is_away_and_the_page_reconnects(tmp_path: Path) -> None:
    first = start_served_lab(tmp_path / "data")
    port = first.web_port
    second: ServedLab | None = None
    try:
        with chromium_page() as page:
            page.goto(first.login_url)
            page.wait_for_selector("#status:text('live')", timeout=5000)
            assert page.is_hidden("#banner")
            assert first.stop() == 0
            page.wait_for_selector("#banner:not([hidden])", timeout=5000)
            assert "not reachable" in page.inner_text("#banner")
            assert page.inner_text("#status") == "offline"
            screenshot(page, "banner")
            second = start_served_lab(tmp_path / "data", "--web", f"127.0.0.1:{port}")
            page.wait_for_selector("#status:text('live')", timeout=10000)
            assert page.is_hidden("#banner")
    finally:
        for lab in (first, second):
            if lab is not None:
                assert lab.stop() == 0
                lab.close_stdout()


def test_a_banner_says_when_the_store_cannot_write_and_goes_when_it_can(tmp_path: Path) -> None:
    import sqlite3

    served = start_served_lab(tmp_path / "data")
    try:
        target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
        run = api_call(served, "POST", "/api/runs", {"target": target, "duration": 60})
        with chromium_page() as page:
            page.goto(served.login_url)
            page.wait_for_selector("#status:text('live')", timeout=5000)
            assert page.is_hidden("#health-banner")
            with closing(
                sqlite3.connect(tmp_path / "data" / "socketlab.sqlite3", isolation_level=None)
            ) as holder:
                holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
                api_call(served, "POST", f"/api/runs/{run['id']}/stop", timeout=15)
                page.wait_for_selector("#health-banner:not([hidden])", timeout=10000)
                assert "database locked" in page.inner_text("#health-banner")
                screenshot(page, "store-degraded")
                holder.execute("ROLLBACK")
            page.wait_for_selector("#health-banner", state="hidden", timeout=20000)
    finally:
        assert served.stop() == 0
        served.close_stdout()


def test_no_id_is_given_twice_on_the_page() -> None:
    # Two elements with one id: $("#x") finds the first, so the second's code never runs.
    page = (Path(__file__).parent.parent / "templates" / "index.html").read_text()
    ids = re.findall(r'\bid="([^"{]+)"', page)
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
