"""The kernel's columns of the connections table and a connection's detail, in Chromium.

What the page shows is compared with what the API answers for the same connection, formatted
by the page's rules (app.tcpinfo, static/js/tcpinfo.js).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app import tcpinfo
from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, api_call, start_served_lab

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(tcpinfo.TCP_INFO is None, reason="the platform has no TCP_INFO"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data = tmp_path_factory.mktemp("tcpinfo") / "data"
    served = start_served_lab(
        data, "--listen", "tcp://127.0.0.1:0?mode=echo", "--listen", "udp://127.0.0.1:0?mode=echo"
    )
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


# The page's own millisecond formatter (util.js fmtMs), fed the API's number.
FMT_MS = """async (value) => (await import("/static/js/util.js")).fmtMs(value)"""


def open_connections(page: Any, served: ServedLab) -> None:
    page.goto(served.login_url)
    page.wait_for_selector("#status:text('live')", timeout=10000)
    page.click("#tabs a[data-tab=connections]")
    page.wait_for_selector("section#connections:not([hidden])", timeout=5000)


def kernel_cell(row: Any, key: str) -> Any:
    return row.locator(f"td[data-kcol={key}]")


def shows_the_apis_figure(
    served: ServedLab, cell: Any, conn_id: str, key: str, fmt: Callable[[Any], str] = str
) -> None:
    """The cell shows the API's figure within a sampling interval of it being read.

    The API reads the kernel when asked, the page at its next tick: each try gives the page
    a few ticks to show what the API said; a figure that moved in between is read again.
    """
    from playwright.sync_api import expect

    for _ in range(4):
        want = fmt(api_call(served, "GET", f"/api/connections/{conn_id}")["tcp"][key])
        try:
            expect(cell).to_have_text(want, timeout=3000)
            return
        except AssertionError:
            continue
    expect(cell).to_have_text(want, timeout=1)


def test_kernel_columns_show_the_apis_figures_and_can_be_added_and_sorted(
    served: ServedLab,
) -> None:
    with chromium_page() as page:
        page.add_init_script("localStorage.removeItem('socketlab.connColumns')")
        open_connections(page, served)
        client = socket.create_connection(("127.0.0.1", served.listeners["tcp"]))
        with client:
            client.settimeout(10)
            for _ in range(5):
                client.sendall(b"hello")
                assert client.recv(5) == b"hello"
            remote = f"127.0.0.1:{client.getsockname()[1]}"
            page.fill("#f-q", str(client.getsockname()[1]))
            row = page.locator("#conn-table tbody tr", has_text=remote)
            row.wait_for(state="visible", timeout=5000)
            cwnd = kernel_cell(row, "snd_cwnd")
            # The page's rows get the kernel's figures on the next tick.
            page.wait_for_function(
                "() => { const td = document.querySelector("
                "'#conn-table tbody tr td[data-kcol=snd_cwnd]');"
                " return td && td.dataset.value !== ''; }",
                timeout=5000,
            )
            conn_id = row.get_attribute("data-id")
            # Default columns: srtt, retransmits, cwnd.
            shows_the_apis_figure(served, cwnd, conn_id, "snd_cwnd")
            shows_the_apis_figure(
                served, kernel_cell(row, "total_retrans"), conn_id, "total_retrans"
            )
            shows_the_apis_figure(
                served,
                kernel_cell(row, "srtt_ms"),
                conn_id,
                "srtt_ms",
                lambda ms: str(page.evaluate(FMT_MS, ms)),
            )
            assert kernel_cell(row, "lost").is_hidden()

            # Add a column: its header and cells appear.
            page.click("#conn-columns summary")
            page.check("#conn-columns input[name=lost]")
            assert page.locator("#conn-table th[data-kcol=lost]").is_visible()
            shows_the_apis_figure(served, kernel_cell(row, "lost"), conn_id, "lost")

            # Sort by a kernel column on the server: counters sort descending.
            seq = page.get_attribute("#conn-table", "data-seq")
            page.click("#conn-table th[data-sort=snd_cwnd] button")
            page.wait_for_function(
                f"document.querySelector('#conn-table').dataset.seq != '{seq}'", timeout=5000
            )
            assert page.get_attribute("#conn-table th[data-sort=snd_cwnd]", "aria-sort") == (
                "descending"
            )

            # The detail: every kernel figure, read when it opens (opened again if the
            # kernel's window moved between its reading and the API's).
            detail = page.locator("#conn-detail")
            shown = detail.locator("tr[data-key=snd_cwnd] td")
            for _ in range(4):
                row.get_by_role("button", name=f"Details of connection {conn_id}").click()
                shown.wait_for(state="visible", timeout=5000)
                page.wait_for_function(
                    "document.querySelector('#conn-detail tr[data-key=snd_cwnd]')"
                    ".dataset.value !== ''",
                    timeout=5000,
                )
                api = api_call(served, "GET", f"/api/connections/{conn_id}")["tcp"]
                if shown.inner_text() == str(api["snd_cwnd"]):
                    break
            assert shown.inner_text() == str(api["snd_cwnd"])
            assert detail.locator(".kernel-note").inner_text().startswith("Kernel figures read")
            screenshot(page, "connections-kernel", scroll_to="#conn-detail")


def test_a_udp_rows_kernel_cells_say_why_they_are_empty(served: ServedLab) -> None:
    with chromium_page() as page:
        page.add_init_script("localStorage.removeItem('socketlab.connColumns')")
        open_connections(page, served)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            udp.connect(("127.0.0.1", served.listeners["udp"]))
            udp.send(b"ping")
            assert udp.recv(10) == b"ping"
            remote = f"127.0.0.1:{udp.getsockname()[1]}"
            page.fill("#f-q", str(udp.getsockname()[1]))
            row = page.locator("#conn-table tbody tr", has_text=remote)
            row.wait_for(state="visible", timeout=5000)
            cell = kernel_cell(row, "srtt_ms")
            assert cell.inner_text() == "\u2013"  # util.js's dash for a missing figure
            assert cell.get_attribute("title") == tcpinfo.NOT_TCP
