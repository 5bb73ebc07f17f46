"""The telemetry view in a real browser, fed by real clients through the real collectors:
``influxdb-client``'s serializer (escaped tags and every field type), ``graphyte``, the
``statsd`` library, ``logging.handlers.SysLogHandler`` and util-linux ``logger``, into a
``socketlab serve`` process. What the page SHOWS (the series list, a series' chart, the log
view and its counts) is read and compared with the API and with what the clients sent.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import graphyte
import pytest
import statsd
from influxdb_client.client.write.point import Point as InfluxPoint

from tests.browser import chromium_page, screenshot
from tests.helpers import ServedLab, api_call, start_served_lab
from tests.pages import open_section

pytestmark = pytest.mark.browser

WAIT = 30.0
# A comma, a space and an equals sign in tags, and a colon in a key: the chart still opens.
INFLUX_TAGS = {"host": "web 1,eu=west", "rack key=a": "r1", "az:zone": "b"}
INFLUX_TIMES = [1_800_000_000 + 10 * i for i in range(6)]
GRAPHITE = {"lab.disk.free": 0.1, "lab.disk.used": 123456789.123}
ROWS = "#tm-series tbody tr[data-name]"
LOG_ROWS = "#tm-logs tbody tr[data-seq]"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLab]:
    data: Path = tmp_path_factory.mktemp("telemetry2") / "data"
    served = start_served_lab(
        data,
        "--listen", "udp://127.0.0.1:0?mode=influx&precision=s",
        "--listen", "tcp://127.0.0.1:0?mode=graphite",
        "--listen", "udp://127.0.0.1:0?mode=syslog",
        "--listen", "udp://127.0.0.1:0?mode=statsd&flush_interval=1",
    )  # fmt: skip
    try:
        yield served
    finally:
        assert served.stop() == 0
        served.close_stdout()


def _ports(served: ServedLab) -> dict[str, tuple[str, int]]:
    items = api_call(served, "GET", "/api/listeners")["items"]
    return {item["mode"]: (item["id"], item["port"]) for item in items}


def _until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # another process's counters: there is no event to wait on


def _received(served: ServedLab, listener_id: str) -> int:
    [item] = api_call(served, "GET", f"/api/telemetry?listener={listener_id}")["items"]
    return int(item.get("received", item.get("metrics_received", 0)))


def _feed(served: ServedLab) -> dict[str, str]:
    """Every client sends; returns the collectors' ids by mode once all has arrived."""
    ports = _ports(served)
    lines = []
    for i, at in enumerate(INFLUX_TIMES):
        point = InfluxPoint("cpu load").field("usage", 10.0 + i).field("up", i % 2 == 0)
        for key, value in INFLUX_TAGS.items():
            point = point.tag(key, value)
        lines.append(point.time(at, write_precision="s").to_line_protocol())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(lines).encode(), ("127.0.0.1", ports["influx"][1]))
    sender = graphyte.Sender("127.0.0.1", port=ports["graphite"][1], protocol="tcp",
                             tags={"dc": "eu-1"})  # fmt: skip
    for path, number in GRAPHITE.items():
        sender.send(path, number, timestamp=1_800_000_000)
    client = statsd.StatsClient("127.0.0.1", ports["statsd"][1])
    client.gauge("br2.temperature", 21.5)
    client.close()
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", ports["syslog"][1]),
        facility=logging.handlers.SysLogHandler.LOG_DAEMON,
    )
    handler.setFormatter(logging.Formatter("%(asctime)s db-1 smartd[7]: %(message)s",
                                           datefmt="%b %d %H:%M:%S"))  # fmt: skip
    log = logging.getLogger("browser-telemetry2")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error("disk failed on sda")
        log.warning("disk sdb is 91% full")
    finally:
        log.removeHandler(handler)
        handler.close()
    logged = 0
    if shutil.which("logger"):
        subprocess.run(
            ["logger", "-n", "127.0.0.1", "-P", str(ports["syslog"][1]), "-d", "--rfc5424",
             "-t", "sshd", "-p", "auth.info", "--sd-id", "origin@1", "--sd-param", 'ip="10.0.0.1"',
             "accepted publickey for ops"],
            check=True, timeout=WAIT,
        )  # fmt: skip
        logged = 1
    ids = {mode: listener_id for mode, (listener_id, _) in ports.items()}
    counts = {"influx": len(INFLUX_TIMES), "graphite": len(GRAPHITE), "syslog": 2 + logged}
    for mode, count in counts.items():

        def arrived(mode: str = mode, count: int = count) -> bool:
            return _received(served, ids[mode]) == count

        _until(f"{mode}: {count} lines", arrived)
    # StatsD: the gauge is in the store from its next flush (every second).
    _until(
        "statsd flush",
        lambda: bool(
            api_call(served, "GET", "/api/telemetry/series?name=br2.temperature")["items"]
        ),
    )
    return ids


@pytest.fixture(scope="module")
def fed(served: ServedLab) -> dict[str, str]:
    return _feed(served)


def _shown_rows(page: Any) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            ROWS,
            "rows => rows.map((r) => ({listener: r.cells[0].textContent, name: r.dataset.name,"
            " field: r.dataset.field, tags: r.cells[3].textContent,"
            " last: r.cells[4].textContent}))",
        )
    )


def _value_text(page: Any, value: Any) -> str:
    text: str = page.evaluate(
        "(v) => import('/static/js/tmseries.js').then((m) => m.valueText(v))", value
    )
    return text


def _tags_text(tags: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" if value else key for key, value in tags.items())


def test_the_page_shows_the_real_clients_series_and_charts(
    served: ServedLab, fed: dict[str, str]
) -> None:
    ids = fed
    api_doc = api_call(served, "GET", "/api/telemetry/series?history=false&limit=200")
    with chromium_page() as page:
        open_section(page, served, "telemetry")
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            arg=[ROWS, len(api_doc["items"])],
            timeout=15000,
        )
        shown = {(row["listener"], row["name"], row["field"], row["tags"]): row["last"]
                 for row in _shown_rows(page)}  # fmt: skip
        # Every series the API holds, listed with the last value through the page's formatter.
        expected = {
            (item["listener_id"], item["name"], item["field"], _tags_text(item["tags"])):
                _value_text(page, item["last"]["value"])
            for item in api_doc["items"]
        }  # fmt: skip
        assert shown == expected
        # And that is what the clients sent.
        influx_tags = "az:zone=b, host=web 1,eu=west, rack key=a=r1"
        assert shown[(ids["influx"], "cpu load", "usage", influx_tags)] == _value_text(page, 15.0)
        assert shown[(ids["influx"], "cpu load", "up", influx_tags)] == "false"
        for name, value in GRAPHITE.items():
            assert shown[(ids["graphite"], name, "value", "dc=eu-1")] == _value_text(page, value)
        assert shown[(ids["statsd"], "br2.temperature", "gauge", "")] == "21.5"
        # The influx series' chart (its tags escaped as the client wrote them): every point.
        # Searched as a person types it: the list narrows to what the API's search picks.
        page.fill("#tm-search", "cpu load")
        found = api_call(served, "GET", "/api/telemetry/series?q=cpu+load&history=false")
        assert {item["field"] for item in found["items"]} == {"usage", "up"}
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            arg=[ROWS, len(found["items"])],
            timeout=10000,
        )
        usage = f"{ROWS}[data-name='cpu load'][data-field='usage']"
        page.locator(f"{usage} button.tm-metric").click()
        chart = "#tm-series-charts figure[data-series*='|cpu load|usage|'] .chart"
        page.wait_for_function(
            "([sel, n]) => { const c = document.querySelector(sel);"
            " return c && Number(c.dataset.points) === n; }",
            arg=[chart, len(INFLUX_TIMES)],
            timeout=10000,
        )
        figure = page.locator("#tm-series-charts figure[data-series*='|cpu load|usage|']")
        assert figure.get_attribute("data-error") is None
        screenshot(page, "telemetry-real-clients", scroll_to="#tm-series-box")


def test_the_log_view_shows_the_real_syslog_clients_records(
    served: ServedLab, fed: dict[str, str]
) -> None:
    listener = fed["syslog"]
    api_doc = api_call(served, "GET", f"/api/telemetry/logs?listener={listener}")
    with chromium_page() as page:
        open_section(page, served, "telemetry")
        page.wait_for_selector("#tm-logs-box:not([hidden])", timeout=10000)
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            arg=[LOG_ROWS, len(api_doc["items"])],
            timeout=15000,
        )
        shown = page.eval_on_selector_all(
            LOG_ROWS, "rows => rows.map((r) => [...r.cells].slice(1).map((c) => c.textContent))"
        )
        expected = []
        for item in api_doc["items"]:
            message = item["message"]
            for sd_id, params in item["structured"].items():
                text = "".join(f' {key}="{value}"' for key, value in params.items())
                message += f" [{sd_id}{text}]"
            row = [item["facility_name"], item["severity_name"], item["host"], item["app"]]
            expected.append([*row, message])
        assert shown == expected
        # What the clients sent: SysLogHandler's daemon messages, logger's auth one.
        by_message = {row[4].split(" [")[0]: row for row in shown}
        assert by_message["disk failed on sda"][:4] == ["daemon", "err", "db-1", "smartd"]
        assert by_message["disk sdb is 91% full"][:4] == ["daemon", "warning", "db-1", "smartd"]
        if shutil.which("logger"):
            sshd = by_message["accepted publickey for ops"]
            assert sshd[0:2] == ["auth", "info"] and sshd[3] == "sshd"
            assert '[origin@1 ip="10.0.0.1"]' in sshd[4]
        # The counts per severity shown are the API's, which count what was sent.
        counts = api_doc["counts"][listener]["by_severity"]
        assert (counts["err"], counts["warning"]) == (1, 1)
        for name, count in counts.items():
            node = page.locator(f"#tm-log-counts [data-severity='{name}']")
            assert node.get_attribute("data-count") == str(count)
        # A filter as a person types it: the host and a word of the message.
        page.fill("#tm-log-filter input[name=host]", "db-1")
        page.fill("#tm-log-filter input[name=q]", "FULL")
        want = api_call(served, "GET", "/api/telemetry/logs?host=db-1&q=FULL")["items"]
        assert {item["message"] for item in want} == {"disk sdb is 91% full"}
        page.wait_for_function(
            "([sel, n]) => { const r = [...document.querySelectorAll(sel)];"
            " return r.length === n && r.every((x) => x.cells[5].textContent"
            " === 'disk sdb is 91% full'); }",
            arg=[LOG_ROWS, len(want)],
            timeout=10000,
        )
        screenshot(page, "telemetry-real-syslog", scroll_to="#tm-logs-box")
