"""Prometheus /metrics over real HTTP: values equal the lab's own counters after real traffic,
counters never go down when a run ends, promtool accepts the output, the token is required."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable

import pytest
import trio
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from app.lab import Lab
from app.runs.totals import RTT_BUCKETS
from tests.conftest import listener_port
from tests.helpers import (
    finished_run,
    http,
    promtool_check,
    read_ndjson,
    wait_for,
    websocket_handshake,
)

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


def parse(text: str) -> Samples:
    """Every sample, by sample name and then by its sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def labels(**items: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(items.items()))


async def scrape(lab: Lab) -> tuple[str, Samples]:
    response = await http(web_port(lab), "GET", "/metrics")
    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    return text, parse(text)


def rtt_buckets(samples: Samples, key: Iterable[tuple[str, str]]) -> dict[float, float]:
    out = {}
    for label_set, value in samples["socketlab_run_rtt_seconds_bucket"].items():
        found = dict(label_set)
        le = found.pop("le")
        if tuple(sorted(found.items())) == tuple(key):
            out[float(le)] = value
    return out


async def test_metrics_match_the_labs_counters_after_real_traffic(lab: Lab) -> None:
    tcp_port = listener_port(lab, "tcp")
    udp_port = listener_port(lab, "udp")
    doc = await finished_run(
        lab,
        {
            "target": f"tcp://127.0.0.1:{tcp_port}",
            "pattern": "pingpong",
            "connections": 2,
            "size": 64,
            "count": 200,
        },
    )
    assert doc["status"] == "finished"
    summary = doc["summary"]
    assert summary["sent"] == summary["received"] == 200

    # Some traffic of our own: a UDP flow of 5 datagrams, and one TCP connection left open.
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as udp:
        await udp.connect(("127.0.0.1", udp_port))
        for _ in range(5):
            await udp.send(b"0123456789")
            with trio.fail_after(5):
                assert await udp.recv(100) == b"0123456789"
    async with await trio.open_tcp_stream("127.0.0.1", tcp_port) as stream:
        await stream.send_all(b"ping")
        with trio.fail_after(5):
            assert await stream.receive_some(4) == b"ping"
        tcp = next(item for item in lab.listeners if item.spec.protocol == "tcp")
        await wait_for(lambda: tcp.connections == 1)

        _, samples = await scrape(lab)
        inbound = sum(1 for conn in lab.registry if conn.run_id is None)

        for listener in lab.listeners:
            key = labels(
                listener=listener.id,
                protocol=listener.spec.protocol,
                mode=listener.spec.mode,
                address=f"127.0.0.1:{listener.port}",
            )
            expected = {
                "socketlab_listener_connections": listener.connections,
                "socketlab_listener_connections_accepted_total": listener.accepted,
                "socketlab_listener_connections_rejected_total": listener.rejected,
                "socketlab_listener_bytes_received_total": listener.bytes_in,
                "socketlab_listener_bytes_sent_total": listener.bytes_out,
                "socketlab_listener_messages_received_total": listener.msgs_in,
                "socketlab_listener_messages_sent_total": listener.msgs_out,
                "socketlab_listener_errors_total": listener.errors,
                "socketlab_listener_messages_oversized_total": listener.oversized,
            }
            assert {name: samples[name][key] for name in expected} == expected
    # Against what we know was sent, not only against the lab's own bookkeeping.
    tcp_key = labels(listener=tcp.id, protocol="tcp", mode="echo", address=f"127.0.0.1:{tcp_port}")
    udp_listener = next(item for item in lab.listeners if item.spec.protocol == "udp")
    udp_key = labels(
        listener=udp_listener.id, protocol="udp", mode="echo", address=f"127.0.0.1:{udp_port}"
    )
    assert samples["socketlab_listener_connections"][tcp_key] == 1
    assert samples["socketlab_listener_bytes_received_total"][tcp_key] == (
        summary["bytes_sent"] + 4
    )
    assert samples["socketlab_listener_connections_accepted_total"][tcp_key] == 3
    assert samples["socketlab_listener_bytes_received_total"][udp_key] == 50
    assert samples["socketlab_listener_messages_sent_total"][udp_key] == 5

    run_key = labels(protocol="tcp", pattern="pingpong")
    assert samples["socketlab_runs_ended_total"] == {
        labels(protocol="tcp", pattern="pingpong", status="finished"): 1
    }
    assert samples["socketlab_runs_running"][run_key] == 0
    assert samples["socketlab_run_messages_sent_total"][run_key] == 200
    assert samples["socketlab_run_messages_received_total"][run_key] == 200
    assert samples["socketlab_run_bytes_sent_total"][run_key] == summary["bytes_sent"]
    assert samples["socketlab_run_bytes_received_total"][run_key] == summary["bytes_received"]
    assert samples["socketlab_run_connections_opened_total"][run_key] == 2

    # The RTT histogram holds every reply, and agrees with the run's own percentiles.
    buckets = rtt_buckets(samples, run_key)
    assert list(buckets) == [*RTT_BUCKETS, float("inf")]
    assert list(buckets.values()) == sorted(buckets.values())
    assert buckets[float("inf")] == samples["socketlab_run_rtt_seconds_count"][run_key] == 200
    rtt_ms = summary["rtt_ms"]
    assert samples["socketlab_run_rtt_seconds_sum"][run_key] == pytest.approx(
        rtt_ms["mean"] * 200 / 1e3, rel=1e-3
    )
    p50 = rtt_ms["p50"] / 1e3
    for bound, count in buckets.items():
        if bound < p50 * 0.998:
            assert count < 100, (bound, p50)
        elif bound > p50 * 1.002:
            assert count >= 100, (bound, p50)
    assert buckets[RTT_BUCKETS[0]] <= buckets[float("inf")]

    # The lab itself.
    assert samples["socketlab_connections_open"][labels(direction="inbound")] == inbound == 2
    assert samples["socketlab_start_time_seconds"][()] == pytest.approx(lab.started_at)
    assert 0 < samples["socketlab_start_time_seconds"][()] <= time.time()


async def test_a_running_run_counts_live_and_its_counters_never_go_down(lab: Lab) -> None:
    port = web_port(lab)
    target = f"udp://127.0.0.1:{listener_port(lab, 'udp')}"
    run_id = (
        await http(port, "POST", "/api/runs", body={"target": target, "duration": 60})
    ).json()["id"]
    run = lab.runs.live[run_id]
    await wait_for(lambda: run.stats.received > 20)
    key = labels(protocol="udp", pattern="pingpong")

    _, first = await scrape(lab)
    assert first["socketlab_runs_running"][key] == 1
    assert first["socketlab_run_messages_received_total"][key] > 20
    assert first["socketlab_run_rtt_seconds_count"][key] > 20
    assert "socketlab_runs_ended_total" not in first or not first["socketlab_runs_ended_total"]
    assert first["socketlab_connections_open"][labels(direction="outbound")] == 1

    stopped = await http(port, "POST", f"/api/runs/{run_id}/stop")
    assert stopped.json()["status"] == "stopped"
    _, after = await scrape(lab)
    assert after["socketlab_runs_running"][key] == 0
    assert after["socketlab_runs_ended_total"] == {
        labels(protocol="udp", pattern="pingpong", status="stopped"): 1
    }
    for name in (
        "socketlab_run_messages_sent_total",
        "socketlab_run_messages_received_total",
        "socketlab_run_bytes_received_total",
        "socketlab_run_rtt_seconds_count",
        "socketlab_run_rtt_seconds_sum",
    ):
        assert after[name][key] >= first[name][key], name
    assert after["socketlab_run_messages_received_total"][key] == run.stats.received


def hog_the_loop(seconds: float) -> None:
    """Keep the event loop busy without yielding, as a blocking call in a handler would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_event_loop_lag_shows_a_blocked_loop(lab: Lab) -> None:
    await wait_for(lambda: lab.loop_lag.count >= 1)
    hog_the_loop(0.3)
    await wait_for(lambda: lab.loop_lag.max >= 0.2)
    _, samples = await scrape(lab)
    count = samples["socketlab_event_loop_lag_seconds_count"][()]
    below = samples["socketlab_event_loop_lag_seconds_bucket"][(("le", "0.1"),)]
    assert count >= 2
    assert count - below >= 1  # at least one sample above 100 ms
    assert samples["socketlab_event_loop_lag_seconds_sum"][()] >= 0.2
    assert samples["socketlab_event_loop_tasks"][()] > 5


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_metrics_need_the_token(lab: Lab, token: str | None) -> None:
    response = await http(web_port(lab), "GET", "/metrics", token=token)
    assert response.status == 401
    assert response.json() == {"error": "missing or wrong token", "field": "Authorization"}


async def test_metrics_speak_openmetrics_when_asked(lab: Lab) -> None:
    response = await http(
        web_port(lab),
        "GET",
        "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    text = response.body.decode()
    assert text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(text)}
    assert {"socketlab_listener_bytes_received", "socketlab_event_loop_lag_seconds"} <= names


async def test_promtool_accepts_the_metrics(lab: Lab) -> None:
    # Some traffic first, so that every family has samples, histograms included.
    await finished_run(lab, {"target": f"tcp://127.0.0.1:{listener_port(lab, 'tcp')}", "count": 20})
    text, _ = await scrape(lab)
    returncode, output = await promtool_check(text)
    assert returncode == 0, output
    assert output.strip() == "", output


def test_promtool_is_told_apart_from_a_broken_exposition() -> None:
    """The check above can fail: promtool rejects a counter without _total, for instance."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: install Debian's prometheus package")
    bad = "# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=bad.encode(), capture_output=True, check=False
    )
    assert result.returncode != 0
    assert b"_total" in result.stdout + result.stderr


async def test_statsd_metrics_are_re_exported_and_counters_survive_a_flush(lab: Lab) -> None:
    from app.listeners.modes.statsd import StatsdMode
    from app.listeners.parse import parse_listener_url

    listener = await lab.listeners.start(
        parse_listener_url("udp://127.0.0.1:0?mode=statsd&flush_interval=3600")
    )
    mode = listener.mode
    assert isinstance(mode, StatsdMode)
    aggregator = mode.aggregator
    _, before = await scrape(lab)  # the exporter starts counting for this listener here
    assert before["socketlab_statsd_metrics_received_total"][labels(listener=listener.id)] == 0

    def key(metric: str, tags: str = "", **extra: str) -> tuple[tuple[str, str], ...]:
        return labels(listener=listener.id, metric=metric, tags=tags, **extra)

    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", listener.port))

        async def send(lines: bytes, received: int) -> None:
            await sock.send(lines)
            await wait_for(lambda: aggregator.metrics_received == received)

        await send(
            b"hits:1|c\nhits:2|c|@0.5\ntemp:21|g\nlat:10|ms\nlat:30|ms|#env:dev\n"
            b"users:alice|s\nusers:bob|s\nnot a metric",
            7,
        )
        _, open_interval = await scrape(lab)
        assert open_interval["socketlab_statsd_counted_total"][key("hits")] == 5  # 1 + 2/0.5
        assert open_interval["socketlab_statsd_value"][key("temp")] == 21
        assert open_interval["socketlab_statsd_timer_count"][key("lat")] == 1
        assert open_interval["socketlab_statsd_timer_sum"][key("lat", "env:dev")] == 30
        assert open_interval["socketlab_statsd_bad_lines_total"][labels(listener=listener.id)] == 1

        mode.flush()
        text, flushed = await scrape(lab)
        assert flushed["socketlab_statsd_counted_total"][key("hits")] == 5  # not back to 0
        assert flushed["socketlab_statsd_timer_count"][key("lat")] == 1
        assert flushed["socketlab_statsd_timer"][key("lat", quantile="0.5")] == 10
        assert flushed["socketlab_statsd_set_members"][key("users")] == 2
        assert flushed["socketlab_statsd_value"][key("temp")] == 21  # gauges persist
        assert flushed["socketlab_statsd_flushes_total"][labels(listener=listener.id)] == 1

        await send(b"hits:3|c\nlat:50|ms", 9)
        _, later = await scrape(lab)
        assert later["socketlab_statsd_counted_total"][key("hits")] == 8
        assert later["socketlab_statsd_timer_count"][key("lat")] == 2
        assert later["socketlab_statsd_timer_sum"][key("lat")] == 60
        # StatsD lets a counter go negative; the Prometheus counter holds, and counts on
        # once the sum is above its high-water mark again.
        await send(b"hits:-6|c", 10)
        _, negative = await scrape(lab)
        assert negative["socketlab_statsd_counted_total"][key("hits")] == 8
        mode.flush()
        await send(b"hits:10|c", 11)
        _, after = await scrape(lab)
        assert after["socketlab_statsd_counted_total"][key("hits")] == 12  # 5 + 3 - 6 + 10

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: install Debian's prometheus package")
    with trio.fail_after(30):
        result = await trio.run_process(
            [promtool, "check", "metrics"], stdin=text.encode(), capture_stdout=True, check=False
        )
    assert result.returncode == 0, result.stdout.decode()


async def test_live_subscribers_count_websockets_and_event_streams_open_at_once(lab: Lab) -> None:
    port = web_port(lab)

    async def subscribers() -> float:
        return (await scrape(lab))[1]["socketlab_live_subscribers"][()]

    with trio.fail_after(15):
        assert await subscribers() == 0
        status, client, stream = await websocket_handshake(port)
        async with stream, trio.open_nursery() as nursery:
            assert (status, client is not None) == (101, True)
            nursery.start_soon(read_ndjson, port, "/api/events?types=run")
            await wait_for(lambda: lab.hub.subscriber_count == 2, timeout=10)
            assert await subscribers() == 2
            nursery.cancel_scope.cancel()
    with trio.fail_after(15):
        await wait_for(lambda: lab.hub.subscriber_count == 0, timeout=10)
    assert await subscribers() == 0
