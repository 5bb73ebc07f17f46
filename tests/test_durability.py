"""Crash durability: every run the API acknowledged survives SIGKILL and a restart.

A served lab stores runs while four clients POST short runs as fast as it answers; at a
random moment (seeded, so a failure can be replayed) it is killed with SIGKILL, mid-request
as often as not. Before it restarts, the test opens the SQLite file read-only, as a second
process would, and checks that the database is intact and holds every run that got a 201.
Twenty kills, then one last restart to see that the lab itself reads everything back and
that no run is left ``running``.
"""

from __future__ import annotations

import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import h11
import trio

from tests.helpers import ServedLab, http, start_served_lab

KILLS = 20


def read_only_check(db_path: Path) -> tuple[str, set[str]]:
    """``PRAGMA integrity_check`` and every stored run id, read as another process would."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        ids = {row[0] for row in db.execute("SELECT id FROM runs")}
    finally:
        db.close()
    return integrity, ids


async def post_runs(served: ServedLab, acknowledged: set[str], cut: list[int]) -> None:
    """POST short runs until the lab dies; record the id of every 201.

    ``cut[0]`` counts requests the kill cut off after they had reached the lab.
    """
    body = {"target": f"tcp://127.0.0.1:{served.listeners['tcp']}", "count": 3}
    while True:
        try:
            response = await http(served.web_port, "POST", "/api/runs", body=body)
        except ConnectionRefusedError:
            return  # the lab was already gone
        except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
            cut[0] += 1  # the lab died under this request: not acknowledged
            return
        if response.status == 201:
            acknowledged.add(response.json()["id"])
        elif response.status == 0:
            cut[0] += 1  # closed before any answer: not acknowledged
            return
        else:
            # 409 when the cap on concurrent runs is reached; anything else is a bug.
            assert response.status == 409, (response.status, response.body)


async def test_acknowledged_runs_survive_twenty_sigkills(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db_path = data / "socketlab.sqlite3"
    rng = random.Random(20_260_601)
    acknowledged: set[str] = set()
    cut = [0]
    for _ in range(KILLS):
        served = start_served_lab(data)
        try:
            before = len(acknowledged)
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(post_runs, served, acknowledged, cut)
                # At least one run is acknowledged first (a loaded machine may take longer
                # than the shortest delay to answer the first POST); then the random moment
                # of the crash is the point of the test: it is a time, not a condition.
                with trio.fail_after(30):
                    while len(acknowledged) == before:  # noqa: ASYNC110
                        await trio.sleep(0.005)
                await trio.sleep(rng.uniform(0.0, 0.75))
                served.process.send_signal(signal.SIGKILL)
                with trio.fail_after(10):
                    while served.process.poll() is None:  # noqa: ASYNC110
                        await trio.sleep(0.005)
            assert served.process.returncode == -signal.SIGKILL
            assert len(acknowledged) > before, "no run was acknowledged before the kill"
        finally:
            if served.process.poll() is None:
                served.process.kill()
                served.process.wait()
            served.close_stdout()
        integrity, stored = read_only_check(db_path)
        assert integrity == "ok"
        missing = acknowledged - stored
        assert not missing, f"{len(missing)} acknowledged runs lost"
    # Some kills landed while a request was in flight (a request that got no answer).
    assert cut[0] > 0
    served = start_served_lab(data)
    try:
        response = await http(served.web_port, "GET", "/api/runs?limit=1000")
        items: list[dict[str, Any]] = response.json()["items"]
        assert len(items) < 1000
        listed = {item["id"]: item["status"] for item in items}
        assert acknowledged <= listed.keys()
        # Runs cut off by a kill were marked at the restart; none is left "running".
        assert "running" not in listed.values()
    finally:
        assert served.stop() == 0
        served.close_stdout()
    integrity, _ = read_only_check(db_path)
    assert integrity == "ok"
