"""The one telemetry model end to end with the real collectors and real clients: a lab with
StatsD, InfluxDB line protocol, Graphite and syslog listeners over UDP and TCP, fed by
clients no one here wrote (the ``statsd`` library, ``influxdb-client``'s line-protocol
serializer, ``graphyte``, ``logging.handlers.SysLogHandler`` and util-linux ``logger``).
What they sent is read back where a user reads it: ``GET /api/telemetry``, the series
query, the log query and ``/metrics`` (checked by ``promtool check metrics``).

Expected values are written out from what each client call means, not computed by the lab.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import graphyte
import pytest
import statsd
import trio
from influxdb_client.client.write.point import Point as InfluxPoint

from app.lab import Lab
from tests.helpers import http, promtool_check, wait_for_async
from tests.test_metrics import labels, scrape
from tests.test_openapi import openapi, response_validator

# Generous: the machine running the tests is shared and loaded.
WAIT = 30.0
PROTOCOLS = ("udp", "tcp")
MODES = ("statsd", "influx", "graphite", "syslog")
needs_logger = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger")

# InfluxDB: one point with every field type and every character that needs escaping.
INFLUX_TIME_NS = 1_800_000_000_123_456_789
INFLUX_TAGS = {"host": "web 1,eu=west", "rack key=a": "r1", "path": "C:\\temp"}
INFLUX_FIELDS: dict[str, Any] = {
    "usage user": 12.5,
    "cores": 8,
    "note": 'say "hi" \\ ok, a=b',
    "up": True,
    "down": False,
}
# Graphite: values graphyte writes exactly, at their own timestamps.
GRAPHITE_VALUES = (0.1, -2.5e-7, 123456789.123, 1e300)
GRAPHITE_TIME = 1_800_000_000
GRAPHITE_TAGS = {"dc": "eu-1", "role": "db=primary"}


async def api(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    assert lab.web_port is not None
    response = await http(lab.web_port, method, path, body=body)
    return response.status, response.json()


@dataclass
class Fed:
    """The collectors of one lab, each fed by its real client: ``ids[(mode, protocol)]``."""

    ids: dict[tuple[str, str], str]
    ports: dict[tuple[str, str], int]


async def _make(lab: Lab, mode: str, protocol: str) -> tuple[str, int]:
    options = "&flush_interval=3600" if mode == "statsd" else ""
    url = f"{protocol}://127.0.0.1:0?mode={mode}{options}"
    status, made = await api(lab, "POST", "/api/listeners", {"url": url})
    assert status == 201, made
    return made["id"], made["port"]


def _send_statsd(protocol: str, port: int) -> int:
    """Counters, gauges, timers and sets through the library; returns the lines sent."""
    client: statsd.StatsClient | statsd.TCPStatsClient
    if protocol == "udp":
        client = statsd.StatsClient("127.0.0.1", port, prefix=f"lab{protocol}")
    else:
        client = statsd.TCPStatsClient("127.0.0.1", port, prefix=f"lab{protocol}", timeout=10)
    client.incr("hits")
    client.incr("hits", 41)
    client.decr("hits", 2)
    client.gauge("temperature", 20)
    client.gauge("temperature", 1.5, delta=True)
    for ms in (10, 20, 60):
        client.timing("latency", ms)
    client.set("users", "alice")
    client.set("users", "bob")
    client.set("users", "alice")
    client.close()
    return 3 + 2 + 3 + 3


def _influx_line(protocol: str) -> str:
    point = InfluxPoint(f"cpu load,{protocol}")  # a space and a comma in the measurement
    for key, value in INFLUX_TAGS.items():
        point = point.tag(key, value)
    for key, value in INFLUX_FIELDS.items():
        point = point.field(key, value)
    line: str = point.time(INFLUX_TIME_NS).to_line_protocol()
    return line


def _send_influx(protocol: str, port: int) -> None:
    counter = InfluxPoint.from_dict(
        {
            "measurement": "requests",
            "tags": {"route": "/api/v1"},
            "fields": {"total": 18_446_744_073_709_551_615, "neg": -(2**63)},
            "time": INFLUX_TIME_NS + 1_000_000_000,
        },
        field_types={"total": "uint", "neg": "int"},
    )
    data = (_influx_line(protocol) + "\n" + counter.to_line_protocol() + "\n").encode()
    if protocol == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, ("127.0.0.1", port))
    else:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)


def _send_graphite(protocol: str, port: int) -> None:
    sender = graphyte.Sender(
        "127.0.0.1", port=port, prefix=f"lab{protocol}", protocol=protocol, tags=GRAPHITE_TAGS
    )
    for index, value in enumerate(GRAPHITE_VALUES):
        sender.send(f"disk.free{index}", value, timestamp=GRAPHITE_TIME + index)


def _send_syslog_handler(protocol: str, port: int) -> None:
    socktype = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", port),
        facility=logging.handlers.SysLogHandler.LOG_LOCAL3,
        socktype=socktype,  # type: ignore[arg-type]
    )
    # An RFC 3164 header as a daemon writes it: timestamp, host, tag[pid].
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s host{protocol} pyapp[%(process)d]: %(message)s",
            datefmt="%b %d %H:%M:%S",
        )
    )
    log = logging.getLogger(f"telemetry-collectors-{protocol}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        log.warning("disk %s is %d%% full", "/var", 91)
        log.error("a message: with a colon, and [brackets]")
    finally:
        log.removeHandler(handler)
        handler.close()


async def _send_logger(protocol: str, port: int) -> int:
    """util-linux logger: RFC 5424 with structured data, and RFC 3164; returns messages."""
    if shutil.which("logger") is None:
        return 0
    flags = ["-d"] if protocol == "udp" else ["-T", "--octet-count"]
    common = ["logger", "-n", "127.0.0.1", "-P", str(port), *flags, "--id=4242"]
    structured = ["--msgid", "ID47", "--sd-id", "zoo@32473", "--sd-param", 'tiger="hungry"']
    structured += ["--sd-param", r'quote="say \"hi\" \] \\ ok"']
    runs = [
        [*common, "--rfc5424", "-t", "lgapp", "-p", "local4.err", *structured, "first message"],
        [*common, "--rfc3164", "-t", "lgapp", "-p", "mail.notice", "second: message"],
    ]
    for argv in runs:
        with trio.fail_after(WAIT):
            await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
    return len(runs)


async def _item(lab: Lab, listener_id: str) -> dict[str, Any]:
    status, doc = await api(lab, "GET", f"/api/telemetry?listener={listener_id}")
    assert status == 200, doc
    [item] = doc["items"]
    assert isinstance(item, dict)
    return item


async def _received(lab: Lab, listener_id: str, count: int) -> None:
    async def arrived() -> bool:
        item = await _item(lab, listener_id)
        got = item.get("metrics_received", item.get("received"))
        assert item["bad_lines"] == 0, item.get("bad_samples")
        return bool(got == count)

    await wait_for_async(arrived, WAIT)


async def feed(lab: Lab) -> Fed:
    """Every collector over UDP and TCP, fed by its clients, every line arrived (StatsD
    flushed)."""
    fed = Fed({}, {})
    for mode in MODES:
        for protocol in PROTOCOLS:
            fed.ids[mode, protocol], fed.ports[mode, protocol] = await _make(lab, mode, protocol)
    senders: dict[str, Callable[[str, int], Any]] = {
        "statsd": _send_statsd,
        "influx": _send_influx,
        "graphite": _send_graphite,
        "syslog": _send_syslog_handler,
    }
    # The clients block (graphyte opens a socket per send over TCP): not on the event loop.
    for protocol in PROTOCOLS:
        for mode, send in senders.items():
            port = fed.ports[mode, protocol]
            await trio.to_thread.run_sync(send, protocol, port)
        logged = await _send_logger(protocol, fed.ports["syslog", protocol])
        expected = {"statsd": 11, "influx": 2, "graphite": len(GRAPHITE_VALUES)}
        expected["syslog"] = 2 + logged
        for mode, count in expected.items():
            await _received(lab, fed.ids[mode, protocol], count)
        listener_id = fed.ids["statsd", protocol]
        status, flushed = await api(lab, "POST", f"/api/listeners/{listener_id}/flush")
        assert status == 200, flushed
    return fed


def _rows(item: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["name"], row["field"]): row for row in item["series"]}


def _check_statsd(item: dict[str, Any], protocol: str) -> None:
    rows = _rows(item)
    prefix = f"lab{protocol}"
    assert rows[(f"{prefix}.hits", "counter")]["last"]["value"] == 1 + 41 - 2
    assert rows[(f"{prefix}.temperature", "gauge")]["last"]["value"] == 21.5
    assert rows[(f"{prefix}.users", "set")]["last"]["value"] == 2
    latency = {field: row["last"]["value"] for (name, field), row in rows.items()
               if name == f"{prefix}.latency"}  # fmt: skip
    assert (latency["count"], latency["min"], latency["max"]) == (3, 10, 60)
    assert latency["mean"] == 30
    assert all(row["tags"] == {} for row in rows.values())
    assert item["kernel_drops"] == (0 if protocol == "udp" else None)


def _check_influx(item: dict[str, Any], protocol: str) -> None:
    rows = _rows(item)
    name = f"cpu load,{protocol}"
    for field, value in INFLUX_FIELDS.items():
        row = rows[(name, field)]
        assert row["tags"] == INFLUX_TAGS, field
        last = row["last"]
        assert last["value"] == value and type(last["value"]) is type(value), field
        assert last["t"] == INFLUX_TIME_NS / 1e9
    total = rows[("requests", "total")]
    assert total["last"]["value"] == 18_446_744_073_709_551_615
    assert total["tags"] == {"route": "/api/v1"}
    assert rows[("requests", "neg")]["last"]["value"] == -(2**63)
    assert item["series_count"] == len(INFLUX_FIELDS) + 2


def _check_graphite(item: dict[str, Any], protocol: str) -> None:
    rows = _rows(item)
    assert len(rows) == len(GRAPHITE_VALUES)
    for index, value in enumerate(GRAPHITE_VALUES):
        row = rows[(f"lab{protocol}.disk.free{index}", "value")]
        assert row["tags"] == GRAPHITE_TAGS
        assert row["last"] == {"t": GRAPHITE_TIME + index, "value": value}


def _check_syslog(item: dict[str, Any], protocol: str) -> None:
    logged = shutil.which("logger") is not None
    counts = item["logs"]["by_severity"]
    assert counts["warning"] == 1 and counts["err"] == 1 + logged
    assert counts["notice"] == int(logged)
    assert item["logs"]["received"] == 2 + 2 * logged
    rows = item["series"]
    assert {row["name"] for row in rows} == {"syslog_messages"}
    by_app = {(row["tags"]["app"], row["tags"]["severity"]): row for row in rows}
    python = by_app[("pyapp", "warning")]
    assert python["tags"] == {
        "app": "pyapp", "facility": "local3", "host": f"host{protocol}", "severity": "warning",
    }  # fmt: skip
    assert python["last"]["value"] == 1


CHECKS = {
    "statsd": _check_statsd,
    "influx": _check_influx,
    "graphite": _check_graphite,
    "syslog": _check_syslog,
}


async def test_every_collector_shows_what_its_real_clients_sent(lab: Lab) -> None:
    fed = await feed(lab)
    status, doc = await api(lab, "GET", "/api/telemetry")
    assert status == 200, doc
    schema = await openapi(lab)
    response_validator(schema, "/api/telemetry", "get", 200).validate(doc)
    items = {item["listener_id"]: item for item in doc["items"]}
    for (mode, protocol), listener_id in fed.ids.items():
        item = items[listener_id]
        assert (item["mode"], item["protocol"]) == (mode, protocol)
        assert item["series_overflow"] == 0 and item["series_count"] == len(item["series"])
        CHECKS[mode](item, protocol)


def _query(**args: str) -> str:
    return "/api/telemetry/series?" + urllib.parse.urlencode(args)


async def test_the_series_query_finds_each_clients_series_by_name_field_and_tags(
    lab: Lab,
) -> None:
    fed = await feed(lab)
    schema = await openapi(lab)
    validator = response_validator(schema, "/api/telemetry/series", "get", 200)
    # InfluxDB: by name and field; every escaped tag as sent, the history its one point.
    for protocol in PROTOCOLS:
        listener = fed.ids["influx", protocol]
        name = f"cpu load,{protocol}"
        status, doc = await api(lab, "GET", _query(listener=listener, name=name, field="note"))
        assert status == 200, doc
        validator.validate(doc)
        [note] = doc["items"]
        assert note["tags"] == INFLUX_TAGS
        assert note["points"] == [[INFLUX_TIME_NS / 1e9, INFLUX_FIELDS["note"]]]
        status, doc = await api(lab, "GET", _query(name=name, tag="path:C:\\temp"))
        assert {item["field"] for item in doc["items"]} == set(INFLUX_FIELDS)
        assert {item["listener_id"] for item in doc["items"]} == {listener}
        # A comma inside a tag is escaped in the tag list (as the dashboard does).
        tags = r"host:web 1\,eu=west,rack key=a:r1"
        status, doc = await api(lab, "GET", _query(listener=listener, name=name, tag=tags))
        assert status == 200, doc
        assert {item["field"] for item in doc["items"]} == set(INFLUX_FIELDS)
    # Graphite: by a tag graphyte sent, every value exact at its own time.
    listener = fed.ids["graphite", "tcp"]
    status, doc = await api(lab, "GET", _query(listener=listener, tag="role:db=primary"))
    assert status == 200, doc
    got = {item["name"]: item["points"] for item in doc["items"]}
    assert got == {
        f"labtcp.disk.free{index}": [[GRAPHITE_TIME + index, value]]
        for index, value in enumerate(GRAPHITE_VALUES)
    }
    # StatsD: one flush, one point per field, found by its text.
    listener = fed.ids["statsd", "udp"]
    status, doc = await api(lab, "GET", _query(listener=listener, q="labudp.latency"))
    fields = {item["field"]: [value for _, value in item["points"]] for item in doc["items"]}
    assert (fields["count"], fields["min"], fields["max"], fields["mean"]) == (
        [3], [10], [60], [30],
    )  # fmt: skip
    # Syslog: its message counts per source, by tags.
    listener = fed.ids["syslog", "udp"]
    status, doc = await api(
        lab, "GET", _query(listener=listener, tag="app:pyapp,severity:err", history="false")
    )
    [errors] = doc["items"]
    assert errors["last"]["value"] == 1 and errors["tags"]["host"] == "hostudp"


async def test_the_log_query_shows_each_syslog_clients_messages(lab: Lab) -> None:
    fed = await feed(lab)
    schema = await openapi(lab)
    validator = response_validator(schema, "/api/telemetry/logs", "get", 200)
    for protocol in PROTOCOLS:
        listener = fed.ids["syslog", protocol]
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener}&app=pyapp")
        assert status == 200, doc
        validator.validate(doc)
        assert [
            (item["facility_name"], item["severity_name"], item["host"], item["message"])
            for item in doc["items"]
        ] == [
            ("local3", "err", f"host{protocol}", "a message: with a colon, and [brackets]"),
            ("local3", "warning", f"host{protocol}", "disk /var is 91% full"),
        ]
        assert {item["format"] for item in doc["items"]} == {"rfc3164"}
        assert doc["counts"][listener]["by_facility"] == (
            {"local3": 2, "local4": 1, "mail": 1} if shutil.which("logger") else {"local3": 2}
        )
        if shutil.which("logger") is None:
            continue
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener}&app=lgapp")
        second, first = doc["items"]
        assert (first["facility_name"], first["severity_name"]) == ("local4", "err")
        assert (first["format"], first["msgid"], first["procid"]) == ("rfc5424", "ID47", "4242")
        # logger writes its own timeQuality element before the one asked for.
        assert first["structured"]["zoo@32473"] == {"tiger": "hungry", "quote": 'say "hi" ] \\ ok'}
        assert set(first["structured"]) == {"timeQuality", "zoo@32473"}
        assert first["message"] == "first message" and first["time"] is not None
        assert (second["facility_name"], second["severity_name"]) == ("mail", "notice")
        assert (second["format"], second["message"]) == ("rfc3164", "second: message")
        short = socket.gethostname().split(".")[0]
        assert {item["host"].split(".")[0] for item in (first, second)} == {short}
        # The filters: err or worse from the mail and local facilities, a message search.
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener}&severity=err")
        assert sorted(item["app"] for item in doc["items"]) == ["lgapp", "pyapp"]
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener}&q=HUNGRY")
        assert doc["items"] == []  # structured data is not the message
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener}&q=SECOND")
        assert [item["message"] for item in doc["items"]] == ["second: message"]


async def _promtool(text: str) -> None:
    returncode, output = await promtool_check(text)
    assert returncode == 0 and output.strip() == "", output


async def test_metrics_have_every_collectors_series_and_pass_promtool(lab: Lab) -> None:
    fed = await feed(lab)
    text, samples = await scrape(lab)
    await _promtool(text)
    values = samples["socketlab_telemetry_value"]

    def value(mode: str, protocol: str, metric: str, field: str, **tags: str) -> float:
        key = labels(listener=fed.ids[mode, protocol], metric=metric, field=field, **tags)
        return values[key]

    for protocol in PROTOCOLS:
        prefix = f"lab{protocol}"
        assert value("statsd", protocol, f"{prefix}.hits", "counter") == 40
        assert value("statsd", protocol, f"{prefix}.latency", "mean") == 30
        # Influx tag keys sanitized to label names, values as sent; booleans 0/1.
        influx_tags = {"host": "web 1,eu=west", "rack_key_a": "r1", "path": "C:\\temp"}
        name = f"cpu load,{protocol}"
        assert value("influx", protocol, name, "usage user", **influx_tags) == 12.5
        assert value("influx", protocol, name, "cores", **influx_tags) == 8
        assert value("influx", protocol, name, "up", **influx_tags) == 1
        assert value("influx", protocol, name, "down", **influx_tags) == 0
        note = labels(listener=fed.ids["influx", protocol], metric=name, field="note",
                      **influx_tags)  # fmt: skip
        assert note not in values  # a string is not a sample
        for index, sent in enumerate(GRAPHITE_VALUES):
            got = value(
                "graphite", protocol, f"{prefix}.disk.free{index}", "value", **GRAPHITE_TAGS
            )
            assert got == sent
        syslog_tags = {"app": "pyapp", "facility": "local3", "host": f"host{protocol}"}
        assert value("syslog", protocol, "syslog_messages", "count", severity="err",
                     **syslog_tags) == 1  # fmt: skip
        for mode in MODES:
            mine = labels(listener=fed.ids[mode, protocol])
            assert samples["socketlab_telemetry_bad_lines_total"][mine] == 0
            assert samples["socketlab_telemetry_series"][mine] > 0
        syslog = fed.ids["syslog", protocol]
        records = samples["socketlab_telemetry_log_records_total"]
        assert records[labels(listener=syslog, severity="warning")] == 1
