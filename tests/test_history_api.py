"""The run history through the API: search, labels, delete, and the fine RTT histogram
whose percentile markers are the summary's own figures."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.history import RunFilter, RunHistory
from app.lab import Lab
from app.runs.histogram import decode, fine_buckets
from app.runs.stats import new_histogram
from app.store import MIGRATIONS, Store, StoreLimits, open_store
from tests.conftest import listener_port
from tests.helpers import finished_run, http, wait_for_async


def port_of(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def ids(lab: Lab, query: str) -> list[str]:
    answer = await http(port_of(lab), "GET", f"/api/runs{query}")
    assert answer.status == 200, answer.body
    return [item["id"] for item in answer.json()["items"]]


async def test_runs_are_found_by_target_pattern_status_label_and_text(lab: Lab) -> None:
    port = port_of(lab)
    tcp = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    udp = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    ping = await finished_run(lab, {"target": tcp, "count": 40})
    burst = await finished_run(lab, {"target": udp, "pattern": "burst", "count": 20})
    assert (ping["status"], burst["status"]) == ("finished", "finished")
    labelled = await http(port, "POST", f"/api/runs/{burst['id']}/labels", body={"label": "v1.2"})
    assert labelled.status == 200
    assert labelled.json() == {"id": burst["id"], "labels": ["v1.2"]}

    assert await ids(lab, "") == [burst["id"], ping["id"]]
    assert await ids(lab, "?pattern=burst") == [burst["id"]]
    assert await ids(lab, "?target=UDP://") == [burst["id"]]
    assert await ids(lab, "?status=finished&pattern=pingpong") == [ping["id"]]
    assert await ids(lab, "?status=failed") == []
    assert await ids(lab, "?label=v1.2") == [burst["id"]]
    assert await ids(lab, "?q=V1.") == [burst["id"]]
    assert await ids(lab, f"?q={ping['id'][:8]}") == [ping["id"]]
    assert await ids(lab, "?limit=1&offset=1") == [ping["id"]]
    items = (await http(port, "GET", "/api/runs")).json()["items"]
    assert {i["id"]: i["labels"] for i in items} == {burst["id"]: ["v1.2"], ping["id"]: []}
    bad = await http(port, "GET", "/api/runs?status=done")
    assert (bad.status, bad.json()["field"]) == (422, "status")


async def test_a_running_run_is_listed_live_and_found_by_status(lab: Lab) -> None:
    port = port_of(lab)
    udp = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    run_id = (await http(port, "POST", "/api/runs", body={"target": udp, "duration": 60})).json()[
        "id"
    ]
    live = lab.runs.live[run_id]

    async def listed_live() -> bool:
        items = (await http(port, "GET", "/api/runs?status=running")).json()["items"]
        return bool(items) and items[0]["summary"]["sent"] > 0

    await wait_for_async(listed_live, timeout=20)
    assert await ids(lab, "?status=running") == [run_id]
    live_hist = (await http(port, "GET", f"/api/runs/{run_id}/histogram")).json()
    assert (live_hist["status"], live_hist["resolution"]) == ("running", "fine")
    refused = await http(port, "DELETE", f"/api/runs/{run_id}")
    assert (refused.status, refused.json()["field"]) == (409, "id")
    assert live.status == "running"
    await http(port, "POST", f"/api/runs/{run_id}/stop")


async def test_labels_are_added_once_removed_and_checked(lab: Lab) -> None:
    port = port_of(lab)
    run = await finished_run(lab, {"target": f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"})
    path = f"/api/runs/{run['id']}/labels"
    for label in ("zeta", "alpha", "zeta"):
        assert (await http(port, "POST", path, body={"label": label})).status == 200
    doc = (await http(port, "GET", f"/api/runs/{run['id']}")).json()
    assert doc["labels"] == ["alpha", "zeta"]
    removed = await http(port, "DELETE", f"{path}/zeta")
    assert removed.json() == {"id": run["id"], "labels": ["alpha"]}
    again = await http(port, "DELETE", f"{path}/zeta")
    assert (again.status, again.json()["field"]) == (404, "label")
    for body in ({"label": ""}, {"label": "a b"}, {"label": "x" * 65}, {"name": "x"}):
        answer = await http(port, "POST", path, body=body)
        assert answer.status == 422, body
    missing = await http(port, "POST", "/api/runs/nope/labels", body={"label": "a"})
    assert (missing.status, missing.json()["field"]) == (404, "id")
    unauthorised = await http(port, "POST", path, body={"label": "a"}, token=None)
    assert unauthorised.status == 401


async def test_a_deleted_run_is_gone_with_its_series_and_labels(lab: Lab) -> None:
    port = port_of(lab)
    tcp = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    kept = await finished_run(lab, {"target": tcp, "count": 10})
    gone = await finished_run(lab, {"target": tcp, "count": 10})
    await http(port, "POST", f"/api/runs/{gone['id']}/labels", body={"label": "old"})
    assert (await http(port, "DELETE", f"/api/runs/{gone['id']}", token=None)).status == 401
    assert (await http(port, "DELETE", f"/api/runs/{gone['id']}")).status == 204
    assert (await http(port, "GET", f"/api/runs/{gone['id']}")).status == 404
    assert (await http(port, "GET", f"/api/runs/{gone['id']}/histogram")).status == 404
    assert await ids(lab, "") == [kept["id"]]
    assert await ids(lab, "?label=old") == []
    again = await http(port, "DELETE", f"/api/runs/{gone['id']}")
    assert (again.status, again.json()["field"]) == (404, "id")
    with closing(sqlite3.connect(lab.store.path)) as db:
        left = db.execute("SELECT count(*) FROM run_labels WHERE run_id = ?", (gone["id"],))
        assert left.fetchone() == (0,)


def cumulative_before_and_through(buckets: list[dict[str, Any]], ms: float) -> tuple[int, int]:
    before = 0
    for bucket in buckets:
        if bucket["from_ms"] < ms <= bucket["to_ms"]:
            return before, before + bucket["count"]
        before += bucket["count"]
    raise AssertionError(f"{ms} ms is in no bucket")


async def test_the_histogram_has_fine_buckets_and_markers_at_the_summary_percentiles(
    lab: Lab,
) -> None:
    port = port_of(lab)
    tcp = f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}"
    run = await finished_run(lab, {"target": tcp, "connections": 4, "count": 2000})
    answer = await http(port, "GET", f"/api/runs/{run['id']}/histogram")
    assert answer.status == 200
    hist = answer.json()
    rtt = run["summary"]["rtt_ms"]
    assert (hist["resolution"], hist["per_doubling"]) == ("fine", 8)
    assert {m["name"]: m["ms"] for m in hist["markers"]} == {
        name: rtt[name] for name in ("p50", "p90", "p99", "p999")
    }
    # The same RTTs as the summary's doubling rows, in buckets eight times finer.
    coarse_total = sum(int(count) for _, count in run["summary"]["histogram"])
    assert hist["count"] == sum(b["count"] for b in hist["buckets"]) == coarse_total
    assert coarse_total >= 2000 * 0.9
    for low, high in zip(hist["buckets"], hist["buckets"][1:], strict=False):
        assert low["to_ms"] == high["from_ms"]
        assert high["to_ms"] / high["from_ms"] == pytest.approx(2 ** (1 / 8))
    # The ends are HDR's: its min is the lowest value of the min's sub-bucket, binned (as
    # every recorded value) by that sub-bucket's highest value, which may lie past a fine
    # edge (test_a_sub_bucket_across_a_fine_edge_is_binned_by_its_highest_value); its max
    # is the highest value of the max's sub-bucket. Both exactly, from the stored histogram.
    hdr = decode(await wait_for_async(lambda: RunHistory(lab.store).histogram(run["id"])))
    assert (rtt["min"], rtt["max"]) == (hdr.get_min_value() / 1e6, hdr.get_max_value() / 1e6)
    first, last = hist["buckets"][0], hist["buckets"][-1]
    binned_min = hdr.get_highest_equivalent_value(hdr.get_min_value()) / 1e6
    assert first["from_ms"] < binned_min <= first["to_ms"]
    assert rtt["min"] <= first["to_ms"]
    assert last["from_ms"] < rtt["max"] <= last["to_ms"]
    # Each marker sits in the bucket where the cumulative count crosses its percentile.
    for marker in hist["markers"]:
        before, through = cumulative_before_and_through(hist["buckets"], marker["ms"])
        # HdrHistogram's rank of a percentile (the count rounded to the nearest message),
        # from HDR itself: pct / 100 * n and pct * n / 100 round apart at a half.
        needed = hdr.get_target_count_at_percentile(marker["percentile"])
        assert before < needed <= through, marker
    finer = (await http(port, "GET", f"/api/runs/{run['id']}/histogram?per_doubling=32")).json()
    assert finer["count"] == hist["count"]
    assert len(finer["buckets"]) > len(hist["buckets"])
    bad = await http(port, "GET", f"/api/runs/{run['id']}/histogram?per_doubling=0")
    assert (bad.status, bad.json()["field"]) == (422, "per_doubling")


def test_a_sub_bucket_across_a_fine_edge_is_binned_by_its_highest_value() -> None:
    """An HDR sub-bucket (1,024 ns wide at 1.4 ms) that holds a fine edge: its value is
    binned by the sub-bucket's highest value, the one HDR gives for a percentile, so the
    bucket holds that marker; HDR's min, the sub-bucket's lowest value, is below the
    bucket's lower edge. A run whose fastest RTT fell in such a sub-bucket is the edge case
    the run test above checks exactly."""
    edge_ns = 2 ** (163 / 8)  # the edge between fine buckets 162 and 163 (about 1.36 ms)
    hdr = new_histogram()
    hdr.record_value(int(edge_ns) - 1)
    lowest, highest = hdr.get_min_value(), hdr.get_max_value()
    assert lowest < edge_ns < highest  # the sub-bucket holds the edge
    (bucket,) = fine_buckets(hdr)
    assert bucket["count"] == 1
    assert bucket["from_ms"] == edge_ns / 1e6
    assert bucket["from_ms"] < highest / 1e6 <= bucket["to_ms"]
    assert hdr.get_value_at_percentile(50) == highest
    assert lowest / 1e6 < bucket["from_ms"]


async def test_a_run_stored_before_histograms_were_kept_shows_its_doubling_rows(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    summary = {"rtt_ms": {"p50": 0.05, "p90": 0.1}, "histogram": [[0.064, 3], [0.128, 1]]}
    with closing(sqlite3.connect(data / "socketlab.sqlite3")) as db:
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 3")
        db.execute(
            "INSERT INTO runs (id, status, spec, summary, created_at) VALUES (?, ?, ?, ?, ?)",
            ("oldrun", "finished", json.dumps({"target": "tcp://h:1"}), json.dumps(summary), 1.0),
        )
        db.commit()
    async with open_store(data) as store:
        history = RunHistory(store)
        runs = await history.search(RunFilter(), 10)
        assert [(r["id"], r["labels"], r["summary"]) for r in runs] == [("oldrun", [], summary)]
        assert await history.histogram("oldrun") is None
        assert await history.add_label("oldrun", "kept") == ["kept"]
        assert [r["id"] for r in await history.search(RunFilter(label="kept"), 10)] == ["oldrun"]


async def test_labels_go_with_the_runs_the_retention_deletes(tmp_path: Path) -> None:
    store = Store(tmp_path, StoreLimits(max_stored_runs=2))
    async with open_store(store):
        history = RunHistory(store)
        base = {"status": "finished", "spec": {"target": "tcp://h:1"}, "summary": None}
        await store.insert_run({**base, "id": "first", "created_at": 1.0})
        await history.add_label("first", "old")
        for n in (2, 3):
            await store.insert_run({**base, "id": f"run{n}", "created_at": float(n)})
        assert [r["id"] for r in await history.search(RunFilter(), 10)] == ["run3", "run2"]
        assert await history.search(RunFilter(label="old"), 10) == []
        assert await history.labels("first") == []
