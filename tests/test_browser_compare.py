"""TCP and UDP side by side on a lossy path, as the dashboard shows them.

A lab serves inside a network namespace of the test's own (``ip netns add``), with a TCP
and a UDP echo listener on the same port number, each dropping 5 % of the packets it
receives (``kernel_loss=5``: nftables in that namespace only, never the host's ruleset).
Chromium runs in the same namespace (``ip netns exec`` in front of it), so the page's
127.0.0.1 is the lab's. From the Fire form, "Compare TCP and UDP" fires a rate run at
1,000 msg/s for 10 s over both transports at once; the compare view must show TCP with no
message lost and retransmits above 0, UDP with 5 % ± 1 % round-trip loss, and every figure
on it the API's (``GET /api/compare/{id}``) through the page's own formatter of its unit;
its address (``#fire/compare/<id>``) opens the same view afresh.

With ``SOCKETLAB_DOCS=1`` the compare view is also saved as static/docs/compare-transports.png,
the README's picture of the worked example.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, screenshot
from tests.helpers import TOKEN, ServedLab
from tests.netns import namespace, needs_netns

pytestmark = [
    pytest.mark.browser,
    needs_netns,
]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "static" / "docs"
PORT = 9000  # inside the test's own namespace: nothing else listens there
LOSS = 5
# Generous: a loaded 2-CPU machine; the runs themselves take 10 s.
START_TIMEOUT = 30.0
RESULT_TIMEOUT_MS = 180_000
_DASHBOARD = re.compile(r"dashboard: (http://[^\s]+?:(\d+)/\S*)")

# Every figure of the compare view: [transport, summary field, unit, text].
READ_VIEW = """() => [...document.querySelectorAll("#compare-transports-table td [data-field]")]
  .map((node) => [node.closest("td").dataset.transport, node.dataset.field, node.dataset.unit,
                  node.textContent])"""
# The cells that say why a transport has no such figure: [transport, field, text].
READ_ABSENT = """() => [...document.querySelectorAll("#compare-transports-table td [data-absent]")]
  .map((node) => [node.closest("td").dataset.transport, node.dataset.absent, node.textContent])"""
# The page's own formatter module, fed the API's numbers: [[unit, value], ...] -> texts.
FORMAT = """async (pairs) => {
  const util = await import("/static/js/util.js");
  return pairs.map(([unit, value]) => util.FIGURES[unit](value));
}"""
# The API's document, fetched by the page (the test process is outside the namespace).
FETCH = """async (path) => {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}"""


@pytest.fixture
def netns() -> Iterator[str]:
    with namespace("slcmp") as name:
        yield name


@pytest.fixture
def lossy_lab(netns: str, tmp_path: Path) -> Iterator[ServedLab]:
    """``socketlab serve`` in ``netns``: TCP and UDP echo on :data:`PORT`, both lossy."""
    lossy = f"?mode=echo&kernel_loss={LOSS}"
    args = [
        *("ip", "netns", "exec", netns, sys.executable, "-m", "app.cli", "serve"),
        *("--web", "127.0.0.1:0", "--data", str(tmp_path / "data"), "--token", TOKEN),
        *(
            "--listen",
            f"tcp://127.0.0.1:{PORT}{lossy}",
            "--listen",
            f"udp://127.0.0.1:{PORT}{lossy}",
        ),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SOCKETLAB_TOKEN", None)
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    served: ServedLab | None = None
    for line in process.stdout:
        match = _DASHBOARD.search(line)
        if match:
            served = ServedLab(process, int(match.group(2)), match.group(1), {}, tmp_path)
            break
    if served is None:
        process.kill()
        process.wait()
        raise AssertionError("socketlab serve did not print its dashboard URL")
    try:
        yield served
    finally:
        assert served.stop(timeout=60) == 0
        served.close_stdout()


@pytest.fixture
def chromium_in(netns: str, tmp_path: Path) -> Path:
    """A Chromium that starts inside ``netns`` (Playwright talks to it over a pipe)."""
    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {netns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_the_compare_view_shows_tcp_retransmitting_and_udp_losing_on_a_lossy_path(
    lossy_lab: ServedLab, chromium_in: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_in), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.goto(lossy_lab.login_url)
            page.wait_for_selector("#status:text('live')", timeout=30_000)
            page.click("a[data-tab='fire']")
            page.fill("#fire-target", f"127.0.0.1:{PORT}")
            page.select_option("#fire-pattern", "rate")
            page.fill("#fire-form input[name='rate']", "1000")
            page.fill("#fire-form input[name='duration']", "10")
            page.click("#compare-transports-button")

            view = page.locator("#compare-view")
            # Live: the view is up while the runs go, before they end.
            expect(view).to_have_attribute("data-status", "running", timeout=30_000)
            expect(view).to_have_attribute(
                "data-status", re.compile("finished|failed|stopped"), timeout=RESULT_TIMEOUT_MS
            )
            compare_id = page.locator("#compare-id").inner_text()
            doc: dict[str, Any] = page.evaluate(FETCH, f"/api/compare/{compare_id}")
            shown = page.evaluate(READ_VIEW)
            absent = page.evaluate(READ_ABSENT)
            expected = page.evaluate(
                FORMAT, [[unit, value_at(doc, t, f)] for t, f, unit, _ in shown]
            )
            if os.environ.get("SOCKETLAB_DOCS") == "1":
                view.scroll_into_view_if_needed()
                view.screenshot(path=str(DOCS / "compare-transports.png"))
            screenshot(page, "compare-transports", scroll_to="#compare-view")
            # The comparison has an address of its own: opened afresh, the same view.
            assert page.url.endswith(f"#fire/compare/{compare_id}")
            page.reload()
            expect(page.locator("#compare-id")).to_have_text(compare_id, timeout=30_000)
            expect(view).to_have_attribute("data-status", doc["status"], timeout=30_000)
            reopened = page.evaluate(READ_VIEW)
        finally:
            browser.close()

    assert doc["status"] == "finished", doc
    tcp, udp = doc["runs"]["tcp"]["summary"], doc["runs"]["udp"]["summary"]
    # TCP: every message delivered, late, because the kernel retransmitted.
    assert tcp["sent"] == tcp["received"] == 10_000 and tcp["lost"] == 0
    assert tcp["tcp"]["retransmits"] > 0
    # UDP: a dropped request is a lost round trip.
    assert udp["sent"] == 10_000
    assert LOSS - 1 <= udp["loss_pct"] <= LOSS + 1
    print(
        f"tcp p99 {tcp['rtt_ms']['p99']} ms p99.9 {tcp['rtt_ms']['p999']} ms "
        f"max {tcp['rtt_ms']['max']} ms retransmits {tcp['tcp']['retransmits']}; "
        f"udp loss {udp['loss_pct']} % p99 {udp['rtt_ms']['p99']} ms"
    )

    # Every figure on the view is the API's, through the page's formatter of its unit.
    assert [text for *_, text in shown] == expected
    assert reopened == shown
    fields = {(t, f) for t, f, _, _ in shown}
    for transport in ("tcp", "udp"):
        for field in ("sent", "received", "lost", "loss_pct", "rtt_ms.p99", "rtt_ms.p999"):
            assert (transport, field) in fields
    assert ("tcp", "tcp.retransmits") in fields and ("udp", "jitter_ms") in fields
    # What a transport does not have is said, not shown as a number.
    assert ["udp", "tcp.retransmits", "UDP does not retransmit"] in absent
    assert ["tcp", "jitter_ms", "not measured over TCP"] in absent


def value_at(doc: dict[str, Any], transport: str, field: str) -> Any:
    """The summary value at dotted ``field`` of ``transport``'s run in ``doc``."""
    node: Any = doc["runs"][transport]["summary"]
    for key in field.split("."):
        node = node[key]
    return node
