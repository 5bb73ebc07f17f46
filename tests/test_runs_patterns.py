"""Every run pattern and load option, against the lab's own echo listeners."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs.spec import parse_run_spec
from tests.conftest import listener_port
from tests.helpers import http


async def run_to_end(lab: Lab, spec: dict[str, Any]) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(30):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    assert doc["status"] == "finished", doc
    return doc


def target(lab: Lab, protocol: str) -> str:
    return f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}"


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_rate_in_count_mode_sends_and_receives_every_message(lab: Lab, protocol: str) -> None:
    doc = await run_to_end(
        lab,
        {
            "target": target(lab, protocol),
            "pattern": "rate",
            "rate": 2000,
            "count": 400,
            "connections": 4,
        },
    )
    s = doc["summary"]
    assert (s["sent"], s["received"], s["lost"], s["duplicates"]) == (400, 400, 0, 0)
    assert s["rtt_ms"]["p50"] is not None


async def test_rate_holds_its_pace(lab: Lab) -> None:
    doc = await run_to_end(
        lab, {"target": target(lab, "udp"), "pattern": "rate", "rate": 400, "duration": 1.0}
    )
    # Message i is due at i/400 s; those due before the 1 s deadline are sent: exactly 400.
    assert doc["summary"]["sent"] == 400
    assert doc["summary"]["sent_per_s"] == pytest.approx(400, rel=0.05)


@pytest.mark.timing  # a 0.15 ms margin on a median
@pytest.mark.parametrize(("protocol", "rate"), [("tcp", 200), ("udp", 200), ("tcp", 4000)])
async def test_a_schedule_is_not_charged_the_timers_lateness(
    lab: Lab, protocol: str, rate: int
) -> None:
    # A sleeping sender wakes up to a millisecond late (epoll's granularity); measured from
    # the intended time, that would add about 0.5 ms to the median of a slow rate run, and
    # above 1,000 msg/s the messages due meanwhile would go out late together. The closed
    # loop against the same echo gives the true round trip to compare with.
    closed = await run_to_end(lab, {"target": target(lab, protocol), "count": 200})
    paced = await run_to_end(
        lab,
        {"target": target(lab, protocol), "pattern": "rate", "rate": rate, "count": 400},
    )
    true_p50 = closed["summary"]["rtt_ms"]["p50"]
    assert paced["summary"]["received"] == 400
    assert paced["summary"]["rtt_ms"]["p50"] < true_p50 + 0.15


async def test_bitrate_becomes_a_message_rate_of_that_size(lab: Lab) -> None:
    spec = parse_run_spec(
        {
            "target": target(lab, "udp"),
            "pattern": "rate",
            "bitrate": 51_200,
            "size": 64,
            "duration": 1.0,
        }
    )
    assert spec.message_rate == pytest.approx(100.0)
    doc = await run_to_end(lab, spec.model_dump())
    assert doc["summary"]["sent"] == 100
    assert doc["summary"]["bytes_sent"] == 6400


async def test_warmup_is_sent_but_not_counted(lab: Lab) -> None:
    doc = await run_to_end(
        lab,
        {
            "target": target(lab, "udp"),
            "pattern": "rate",
            "rate": 200,
            "duration": 1.0,
            "warmup": 0.5,
        },
    )
    # 100 messages go out during the warm-up, then 200 in the measured second.
    assert doc["summary"]["sent"] == 200
    assert doc["summary"]["received"] == 200


async def test_burst_sends_k_back_to_back_every_interval(lab: Lab) -> None:
    doc = await run_to_end(
        lab,
        {
            "target": target(lab, "tcp"),
            "pattern": "burst",
            "burst": 20,
            "interval": 0.25,
            "duration": 1.0,
            "connections": 2,
        },
    )
    # Bursts start at 0, 0.25, 0.5 and 0.75 s: 4 bursts of 20 on each of 2 connections.
    assert doc["summary"]["sent"] == 160
    assert doc["summary"]["received"] == 160


async def test_size_range_varies_message_sizes(lab: Lab) -> None:
    doc = await run_to_end(
        lab, {"target": target(lab, "tcp"), "size": 100, "size_max": 1000, "count": 300}
    )
    s = doc["summary"]
    assert s["received"] == 300
    assert 100 * 300 < s["bytes_sent"] < 1000 * 300
    assert s["bytes_received"] == s["bytes_sent"]


async def test_k_in_flight_pingpong_keeps_exact_counts(lab: Lab) -> None:
    doc = await run_to_end(
        lab, {"target": target(lab, "tcp"), "in_flight": 8, "count": 800, "connections": 2}
    )
    assert (doc["summary"]["sent"], doc["summary"]["received"]) == (800, 800)


async def test_tcp_bulk_counts_every_byte_the_echo_returns(lab: Lab) -> None:
    doc = await run_to_end(
        lab, {"target": target(lab, "tcp"), "pattern": "bulk", "size": 65536, "duration": 0.5}
    )
    s = doc["summary"]
    assert s["bytes_sent"] > 1_000_000
    assert s["bytes_sent"] == s["sent"] * 65536
    assert s["bytes_received"] == s["bytes_sent"]
    assert s["bits_per_s"] > 0


async def test_udp_bulk_blasts_at_the_rate_cap(lab: Lab) -> None:
    doc = await run_to_end(
        lab, {"target": target(lab, "udp"), "pattern": "bulk", "rate": 5000, "count": 1000}
    )
    s = doc["summary"]
    assert s["sent"] == 1000
    assert s["received"] + s["lost"] == 1000


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_packet_shows_the_reply_as_hex_and_text(lab: Lab, protocol: str) -> None:
    doc = await run_to_end(
        lab,
        {
            "target": target(lab, protocol),
            "pattern": "packet",
            "payload": {"kind": "text", "text": r"hi\r\n\x00"},
        },
    )
    reply = doc["summary"]["reply"]
    assert reply["hex"] == "68 69 0d 0a 00"
    assert reply["text"] == r"hi\r\n\x00"
    assert reply["rtt_ms"] > 0


async def test_packet_without_a_reply_says_so(lab: Lab) -> None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        await silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        doc = await run_to_end(
            lab,
            {
                "target": f"udp://127.0.0.1:{port}",
                "pattern": "packet",
                "timeout": 0.3,
                "payload": {"kind": "hex", "text": "0x01 0x02"},
            },
        )
        assert await silent.recv(10) == b"\x01\x02"
    reply = doc["summary"]["reply"]
    assert reply["bytes"] == 0
    assert "no reply" in reply["note"]


async def test_series_has_one_point_per_second(lab: Lab) -> None:
    # 2.8 s: the last 0.8 s is a point of its own, well clear of MIN_FINAL_INTERVAL (a
    # 2.5 s run's 0.5 s remainder joined the second before it whenever a tick came late).
    doc = await run_to_end(lab, {"target": target(lab, "udp"), "duration": 2.8})
    series = doc["series"]
    assert len(series) >= 3
    times = [p["t"] for p in series]
    assert times == sorted(times)
    assert sum(p["received"] for p in series) == doc["summary"]["received"]


async def test_export_as_json_and_csv(lab: Lab) -> None:
    doc = await run_to_end(lab, {"target": target(lab, "tcp"), "duration": 1.2})
    assert lab.web_port is not None
    as_json = await http(lab.web_port, "GET", f"/api/runs/{doc['id']}/export?format=json")
    assert as_json.status == 200
    assert as_json.json()["summary"]["received"] == doc["summary"]["received"]
    assert "attachment" in as_json.headers["content-disposition"]
    as_csv = await http(lab.web_port, "GET", f"/api/runs/{doc['id']}/export?format=csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert len(rows) == len(doc["series"])
    assert sum(int(r["received"]) for r in rows) == doc["summary"]["received"]
    bad = await http(lab.web_port, "GET", f"/api/runs/{doc['id']}/export?format=xml")
    assert (bad.status, bad.json()["field"]) == (422, "format")


async def test_send_endpoint_returns_the_reply(lab: Lab) -> None:
    assert lab.web_port is not None
    response = await http(
        lab.web_port,
        "POST",
        "/api/send",
        body={"target": target(lab, "udp"), "payload": "ca fe", "hex": True},
    )
    assert response.status == 200
    assert response.json()["reply"]["hex"] == "ca fe"
    bad = await http(lab.web_port, "POST", "/api/send", body={"target": target(lab, "udp")})
    assert (bad.status, bad.json()["field"]) == (422, "payload")


async def test_cli_send_prints_hex_and_text(lab: Lab) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "app.cli", "send", target(lab, "tcp"), r"ping\n"],
        capture_stdout=True,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "70 69 6e 67 0a" in out
    assert r"ping\n" in out


async def test_a_run_against_our_own_sink_shows_both_ends(lab: Lab) -> None:
    from app.listeners.parse import parse_listener_url

    sink = await lab.listeners.start(parse_listener_url("udp://127.0.0.1:0?mode=sink"))
    doc = await run_to_end(
        lab,
        {
            "target": f"udp://127.0.0.1:{sink.port}",
            "pattern": "rate",
            "rate": 2000,
            "count": 500,
            "connections": 2,
            "timeout": 0.2,
        },
    )
    s = doc["summary"]
    # The sending end: no replies come from a sink, and none are expected: nothing is
    # called lost here...
    assert s["sent"] == 500
    assert s["received"] == 0
    assert s["lost"] is None and s["loss_pct"] is None
    # ...and the receiving end says what really arrived.
    remote = s["remote"]
    assert remote["received"] == 500
    assert remote["lost"] == 0
    assert remote["duplicates"] == 0
    assert remote["reordered"] == 0
    assert remote["jitter_ms"] >= 0


async def test_summary_says_whether_socketlab_was_the_bottleneck(lab: Lab) -> None:
    doc = await run_to_end(lab, {"target": target(lab, "udp"), "duration": 1.0})
    bottleneck = doc["summary"]["bottleneck"]
    assert 0 <= bottleneck["cpu_pct"] <= 200
    assert bottleneck["loop_lag_ms_p99"] >= 0
    assert isinstance(bottleneck["limited"], bool)
    assert bottleneck["reason"]
