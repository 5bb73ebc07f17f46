"""The TCP_INFO parser on bytes captured from getsockopt, and the sums of retransmits."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import tcpinfo
from app.tcpinfo import FIELDS, SupportsGetsockopt, TcpSample, TcpSums, parse

# getsockopt(IPPROTO_TCP, TCP_INFO, 232) on Linux 6.18, from a connection whose server
# dropped 30 % of the segments it received (nftables, in a network namespace), next to what
# `ss -tin` printed for the same socket right after:
#   rto:408 backoff:1 rtt:0.19/0.313 cwnd:1 bytes_retrans:89483 unacked:2 retrans:1/18
#   lost:1 delivery_rate 74837714280bps
LOSSY = bytes.fromhex(
    "010401000107aa01c039060000000000cbff000018020000020000000100000001000000010000000000"
    "000084010000000000004c05000054020000ffff0000d7ff0000be00000039010000ffffff7f01000000"
    "cbff00000300000000000000d7ff000012000000fb3092e40a000000ffffffffffffffffa16e05000000"
    "000000000000000000005b0000003e00000010a40000070000000000000059000000ad9c952d02000000"
    "8049130000000000000000000000000000000000000000004000000000000000fbd30600000000008b5d"
    "01000000000000000000000000000000000000b00600"
)
# The same call (asking 512 bytes) on an idle loopback connection after one exchange:
#   rtt:0.019/0.01 cwnd:11 delivery_rate 29127111104bps (nothing retransmitted)
IDLE = bytes.fromhex(
    "010000000007aa01e01c0300409c00000080000018020000000000000000000000000000000000000000"
    "0000cc00000000000000cc000000cc000000ffff0000d7ff0000130000000a000000ffffff7f0b000000"
    "cbff00000300000000000000d7ff0000000000004624c85f0a000000ffffffffffffffff060000000000"
    "00000100000000000000040000000300000000000000090000000100000001000000388e03d900000000"
    "000000000000000000000000000000000000000000000000020000000000000005000000000000000000"
    "000000000000000000000000000000000000000001000000010000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000"
)


def test_a_capture_from_a_lossy_connection_reads_as_ss_showed_it() -> None:
    assert len(LOSSY) == 232
    doc = tcpinfo.to_doc("tcp", parse(LOSSY), 1.5)
    assert doc == {
        "state": "ESTAB",
        "srtt_ms": 0.19,
        "rttvar_ms": 0.313,
        "retrans": 1,
        "total_retrans": 18,
        "lost": 1,
        "reordering": 3,
        "snd_cwnd": 1,
        "unacked": 2,
        "delivery_bits_per_s": 74_837_714_280,
        "bytes_retrans": 89_483,
        "sampled_at": 1.5,
        "reason": None,
    }


def test_a_capture_of_the_whole_280_byte_struct_of_an_idle_connection() -> None:
    assert len(IDLE) == 280
    doc = tcpinfo.to_doc("tcp", parse(IDLE), 2.0)
    assert (doc["srtt_ms"], doc["rttvar_ms"], doc["snd_cwnd"]) == (0.019, 0.01, 11)
    assert doc["delivery_bits_per_s"] == 29_127_111_104
    assert (doc["total_retrans"], doc["retrans"], doc["bytes_retrans"], doc["lost"]) == (
        0,
        0,
        0,
        0,
    )
    assert doc["reason"] is None


@pytest.mark.parametrize(
    ("size", "missing", "kernel"),
    [
        (104, {"delivery_bits_per_s", "bytes_retrans"}, "4.19"),
        (168, {"bytes_retrans"}, "4.19"),
        (100, {"delivery_bits_per_s", "bytes_retrans", "total_retrans"}, "4.19"),
        (40, {"delivery_bits_per_s", "bytes_retrans", "total_retrans", "srtt_ms"}, "4.19"),
    ],
)
def test_an_older_kernels_shorter_struct_gives_null_and_says_which_kernel(
    size: int, missing: set[str], kernel: str
) -> None:
    doc = tcpinfo.to_doc("tcp", parse(LOSSY[:size]), 1.0)
    nulls = {name for name in FIELDS if doc[name] is None}
    assert missing <= nulls
    assert doc["state"] == "ESTAB"
    if size >= 104:
        assert nulls == missing
        assert doc["total_retrans"] == 18
    assert doc["reason"] is not None
    assert f"{size} bytes" in doc["reason"] and f"Linux {kernel}" in doc["reason"]


def test_a_udp_flow_and_an_unread_row_have_null_figures_and_a_reason() -> None:
    udp = tcpinfo.to_doc("udp", None, None)
    assert all(udp[name] is None for name in FIELDS)
    assert udp["reason"] == tcpinfo.NOT_TCP
    unread = tcpinfo.to_doc("tcp", None, None)
    assert unread["reason"] in (tcpinfo.NOT_SAMPLED, tcpinfo.UNSUPPORTED)
    assert tcpinfo.columns("udp", None) == [None] * len(FIELDS) + [tcpinfo.NOT_TCP]


def test_the_api_document_and_the_feed_columns_say_the_same() -> None:
    sample = parse(LOSSY)
    doc = tcpinfo.to_doc("tcp", sample, 0.0)
    assert tcpinfo.columns("tcp", sample) == [doc[name] for name in FIELDS] + [None]
    # The document is the model's: every field and nothing else.
    assert set(doc) == set(tcpinfo.TcpInfo.model_fields)
    tcpinfo.TcpInfo.model_validate(doc)
    # A sample keeps the API's fields in the same order (the table sorts by position).
    assert len(TcpSample._fields) == len(FIELDS) + 1


@given(st.binary(max_size=300))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    sample = parse(data)
    assert sample.size == len(data)
    doc = tcpinfo.to_doc("tcp", sample, 0.0)
    assert (doc["reason"] is None) == (len(data) >= 216)


def test_sums_add_only_growth_and_count_a_connection_once() -> None:
    base = parse(LOSSY)
    sums = TcpSums()
    sums.add(None, base)
    assert (sums.retransmits, sums.bytes_retrans, sums.connections) == (18, 89_483, 1)
    grown = base._replace(total_retrans=20, bytes_retrans=90_000)
    sums.add(base, grown)
    sums.add(grown, grown)
    assert (sums.retransmits, sums.bytes_retrans, sums.connections) == (20, 90_000, 1)


class _Row:
    def __init__(self, sock: socket.socket | None) -> None:
        self.tcp_sock: SupportsGetsockopt | None = sock
        self.tcp: TcpSample | None = None
        self.tcp_at = 0.0
        self.sums = TcpSums()
        self.tcp_sums: tuple[TcpSums, ...] = (self.sums,)


@pytest.mark.skipif(tcpinfo.TCP_INFO is None, reason="the platform has no TCP_INFO")
def test_refresh_reads_a_real_socket_once_per_age_and_not_after_close() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            client.sendall(b"hello")
            assert accepted.recv(5) == b"hello"
            row = _Row(client)
            assert tcpinfo.refresh(row, 10.0) is True
            first = row.tcp
            assert first is not None and first.state == 1 and first.snd_cwnd
            assert row.sums.connections == 1
            # Younger than min_age: not read again.
            assert tcpinfo.refresh(row, 10.1, min_age=0.5) is False
            assert row.tcp is first and row.tcp_at == 10.0
        # A closed socket cannot be asked: the last reading stays.
        assert tcpinfo.refresh(row, 20.0) is False
        assert row.tcp is first
