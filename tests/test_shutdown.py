"""Graceful shutdown of a served lab under load, with a browser connected.

SIGTERM arrives while a run has 20 connections open against the lab's own echo listener,
a few more clients sit idle on it, and Chromium shows the dashboard over the live
WebSocket. The lab must refuse new connections at once, exit 0 within 3 s, and have stored
the run as ``stopped`` (a restart on the same data directory reads it back). How soon "at
once" is (within 0.5 s) is a ``timing`` test, left out of the functional suite.
"""

from __future__ import annotations

import signal
import socket
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.helpers import api_call, start_served_lab

# The API calls of these tests keep a 5 s guard.
call = partial(api_call, timeout=5)


def wait_until(condition: Any, timeout: float = 5.0) -> Any:
    """A hang-guarded wait on a condition held by another process (this test is sync:
    Playwright's sync API drives the browser)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return result


def connect_outcome(port: int) -> str:
    """What a new client of ``port`` sees: "refused", "eof" (accepted, then closed at once)
    or "served" (its bytes came back)."""
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    except ConnectionRefusedError:
        return "refused"
    with client:
        try:
            client.sendall(b"hello?\n")
            data = client.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            return "eof"
        except TimeoutError:
            return "hung"
        return "served" if data else "eof"


@pytest.mark.browser
def test_sigterm_under_load_with_a_browser_exits_0_fast_and_stores_the_run_stopped(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    served = start_served_lab(data)
    idle: list[socket.socket] = []
    try:
        echo = served.listeners["tcp"]
        assert connect_outcome(echo) == "served"
        run = call(
            served,
            "POST",
            "/api/runs",
            {"target": f"tcp://127.0.0.1:{echo}", "connections": 20, "duration": 60},
        )
        idle = [socket.create_connection(("127.0.0.1", echo)) for _ in range(5)]
        with chromium_page() as page:
            page.goto(served.login_url)
            page.wait_for_selector("#status:text('live')", timeout=5000)
            wait_until(
                lambda: call(served, "GET", f"/api/runs/{run['id']}")["summary"]["received"] > 100
            )
            listeners = call(served, "GET", "/api/listeners")["items"]
            tcp = next(item for item in listeners if item["port"] == echo)
            assert tcp["connections"] >= 25  # the run's 20 and the 5 idle ones

            t0 = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            # New connections are refused before the lab exits (how soon: the timing test
            # below).
            outcomes = []
            while (outcome := connect_outcome(echo)) != "refused":
                outcomes.append(outcome)
                assert time.monotonic() - t0 < 5, outcomes  # a hang guard
            # Refused by the shutdown order (listeners first), not because the lab is gone.
            assert served.process.poll() is None
            # Connects that raced the signal were closed at once, never left hanging.
            assert all(o in ("eof", "served") for o in outcomes), outcomes
            # The open connections are closed by the lab, not left to hang.
            for conn in idle:
                conn.settimeout(3.0)
                assert conn.recv(10) == b""
            code = served.process.wait(timeout=5)
            elapsed = time.monotonic() - t0
            # The browser notices that the lab went away.
            page.wait_for_function(
                "!document.querySelector('#status').textContent.includes('live')",
                timeout=5000,
            )
        assert code == 0
        assert elapsed < 3.0, f"exit took {elapsed:.2f} s"
    finally:
        for conn in idle:
            conn.close()
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
        served.close_stdout()

    again = start_served_lab(data)
    try:
        stored = call(again, "GET", f"/api/runs/{run['id']}")
        assert stored["status"] == "stopped"
        assert stored["summary"]["received"] > 100
        assert stored["ended_at"] is not None
        audit = call(again, "GET", "/api/audit")["items"]
        assert [(a["run_id"], a["outcome"]) for a in audit] == [(run["id"], "stopped")]
    finally:
        assert again.stop() == 0
        again.close_stdout()


@pytest.mark.timing
def test_sigterm_under_load_refuses_new_connections_within_half_a_second(tmp_path: Path) -> None:
    served = start_served_lab(tmp_path / "data")
    try:
        echo = served.listeners["tcp"]
        run = call(
            served,
            "POST",
            "/api/runs",
            {"target": f"tcp://127.0.0.1:{echo}", "connections": 20, "duration": 60},
        )
        wait_until(
            lambda: call(served, "GET", f"/api/runs/{run['id']}")["summary"]["received"] > 100
        )
        t0 = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        outcomes = []
        while (outcome := connect_outcome(echo)) != "refused":
            outcomes.append(outcome)
            assert time.monotonic() - t0 < 5, outcomes  # a hang guard
        refused_after = time.monotonic() - t0
        assert served.process.wait(timeout=5) == 0
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
        served.close_stdout()
    assert refused_after < 0.5, f"new connections were refused after {refused_after:.3f} s"
