"""The kernel's view of real connections through a running lab, checked against ``ss -ti``."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import trio

from app import tcpinfo
from app.lab import Lab
from tests.conftest import listener_port
from tests.helpers import echo_round_trip, http, wait_for_async, websocket_handshake

pytestmark = pytest.mark.skipif(tcpinfo.TCP_INFO is None, reason="the platform has no TCP_INFO")


def web_port(lab: Lab) -> int:
    assert lab.web_port is not None
    return lab.web_port


async def ss_figures(local_port: int, remote_port: int) -> dict[str, Any]:
    """What ``ss -tin`` shows of the socket from ``local_port`` to ``remote_port``, in the
    API's names and units (ss leaves out retrans, lost, unacked and bytes_retrans when they
    are 0, and reordering when it is the default 3)."""
    result = await trio.run_process(
        ["ss", "-tinH", f"sport = :{local_port} and dport = :{remote_port}"],
        capture_stdout=True,
    )
    lines = result.stdout.decode().split("\n")
    assert lines[0].startswith("ESTAB"), lines
    words = " ".join(lines[1:]).split()
    fields = dict(word.split(":", 1) for word in words if ":" in word and "(" not in word)
    srtt, rttvar = fields["rtt"].split("/")
    retrans, total = fields.get("retrans", "0/0").split("/")
    rate = words[words.index("delivery_rate") + 1]
    assert rate.endswith("bps")
    return {
        "state": "ESTAB",
        "srtt_ms": float(srtt),
        "rttvar_ms": float(rttvar),
        "retrans": int(retrans),
        "total_retrans": int(total),
        "lost": int(fields.get("lost", 0)),
        "reordering": int(fields.get("reordering", 3)),
        "snd_cwnd": int(fields["cwnd"]),
        "unacked": int(fields.get("unacked", 0)),
        "delivery_bits_per_s": int(rate.removesuffix("bps")),
        "bytes_retrans": int(fields.get("bytes_retrans", 0)),
    }


async def connection_of(lab: Lab, remote: str) -> dict[str, Any]:
    page = (await http(web_port(lab), "GET", "/api/connections")).json()
    row: dict[str, Any] = next(item for item in page["items"] if item["remote"] == remote)
    return row


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
async def test_tcp_info_of_a_lab_connection_agrees_with_ss_within_one_reading(lab: Lab) -> None:
    port = listener_port(lab, "tcp")
    with trio.fail_after(20):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            for i in range(20):
                await echo_round_trip(stream, b"x" * (100 + i))
            client_port = stream.socket.getsockname()[1]
            row = await connection_of(lab, f"127.0.0.1:{client_port}")
            assert row["tcp"]["reason"] is None  # the API's page reads the kernel
            # One reading before and one after ss: ss's figure is one of the two (an idle
            # connection's figures do not move between them).
            before = (await http(web_port(lab), "GET", f"/api/connections/{row['id']}")).json()
            seen = await ss_figures(port, client_port)
            after = (await http(web_port(lab), "GET", f"/api/connections/{row['id']}")).json()
    assert before["tcp"]["sampled_at"] <= after["tcp"]["sampled_at"]
    for name, value in seen.items():
        assert value in (before["tcp"][name], after["tcp"][name]), name
    # Something real was read: a round trip on loopback is not 0 ms, a window not 0.
    assert seen["srtt_ms"] > 0 and seen["snd_cwnd"] > 0


async def test_the_api_says_why_a_udp_flow_has_no_kernel_figures(lab: Lab) -> None:
    with trio.fail_after(10), trio.socket.socket(type=trio.socket.SOCK_DGRAM) as udp:
        await udp.connect(("127.0.0.1", listener_port(lab, "udp")))
        await udp.send(b"ping")
        assert await udp.recv(100) == b"ping"
        row = await connection_of(lab, f"127.0.0.1:{udp.getsockname()[1]}")
        detail = (await http(web_port(lab), "GET", f"/api/connections/{row['id']}")).json()
    for doc in (row["tcp"], detail["tcp"]):
        assert all(doc[name] is None for name in tcpinfo.FIELDS)
        assert doc["reason"] == tcpinfo.NOT_TCP
    missing = await http(web_port(lab), "GET", "/api/connections/c999999")
    assert missing.status == 404
    assert missing.json()["field"] == "id"


async def test_a_dashboard_page_carries_the_kernel_columns_of_its_tcp_rows(lab: Lab) -> None:
    port = web_port(lab)
    with trio.fail_after(20):
        status, client, ws = await websocket_handshake(port, origin=f"http://127.0.0.1:{port}")
        async with ws:
            assert status == 101 and client is not None
            async with await trio.open_tcp_stream("127.0.0.1", listener_port(lab, "tcp")) as tcp:
                await echo_round_trip(tcp, b"hello")
                remote = f"127.0.0.1:{tcp.socket.getsockname()[1]}"
                while True:
                    message = await client.receive_json()
                    if message["type"] != "conns" or "rows" not in message:
                        continue
                    rows = [dict(zip(message["cols"], r, strict=True)) for r in message["rows"]]
                    row = next((r for r in rows if r["remote"] == remote), None)
                    if row is not None and row["snd_cwnd"] is not None:
                        break
                detail = (await http(port, "GET", f"/api/connections/{row['id']}")).json()
    assert row["tcp_reason"] is None and row["state"] == "ESTAB"
    assert row["snd_cwnd"] == detail["tcp"]["snd_cwnd"]
    assert row["total_retrans"] == detail["tcp"]["total_retrans"] == 0


async def test_a_tcp_run_counts_kernel_retransmits_per_second_and_a_udp_run_has_none(
    lab: Lab,
) -> None:
    port = web_port(lab)
    docs = {}
    for protocol in ("tcp", "udp"):
        spec = {
            "target": f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}",
            "pattern": "rate",
            "connections": 3,
            "rate": 200,
            "duration": 2.5,
        }
        created = await http(port, "POST", "/api/runs", body=spec)
        assert created.status == 201, created.body
        run_id = created.json()["id"]

        async def ended(run_id: str = run_id) -> dict[str, Any] | None:
            doc: dict[str, Any] = (await http(port, "GET", f"/api/runs/{run_id}")).json()
            return doc if doc["status"] != "running" else None

        docs[protocol] = await wait_for_async(ended, timeout=30)
    tcp, udp = docs["tcp"], docs["udp"]
    assert tcp["status"] == "finished", tcp
    # Every flow was read. Loopback drops nothing, but on a loaded machine the kernel may
    # still retransmit a few segments (a tail-loss probe when an answer is late), so the
    # check is that the per-second series, the summary and /metrics show one figure; that
    # the figure is the kernel's own is tests/test_tcpinfo_loss.py's (drops nft counted).
    summary = tcp["summary"]["tcp"]
    assert summary["sampled"] == 3 and summary["reason"] is None
    assert summary["retransmits"] >= 0 and summary["bytes_retrans"] >= 0
    assert sum(point["retransmits"] for point in tcp["series"]) == summary["retransmits"]
    assert udp["summary"]["tcp"] is None
    assert {point["retransmits"] for point in udp["series"]} == {None}

    metrics = (await http(port, "GET", "/metrics")).body.decode()
    total = float(summary["retransmits"])
    assert f'socketlab_tcp_retransmits_total{{direction="outbound"}} {total}' in metrics
    assert 'socketlab_tcp_sampled_connections_total{direction="outbound"} 3.0' in metrics
