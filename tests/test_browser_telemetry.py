"""The telemetry view in a real browser, for every collector: the series list and a series'
chart read what GET /api/telemetry/series answers, the last value stays when traffic stops,
and the syslog log view shows and filters the records with the API's counts per severity.

The lab runs in this process (in a thread of its own, on its own trio loop) so the test can
add points and log records to a collector's stores directly, as a parser would: the
influx, graphite and syslog modes are written beside this; StatsD traffic is real.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.listeners.modes.statsd import StatsdMode
from app.listeners.parse import parse_listener_url
from app.telemetry.logs import LogStore
from app.telemetry.points import LogRecord, Point, tags_of
from tests.browser import chromium_page, screenshot
from tests.conftest import running_lab
from tests.helpers import TOKEN, ServedLab, api_call

pytestmark = pytest.mark.browser


@dataclass
class ThreadedLab:
    """A lab served on a trio loop in another thread; ``run`` calls into that loop."""

    lab: Lab
    token: trio.lowlevel.TrioToken
    served: ServedLab

    def run(self, fn: Callable[[], Any]) -> Any:
        return trio.from_thread.run_sync(fn, trio_token=self.token)


def _serve(data_dir: Path, ready: queue.Queue[Any], stop: list[trio.Event]) -> None:
    async def main() -> None:
        listeners = (parse_listener_url("udp://127.0.0.1:0?mode=statsd&flush_interval=1"),)
        async with (
            trio.open_nursery() as nursery,
            running_lab(nursery, data_dir, listeners=listeners) as lab,
        ):
            stop.append(trio.Event())
            ready.put((lab, trio.lowlevel.current_trio_token()))
            await stop[0].wait()

    try:
        trio.run(main)
    except BaseException as exc:  # the test thread must hear of it, not wait forever
        ready.put(exc)
        raise


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedLab]:
    ready: queue.Queue[Any] = queue.Queue()
    stop: list[trio.Event] = []
    thread = threading.Thread(target=_serve, args=(tmp_path / "data", ready, stop), daemon=True)
    thread.start()
    got = ready.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    lab, token = got
    assert lab.web_port is not None
    login = f"http://127.0.0.1:{lab.web_port}/?token={TOKEN}"
    served = ServedLab(None, lab.web_port, login)  # type: ignore[arg-type]  # no process
    try:
        yield ThreadedLab(lab, token, served)
    finally:
        trio.from_thread.run_sync(stop[0].set, trio_token=token)
        thread.join(timeout=30)


def statsd_mode(threaded: ThreadedLab) -> StatsdMode:
    mode = next(item.mode for item in threaded.lab.listeners if item.spec.mode == "statsd")
    assert isinstance(mode, StatsdMode)
    return mode


def open_telemetry(page: Any, threaded: ThreadedLab) -> None:
    page.goto(threaded.served.login_url)
    page.wait_for_selector("#status:text('live')", timeout=15000)
    page.click("#tabs a[data-tab=telemetry]")
    page.wait_for_selector("section#telemetry:not([hidden])", timeout=10000)


def test_the_series_list_and_a_chart_show_what_the_api_holds(threaded: ThreadedLab) -> None:
    mode = statsd_mode(threaded)
    served = threaded.served
    # An Influx-like point (several fields, tags, its own times) and real StatsD traffic.
    cpu_tags = tags_of({"host": "web-1", "dc": "eu"})

    def add_cpu() -> None:
        for i in range(5):
            point = Point("br.cpu", {"user": 10.0 + i, "ok": True}, cpu_tags, 1.8e9 + 10 * i)
            mode.series.add(point, 0)

    threaded.run(add_cpu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"br.temp:21.5|g\nbr.hits:3|c", ("127.0.0.1", mode.listener.port))
    with chromium_page() as page:
        open_telemetry(page, threaded)
        page.fill("#tm-search", "br.")
        rows = "#tm-series tbody tr[data-name]"
        # The StatsD gauge arrives at its next flush; the list then has every br. series.
        page.wait_for_function(
            "(sel) => [...document.querySelectorAll(sel)]"
            ".some((r) => r.dataset.name === 'br.temp')",
            arg=rows,
            timeout=15000,
        )
        listed = api_call(served, "GET", "/api/telemetry/series?q=br.&history=false&limit=200")
        want = {(s["name"], s["field"]) for s in listed["items"]}
        assert {("br.cpu", "user"), ("br.cpu", "ok"), ("br.temp", "gauge")} <= want
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length >= n",
            arg=[rows, len(want)],
            timeout=10000,
        )
        # The last value a row shows is the API's, through the page's one formatter.
        user = page.locator(f"{rows}[data-name='br.cpu'][data-field='user']")
        assert user.locator("td.tm-last").inner_text() == page.evaluate(
            "(v) => import('/static/js/tmseries.js').then((m) => m.valueText(v))", 14.0
        )
        assert "dc=eu, host=web-1" in user.locator("td").nth(3).inner_text()
        # Its chart: as many points as the API's history of the series holds.
        user.locator("button.tm-metric").click()
        doc = api_call(
            served,
            "GET",
            "/api/telemetry/series?name=br.cpu&field=user&tag=host:web-1,dc:eu",
        )
        [series] = doc["items"]
        expected = len(series["buckets"]) + len(series["points"])
        assert expected == 5
        chart = "#tm-series-charts figure[data-series*='|br.cpu|user|'] .chart"
        page.wait_for_function(
            "([sel, n]) => { const c = document.querySelector(sel);"
            " return c && Number(c.dataset.points) === n; }",
            arg=[chart, expected],
            timeout=10000,
        )
        # Traffic stopped: later flushes keep the gauge's last value on the page.
        temp = page.locator(f"{rows}[data-name='br.temp'][data-field='gauge'] td.tm-last")
        assert temp.inner_text() == "21.5"
        screenshot(page, "telemetry-series", scroll_to="#tm-series-box")


def _record(severity: int, facility: int, message: str, host: str, app: str) -> LogRecord:
    return LogRecord(
        facility=facility,
        severity=severity,
        message=message,
        format="rfc5424",
        host=host,
        app=app,
        structured={"origin@1": {"ip": "10.0.0.1"}} if app == "sshd" else {},
    )


def test_the_log_view_shows_filters_and_counts_records_as_the_api_does(
    threaded: ThreadedLab,
) -> None:
    mode = statsd_mode(threaded)
    served = threaded.served
    # Until the syslog mode lands, a log store on a collector stands for it.
    logs = LogStore()

    def attach() -> None:
        setattr(mode, "logs", logs)  # noqa: B010
        logs.add(_record(3, 16, "disk failed on sda", "db-1", "smartd"), 1.8e9)
        logs.add(_record(6, 4, "accepted publickey for ops", "web-1", "sshd"), 1.8e9 + 1)

    threaded.run(attach)
    with chromium_page() as page:
        open_telemetry(page, threaded)
        page.wait_for_selector("#tm-logs-box:not([hidden])", timeout=10000)
        rows = "#tm-logs tbody tr[data-seq]"
        page.wait_for_function(
            "(sel) => document.querySelectorAll(sel).length === 2", arg=rows, timeout=10000
        )
        # Live: a record added now shows without a reload.
        threaded.run(lambda: logs.add(_record(2, 16, "disk on fire", "db-1", "smartd"), 1.8e9 + 2))
        page.wait_for_function(
            "(sel) => document.querySelectorAll(sel).length === 3", arg=rows, timeout=10000
        )
        api_doc = api_call(served, "GET", "/api/telemetry/logs")
        shown = page.locator(rows)
        for i, item in enumerate(api_doc["items"]):
            cells = shown.nth(i).locator("td")
            assert cells.nth(1).inner_text() == item["facility_name"]
            assert cells.nth(2).inner_text() == item["severity_name"]
            assert cells.nth(3).inner_text() == item["host"]
            assert cells.nth(4).inner_text() == item["app"]
            assert cells.nth(5).inner_text().startswith(item["message"])
        assert 'origin@1 ip="10.0.0.1"' in shown.nth(1).inner_text()
        # The counts per severity are the API's.
        counts = api_doc["counts"][mode.listener.id]["by_severity"]
        shown_counts = page.locator("#tm-log-counts [data-severity]")
        names = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
        assert [node.get_attribute("data-severity") for node in shown_counts.all()] == names
        for name, count in counts.items():
            node = page.locator(f"#tm-log-counts [data-severity='{name}']")
            assert node.get_attribute("data-count") == str(count)
        # Filters: err or worse on db-1, then a message search.
        page.select_option("#tm-log-filter select[name=severity]", "err")
        page.fill("#tm-log-filter input[name=host]", "db-1")
        want = [
            i["message"]
            for i in api_call(served, "GET", "/api/telemetry/logs?severity=err&host=db-1")["items"]
        ]
        assert want == ["disk on fire", "disk failed on sda"]
        page.wait_for_function(
            "([sel, want]) => [...document.querySelectorAll(sel)]"
            ".map((r) => r.cells[5].textContent).join('|') === want",
            arg=[rows, "|".join(want)],
            timeout=10000,
        )
        page.fill("#tm-log-filter input[name=q]", "FIRE")
        page.wait_for_function(
            "(sel) => { const r = [...document.querySelectorAll(sel)];"
            " return r.length === 1 && r[0].cells[5].textContent === 'disk on fire'; }",
            arg=rows,
            timeout=10000,
        )
        screenshot(page, "telemetry-logs", scroll_to="#tm-logs-box")
