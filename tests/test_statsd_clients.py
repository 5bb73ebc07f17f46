"""StatsD listeners fed by two more client libraries: DogStatsD's (``datadog``) and
``python-statsd``. (The ``statsd`` library is in test_statsd_collector.py.)

Expected values are written out from what each call means, not computed by the lab.

``python-statsd`` installs a top-level ``statsd`` package, as the ``statsd`` library does,
so the two cannot share one environment: it runs in a child process from its own folder,
named by ``SOCKETLAB_PYTHON_STATSD`` (made with
``pip install --no-deps --target <folder> python-statsd``); without it that test is skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from app.listeners.base import Listener
from app.listeners.modes.statsd import StatsdMode
from tests.helpers import wait_for
from tests.listener_fixtures import open_manager, start

# A test extra; an environment made before it was added skips these instead of failing.
DogStatsd = pytest.importorskip("datadog.dogstatsd", reason="pip install datadog").DogStatsd


def _mode(listener: Listener) -> StatsdMode:
    assert isinstance(listener.mode, StatsdMode)
    return listener.mode


def _send_with_dogstatsd(port: int) -> None:
    client = DogStatsd(
        host="127.0.0.1", port=port, namespace="app", disable_telemetry=True, constant_tags=[]
    )
    try:
        client.increment("hits")
        client.increment("hits", 41)
        client.decrement("hits", 2)
        client.increment("hits", tags=["env:prod", "az:b"])
        client.gauge("temperature", 20)
        client.gauge("temperature", -5)  # DogStatsD sets the gauge to -5
        client.gauge("depth", 3, tags=["q:jobs"])
        for size in (100, 300, 200):
            client.histogram("size", size)
        client.distribution("latency", 0.25)
        client.timing("rt", 12.5)
        client.set("users", "alice")
        client.set("users", "bob")
        client.set("users", "alice")
        client.event("deploy", "v1.2 is up\non 3 hosts", alert_type="success", tags=["svc:api"])
        client.service_check("db.up", DogStatsd.CRITICAL, tags=["shard:1"], message="no m: 3s")
        client.flush()
    finally:
        client.close_socket()


async def test_the_dogstatsd_client_gives_exact_numbers_events_and_service_checks() -> None:
    async with open_manager() as manager:
        listener = await start(
            manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600&signed_gauges=set"
        )
        await trio.to_thread.run_sync(_send_with_dogstatsd, listener.port)
        mode = _mode(listener)
        agg = mode.aggregator
        with trio.fail_after(5):
            await wait_for(lambda: agg.metrics_received == 15 and agg.service_checks_received == 1)
        snapshot = await mode.flush_in_steps()
    assert (snapshot["bad_lines"], snapshot["overflow"]) == (0, 0)
    counters = {key: c["value"] for key, c in snapshot["counters"].items()}
    assert counters == {"app.hits": 40.0, "app.hits|#az:b,env:prod": 1.0}
    assert snapshot["gauges"] == {"app.temperature": -5.0, "app.depth|#q:jobs": 3.0}
    size = snapshot["timers"]["app.size"]
    assert (size["count"], size["min"], size["max"], size["sum"]) == (3, 100, 300, 600)
    # etsy's upper_N of 100 200 300: p50 is the round(1.5) = 2nd, p90 the round(2.7) = 3rd.
    assert (size["p50"], size["p90"]) == (200, 300)
    assert snapshot["timers"]["app.latency"]["max"] == 0.25
    assert snapshot["timers"]["app.rt"]["max"] == 12.5
    assert snapshot["sets"] == {"app.users": 2}
    (event,) = snapshot["events"]
    assert (event["title"], event["text"]) == ("deploy", "v1.2 is up\non 3 hosts")
    assert (event["alert_type"], event["tags"]) == ("success", ["svc:api"])
    check = snapshot["service_checks"]["db.up|#shard:1"]
    assert (check["status_name"], check["message"]) == ("critical", "no m: 3s")
    assert (snapshot["events_received"], snapshot["service_checks_received"]) == (1, 1)


async def test_by_default_a_signed_dogstatsd_gauge_moves_the_gauge_as_etsy_does() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        await trio.to_thread.run_sync(_send_with_dogstatsd, listener.port)
        agg = _mode(listener).aggregator
        with trio.fail_after(5):
            await wait_for(lambda: agg.service_checks_received == 1)
    assert agg.current()["gauges"]["app.temperature"] == 20 - 5


_PYTHON_STATSD_CLIENT = """
import sys
import statsd

assert hasattr(statsd, "Connection"), "this is not python-statsd"
connection = statsd.Connection("127.0.0.1", int(sys.argv[1]))
counter = statsd.Counter("app", connection)
counter.increment("hits")
counter.increment("hits", 41)
counter.decrement("hits", 2)
gauge = statsd.Gauge("app", connection)
gauge.send("temperature", 20)
gauge.increment("temperature", 5)
gauge.decrement("temperature", 2)
gauge.set("below_zero", -7)  # sent as 0 then -7
timer = statsd.Timer("app", connection)
for seconds in (0.01, 0.02, 0.03, 0.04, 0.1):
    timer.send("latency", seconds)
"""


async def test_the_python_statsd_client_gives_exact_numbers() -> None:
    folder = os.environ.get("SOCKETLAB_PYTHON_STATSD")
    if not folder or not (Path(folder) / "statsd" / "connection.py").is_file():
        pytest.skip("set SOCKETLAB_PYTHON_STATSD to a folder holding python-statsd")
    async with open_manager() as manager:
        listener = await start(manager, "udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
        with trio.fail_after(20):
            await trio.run_process(
                [sys.executable, "-c", _PYTHON_STATSD_CLIENT, str(listener.port)],
                env={**os.environ, "PYTHONPATH": folder},
            )
            mode = _mode(listener)
            await wait_for(lambda: mode.aggregator.metrics_received == 3 + 5 + 5)
        snapshot = mode.flush()
    assert snapshot["bad_lines"] == 0
    assert snapshot["counters"]["app.hits"]["value"] == 1 + 41 - 2
    assert snapshot["gauges"] == {"app.temperature": 20 + 5 - 2, "app.below_zero": -7}
    latency = snapshot["timers"]["app.latency"]
    assert (latency["count"], latency["min"], latency["max"], latency["sum"]) == (5, 10, 100, 200)
    # etsy's upper_N of 10 20 30 40 100: round(2.5) = 3rd, round(4.5) = 5th, round(4.95) = 5th.
    assert (latency["p50"], latency["p90"], latency["p99"]) == (30, 100, 100)
