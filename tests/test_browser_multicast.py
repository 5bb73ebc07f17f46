"""The receivers of a multicast run, as the dashboard shows them, are the API's.

A sender node with a sink of its own on an IPv4 group, and a receiver node (its peer) with
a sink on the same group, run in namespaces on a bridge (:mod:`tests.nsnodes`). A rate run
to the group is fired on the sender; then Chromium, started inside the sender's namespace
(the host has no route to it), opens that run in the Runs section. Every figure of every
receiver row (``data-field`` ``receivers.N.…``) must read as the API's value of that field
(``GET /api/runs/{id}``) put through the page's own formatter, and there is a row for each
receiver the API lists, with its name.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.netns import needs_netns
from tests.nsnodes import Nodes, serve_nodes

pytestmark = [pytest.mark.browser, needs_netns]

ADDRS = {"tx": ("10.53.0.1", "fd53::1"), "rx": ("10.53.0.2", "fd53::2")}
GROUP, PORT = "239.5.6.7", 5000
SINK = f"udp://{GROUP}:{PORT}?mode=sink&iface=veth0&rcvbuf=4194304"
COUNT = 400
FIELDS = ("received", "lost", "loss_pct", "duplicates", "reordered", "jitter_ms")
UNITS = {
    "received": "count",
    "lost": "count",
    "loss_pct": "pct",
    "duplicates": "count",
    "reordered": "count",
    "jitter_ms": "ms",
}

FORMAT = """async (pairs) => {
  const util = await import("/static/js/util.js");
  return pairs.map(([unit, value]) => util.FIGURES[unit](value));
}"""

IS_GROUP = """async (targets) => {
  const receivers = await import("/static/js/receivers.js");
  return targets.map((target) => receivers.isGroupTarget(target));
}"""
TARGETS = [
    ("udp://239.5.6.7:5000", True),
    ("udp://224.0.0.1:9", True),
    ("udp://[ff15::1:2]:5000", True),
    ("udp://240.0.0.1:9", False),
    ("udp://10.0.0.1:9", False),
    ("udp://[fd00::1]:9", False),
    ("tcp://239.5.6.7:5000", False),
    ("udp://ff.example:9", False),
]

READ_ROWS = """(table) => [...document.querySelectorAll(`${table} tr`)]
  .filter((tr) => (tr.dataset.key || "").startsWith("receiver_"))
  .map((tr) => ({
    key: tr.dataset.key,
    label: tr.querySelector("th, td").textContent,
    figures: Object.fromEntries([...tr.querySelectorAll("[data-field]")]
      .map((node) => [node.dataset.field, node.textContent])),
  }))"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    commands = {
        "rx": ["serve", "--web", f"{ADDRS['rx'][0]}:8000", "--listen", SINK],
        "tx": [
            "serve",
            "--web",
            f"{ADDRS['tx'][0]}:8000",
            "--listen",
            SINK,
            "--allow-multicast",
            "--allow-target",
            "239.0.0.0/8",
            "--allow-bind",
            "239.0.0.0/8",
            "--peer",
            f"http://{ADDRS['rx'][0]}:8000",
        ],
    }
    with serve_nodes(tmp_path_factory.mktemp("mcbrowser"), ADDRS, commands) as started:
        started.wait_for_peers({"tx": 1})
        yield started


def chromium_in(ns: str, folder: Path) -> str:
    """An executable that runs Debian's Chromium inside namespace ``ns`` (Playwright talks
    to it over the pipes it inherits, which ``ip netns exec`` keeps)."""
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    wrapper = folder / "chromium-in-ns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@contextmanager
def signed_in(nodes: Nodes, folder: Path) -> Iterator[Any]:
    """A dashboard page of the sender, signed in, in Chromium inside its namespace."""
    from playwright.sync_api import sync_playwright

    base = nodes["tx"].web
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_in(nodes["tx"].ns, folder), args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/?token={nodes.token}")
            page.wait_for_selector("#status:text('live')", timeout=20000)
            yield page
        finally:
            browser.close()


def test_the_receivers_of_a_multicast_run_read_as_the_api_says(
    nodes: Nodes, tmp_path: Path
) -> None:
    target = f"udp://{GROUP}:{PORT}"
    options = ("--pattern", "rate", "--rate", "400", "--count", str(COUNT), "--iface", "veth0")
    fired = nodes.fire("tx", target, *options)
    run: dict[str, Any] = nodes.get("tx", f"/api/runs/{fired['id']}")
    receivers = run["summary"]["receivers"]
    assert len(receivers) == 2 and {row["received"] for row in receivers} == {COUNT}
    with signed_in(nodes, tmp_path) as page:
        page.goto(f"{nodes['tx'].web}/#runs/{run['id']}")
        page.wait_for_selector("#detail-summary [data-field='receivers.1.received']", timeout=20000)
        shown = page.evaluate(READ_ROWS, "#detail-summary")
        no_rtt = page.text_content("#detail-pct tr[data-key='no_rtt'] td")
        groups = page.evaluate(IS_GROUP, [t for t, _ in TARGETS])
        pairs = [[UNITS[name], row[name]] for row in receivers for name in FIELDS]
        texts = iter(page.evaluate(FORMAT, pairs))
    assert groups == [expected for _, expected in TARGETS]
    assert no_rtt == "none: a group's members do not reply"
    assert [row["key"] for row in shown] == ["receiver_0", "receiver_1"]
    for index, (api_row, page_row) in enumerate(zip(receivers, shown, strict=True)):
        name = api_row["peer"] or "this lab"
        assert page_row["label"] == f"receiver {name} · {api_row['listener']}"
        expected = {f"receivers.{index}.{field}": next(texts) for field in FIELDS}
        assert page_row["figures"] == expected


def test_the_fire_form_sends_to_a_group_with_its_options(nodes: Nodes, tmp_path: Path) -> None:
    with signed_in(nodes, tmp_path) as page:
        page.click("#tabs a[data-tab=fire]")
        page.wait_for_selector("section#fire:not([hidden])", timeout=5000)
        page.select_option("#fire-pattern", "rate")
        page.fill("#fire-target", "udp://127.0.0.1:9")
        assert page.is_hidden("#fire-form [data-multicast]")  # a unicast target has none
        page.fill("#fire-target", f"udp://{GROUP}:{PORT}")
        page.wait_for_selector("#fire-form [data-multicast]:not([hidden])", timeout=5000)
        page.fill("#fire-form [name=rate]", "400")
        page.select_option("#fire-stop-by", "count")
        page.fill("#fire-form [name=count]", str(COUNT))
        page.fill("#fire-form [name=ttl]", "1")
        page.fill("#fire-form [name=iface]", "veth0")
        page.select_option("#fire-form [name=loopback]", "false")
        page.click("#fire-button")
        page.wait_for_selector("#result-table [data-field='receivers.1.received']", timeout=30000)
        shown = page.evaluate(READ_ROWS, "#result-table")
        runs = nodes.get("tx", "/api/runs?limit=1")["items"]
        run: dict[str, Any] = nodes.get("tx", f"/api/runs/{runs[0]['id']}")
        pairs = [[UNITS[name], row[name]] for row in run["summary"]["receivers"] for name in FIELDS]
        texts = iter(page.evaluate(FORMAT, pairs))
    spec = run["spec"]
    assert (spec["ttl"], spec["iface"], spec["loopback"]) == (1, "veth0", False)
    # No loopback: the sender's own sink got nothing, the peer's everything.
    received = {row["peer"]: row["received"] for row in run["summary"]["receivers"]}
    assert received == {None: 0, ADDRS["rx"][0]: COUNT}
    for index, page_row in enumerate(shown):
        assert page_row["figures"] == {
            f"receivers.{index}.{field}": next(texts) for field in FIELDS
        }


def test_the_listener_form_joins_a_group_source_specific(nodes: Nodes, tmp_path: Path) -> None:
    with signed_in(nodes, tmp_path) as page:
        page.click("#tabs a[data-tab=listeners]")
        page.wait_for_selector("section#listeners:not([hidden])", timeout=5000)
        page.select_option("#lf-protocol", "udp")
        page.select_option("#lf-mode", "sink")
        page.fill("#listener-form input[name=host]", "239.5.6.8")
        page.fill("#listener-form input[name=port]", "5002")
        page.fill("#listener-form input[name=iface]", "veth0")
        page.fill("#listener-form input[name=source]", ADDRS["rx"][0])
        page.click("#listener-add")
        page.wait_for_selector("#listener-msg:not([hidden])", timeout=10000)
    items = nodes.get("tx", "/api/listeners")["items"]
    (joined,) = [item for item in items if item["host"] == "239.5.6.8"]
    assert (joined["port"], joined["mode"]) == (5002, "sink")
    assert joined["options"] == {"iface": "veth0", "source": ADDRS["rx"][0]}
