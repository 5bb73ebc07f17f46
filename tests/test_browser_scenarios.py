"""The Scenarios section in a real browser (Debian's Chromium) against a real ``socketlab
serve`` with a respond listener: a scenario written in the text view (the step editor
follows, and the other way round), dry-run (the transcript shows each exchange as the API
answered it), saved, fired, and its per-step table followed live; every number on the page
is the API's, formatted by the page's own formatters (static/js/util.js)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import PHONE, open_section, themed_page, wait_run

pytestmark = pytest.mark.browser

DASH = "\u2013"  # what the page shows for a figure that is not there
FMT = "async ([name, value]) => (await import('/static/js/util.js'))[name](value)"

# PING gets a numbered PONG; ECHO <word> gets GOT <word> back.
RULES = [
    {"match": "prefix", "pattern": "PING", "reply": "PONG {counter}\n"},
    {"match": "regex", "pattern": "^ECHO (?P<word>[0-9a-z]+)", "reply": "GOT {word}\n"},
]

# Captures the number of one reply and sends it back in the next; a short delay keeps the
# sessions going long enough to be watched.
SCENARIO_TOML = """\
name = "round trip"

[[steps]]
send = "PING\\\\n"

[[steps]]
expect = "PONG "
match = "prefix"

[[steps]]
capture = "PONG (?P<n>[0-9]+)"

[[steps]]
send = "ECHO {n}\\\\n"

[[steps]]
expect = "GOT {n}"

[[steps]]
delay = 0.05
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    lab = start_served_lab(tmp_path_factory.mktemp("scenarios") / "data")
    try:
        yield lab
    finally:
        assert lab.stop() == 0
        lab.close_stdout()


def respond_target(served: ServedLab) -> str:
    body = {"url": "tcp://127.0.0.1:0?mode=respond", "rules": RULES, "default_reply": "?\n"}
    listener = api_call(served, "POST", "/api/listeners", body)
    return f"tcp://127.0.0.1:{listener['port']}"


def fmt(page: Any, name: str, value: Any) -> str:
    return str(page.evaluate(FMT, [name, value]))


def figures_shown(page: Any, root: str) -> dict[str, str]:
    """Every figure under ``root``: its summary field and the text the page shows."""
    shown: dict[str, str] = page.eval_on_selector_all(
        f"{root} .fig[data-field]",
        "nodes => Object.fromEntries(nodes.map(n => [n.dataset.field, n.textContent]))",
    )
    return shown


def test_write_dry_run_save_fire_and_follow_a_scenario(served: ServedLab, tmp_path: Path) -> None:
    target = respond_target(served)
    with chromium_page() as page:
        open_section(page, served, "scenarios")

        # Write it as TOML: the step editor follows the text.
        page.fill("#scn-text", SCENARIO_TOML)
        page.wait_for_function("document.querySelectorAll('#scn-steps li').length === 6")
        actions = page.eval_on_selector_all("#scn-steps li", "ns => ns.map(n => n.dataset.action)")
        assert actions == ["send", "expect", "capture", "send", "expect", "delay"]
        # And the text follows the editor: a step added, then removed again.
        page.select_option("#scn-add-kind", "close")
        page.click("#scn-add")
        page.wait_for_function("document.querySelector('#scn-text').value.includes('close = true')")
        page.click("#scn-steps li:last-child button[aria-label^=remove]")
        page.wait_for_function("!document.querySelector('#scn-text').value.includes('close')")
        # Reordered: the capture moved above the expect, then back.
        order = "ns => ns.map(n => n.dataset.action).join(' ')"
        page.click("#scn-steps li[data-index='2'] button[aria-label^='move step 2 up']")
        page.wait_for_function(
            "document.querySelector('#scn-text').value.indexOf('capture') "
            "< document.querySelector('#scn-text').value.indexOf('expect')"
        )
        moved = page.eval_on_selector_all("#scn-steps li", order)
        assert moved == "send capture expect send expect delay"
        page.click("#scn-steps li[data-index='1'] button[aria-label^='move step 1 down']")
        assert page.eval_on_selector_all("#scn-steps li", order) == " ".join(actions)
        page.fill("#scn-steps li[data-index='5'] input[name=delay]", "0.02,0.05")
        page.dispatch_event("#scn-steps li[data-index='5'] input[name=delay]", "change")
        page.wait_for_function(
            "document.querySelector('#scn-text').value.includes('delay = [0.02, 0.05]')"
        )
        page.select_option("#scn-format", "json")
        doc = json.loads(page.input_value("#scn-text"))
        assert doc["steps"][5] == {"delay": [0.02, 0.05]}
        assert doc["name"] == "round trip"

        # Dry run: the transcript shows each exchange as the API answered it.
        page.fill("#scn-target", target)
        with page.expect_response(lambda r: r.url.endswith("/api/scenarios/dry-run")) as answer:
            page.click("#scn-dry")
        dry = answer.value.json()
        assert dry["ok"] is True, dry
        page.wait_for_selector("#scn-dry-box:not([hidden])")
        rows = page.eval_on_selector_all(
            "#scn-transcript tbody tr",
            """rows => rows.map(r => ({
                step: r.dataset.step, action: r.dataset.action,
                result: r.querySelector('.x-result').textContent,
                texts: [...r.querySelectorAll('.x-text')].map(n => n.textContent),
                hexes: [...r.querySelectorAll('.x-hex')].map(n => n.dataset.hex),
                latency: r.querySelector('td.num').textContent }))""",
        )
        assert len(rows) == len(dry["exchanges"]) == 6
        for row, x in zip(rows, dry["exchanges"], strict=True):
            assert (row["step"], row["action"]) == (x["step"], x["action"])
            assert row["result"] == ("pass" if x["ok"] else f"fail: {x['kind']}")
            shown = [b for b in (x["sent"], x["received"]) if b]
            assert row["texts"] == [f'"{b["text"]}"' for b in shown]
            assert row["hexes"] == [b["hex"] for b in shown]
            latency = DASH if x["latency_ms"] is None else fmt(page, "fmtMs", x["latency_ms"])
            assert row["latency"] == latency
        # The number captured from the first reply went back, byte for byte.
        got = dry["exchanges"][1]["received"]["text"].removeprefix("PONG ")
        assert dry["exchanges"][3]["sent"]["text"] == f"ECHO {got}\\n"
        assert dry["exchanges"][4]["received"]["text"] == f"GOT {got}"
        assert page.text_content("#scn-dry-outcome") == "every step passed"

        # Save it: listed, and the API holds the document the editor shows.
        page.fill("#scn-name", "rt")
        page.click("#scn-save")
        page.wait_for_selector("#scn-saved tbody tr[data-name=rt]")
        saved = api_call(served, "GET", "/api/scenarios/rt")
        assert saved["scenario"]["steps"][5]["delay"] == [0.02, 0.05]
        assert len(saved["scenario"]["steps"]) == 6

        # Fire it (the saved one, by name): the per-step table is shown while it runs.
        page.fill("#scn-form input[name=connections]", "4")
        page.fill("#scn-form input[name=duration]", "4")
        with page.expect_response(lambda r: r.url.endswith("/api/runs")) as fired:
            page.click("#scn-fire")
        run_id = fired.value.json()["id"]
        page.wait_for_function(
            """() => document.querySelector('#scn-run-status').textContent === 'running'
                && Number((document.querySelector(
                    "#scn-step-table [data-field='scenario.steps.0.count']") || {}).textContent
                    ?.replace(/,/g, '')) > 0""",
            timeout=30000,
        )
        live = figures_shown(page, "#scn-step-table")
        assert int(live["scenario.steps.0.count"].replace(",", "")) > 0
        page.wait_for_function(
            "document.querySelector('#scn-run-status').textContent === 'finished'", timeout=60000
        )

        run = api_call(served, "GET", f"/api/runs/{run_id}")
        assert run["status"] == "finished", run
        ran = [
            {k: v for k, v in step.items() if v is not None}
            for step in run["spec"]["scenario"]["steps"]
        ]
        assert ran == saved["scenario"]["steps"]
        figures = run["summary"]["scenario"]
        assert figures["sessions"] > 0 and figures["sessions_failed"] == 0
        want = {
            "scenario.sessions": fmt(page, "fmtNum", figures["sessions"]),
            "scenario.sessions_failed": fmt(page, "fmtNum", figures["sessions_failed"]),
        }
        for i, step in enumerate(figures["steps"]):
            for key in ("count", "passed", "failed"):
                want[f"scenario.steps.{i}.{key}"] = fmt(page, "fmtNum", step[key])
            if step["latency_ms"] is not None:
                for key in ("p50", "p99"):
                    want[f"scenario.steps.{i}.latency_ms.{key}"] = fmt(
                        page, "fmtMs", step["latency_ms"][key]
                    )
        assert figures_shown(page, "#scn-step-table") == want
        rows_shown = page.eval_on_selector_all(
            "#scn-step-table tbody tr", "rows => rows.map(r => r.dataset.step)"
        )
        assert rows_shown == [step["step"] for step in figures["steps"]]
        assert [s["step"] for s in figures["steps"]] == [f"steps.{i}" for i in range(6)]

        # The Runs page's details of the same run show the same per-step table.
        page.goto(f"http://127.0.0.1:{served.web_port}/#runs/{run_id}")
        page.wait_for_selector("#detail-steps-box:not([hidden])", timeout=10000)
        assert figures_shown(page, "#detail-steps") == want

        # And so does the run's HTML report.
        page.goto(f"http://127.0.0.1:{served.web_port}/api/runs/{run_id}/report.html")
        page.wait_for_selector("body[data-ready='1']", timeout=10000)
        assert figures_shown(page, "#report-steps") == want


def test_on_a_phone_the_scenarios_section_fits_the_screen(served: ServedLab) -> None:
    with themed_page(*PHONE) as page:
        open_section(page, served, "scenarios")
        page.fill("#scn-text", SCENARIO_TOML)
        page.wait_for_function("document.querySelectorAll('#scn-steps li').length === 6")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        # Each step's buttons stay on the screen.
        for box in page.locator("#scn-steps button[aria-label^=remove]").all():
            where = box.bounding_box()
            assert where is not None
            assert where["x"] >= 0 and where["x"] + where["width"] <= PHONE[0], where


def test_a_failing_dry_run_and_a_bad_step_are_shown_where_they_are(served: ServedLab) -> None:
    target = respond_target(served)
    with chromium_page() as page:
        open_section(page, served, "scenarios")
        wrong = '[[steps]]\nsend = "PING\\\\n"\n\n[[steps]]\nexpect = "PANG"\nmatch = "prefix"\n'
        page.fill("#scn-text", wrong)
        page.wait_for_function(
            "document.querySelector('#scn-steps li[data-index=\"1\"] input[name=expect]')"
            "?.value === 'PANG'"
        )
        page.fill("#scn-target", target)
        with page.expect_response(lambda r: r.url.endswith("/api/scenarios/dry-run")) as answer:
            page.click("#scn-dry")
        dry = answer.value.json()
        page.wait_for_selector("#scn-transcript tbody tr[data-step='steps.1'].failed")
        row = page.locator("#scn-transcript tbody tr[data-step='steps.1']")
        assert row.locator(".x-result").text_content() == "fail: mismatch"
        received = dry["exchanges"][1]["received"]
        assert row.locator(".x-text").text_content() == f'"{received["text"]}"'
        assert page.text_content("#scn-dry-outcome") == dry["error"] == "steps.1: mismatch"

        # Fired: the failures are counted on the step that failed, by kind, with samples.
        page.fill("#scn-form input[name=connections]", "2")
        page.select_option("#scn-form select[name=stop_by]", "iterations")
        page.fill("#scn-form input[name=iterations]", "6")
        with page.expect_response(lambda r: r.url.endswith("/api/runs")) as fired:
            page.click("#scn-fire")
        run_id = fired.value.json()["id"]
        page.wait_for_function(
            "document.querySelector('#scn-run-status').textContent === 'finished'", timeout=60000
        )
        figures = api_call(served, "GET", f"/api/runs/{run_id}")["summary"]["scenario"]
        expect_row = figures["steps"][1]
        assert (expect_row["failed"], expect_row["errors_by_kind"]) == (6, {"mismatch": 6})
        shown = figures_shown(page, "#scn-step-table")
        assert shown["scenario.steps.1.failed"] == fmt(page, "fmtNum", 6)
        assert shown["scenario.steps.1.errors_by_kind.mismatch"] == fmt(page, "fmtNum", 6)
        assert shown["scenario.sessions_failed"] == fmt(page, "fmtNum", figures["sessions_failed"])
        assert (
            page.text_content("#scn-step-table .worst-step") == figures["worst_step"] == "steps.1"
        )
        samples = page.eval_on_selector_all(
            "#scn-step-table tr[data-step='steps.1'] .samples li",
            "ns => ns.map(n => n.textContent)",
        )
        assert samples == [f'{x["kind"]}: "{x["text"]}"' for x in expect_row["samples"]]
        assert samples

        # A step the lab refuses: the error names it, and that step is marked in the editor.
        page.fill("#scn-steps li[data-index='0'] input[name=send]", "{nope}")
        page.dispatch_event("#scn-steps li[data-index='0'] input[name=send]", "change")
        page.fill("#scn-name", "bad")
        page.click("#scn-save")
        page.wait_for_selector("#scn-steps li[data-index='0'].field-error")
        assert "scenario.steps.0.send" in (page.text_content("#scn-error") or "")
        saved = api_call(served, "GET", "/api/scenarios")["items"]
        assert "bad" not in [item["name"] for item in saved]


STEP_BARS = """(box) => [...document.querySelectorAll(box + ' svg.stepchart g[data-step]')]
  .map((g) => ({
    step: g.dataset.step, passed: Number(g.dataset.passed), failed: Number(g.dataset.failed),
    p50: g.dataset.p50 === undefined ? null : Number(g.dataset.p50),
    p99: g.dataset.p99 === undefined ? null : Number(g.dataset.p99),
    widths: [...g.querySelectorAll('rect.passed, rect.failed')]
      .map((r) => Number(r.getAttribute('width'))),
  }))"""


def test_the_per_step_chart_draws_the_apis_passed_failed_and_latency(served: ServedLab) -> None:
    # Sessions whose number ends in 0 or 5 get a wrong answer: the second step fails there.
    body = {
        "url": "tcp://127.0.0.1:0?mode=respond",
        "rules": [
            {"match": "regex", "pattern": "^Q [0-9]*[05]$", "reply": "WRONG\\n"},
            {"match": "prefix", "pattern": "Q ", "reply": "RIGHT\\n"},
        ],
    }
    listener = api_call(served, "POST", "/api/listeners", body)
    spec = {
        "target": f"tcp://127.0.0.1:{listener['port']}",
        "pattern": "scenario",
        "iterations": 40,
        "scenario": {"steps": [{"send": "Q {counter}\\n"}, {"expect": "RIGHT"}]},
    }
    run = wait_run(served, api_call(served, "POST", "/api/runs", spec)["id"])
    steps = run["summary"]["scenario"]["steps"]
    with chromium_page() as page:
        open_section(page, served, "runs")
        page.evaluate(f"location.hash = 'runs/{run['id']}'")
        page.wait_for_selector("#detail-steps-box svg.stepchart g[data-step]", timeout=15000)
        bars = page.evaluate(STEP_BARS, "#detail-steps-box")
    assert [b["step"] for b in bars] == [row["step"] for row in steps]
    for bar, row in zip(bars, steps, strict=True):
        assert (bar["passed"], bar["failed"]) == (row["passed"], row["failed"])
        latency = row["latency_ms"]
        assert (bar["p50"], bar["p99"]) == (
            (None, None) if latency is None else (latency["p50"], latency["p99"])
        )
        # The bar is split in the API's proportion: failed over passed.
        if row["passed"]:
            assert bar["widths"][1] / bar["widths"][0] == pytest.approx(
                row["failed"] / row["passed"]
            )
    assert steps[1]["failed"] == 8 and steps[1]["passed"] == 32
