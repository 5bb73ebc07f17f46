"""The Packet page, the listener rows and the Telemetry section in a real browser (Debian's
Chromium) against a real ``socketlab serve``: what the page shows is compared with what the
API answers, formatted by the page's own formatters (static/js/util.js); what the lab keeps
is checked across a real restart of the process on the same data directory."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import TOKEN, ServedLab, api_call, start_served_lab

pytestmark = pytest.mark.browser

STATSD_URL = "udp://127.0.0.1:0?mode=statsd&flush_interval=1&percentiles=50,95,99.9"
# The page's own formatters, so a figure is compared as the page must render it.
FMT = "async ([name, value]) => (await import('/static/js/util.js'))[name](value)"


def start(data: Path) -> ServedLab:
    return start_served_lab(
        data,
        "--listen",
        "tcp://127.0.0.1:0?mode=echo",
        "--listen",
        "udp://127.0.0.1:0?mode=echo",
        "--listen",
        STATSD_URL,
    )


def stop(served: ServedLab) -> None:
    assert served.stop() == 0
    served.close_stdout()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    lab = start(tmp_path_factory.mktemp("persist") / "data")
    try:
        yield lab
    finally:
        stop(lab)


def open_section(page: Any, served: ServedLab, name: str) -> None:
    if not page.url.startswith(f"http://127.0.0.1:{served.web_port}/"):
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=10000)
    page.click(f"#tabs a[data-tab={name}]")
    page.wait_for_selector(f"section#{name}:not([hidden])", timeout=5000)


def fmt(page: Any, name: str, value: Any) -> str:
    return str(page.evaluate(FMT, [name, value]))


def newest_log(served: ServedLab) -> dict[str, Any]:
    entry: dict[str, Any] = api_call(served, "GET", "/api/packet-log?limit=1")["items"][0]
    return entry


def refused_target() -> tuple[socket.socket, str]:
    """A TCP port that refuses: bound, never listening (kept bound so nobody takes it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def wait_rows(page: Any, selector: str, count: int) -> None:
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n",
        arg=[selector, count],
        timeout=10000,
    )


# ---- the Packet page --------------------------------------------------------------------


def test_a_packet_error_is_shown_as_an_error_and_the_old_reply_is_cleared(
    served: ServedLab,
) -> None:
    sock, target = refused_target()
    with sock, chromium_page() as page:
        open_section(page, served, "packet")
        page.fill("#packet-payload", "hello")
        page.click("#packet-send")
        page.wait_for_selector("#packet-result:not([hidden])", timeout=10000)
        reply = newest_log(served)
        assert reply["status"] == "reply"
        assert page.inner_text("#reply-text") == reply["reply"]["text"]
        assert (
            page.inner_text("#packet-rtt")
            == f"after {fmt(page, 'fmtMs', reply['reply']['rtt_ms'])}"
        )
        # Now a target that refuses: an error, styled as one, and nothing of the old reply.
        page.fill("#packet-target", target)
        page.click("#packet-send")
        page.wait_for_selector("#packet-outcome[data-status=error]", timeout=10000)
        error = newest_log(served)
        assert error["status"] == "error" and error["error_kind"] == "refused"
        outcome = page.locator("#packet-outcome")
        assert outcome.inner_text() == f"Error (refused): {error['error']}"
        assert "nothing listens" in outcome.inner_text()
        assert "error" in (outcome.get_attribute("class") or "").split()
        assert page.is_hidden("#packet-result")
        assert page.inner_text("#reply-text") == "" and page.inner_text("#reply-hex") == ""
        # The log shows both sends, newest first, as the API has them.
        wait_rows(page, "#packet-log tbody tr[data-seq]", 2)
        rows = page.locator("#packet-log tbody tr[data-seq]")
        assert rows.nth(0).get_attribute("data-seq") == str(error["seq"])
        assert rows.nth(0).get_attribute("data-status") == "error"
        assert rows.nth(0).locator(".bad").inner_text() == outcome.inner_text()
        assert rows.nth(1).get_attribute("data-seq") == str(reply["seq"])
        assert rows.nth(1).locator("td").nth(4).inner_text() == reply["reply"]["text"]
        screenshot(page, "packet-error")
    # The sends are in the log, not in the run history.
    runs = api_call(served, "GET", "/api/runs")["items"]
    assert all(run["spec"]["pattern"] != "packet" for run in runs)


def test_packets_are_saved_loaded_and_deleted_from_the_page(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "packet")
        target = page.input_value("#packet-target")
        page.fill("#packet-name", "greeting")
        page.check("input[name=as][value=hex]")
        page.fill("#packet-payload", "68 69")
        page.click("#packet-save")
        row = page.locator("#packet-saved tbody tr[data-name=greeting]")
        row.wait_for(timeout=10000)
        [saved] = [
            p for p in api_call(served, "GET", "/api/packets")["items"] if p["name"] == "greeting"
        ]
        assert (saved["target"], saved["payload"], saved["hex"]) == (target, "68 69", True)
        cells = row.locator("td").all_inner_texts()
        assert cells[:4] == ["greeting", target, "68 69", "hex"]
        # Loading it back fills the form as it was saved.
        page.fill("#packet-name", "")
        page.check("input[name=as][value=text]")
        page.fill("#packet-payload", "other")
        row.get_by_role("button", name="Load packet greeting").click()
        assert page.input_value("#packet-payload") == "68 69"
        assert page.is_checked("input[name=as][value=hex]")
        assert page.input_value("#packet-name") == "greeting"
        page.click("#packet-send")
        page.wait_for_function(
            "document.querySelector('#reply-hex').dataset.hex === '6869'", timeout=10000
        )
        assert newest_log(served)["name"] == "greeting"
        row.get_by_role("button", name="Delete packet greeting").click()
        row.wait_for(state="detached", timeout=10000)
        assert all(
            p["name"] != "greeting" for p in api_call(served, "GET", "/api/packets")["items"]
        )


def test_saved_packets_and_the_send_log_survive_a_restart_of_the_lab(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start(data)
    try:
        with chromium_page() as page:
            open_section(page, first, "packet")
            page.fill("#packet-name", "kept")
            page.fill("#packet-payload", "still here")
            page.click("#packet-save")
            page.locator("#packet-saved tbody tr[data-name=kept]").wait_for(timeout=10000)
            page.click("#packet-send")
            page.wait_for_selector("#packet-result:not([hidden])", timeout=10000)
        sent = newest_log(first)
        packets = api_call(first, "GET", "/api/packets")["items"]
    finally:
        stop(first)
    second = start(data)
    try:
        assert api_call(second, "GET", "/api/packets")["items"] == packets
        assert newest_log(second) == sent
        with chromium_page() as page:
            open_section(page, second, "packet")
            page.locator("#packet-saved tbody tr[data-name=kept]").wait_for(timeout=10000)
            row = page.locator(f"#packet-log tbody tr[data-seq='{sent['seq']}']")
            row.wait_for(timeout=10000)
            assert row.locator("td").nth(4).inner_text() == sent["reply"]["text"]
    finally:
        stop(second)


# ---- the listener rows ------------------------------------------------------------------


def listener_row(page: Any, listener_id: str) -> Any:
    row = page.locator(f"#listeners-table tbody tr[data-id='{listener_id}']")
    row.wait_for(timeout=10000)
    return row


def test_a_tls_listener_row_downloads_the_certificate_it_serves(served: ServedLab) -> None:
    made = api_call(served, "POST", "/api/listeners", {"url": "tls://127.0.0.1:0?mode=echo"})
    try:
        with chromium_page() as page:
            open_section(page, served, "listeners")
            row = listener_row(page, made["id"])
            with page.expect_download(timeout=10000) as download:
                row.get_by_role("link", name="certificate (PEM)").click()
            pem = Path(download.value.path()).read_text(encoding="ascii")
        req = urllib.request.Request(
            f"http://127.0.0.1:{served.web_port}/api/listeners/{made['id']}/certificate",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert pem == answer.read().decode("ascii")
        assert pem.startswith("-----BEGIN CERTIFICATE-----")
    finally:
        api_call(served, "DELETE", f"/api/listeners/{made['id']}")


def test_listener_urls_are_shown_decoded(served: ServedLab) -> None:
    listeners = api_call(served, "GET", "/api/listeners")["items"]
    statsd = next(item for item in listeners if item["mode"] == "statsd")
    assert "%2C" in statsd["url"]  # the API's URL is percent-encoded; the page decodes it
    with chromium_page() as page:
        open_section(page, served, "listeners")
        row = listener_row(page, statsd["id"])
        shown = row.locator(".listener-url").inner_text()
        assert shown == unquote(statsd["url"])
        assert "percentiles=50,95,99.9" in shown


def test_respond_rules_are_shown_and_edited_from_the_listener_row(served: ServedLab) -> None:
    rules = [{"match": "prefix", "pattern": "PING", "reply": "PONG\\n"}]
    made = api_call(
        served, "POST", "/api/listeners", {"url": "udp://127.0.0.1:0?mode=respond", "rules": rules}
    )
    try:
        with chromium_page() as page:
            open_section(page, served, "listeners")
            row = listener_row(page, made["id"])
            row.get_by_role("button", name=f"Rules of listener {made['id']}").click()
            page.wait_for_selector("#rules-editor:not([hidden])", timeout=10000)
            shown = json.loads(page.input_value("#rules-json"))
            api_rules = api_call(served, "GET", f"/api/listeners/{made['id']}")["respond"]["rules"]
            assert shown == [{k: v for k, v in r.items() if k != "hits"} for r in api_rules]
            # A rule the model refuses is shown as an error naming it; nothing changes.
            page.fill("#rules-json", '[{"match": "regex", "pattern": "(", "reply": "x"}]')
            page.click("#rules-save")
            page.wait_for_selector("#rules-error:not([hidden])", timeout=10000)
            assert "rules.0" in page.inner_text("#rules-error")
            new = [{"match": "exact", "pattern": "HELLO", "reply": "WORLD\\n"}]
            page.fill("#rules-json", json.dumps(new))
            page.click("#rules-save")
            page.wait_for_selector("#rules-msg:text('Saved: 1 rules.')", timeout=10000)
        doc = api_call(served, "GET", f"/api/listeners/{made['id']}")
        assert [(r["match"], r["pattern"]) for r in doc["respond"]["rules"]] == [("exact", "HELLO")]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"HELLO", ("127.0.0.1", made["port"]))
            assert client.recv(100) == b"WORLD\n"
    finally:
        api_call(served, "DELETE", f"/api/listeners/{made['id']}")


def test_a_listener_added_from_the_page_comes_back_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start(data)
    try:
        with chromium_page() as page:
            open_section(page, first, "listeners")
            page.select_option("#lf-protocol", "udp")
            page.select_option("#lf-mode", "echo")
            page.fill("#listener-form input[name=max_connections]", "7")
            page.fill("#listener-form input[name=loss]", "5")
            page.click("#listener-add")
            message = page.locator("#listener-msg")
            message.wait_for(timeout=10000)
            port = int(message.get_attribute("data-port") or 0)
        before = next(
            item
            for item in api_call(first, "GET", "/api/listeners")["items"]
            if item["port"] == port
        )
    finally:
        stop(first)
    second = start(data)
    try:
        after = next(
            item
            for item in api_call(second, "GET", "/api/listeners")["items"]
            if item["port"] == port
        )
        assert (after["url"], after["options"]) == (before["url"], before["options"])
        assert after["options"]["max_connections"] == 7 and after["options"]["loss"] == 5
        with chromium_page() as page:
            open_section(page, second, "listeners")
            row = listener_row(page, after["id"])
            assert row.locator(".listener-url").inner_text() == unquote(after["url"])
            assert row.locator("td").nth(4).inner_text() == "7"
    finally:
        stop(second)


# ---- Telemetry --------------------------------------------------------------------------


def statsd_port(served: ServedLab) -> tuple[str, int]:
    listeners = api_call(served, "GET", "/api/listeners")["items"]
    item = next(item for item in listeners if item["mode"] == "statsd")
    return item["id"], item["port"]


def send_statsd(port: int, *lines: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(lines).encode(), ("127.0.0.1", port))


def test_telemetry_shows_every_configured_percentile_as_the_api_has_it(served: ServedLab) -> None:
    listener_id, port = statsd_port(served)
    with chromium_page() as page:
        open_section(page, served, "telemetry")
        send_statsd(port, *(f"pct.render:{ms}|ms" for ms in range(1, 101)))
        row = page.locator("#tm-timers tbody tr[data-name='pct.render']")
        row.wait_for(timeout=10000)
        headers = page.locator("#tm-timers thead th").all_inner_texts()
        assert headers == ["name", "count", "min", "p50", "p95", "p99.9", "max", "mean"]
        # Once flushed, the row shows that flush's figures, and keeps them when traffic stops.
        path = f"/api/telemetry/{listener_id}/history"

        def flushed() -> dict[str, Any] | None:
            active = api_call(served, "GET", path)["last_active_flush"] or {}
            timer: dict[str, Any] | None = (active.get("timers") or {}).get("pct.render")
            return timer

        deadline = time.monotonic() + 10
        while (timer := flushed()) is None:
            assert time.monotonic() < deadline, "the statsd listener did not flush"
            time.sleep(0.1)  # another process's flush timer: there is no event to wait on
        expected = [
            "pct.render",
            fmt(page, "fmtNum", timer["count"]),
            *(fmt(page, "fmtMs", timer[k]) for k in ("min", "p50", "p95", "p99.9", "max", "mean")),
        ]
        page.wait_for_function(
            "([sel, want]) => { const r = document.querySelector(sel);"
            " return r && [...r.cells].map((c) => c.textContent).join('|') === want; }",
            arg=["#tm-timers tbody tr[data-name='pct.render']", "|".join(expected)],
            timeout=10000,
        )
        assert timer["p99.9"] == 100 and timer["p95"] == 95


def test_long_tagged_names_do_not_overprint_the_gauges_at_1280_px(served: ServedLab) -> None:
    _, port = statsd_port(served)
    name = "layout.requests.handled.by.a.rather.long.service.name"
    tags = "|#" + ",".join(f"tag{i}:value-number-{i}" for i in range(8))
    with chromium_page(1280, 900) as page:
        open_section(page, served, "telemetry")
        send_statsd(port, f"{name}:1|c{tags}", "layout.temp:3|g")
        counter = page.locator("#tm-counters tbody tr", has_text=name)
        counter.wait_for(timeout=10000)
        page.locator("#tm-gauges tbody tr[data-name='layout.temp']").wait_for(timeout=10000)
        button = counter.locator("button.tm-metric")
        key = counter.get_attribute("data-name") or ""
        assert key.startswith(name + "|#") and button.get_attribute("title") == key
        counters_box = page.locator("#tm-counters").bounding_box()
        gauges_box = page.locator("#tm-gauges").bounding_box()
        name_box = counter.locator("td").first.bounding_box()
        assert counters_box and gauges_box and name_box
        side_by_side = abs(counters_box["y"] - gauges_box["y"]) < 5
        if side_by_side:
            assert counters_box["x"] + counters_box["width"] <= gauges_box["x"] + 1
        # The cell ends in an ellipsis within its table: nothing spills past it.
        assert name_box["x"] + name_box["width"] <= counters_box["x"] + counters_box["width"] + 1
        scroll = page.evaluate("(b) => [b.scrollWidth, b.clientWidth]", button.element_handle())
        assert scroll[0] > scroll[1], "a long name is cut with an ellipsis, not wrapped"
        screenshot(page, "telemetry-layout")


def test_telemetry_history_charts_a_metric_keeps_the_last_flush_and_samples_bad_lines(
    served: ServedLab,
) -> None:
    listener_id, port = statsd_port(served)
    with chromium_page() as page:
        open_section(page, served, "telemetry")
        send_statsd(port, "hist.hits:4|c", "not a metric line")
        button = page.locator("#tm-counters tbody tr[data-name='hist.hits'] button.tm-metric")
        button.wait_for(timeout=10000)
        path = f"/api/telemetry/{listener_id}/history"

        def history() -> dict[str, Any]:
            doc: dict[str, Any] = api_call(served, "GET", path)
            return doc

        deadline = time.monotonic() + 15
        # Two flushes after the traffic: the newest has nothing, the kept one has the 4.
        while (
            not any(p["counters"].get("hist.hits") == 4 for p in history()["points"])
            or history()["points"][-1]["counters"].get("hist.hits") != 0
        ):
            assert time.monotonic() < deadline, "the collector did not flush twice"
            time.sleep(0.1)  # another process's flush timer: there is no event to wait on
        button.click()
        chart = page.locator("#tm-charts figure[data-chart$='|counters|hist.hits'] .chart")
        chart.wait_for(timeout=10000)
        page.wait_for_function(
            "(n) => Number(document.querySelector("
            "\"#tm-charts figure[data-chart$='|counters|hist.hits'] .chart\").dataset.points) >= n",
            arg=len([p for p in history()["points"] if "hist.hits" in p["counters"]]),
            timeout=10000,
        )
        doc = history()
        active = doc["last_active_flush"]
        assert active is not None and active["counters"]["hist.hits"]["value"] == 4
        page.wait_for_function(
            "(want) => document.querySelector('#tm-last-active').textContent.includes(want)",
            arg=f"hist.hits = {fmt(page, 'fmtNum', 4)}",
            timeout=10000,
        )
        sample = next(s for s in doc["bad_samples"] if s["line"] == "not a metric line")
        bad = page.locator("#tm-bad tbody tr", has_text="not a metric line")
        bad.wait_for(timeout=10000)
        assert bad.locator("td").nth(2).inner_text() == sample["error"]
        screenshot(page, "telemetry-history")


# ---- the bottleneck verdict on the Fire result ------------------------------------------


def test_the_fire_result_shows_the_bottleneck_verdict_of_the_summary(served: ServedLab) -> None:
    with chromium_page() as page:
        open_section(page, served, "fire")
        page.fill("#fire-target", f"udp://127.0.0.1:{served.listeners['udp']}")
        page.select_option("#fire-pattern", "pingpong")
        page.fill("input[name=duration]", "1")
        page.click("#fire-button")
        page.wait_for_selector("#result-verdict:not([hidden])", timeout=20000)
        run_id = page.inner_text("#result-id")
        verdict = api_call(served, "GET", f"/api/runs/{run_id}")["summary"]["bottleneck"]
        node = page.locator("#result-verdict")
        assert node.get_attribute("data-limited") == ("true" if verdict["limited"] else "false")
        assert node.locator(".verdict-reason").inner_text() == verdict["reason"]
        figures = node.locator(".muted").inner_text()
        assert fmt(page, "fmtPct", verdict["cpu_pct"]) in figures
        assert fmt(page, "fmtMs", verdict["loop_lag_ms_p99"]) in figures


@pytest.mark.parametrize("section", ["packet", "telemetry"])
def test_the_packet_and_telemetry_sections_fit_a_phone_screen(
    served: ServedLab, section: str
) -> None:
    api_call(
        served,
        "POST",
        "/api/packets",
        {"name": "phone", "target": "udp://127.0.0.1:9", "payload": "a rather long payload " * 4},
    )
    try:
        with chromium_page(390, 844) as page:
            open_section(page, served, section)
            if section == "packet":
                page.locator("#packet-saved tbody tr[data-name=phone]").wait_for(timeout=10000)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
    finally:
        api_call(served, "DELETE", "/api/packets/phone")
