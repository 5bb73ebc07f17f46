"""The Runs page in a real browser: live rows, details in view, the histogram's percentile
markers, several runs compared, and search, labels and delete, each checked against the API.

Figures on the page are compared with the API's JSON formatted by the page's own formatters
(static/js/util.js), never recomputed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import COLOURED_PIXELS, wait_run

pytestmark = pytest.mark.browser

FORMAT = "([name, value]) => import('/static/js/util.js').then((util) => util[name](value))"
# Where an element is, seen from the viewport, and where the sticky header ends.
GEOMETRY = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  return {top: box.top, header: document.querySelector('header').getBoundingClientRect().bottom,
          viewport: window.innerHeight, scrolled: window.scrollY};
}"""
SHOWS_IDS = (
    "(ids) => [...document.querySelectorAll('#runs-table tbody tr')]"
    ".map((r) => r.dataset.id).join() === ids.join()"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    served = start_served_lab(tmp_path_factory.mktemp("history") / "data")
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


@pytest.fixture
def page(served: ServedLab) -> Iterator[Any]:
    errors: list[str] = []
    with chromium_page() as page:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(served.login_url)
        page.wait_for_selector("#status:text('live')", timeout=10000)
        yield page
    assert errors == []


def tcp(served: ServedLab) -> str:
    return f"tcp://127.0.0.1:{served.listeners['tcp']}"


def finished(served: ServedLab, spec: dict[str, Any]) -> dict[str, Any]:
    run = wait_run(served, api_call(served, "POST", "/api/runs", spec)["id"])
    assert run["status"] == "finished", run
    return run


def fmt(page: Any, name: str, value: Any) -> str:
    return str(page.evaluate(FORMAT, [name, value]))


def open_runs(page: Any, run_id: str | None = None) -> None:
    page.click("#tabs a[data-tab=runs]")
    page.wait_for_selector("section#runs:not([hidden])", timeout=3000)
    if run_id is not None:
        page.locator(f"#runs-table tbody tr[data-id='{run_id}'] a").click()
        page.wait_for_function(
            "(id) => !document.querySelector('#run-detail').hidden"
            " && document.querySelector('#detail-id').textContent === id",
            arg=run_id,
            timeout=5000,
        )


def shown_ids(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.id)")
    )


def test_running_runs_rows_update_live_in_the_runs_list(served: ServedLab, page: Any) -> None:
    run_id = api_call(served, "POST", "/api/runs", {"target": tcp(served), "duration": 60})["id"]
    open_runs(page)
    row = f"#runs-table tbody tr[data-id='{run_id}']"
    page.wait_for_selector(f"{row}[data-status=running]", timeout=5000)
    first = page.inner_text(f"{row} td:nth-child(6)")
    # The list is not reloaded: the row itself follows the run while it goes, twice over.
    for _ in range(2):
        page.wait_for_function(
            "([sel, before]) => { const r = document.querySelector(sel);"
            " return r && r.dataset.status === 'running'"
            " && r.querySelector('td:nth-child(6)').textContent !== before; }",
            arg=[row, first],
            timeout=10000,
        )
        now = page.inner_text(f"{row} td:nth-child(6)")
        assert int(now.replace(",", "")) > int(first.replace(",", "") or 0)
        first = now
    assert api_call(served, "GET", f"/api/runs/{run_id}")["status"] == "running"
    api_call(served, "POST", f"/api/runs/{run_id}/stop")
    page.wait_for_selector(f"{row}[data-status=stopped]", timeout=10000)
    stored = api_call(served, "GET", f"/api/runs/{run_id}")["summary"]
    assert page.inner_text(f"{row} td:nth-child(6)") == fmt(page, "fmtNum", stored["sent"])
    assert page.inner_text(f"{row} td:nth-child(7)") == fmt(page, "fmtNum", stored["received"])
    assert page.inner_text(f"{row} td:nth-child(8)") == fmt(page, "fmtMs", stored["rtt_ms"]["p50"])


def test_clicking_a_run_scrolls_its_details_into_view_under_the_header(
    served: ServedLab, page: Any
) -> None:
    runs = [
        api_call(served, "POST", "/api/runs", {"target": tcp(served), "count": 5})
        for _ in range(24)
    ]
    for run in runs:
        wait_run(served, run["id"])
    open_runs(page)
    page.wait_for_selector(f"#runs-table tbody tr[data-id='{runs[-1]['id']}']", timeout=5000)
    before = page.evaluate(GEOMETRY, "#run-detail")
    assert before["scrolled"] == 0
    open_runs(page, runs[-1]["id"])
    page.wait_for_function(
        "() => { const b = document.querySelector('#run-detail').getBoundingClientRect();"
        " const h = document.querySelector('header').getBoundingClientRect().bottom;"
        " return b.top >= h - 1 && b.top < window.innerHeight / 2; }",
        timeout=5000,
    )
    where = page.evaluate(GEOMETRY, "#run-detail")
    assert where["scrolled"] > 0  # the details were below the fold
    assert where["header"] <= where["top"] < where["viewport"]


def test_the_histogram_shows_markers_at_the_summary_percentiles(
    served: ServedLab, page: Any
) -> None:
    run = finished(served, {"target": tcp(served), "connections": 4, "count": 1500})
    hist = api_call(served, "GET", f"/api/runs/{run['id']}/histogram")
    assert hist["resolution"] == "fine"
    open_runs(page, run["id"])
    page.wait_for_function(
        "() => document.querySelectorAll('#detail-hist-markers li').length === 4", timeout=5000
    )
    rtt = run["summary"]["rtt_ms"]
    labels = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}
    markers = page.eval_on_selector_all(
        "#detail-hist-markers li",
        "items => items.map(li => [li.dataset.marker, Number(li.dataset.ms), li.textContent])",
    )
    assert [m[0] for m in markers] == ["p50", "p90", "p99", "p999"]
    for name, ms, text in markers:
        assert ms == rtt[name]
        assert text == f"{labels[name]} {fmt(page, 'fmtMs', rtt[name])}"
        # The same figure as the page's own percentile table.
        shown = page.inner_text(f"#detail-pct tr[data-key={name}] td")
        assert text.endswith(shown)
    assert int(page.get_attribute("#chart-detail-hist", "data-points") or 0) == len(hist["buckets"])
    assert int(page.evaluate(COLOURED_PIXELS, "#chart-detail-hist")) > 50
    screenshot(page, "runs-histogram", scroll_to="#detail-hist-markers")
    # The log-scale option redraws the RTT chart from the same series.
    page.check("#rtt-log")
    page.wait_for_function(
        "(n) => Number(document.querySelector('#chart-detail-rtt').dataset.points) === n",
        arg=len(run["series"]),
        timeout=5000,
    )


def test_three_runs_are_compared_on_one_chart(served: ServedLab, page: Any) -> None:
    runs = [
        finished(served, {"target": tcp(served), "connections": n, "count": 200 * n})
        for n in (1, 2, 3)
    ]
    open_runs(page)
    for run in runs:
        page.check(f"#runs-table tr[data-id='{run['id']}'] input[type=checkbox]")
    page.click("#compare-button")
    page.wait_for_selector("#run-compare:not([hidden])", timeout=5000)
    page.wait_for_function(
        "() => document.querySelectorAll('#compare-hist-markers li').length === 12", timeout=5000
    )
    headers = page.locator("#compare-table thead th").all_inner_texts()
    assert headers == ["", *(f"run {r['id']}" for r in runs)]
    sent = page.locator("#compare-table tr[data-key=sent] td").all_inner_texts()
    assert sent == [fmt(page, "fmtNum", r["summary"]["sent"]) for r in runs]
    p99 = page.locator("#compare-table tr[data-key='RTT p99'] td").all_inner_texts()
    assert p99 == [fmt(page, "fmtMs", r["summary"]["rtt_ms"]["p99"]) for r in runs]
    # One chart each: three overlaid histograms, three lines of a percentile over time.
    legend = "(sel) => document.querySelectorAll(sel + ' .u-legend .u-series').length"
    assert page.evaluate(legend, "#chart-compare-hist") == 4  # the x axis and three runs
    assert page.evaluate(legend, "#chart-compare") == 4
    buckets = sum(
        len(api_call(served, "GET", f"/api/runs/{r['id']}/histogram")["buckets"]) for r in runs
    )
    assert int(page.get_attribute("#chart-compare-hist", "data-points") or 0) == buckets
    assert int(page.get_attribute("#chart-compare", "data-points") or 0) > 0
    for run in runs:
        ms = page.eval_on_selector_all(
            f"#compare-hist-markers li[data-run='{run['id']}']",
            "items => items.map(li => Number(li.dataset.ms))",
        )
        rtt = run["summary"]["rtt_ms"]
        assert ms == [rtt["p50"], rtt["p90"], rtt["p99"], rtt["p999"]]
    screenshot(page, "runs-compare-three-table", scroll_to="#compare-table")
    screenshot(page, "runs-compare-three", scroll_to="#compare-hist-markers")
    # The comparison has an address of its own: opened afresh, it shows the same runs.
    ids = ",".join(r["id"] for r in runs)
    assert page.url.endswith(f"#runs/compare/{ids}")
    page.reload()
    page.wait_for_selector("#run-compare:not([hidden])", timeout=10000)
    page.wait_for_function(
        "() => document.querySelectorAll('#compare-hist-markers li').length === 12", timeout=5000
    )
    assert page.locator("#compare-table thead th").all_inner_texts() == headers
    assert page.locator("#compare-table tr[data-key=sent] td").all_inner_texts() == sent


def test_runs_are_searched_labelled_and_deleted_from_the_page(served: ServedLab, page: Any) -> None:
    udp = f"udp://127.0.0.1:{served.listeners['udp']}"
    kept = finished(served, {"target": udp, "pattern": "burst", "count": 20})
    gone = finished(served, {"target": udp, "count": 10})
    open_runs(page)
    page.fill("#runs-q", "udp://")
    page.select_option("#runs-pattern", "burst")
    page.click("#runs-search button[type=submit]")
    expected = [
        r["id"] for r in api_call(served, "GET", "/api/runs?q=udp://&pattern=burst")["items"]
    ]
    assert kept["id"] in expected and gone["id"] not in expected
    page.wait_for_function(
        SHOWS_IDS,
        arg=expected,
        timeout=5000,
    )
    # A label added on the run's details is stored, shown in its row, and filters the list.
    open_runs(page, kept["id"])
    page.fill("#label-input", "baseline-1")
    page.click("#label-form button[type=submit]")
    page.wait_for_selector("#detail-labels [data-label='baseline-1']", timeout=5000)
    assert api_call(served, "GET", f"/api/runs/{kept['id']}")["labels"] == ["baseline-1"]
    page.fill("#runs-q", "")
    page.select_option("#runs-pattern", "")
    page.click("#runs-search button[type=submit]")
    page.click(f"#runs-table tr[data-id='{kept['id']}'] button[data-label='baseline-1']")
    labelled = [r["id"] for r in api_call(served, "GET", "/api/runs?label=baseline-1")["items"]]
    page.wait_for_function(
        SHOWS_IDS,
        arg=labelled,
        timeout=5000,
    )
    assert labelled == [kept["id"]]
    page.click("#detail-labels button[aria-label='remove label baseline-1']")
    page.wait_for_function(
        "() => !document.querySelector('#detail-labels [data-label]')", timeout=5000
    )
    assert api_call(served, "GET", f"/api/runs/{kept['id']}")["labels"] == []
    # Delete: the run and its row are gone; the API no longer has it.
    page.click("#runs-label-filter button")
    open_runs(page, gone["id"])
    page.click("#detail-delete")
    page.wait_for_selector(
        f"#runs-table tbody tr[data-id='{gone['id']}']", state="detached", timeout=5000
    )
    assert page.is_hidden("#run-detail")
    ids = [r["id"] for r in api_call(served, "GET", "/api/runs?limit=1000")["items"]]
    assert gone["id"] not in ids and kept["id"] in ids
    assert shown_ids(page) == ids[: len(shown_ids(page))]
