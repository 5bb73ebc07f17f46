"""How the dashboard looks and what a person takes away from it, in a real Chromium.

The HTML report of a run (offline, the API's figures), the failures table of a run with
real errors, the dark theme, and the phone width (390 px). Every figure read off a page is
compared with the API's JSON, formatted by the dashboard's own formatters (static/js/util.js)
evaluated in the browser, never by arithmetic of the test's own.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TOKEN, ServedLab, api_call, start_served_lab
from tests.pages import (
    COLOURED_PIXELS,
    PHONE,
    browser_context,
    open_section,
    sign_in,
    themed_page,
    wait_run,
)

pytestmark = pytest.mark.browser


# The dashboard's formatters applied to the API's summary: what each figure must read.
FORMATTED = """async (s) => {
  const u = await import("/static/js/util.js");
  const rtt = {};
  for (const [k, v] of Object.entries(s.rtt_ms)) rtt[k] = u.fmtMs(v);
  const kinds = {};
  for (const [k, v] of Object.entries(s.errors_by_kind)) kinds[k] = u.fmtNum(v);
  return {
    sent: u.fmtNum(s.sent), bytes_sent: u.fmtBytes(s.bytes_sent),
    received: u.fmtNum(s.received), bytes_received: u.fmtBytes(s.bytes_received),
    msgs_per_s: u.fmtMsgRate(s.msgs_per_s), bits_per_s: u.fmtBitRate(s.bits_per_s),
    errors: u.fmtNum(s.errors), rtt, kinds,
  };
}"""

# Each row of a key/value table (kvRows) as {data-key: shown text}.
KV_ROWS = """(selector) => Object.fromEntries([...document.querySelectorAll(selector + " tr")]
  .map((tr) => [tr.dataset.key, tr.querySelector("td").textContent]))"""

# Each row of a failures table as {kind: [count, [samples]]}.
FAILURE_ROWS = """(selector) => Object.fromEntries(
  [...document.querySelectorAll(selector + " tbody tr")].map((tr) => [tr.dataset.kind,
    [tr.querySelector("td.num").textContent,
     [...tr.querySelectorAll("li")].map((li) => li.textContent)]]))"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("look") / "data"
    served = start_served_lab(data)
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A TCP port bound on 127.0.0.1 that does not listen: every connect is refused (RST)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def fetch_report(served: ServedLab, run_id: str) -> tuple[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.web_port}/api/runs/{run_id}/report.html",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode(), response.headers


def open_offline(context: Any, path: Path) -> tuple[Any, list[str]]:
    """Open ``path`` in ``context`` with the network off and every other request refused;
    answers the page and the URLs it tried to fetch."""
    url = path.as_uri()
    asked: list[str] = []

    def only_the_file(route: Any) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_file)
    context.set_offline(True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=10000)
    return page, asked


def detail_of(page: Any, served: ServedLab, run_id: str) -> None:
    open_section(page, served, "runs")
    page.evaluate(f"location.hash = 'runs/{run_id}'")
    page.wait_for_function(
        f"document.querySelector('#detail-id').textContent === '{run_id}'"
        " && !document.querySelector('#run-detail').hidden",
        timeout=10000,
    )


def test_the_html_report_opens_offline_and_shows_the_api_figures(
    served: ServedLab, tmp_path: Path
) -> None:
    target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
    spec = {"target": target, "pattern": "rate", "rate": 200, "connections": 2, "duration": 3}
    run = wait_run(served, api_call(served, "POST", "/api/runs", spec)["id"])
    assert run["status"] == "finished"
    summary = run["summary"]
    html, headers = fetch_report(served, run["id"])
    assert headers.get_content_type() == "text/html"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    report = tmp_path / f"socketlab-run-{run['id']}.html"
    report.write_text(html, encoding="utf-8")

    with browser_context() as context:
        dashboard = context.new_page()
        sign_in(dashboard, served)
        want = dashboard.evaluate(FORMATTED, summary)
        detail_of(dashboard, served, run["id"])
        assert dashboard.get_attribute("#export-html", "href") == (
            f"/api/runs/{run['id']}/report.html"
        )
        page_rows = dashboard.evaluate(KV_ROWS, "#detail-summary")
        page_pct = dashboard.evaluate(KV_ROWS, "#detail-pct")
        dashboard.close()

        page, asked = open_offline(context, report)
        assert asked == []  # nothing but the file itself: no script, style or font outside
        assert page.inner_text("#report-id") == run["id"]
        assert page.inner_text("#report-status") == "finished"
        rows = page.evaluate(KV_ROWS, "#report-summary")
        pct = page.evaluate(KV_ROWS, "#report-pct")
        # The API's figures, formatted by the dashboard's rules.
        assert want["sent"] in rows["sent"] and want["bytes_sent"] in rows["sent"]
        assert want["received"] in rows["received"]
        assert want["bytes_received"] in rows["received"]
        assert rows["msgs_per_s"] == want["msgs_per_s"]
        assert rows["bits_per_s"].startswith(want["bits_per_s"] + " sent")
        assert rows["errors"].startswith(want["errors"])
        for key, shown in pct.items():
            assert shown == want["rtt"][key], key
        # And the same rows, word for word, as the dashboard's details of that run (the
        # start time aside: its "… s ago" moves on).
        assert {k: v for k, v in rows.items() if k != "started"} == {
            k: v for k, v in page_rows.items() if k != "started"
        }
        assert pct == page_pct
        # The charts are drawn from the stored series, in the file.
        series = run["series"]
        assert len(series) >= 2
        assert int(page.get_attribute("#report-chart-tput", "data-points") or 0) == len(series)
        assert int(page.get_attribute("#report-chart-rtt", "data-points") or 0) >= 2
        assert page.evaluate(COLOURED_PIXELS, "#report-chart-tput") > 20
        assert page.evaluate(COLOURED_PIXELS, "#report-chart-rtt") > 20
        if summary["histogram"]:
            assert page.evaluate(COLOURED_PIXELS, "#report-chart-hist") > 20
        assert asked == []


def test_a_run_against_a_refusing_port_shows_a_failures_table_equal_to_the_api(
    served: ServedLab, refusing_port: int, tmp_path: Path
) -> None:
    target = f"tcp://127.0.0.1:{refusing_port}"
    with themed_page() as page:
        open_section(page, served, "fire")
        page.fill("#fire-target", target)
        page.select_option("#fire-pattern", "pingpong")
        page.fill("input[name=connections]", "3")
        page.fill("input[name=duration]", "1")
        page.click("#fire-button")
        page.wait_for_selector("#result-failures-box:not([hidden])", timeout=30000)
        run_id = page.inner_text("#result-id")
        run = api_call(served, "GET", f"/api/runs/{run_id}")
        summary = run["summary"]
        assert summary["errors_by_kind"] == {"refused": 3}
        samples = summary["error_samples"]["refused"]
        assert 1 <= len(samples) <= 3
        assert all(samples)
        want = page.evaluate(FORMATTED, summary)
        expected = {
            kind: [want["kinds"][kind], summary["error_samples"][kind]] for kind in want["kinds"]
        }
        assert page.evaluate(FAILURE_ROWS, "#result-failures") == expected

        detail_of(page, served, run_id)
        page.wait_for_selector("#detail-failures-box:not([hidden])", timeout=5000)
        assert page.evaluate(FAILURE_ROWS, "#detail-failures") == expected

    html, _ = fetch_report(served, run_id)
    report = tmp_path / "failed.html"
    report.write_text(html, encoding="utf-8")
    with browser_context() as context:
        page, asked = open_offline(context, report)
        assert page.is_visible("#report-failures-box")
        assert page.evaluate(FAILURE_ROWS, "#report-failures") == expected
        assert asked == []


def test_a_run_without_errors_shows_no_failures_table(served: ServedLab) -> None:
    target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
    run = wait_run(
        served, api_call(served, "POST", "/api/runs", {"target": target, "count": 50})["id"]
    )
    assert run["summary"]["errors"] == 0
    with themed_page() as page:
        detail_of(page, served, run["id"])
        assert page.is_hidden("#detail-failures-box")


def luminance(colour: str) -> float:
    """WCAG relative luminance of a computed ``rgb(r, g, b)`` colour."""
    channels = [int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# The computed colours of the surfaces a person reads, in the scheme the page is shown in.
# A CSS variable is resolved through a probe element, so it reads as rgb() too.
COLOURS = """() => {
  const style = (sel) => getComputedStyle(document.querySelector(sel));
  const probe = document.createElement("span");
  document.body.append(probe);
  const resolve = (name) => {
    probe.style.color = `var(${name})`;
    return getComputedStyle(probe).color;
  };
  const out = {
    page: style("body").backgroundColor, text: style("body").color,
    card: style("section.tab").backgroundColor, muted: resolve("--muted"),
    head: style("thead th").backgroundColor, head_text: style("thead th").color,
    button: style("#kill-switch").backgroundColor, button_text: style("#kill-switch").color,
    primary: style("#fire-button").backgroundColor, primary_text: style("#fire-button").color,
    input: style("#fire-target").backgroundColor, input_text: style("#fire-target").color,
    chart_ink: resolve("--chart-ink"), link: resolve("--accent"),
  };
  probe.remove();
  return out;
}"""


def test_the_dark_theme_follows_the_system_and_keeps_text_readable(served: ServedLab) -> None:
    seen = {}
    for scheme in ("light", "dark"):
        with themed_page(scheme=scheme) as page:
            open_section(page, served, "overview")
            page.wait_for_function(
                "document.querySelector('#chart-throughput canvas')", timeout=5000
            )
            seen[scheme] = page.evaluate(COLOURS)
    light, dark = seen["light"], seen["dark"]
    assert dark["page"] != light["page"]
    assert dark["card"] != light["card"]
    assert luminance(dark["card"]) < 0.05 < luminance(light["card"])
    for colours in (light, dark):
        # WCAG AA for body text (4.5:1) on every surface that carries text.
        assert contrast(colours["text"], colours["card"]) >= 7
        assert contrast(colours["text"], colours["page"]) >= 7
        assert contrast(colours["muted"], colours["card"]) >= 4.5
        assert contrast(colours["head_text"], colours["head"]) >= 4.5
        assert contrast(colours["button_text"], colours["button"]) >= 4.5
        assert contrast(colours["primary_text"], colours["primary"]) >= 4.5
        assert contrast(colours["input_text"], colours["input"]) >= 4.5
        assert contrast(colours["link"], colours["card"]) >= 4.5
        # The charts' axis labels and ticks are drawn in --chart-ink.
        assert contrast(colours["chart_ink"], colours["card"]) >= 4.5


def test_the_report_is_dark_in_a_dark_system_too(served: ServedLab, tmp_path: Path) -> None:
    target = f"tcp://127.0.0.1:{served.listeners['tcp']}"
    run = wait_run(
        served, api_call(served, "POST", "/api/runs", {"target": target, "count": 50})["id"]
    )
    html, _ = fetch_report(served, run["id"])
    report = tmp_path / "report.html"
    report.write_text(html, encoding="utf-8")
    with browser_context(scheme="dark") as context:
        page, _ = open_offline(context, report)
        card = page.evaluate(
            "getComputedStyle(document.querySelector('section.tab')).backgroundColor"
        )
        text = page.evaluate("getComputedStyle(document.body).color")
        assert luminance(card) < 0.05
        assert contrast(text, card) >= 7


SECTIONS = (
    "overview",
    "connections",
    "fire",
    "runs",
    "telemetry",
    "packet",
    "scenarios",
    "listeners",
    "peers",
    "mesh",
)

HEADING_AND_HEADER = """(name) => ({
  header: document.querySelector("body > header").getBoundingClientRect().bottom,
  heading: document.querySelector(`section#${name} h2`).getBoundingClientRect().top,
})"""


def test_on_a_phone_a_section_opened_from_the_nav_is_not_under_the_header(
    served: ServedLab,
) -> None:
    with themed_page(*PHONE) as page:
        sign_in(page, served)
        # From the two longest sections, scrolled to their end as a person reading them
        # would be, to every other: the scroll position left over is what hid the heading.
        for before in ("overview", "fire"):
            for name in SECTIONS:
                if name == before:
                    continue
                open_section(page, served, before)
                page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
                page.click(f"#tabs a[data-tab={name}]")
                page.wait_for_selector(f"section#{name}:not([hidden])", timeout=5000)
                where = page.evaluate(HEADING_AND_HEADER, name)
                assert where["header"] <= where["heading"] < PHONE[1], (before, name, where)
        # Opened by its address, too.
        page.goto(f"http://127.0.0.1:{served.web_port}/#runs")
        page.wait_for_selector("section#runs:not([hidden])", timeout=5000)
        where = page.evaluate(HEADING_AND_HEADER, "runs")
        assert where["header"] <= where["heading"] < PHONE[1], where


def test_on_a_phone_each_listener_row_keeps_its_stop_button_on_the_screen(
    served: ServedLab,
) -> None:
    listeners = api_call(served, "GET", "/api/listeners")["items"]
    assert len(listeners) >= 2
    with themed_page(*PHONE) as page:
        open_section(page, served, "listeners")
        rows = page.locator("#listeners-table tbody tr")
        rows.nth(len(listeners) - 1).wait_for(timeout=5000)
        for item in listeners:
            # Where the page shows it, scrolled by nothing: a table wider than the screen
            # would put it beyond the right edge.
            stop = page.get_by_role("button", name=f"Stop listener {item['id']}")
            box = stop.bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], (item["id"], box)
            # Every figure of the row keeps its column's name beside it.
            row = page.locator(f"#listeners-table tr[data-id='{item['id']}']")
            labels = row.locator("td").evaluate_all("(tds) => tds.map((td) => td.dataset.label)")
            assert "mode" in labels and "connections" in labels
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
