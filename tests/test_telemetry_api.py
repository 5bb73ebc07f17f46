"""The telemetry API, the same for every collector, over real HTTP: GET /api/telemetry lists
each collector's series, the series query picks by name, field and tags (4xx naming the
key otherwise), the log query filters and counts per severity, and /metrics re-exports every
series with its tags as labels, accepted by promtool."""

from __future__ import annotations

from typing import Any

import trio

from app.lab import Lab
from app.listeners.base import Listener, Mode
from app.listeners.collectors import collector_doc, collectors
from app.listeners.modes import create_listener
from app.listeners.modes.statsd import StatsdMode
from app.listeners.parse import parse_listener_url
from app.telemetry.logs import LogStore
from app.telemetry.points import LogRecord, Point, tags_of
from app.telemetry.series import SeriesStore
from app.web.telemetry_metrics import TelemetryExporter
from tests.helpers import http, promtool_check, wait_for
from tests.test_metrics import labels, scrape
from tests.test_openapi import openapi, response_validator


async def api(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    assert lab.web_port is not None
    response = await http(lab.web_port, method, path, body=body)
    return response.status, response.json()


async def statsd(lab: Lab, lines: bytes) -> StatsdMode:
    """A StatsD collector that received and flushed ``lines``."""
    status, made = await api(
        lab, "POST", "/api/listeners", {"url": "udp://127.0.0.1:0?mode=statsd&flush_interval=3600"}
    )
    assert status == 201, made
    mode = lab.listeners.get(made["id"]).mode
    assert isinstance(mode, StatsdMode)
    count = lines.count(b"\n") + 1
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.sendto(lines, ("127.0.0.1", made["port"]))
    await wait_for(lambda: mode.aggregator.metrics_received == count)
    assert (await api(lab, "POST", f"/api/listeners/{made['id']}/flush"))[0] == 200
    return mode


async def test_every_collector_lists_its_series_with_their_last_values(lab: Lab) -> None:
    mode = await statsd(lab, b"api.hits:4|c|#env:dev\napi.temp:21.5|g\napi.lat:7|ms")
    listener_id = mode.listener.id
    status, doc = await api(lab, "GET", f"/api/telemetry?listener={listener_id}")
    assert status == 200, doc
    [item] = doc["items"]
    assert item["mode"] == "statsd" and item["metrics_received"] == 3  # StatsD's own keys stay
    rows = {(row["name"], row["field"]): row for row in item["series"]}
    assert rows[("api.hits", "counter")]["tags"] == {"env": "dev"}
    assert rows[("api.hits", "counter")]["last"]["value"] == 4
    assert rows[("api.temp", "gauge")]["last"]["value"] == 21.5
    assert rows[("api.lat", "mean")]["last"]["value"] == 7
    assert item["series_count"] == len(item["series"]) and item["series_overflow"] == 0
    assert item["logs"] is None
    echo = next(item.id for item in lab.listeners if item.spec.mode == "echo")
    status, doc = await api(lab, "GET", f"/api/telemetry?listener={echo}")
    assert (status, doc["field"]) == (409, "listener")


async def test_the_series_query_picks_by_name_field_and_tags(lab: Lab) -> None:
    mode = await statsd(lab, b"q.hits:4|c|#env:dev,az:1\nq.hits:1|c|#env:prod\nq.other:1|c")
    listener_id = mode.listener.id
    # Points added as any collector's parser would (Influx-like: several fields, own time).
    mode.series.add(Point("q.cpu", {"user": 1.5, "ok": True}, tags_of({"host": "a"}), 1e9), 0)
    base = f"/api/telemetry/series?listener={listener_id}"
    status, doc = await api(lab, "GET", f"{base}&name=q.hits&tag=env:dev")
    assert status == 200, doc
    [hits] = doc["items"]
    assert (hits["field"], hits["tags"], hits["listener_id"]) == (
        "counter",
        {"az": "1", "env": "dev"},
        listener_id,
    )
    assert [value for _, value in hits["points"]] == [4] and hits["buckets"] == []
    assert doc["total"] == 1 and doc["resolution"] == {listener_id: 60}
    status, doc = await api(lab, "GET", f"{base}&name=q.cpu&field=ok")
    assert [item["points"][0] for item in doc["items"]] == [[1e9, True]]
    schema = await openapi(lab)
    response_validator(schema, "/api/telemetry/series", "get", 200).validate(doc)
    status, doc = await api(lab, "GET", f"{base}&q=prod&history=false")
    [prod] = doc["items"]
    assert prod["tags"] == {"env": "prod"} and "points" not in prod
    status, doc = await api(lab, "GET", f"{base}&limit=2")
    assert len(doc["items"]) == 2 and doc["total"] == 5
    for query, field in (("tag=novalue", "tag"), ("limit=0", "limit"), ("since=-1", "since")):
        status, doc = await api(lab, "GET", f"{base}&{query}")
        assert (status, doc["field"]) == (422, field), doc
    status, doc = await api(lab, "GET", "/api/telemetry/series?listener=nope")
    assert (status, doc["field"]) == (404, "id"), doc


def _record(severity: int, message: str, **extra: Any) -> LogRecord:
    return LogRecord(facility=16, severity=severity, message=message, format="rfc5424", **extra)


async def test_the_log_query_filters_and_counts_every_record_per_severity(lab: Lab) -> None:
    mode = await statsd(lab, b"l.hits:1|c")
    # Until the syslog mode lands beside this, a log store on a collector stands for it.
    logs = LogStore(max_records=3)
    setattr(mode, "logs", logs)  # noqa: B010
    logs.add(_record(3, "disk failed", host="db", app="smartd"), 1.0)
    logs.add(_record(6, "user in", host="web", app="sshd", structured={"m@1": {"k": "v"}}), 2.0)
    logs.add(_record(2, "disk on fire", host="db", app="smartd"), 3.0)
    logs.add(_record(7, "noise", host="web", app="cron"), 4.0)  # the first record leaves
    listener_id = mode.listener.id
    status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener_id}")
    assert status == 200, doc
    assert [item["message"] for item in doc["items"]] == ["noise", "disk on fire", "user in"]
    counts = doc["counts"][listener_id]
    assert counts["by_severity"] == {
        "emerg": 0, "alert": 0, "crit": 1, "err": 1, "warning": 0, "notice": 0, "info": 1,
        "debug": 1,
    }  # fmt: skip
    assert (counts["received"], counts["kept"], counts["evicted"]) == (4, 3, 1)
    schema = await openapi(lab)
    response_validator(schema, "/api/telemetry/logs", "get", 200).validate(doc)
    status, doc = await api(lab, "GET", "/api/telemetry/logs?severity=err&host=db")
    [fire] = doc["items"]
    assert (fire["severity_name"], fire["facility_name"]) == ("crit", "local0")
    assert fire["app"] == "smartd"
    status, doc = await api(lab, "GET", "/api/telemetry/logs?app=sshd&q=USER&facility=local0")
    [user] = doc["items"]
    assert user["structured"] == {"m@1": {"k": "v"}} and user["host"] == "web"
    status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={listener_id}&after=3")
    assert [item["seq"] for item in doc["items"]] == [4]
    for query, field in (("severity=loud", "severity"), ("facility=24", "facility")):
        status, doc = await api(lab, "GET", f"/api/telemetry/logs?{query}")
        assert (status, doc["field"]) == (422, field), doc
    echo = next(item.id for item in lab.listeners if item.spec.mode == "echo")
    status, doc = await api(lab, "GET", f"/api/telemetry/logs?listener={echo}")
    assert (status, doc["field"]) == (409, "listener")


async def test_metrics_re_export_every_series_with_its_tags_as_labels(lab: Lab) -> None:
    mode = await statsd(lab, b"m.hits:4|c|#env:dev,listener:x,9lives:y\nm.temp:21.5|g")
    mode.series.add(Point("m.cpu", {"user": 1.5, "up": True, "note": "text"}), 0)
    logs = LogStore()
    setattr(mode, "logs", logs)  # noqa: B010
    logs.add(_record(3, "disk failed"), 1.0)
    text, samples = await scrape(lab)
    listener_id = mode.listener.id
    values = samples["socketlab_telemetry_value"]

    def key(metric: str, field: str, **tags: str) -> tuple[tuple[str, str], ...]:
        return labels(listener=listener_id, metric=metric, field=field, **tags)

    # Tag keys become label names; ones that would clash or are not names get a prefix.
    assert values[key("m.hits", "counter", env="dev", tag_listener="x", tag_9lives="y")] == 4
    assert values[key("m.temp", "gauge")] == 21.5
    assert values[key("m.cpu", "user")] == 1.5 and values[key("m.cpu", "up")] == 1
    assert key("m.cpu", "note") not in values  # a string is not a sample
    mine = labels(listener=listener_id)
    assert samples["socketlab_telemetry_series"][mine] == mode.series.series_count
    assert samples["socketlab_telemetry_received_total"][mine] == 2
    assert (
        samples["socketlab_telemetry_log_records_total"][
            labels(listener=listener_id, severity="err")
        ]
        == 1
    )
    returncode, output = await promtool_check(text)
    assert returncode == 0 and output.strip() == "", output


class OtherCollector(Mode):
    """A collector mode as the influx, graphite and syslog modes are: a series store, a
    log store and a document of its own counters; nothing else known to the API."""

    name = "influx"

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.series = SeriesStore()
        self.logs = LogStore()

    def telemetry(self) -> dict[str, Any]:
        return {"received": 2, "bad_lines": 1, "kernel_drops": None, "forwarded": 0}


async def test_any_mode_with_a_series_store_is_a_collector_for_the_api_and_metrics(
    lab: Lab,
) -> None:
    listener = create_listener("x1", parse_listener_url("tcp://127.0.0.1:0?mode=statsd"))
    listener.mode = other = OtherCollector(listener)
    other.series.add(Point("weather", {"temp": 21.5, "city": "Oslo"}, tags_of({"at": "x"})), 0)
    other.logs.add(_record(4, "cold"), 1.0)
    [(found, series)] = collectors([listener])
    doc = collector_doc(found, series)
    assert (doc["mode"], doc["received"], doc["series_count"]) == ("influx", 2, 2)
    assert doc["logs"]["by_severity"]["warning"] == 1
    schema = await openapi(lab)
    response_validator(schema, "/api/telemetry", "get", 200).validate({"items": [doc]})
    families = {family.name: family for family in TelemetryExporter().collect([listener])}
    [value] = families["socketlab_telemetry_value"].samples  # the string field is left out
    assert value.labels == {"listener": "x1", "metric": "weather", "field": "temp", "at": "x"}
    assert value.value == 21.5
    [received] = families["socketlab_telemetry_received"].samples
    assert received.value == 2
