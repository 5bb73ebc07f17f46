"""The Mesh section in Chromium: the heat map shows what ``/api/mesh`` answers, and a click
on a cell opens that pair's figures and its series.

Three ``socketlab serve --mesh`` processes on loopback, each with the other two as peers
(web ports chosen before they start, so each can name the others).
The page's figures are compared with the API's for the same taking of the figures (the
cells carry the ``at`` of their row), formatted by the page's own formatters (FIGURES).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import screenshot
from tests.helpers import TOKEN, ServedLab, api_call, start_served_lab
from tests.pages import DESKTOP, open_section, sign_in, themed_page

pytestmark = pytest.mark.browser


NAMES = ("a", "b", "c")
ALL_PAIRS = {(s, d) for s in NAMES for d in NAMES if s != d}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mesh_node(data: Path, name: str, web: int, peers: list[int]) -> ServedLab:
    # The last --web wins over start_served_lab's own (port 0).
    args = ["--web", f"127.0.0.1:{web}", "--mesh", "--mesh-name", name, "--mesh-port", "0"]
    args += ["--mesh-rate", "10", "--peer-token", TOKEN]
    for peer in peers:
        args += ["--peer", f"http://127.0.0.1:{peer}"]
    return start_served_lab(data / name, *args)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServedLab]]:
    data = tmp_path_factory.mktemp("mesh")
    ports = {name: free_port() for name in NAMES}
    served: dict[str, ServedLab] = {}
    try:
        for name in NAMES:
            others = [ports[n] for n in NAMES if n != name]
            served[name] = mesh_node(data, name, ports[name], others)
        yield served
    finally:
        for node in served.values():
            assert node.stop() == 0
            node.close_stdout()


SHOWN = """() => [...document.querySelectorAll('#mesh-matrix td.mesh-cell[data-src]')]
  .map((td) => ({
    src: td.dataset.src, dst: td.dataset.dst, state: td.dataset.state, at: td.dataset.at,
    heat: td.dataset.heat,
    figures: [...td.querySelectorAll('.fig')]
      .map((f) => [f.dataset.field, f.dataset.unit, f.textContent]),
  }))"""

FORMAT = """async ([unit, value]) => {
  const util = await import('/static/js/util.js');
  return util.FIGURES[unit](value);
}"""


# The legend's levels (static/js/mesh.js LEVELS): UDP loss %, worst RTT p99 ms.
LEVELS = (("bad", 5, 500), ("poor", 1, 200), ("fair", 0.1, 50))


def expected_heat(pair: dict[str, Any]) -> str:
    if pair["state"] != "ok":
        return str(pair["state"])
    loss = pair["udp"]["loss_pct"] or 0
    p99 = max(pair["udp"]["rtt_p99_ms"] or 0, pair["tcp"]["rtt_p99_ms"] or 0)
    return next((name for name, lo, hi in LEVELS if loss >= lo or p99 >= hi), "good")


def api_value(pair: dict[str, Any], field: str) -> Any:
    flow, key = field.split(".")
    return pair[flow][key]


def test_the_heat_map_shows_the_apis_matrix_and_opens_a_pairs_series(
    nodes: dict[str, ServedLab],
) -> None:
    a = nodes["a"]
    with themed_page(*DESKTOP) as page:
        sign_in(page, a)
        open_section(page, a, "mesh")
        page.wait_for_function(
            "document.querySelectorAll('#mesh-matrix td.mesh-cell[data-state=ok]').length == 6",
            timeout=30_000,
        )
        compared = False
        for _ in range(20):
            shown = page.evaluate(SHOWN)
            matrix = api_call(a, "GET", "/api/mesh")
            rows = {row["src"]: row for row in matrix["rows"]}
            cells = [c for c in shown if c["at"] and float(c["at"]) == rows[c["src"]]["at"]]
            if not cells:
                # The page's figures are another taking's: wait for its next poll.
                page.wait_for_function(
                    "(at) => document.querySelector('#mesh-matrix').dataset.at !== at",
                    arg=page.get_attribute("#mesh-matrix", "data-at"),
                    timeout=15_000,
                )
                continue
            for cell in cells:
                pair = next(p for p in rows[cell["src"]]["pairs"] if p["dst"] == cell["dst"])
                assert cell["state"] == pair["state"]
                assert cell["heat"] == expected_heat(pair)
                for field, unit, text in cell["figures"]:
                    assert text == page.evaluate(FORMAT, [unit, api_value(pair, field)]), field
                compared = True
            break
        assert compared, "the page never showed the figures the API answered"
        assert {(c["src"], c["dst"]) for c in page.evaluate(SHOWN)} == ALL_PAIRS
        page.click("#mesh-matrix td.mesh-cell[data-src=a][data-dst=b]")
        page.wait_for_selector("#mesh-pair:not([hidden])")
        assert page.text_content("#mesh-pair-title") == "a → b"
        page.wait_for_function(
            "Number(document.querySelector('#mesh-chart').dataset.points) > 0", timeout=15_000
        )
        rows = page.locator("#mesh-pair-flows tbody tr")
        assert rows.count() == 2
        assert page.get_attribute("#mesh-pair-flows tr[data-flow=tcp]", "data-flow") == "tcp"
        # The README's picture (static/docs/desktop-mesh.png) is this one, copied by hand.
        screenshot(page, "desktop-mesh")


def test_a_node_not_in_mesh_mode_says_how_to_start_one(tmp_path: Path) -> None:
    plain = start_served_lab(tmp_path / "plain")
    try:
        with themed_page(*DESKTOP) as page:
            sign_in(page, plain)
            open_section(page, plain, "mesh")
            page.wait_for_selector("#mesh-empty:not([hidden])")
            assert "--mesh" in (page.text_content("#mesh-empty") or "")
    finally:
        assert plain.stop() == 0
        plain.close_stdout()
