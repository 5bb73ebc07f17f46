"""Several runs at once from one Fire page, followed live, one of them edited while it goes.

Driven as a person would (the form, the cards' buttons and inputs) against a real
``socketlab serve``; what the page shows is compared with the API's JSON, formatted by the
page's own formatters (static/js/util.js, static/js/liveruns.js), never re-derived here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, api_call, start_served_lab

pytestmark = pytest.mark.browser

# Generous: a loaded 2-CPU machine.
WAIT_MS = 30_000

# The page's own formatting of a series point and of the live settings.
FORMAT = """async ([kind, value]) => {
  const m = await import("/static/js/liveruns.js");
  return kind === "point" ? m.lastSecondText(value) : m.settingsText(value);
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data: Path = tmp_path_factory.mktemp("multirun") / "data"
    served = start_served_lab(data)
    try:
        yield served
    finally:
        code = served.stop()
        served.close_stdout()
        assert code == 0


def open_fire(page: Any, served: ServedLab) -> None:
    if not page.url.startswith(f"http://127.0.0.1:{served.web_port}/"):
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=10_000)
    page.click("#tabs a[data-tab=fire]")
    page.wait_for_selector("section#fire:not([hidden])", timeout=5_000)


def fire(page: Any, target: str, rate: str) -> str:
    """Fire a rate run from the form; returns the id of its new card."""
    before = set(page.eval_on_selector_all(".run-card", "cards => cards.map(c => c.dataset.run)"))
    page.fill("#fire-target", target)
    page.select_option("#fire-pattern", "rate")
    page.fill("#fire-form [name=rate]", rate)
    page.fill("#fire-form [name=duration]", "40")
    page.click("#fire-button")
    page.wait_for_function(
        f"document.querySelectorAll('.run-card').length === {len(before) + 1}", timeout=WAIT_MS
    )
    ids = page.eval_on_selector_all(".run-card", "cards => cards.map(c => c.dataset.run)")
    (new,) = set(ids) - before
    return str(new)


def bar(page: Any, run_id: str) -> float:
    selector = f".run-card[data-run='{run_id}'] .run-card-bar"
    return float(page.eval_on_selector(selector, "b => b.value"))


def test_two_runs_from_one_tab_both_live_and_one_edited_live(served: ServedLab) -> None:
    target = f"udp://127.0.0.1:{served.listeners['udp']}"
    with chromium_page() as page:
        open_fire(page, served)
        first = fire(page, target, "40")
        # Fire stays usable while a run goes: a second run beside the first.
        assert page.is_enabled("#fire-button")
        second = fire(page, target, "60")
        card = {run_id: f".run-card[data-run='{run_id}']" for run_id in (first, second)}
        # Both followed live: each card's progress grows while its run goes.
        start = {run_id: bar(page, run_id) for run_id in card}
        for run_id, selector in card.items():
            page.wait_for_function(
                f'(() => {{ const v = document.querySelector("{selector} .run-card-bar").value;'
                f" return v > {start[run_id]} && v < 1; }})()",
                timeout=WAIT_MS,
            )
            page.wait_for_function(
                f'document.querySelector("{selector} .run-card-chart").dataset.points >= 1',
                timeout=WAIT_MS,
            )
            # Its y axis labels a rate above zero, not only "0/s" (the card's chart is
            # short: the top of its scale must be a tick for one to fit).
            page.wait_for_function(
                f'document.querySelector("{selector} .run-card-chart").dataset.yTicks'
                '.split(" | ").some((t) => t !== "0/s")',
                timeout=WAIT_MS,
            )
        assert {api_call(served, "GET", f"/api/runs/{r}")["status"] for r in card} == {"running"}

        # Edit the first run live from its card: a new rate.
        page.fill(f"{card[first]} input[name=rate]", "200")
        page.click(f"{card[first]} [data-action=apply]")
        doc = api_call(served, "GET", f"/api/runs/{first}")
        assert doc["control"]["rate_target"] == 200
        shown = page.evaluate(FORMAT, ["control", doc["control"]])
        settings = f"{card[first]} .run-card-settings"
        page.wait_for_function(
            f'document.querySelector("{settings}").textContent === {shown!r}', timeout=WAIT_MS
        )
        page.wait_for_selector(f"{card[first]} .run-card-edits li", timeout=WAIT_MS)
        # The change in its series: the API's series carries the new target, and the card
        # shows a second of it, as the page formats that very point.
        page.wait_for_function(
            f'document.querySelector("{card[first]} .run-card-last").textContent'
            ".includes('target 200 msg/s')",
            timeout=WAIT_MS,
        )
        last = page.inner_text(f"{card[first]} .run-card-last")
        series = api_call(served, "GET", f"/api/runs/{first}")["series"]
        formatted = {page.evaluate(FORMAT, ["point", p]): p for p in series}
        assert last in formatted, (last, list(formatted))
        assert formatted[last]["rate_target"] == 200
        before_edit = [p for p in series if p["rate_target"] == 40]
        assert before_edit, series
        # The statistics went on: the points before the edit are still there.
        assert series.index(before_edit[-1]) < series.index(formatted[last])
        # The other run is untouched.
        other = api_call(served, "GET", f"/api/runs/{second}")
        assert other["control"]["rate_target"] == 60 and other["control"]["edits"] == []
        assert page.inner_text(f"{card[second]} .run-card-settings") == page.evaluate(
            FORMAT, ["control", other["control"]]
        )
        screenshot(page, "fire-multirun", scroll_to="#run-cards")

        # Pause and resume from the card: the status follows.
        page.click(f"{card[second]} [data-action=pause]")
        page.wait_for_selector(f"{card[second]} .pill:text('paused')", timeout=WAIT_MS)
        assert api_call(served, "GET", f"/api/runs/{second}")["status"] == "paused"
        page.click(f"{card[second]} [data-action=resume]")
        page.wait_for_selector(f"{card[second]} .pill:text('running')", timeout=WAIT_MS)

        # More connections from the card: the API and the card agree.
        page.fill(f"{card[second]} input[name=connections]", "2")
        page.click(f"{card[second]} [data-action=apply]")
        page.wait_for_function(
            f'document.querySelector("{card[second]} .run-card-settings").textContent'
            ".includes('2 conn')",
            timeout=WAIT_MS,
        )
        edited = api_call(served, "GET", f"/api/runs/{second}")["control"]
        assert edited["connections"] == 2
        assert page.inner_text(f"{card[second]} .run-card-settings") == page.evaluate(
            FORMAT, ["control", edited]
        )

        # A second tab follows neither run until one is picked.
        other_tab = page.context.new_page()
        open_fire(other_tab, served)
        other_tab.wait_for_selector("#other-runs:not([hidden])", timeout=WAIT_MS)
        assert other_tab.locator(".run-card").count() == 0
        assert other_tab.is_visible("#fire-idle")
        other_tab.click(f"#other-runs [data-run='{second}'] [data-action=follow]")
        other_tab.wait_for_selector(f".run-card[data-run='{second}']", timeout=WAIT_MS)
        assert other_tab.locator(".run-card").count() == 1
        other_tab.close()

        # A refused edit says why on the card and changes nothing.
        page.fill(f"{card[first]} input[name=rate]", "1e9")
        page.click(f"{card[first]} [data-action=apply]")
        page.wait_for_selector(f"{card[first]} .run-card-error:not([hidden])", timeout=WAIT_MS)
        assert "rate" in page.inner_text(f"{card[first]} .run-card-error")
        assert api_call(served, "GET", f"/api/runs/{first}")["control"]["rate_target"] == 200

        # A reload keeps this tab's cards, with the edit still listed.
        page.reload()
        page.wait_for_selector("#status:text('live')", timeout=WAIT_MS)
        open_fire(page, served)
        for selector in card.values():
            page.wait_for_selector(selector, timeout=WAIT_MS)
        page.wait_for_selector(f"{card[first]} .run-card-edits li", timeout=WAIT_MS)

        # Stop both from their cards: each card shows how its run ended.
        for selector in card.values():
            page.click(f"{selector} [data-action=stop]")
            page.wait_for_selector(f"{selector} .pill:text('stopped')", timeout=WAIT_MS)
