"""A failing store never ends the lab, and loses nothing it acknowledged.

A real ``socketlab serve`` process stores its runs in a data directory that fails under it
in the two ways seen in the field: the disk fills up (a 2 MB tmpfs as ``--data``, filled by
a file), and another process holds SQLite's write lock (a second connection in
``BEGIN IMMEDIATE``) far beyond the busy timeout. Runs acknowledged before the failure end
while it lasts: the lab stays up, ``/api/health`` says ``degraded`` and why, the runs read
back with their results, new runs are refused with 503. Once the store works again, health
is ``ok`` and, after a clean stop, the database holds every acknowledged run ended (0 lost).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import trio

from tests.helpers import ServedLab, http, start_served_lab, wait_for_async
from tests.tmpfs import fill, mounted_tmpfs

RUNS = 3


@contextmanager
def served(data: Path) -> Iterator[ServedLab]:
    lab = start_served_lab(data)
    try:
        yield lab
    finally:
        if lab.process.poll() is None:
            lab.process.kill()
            lab.process.wait()
        lab.close_stdout()


async def start_runs(lab: ServedLab) -> list[str]:
    """Acknowledged runs that go on until stopped."""
    target = f"tcp://127.0.0.1:{lab.listeners['tcp']}"
    ids = []
    for _ in range(RUNS):
        response = await http(
            lab.web_port, "POST", "/api/runs", body={"target": target, "duration": 60}
        )
        assert response.status == 201, response.body
        ids.append(response.json()["id"])
    return ids


async def stop_runs(lab: ServedLab, ids: list[str]) -> None:
    async def stop(run_id: str) -> None:
        response = await http(lab.web_port, "POST", f"/api/runs/{run_id}/stop")
        assert response.status == 200, response.body

    async with trio.open_nursery() as nursery:
        for run_id in ids:
            nursery.start_soon(stop, run_id)


async def health(lab: ServedLab) -> dict[str, str]:
    with trio.fail_after(1):  # health answers at once, degraded or not
        response = await http(lab.web_port, "GET", "/api/health", token=None)
    assert response.status == 200
    doc: dict[str, str] = response.json()
    return doc


async def assert_degraded_and_kept(lab: ServedLab, ids: list[str], words: str) -> None:
    """While the store fails: degraded with the reason, results readable, new runs refused."""
    doc = await health(lab)
    assert doc["status"] == "degraded", doc
    assert words in doc["reason"], doc
    assert "writes kept in memory" in doc["reason"], doc
    for run_id in ids:
        run = (await http(lab.web_port, "GET", f"/api/runs/{run_id}")).json()
        assert run["status"] != "running", run
        assert run["summary"] is not None
    listed = (await http(lab.web_port, "GET", "/api/runs?limit=100")).json()["items"]
    assert {r["id"] for r in listed if r["status"] != "running"} >= set(ids)
    target = f"tcp://127.0.0.1:{lab.listeners['tcp']}"
    refused = await http(lab.web_port, "POST", "/api/runs", body={"target": target, "count": 1})
    assert refused.status == 503, refused.body
    assert words in refused.json()["error"]
    assert lab.process.poll() is None  # the lab is up


async def recovered(lab: ServedLab) -> bool:
    return (await health(lab)) == {"status": "ok"}


def stored_runs(db_path: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT id, status FROM runs").fetchall())


async def test_a_full_disk_degrades_the_lab_and_loses_no_acknowledged_run(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "data", "size=2m") as data, served(data) as lab:
        ids = await start_runs(lab)
        filler = fill(data)
        await stop_runs(lab, ids)
        await assert_degraded_and_kept(lab, ids, "disk full")
        filler.unlink()  # space returns
        await wait_for_async(lambda: recovered(lab), timeout=30)
        assert lab.stop() == 0
        stored = stored_runs(data / "socketlab.sqlite3")
    assert {run_id: stored.get(run_id) for run_id in ids} == dict.fromkeys(ids, "stopped")


async def test_a_held_write_lock_degrades_the_lab_and_loses_no_acknowledged_run(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with served(data) as lab:
        ids = await start_runs(lab)
        with closing(sqlite3.connect(data / "socketlab.sqlite3", isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")  # held far beyond the lab's 5 s busy timeout
            await stop_runs(lab, ids)
            await assert_degraded_and_kept(lab, ids, "database locked")
            holder.execute("ROLLBACK")
        await wait_for_async(lambda: recovered(lab), timeout=30)
        assert lab.stop() == 0
    stored = stored_runs(data / "socketlab.sqlite3")
    assert {run_id: stored.get(run_id) for run_id in ids} == dict.fromkeys(ids, "stopped")
