"""The influx and graphite collectors, and what every collector shares, fed by real clients
through real sockets.

Clients no one here wrote: ``influxdb-client``'s line-protocol serializer and ``graphyte``
over UDP and TCP (syslog's clients: tests/test_collectors_syslog.py).
What the collector parsed is read from its stores (recording subclasses, see
tests/collector_fixtures.py) and from its ``telemetry()`` counters.
"""

from __future__ import annotations

from typing import Any

import graphyte
import pytest
import trio
from influxdb_client.client.write.point import Point as InfluxPoint

from app.lab import Lab
from app.web.listener_schemas import ListenerInfo
from tests.collector_fixtures import WAIT, collector, recording, send_tcp, send_udp
from tests.helpers import http, wait_for, wait_for_async
from tests.listener_fixtures import open_manager

# InfluxDB line protocol: influxdb-client's serializer.


def _influx_points(precision: str) -> list[InfluxPoint]:
    """Points with every field type and every character that needs escaping, timestamps
    in ``precision`` (``ns`` or ``s``)."""
    nanoseconds = precision == "ns"
    first = (
        InfluxPoint("cpu load,total")  # a space and a comma in the measurement
        .tag("host", "web 1,eu=west")  # space, comma and equals in a tag value
        .tag("rack key=a", "r1")  # space and equals in a tag key
        .tag("path", "C:\\temp")  # a lone backslash stays one
        .field("usage user", 12.5)  # a space in a field key
        .field("cores", 8)  # signed integer: 8i
        .field("note", 'say "hi" \\ ok, a=b')  # quotes, a backslash, comma, equals
        .field("up", True)
        .field("down", False)
        .field("whole", 3.0)  # the client writes 3, still a float
        .time(1_700_000_000_123_456_789 if nanoseconds else 1_700_000_000)
    )
    counter = InfluxPoint.from_dict(
        {
            "measurement": "requests",
            "tags": {"route": "/api/v1"},
            "fields": {"total": 18_446_744_073_709_551_615, "neg": -(2**63)},
            "time": 1_700_000_001_000_000_000 if nanoseconds else 1_700_000_001,
        },
        field_types={"total": "uint", "neg": "int"},
    )
    return [first, counter]


def _check_influx(points: list[Any], precision: str) -> None:
    assert len(points) == 2
    first, counter = points
    assert first.name == "cpu load,total"
    assert dict(first.tags) == {"host": "web 1,eu=west", "rack key=a": "r1", "path": "C:\\temp"}
    assert first.fields == {
        "usage user": 12.5,
        "cores": 8,
        "note": 'say "hi" \\ ok, a=b',
        "up": True,
        "down": False,
        "whole": 3.0,
    }
    assert type(first.fields["cores"]) is int and type(first.fields["whole"]) is float
    assert first.fields["up"] is True and first.fields["down"] is False
    assert first.time == (1_700_000_000_123_456_789 / 1e9 if precision == "ns" else 1.7e9)
    assert counter.name == "requests"
    assert counter.tags == (("route", "/api/v1"),)
    assert counter.fields == {"total": 18_446_744_073_709_551_615, "neg": -(2**63)}
    assert counter.time == 1_700_000_001.0


@pytest.mark.parametrize(("protocol", "precision"), [("udp", "ns"), ("tcp", "s"), ("tcp", "ns")])
async def test_influx_client_points_arrive_exact(protocol: str, precision: str) -> None:
    lines = [point.to_line_protocol() for point in _influx_points(precision)]
    async with open_manager() as manager:
        listener = await collector(
            manager, f"{protocol}://127.0.0.1:0?mode=influx&precision={precision}"
        )
        mode, series, _ = recording(listener)
        if protocol == "udp":
            await send_udp(listener.port, [lines[0].encode(), lines[1].encode() + b"\n"])
        else:
            await send_tcp(listener.port, ("\n".join(lines) + "\n").encode())
        await wait_for(lambda: mode.received == 2, WAIT)
        _check_influx(series.points, precision)
        doc = mode.telemetry()
        assert doc["received"] == 2 and doc["bad_lines"] == 0 and doc["mode"] == "influx"
        assert doc["series_count"] == 6 + 2
        assert listener.msgs_in == 2


async def test_influx_bad_lines_are_counted_with_samples_and_comments_skipped() -> None:
    async with open_manager() as manager:
        listener = await collector(manager, "udp://127.0.0.1:0?mode=influx")
        mode, _, _ = recording(listener)
        datagram = b"# a comment\n\nok value=1\nno_fields\nbad x=1j\nok value=2 notatime\n"
        await send_udp(listener.port, [datagram, b"\xff\xfe value=1"])
        await wait_for(lambda: mode.received + mode.bad_lines == 5, WAIT)
        assert (mode.received, mode.bad_lines) == (1, 4)
        samples = mode.telemetry()["bad_samples"]
        assert [sample["line"] for sample in samples] == [
            "no_fields",
            "bad x=1j",
            "ok value=2 notatime",
            "\\xff\\xfe value=1",
        ]
        assert all(sample["error"] for sample in samples)


async def test_series_past_max_keys_are_refused_and_counted() -> None:
    async with open_manager() as manager:
        listener = await collector(manager, "tcp://127.0.0.1:0?mode=influx&max_keys=2")
        mode, _, _ = recording(listener)
        await send_tcp(listener.port, b"m a=1,b=2\nm c=3\nm a=4\nn a=5\n")
        await wait_for(lambda: mode.received == 4, WAIT)
        doc = listener.to_dict()["influx"]
        assert doc["series_count"] == 2
        assert doc["overflow"] == 2  # m.c and n.a: new series past the cap


async def test_a_tcp_line_longer_than_max_message_size_ends_that_connection_only() -> None:
    async with open_manager() as manager:
        listener = await collector(manager, "tcp://127.0.0.1:0?mode=graphite&max_message_size=64")
        mode, series, _ = recording(listener)
        await send_tcp(listener.port, b"a.b 1 1700000000\n" + b"x" * 200)
        await wait_for(lambda: listener.oversized == 1, WAIT)
        await send_tcp(listener.port, b"c.d 2 1700000000\n")
        await wait_for(lambda: mode.received == 2, WAIT)
        assert [point.name for point in series.points] == ["a.b", "c.d"]


# Graphite: graphyte.


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_graphyte_values_arrive_exact(protocol: str) -> None:
    values = [0.1, -2.5e-7, 123456789.123, 42.0, 1e300]
    async with open_manager() as manager:
        listener = await collector(manager, f"{protocol}://127.0.0.1:0?mode=graphite")
        mode, series, _ = recording(listener)
        sender = graphyte.Sender(
            "127.0.0.1",
            port=listener.port,
            prefix="lab",
            protocol=protocol,
            tags={"dc": "eu-1", "role": "db=primary"},
        )

        def send_all() -> None:
            for index, value in enumerate(values):
                sender.send(f"disk.free{index}", value, timestamp=1_700_000_000 + index)
            sender.send("plain.untagged", 7, timestamp=1_700_000_100, tags={"x": "y"})

        # graphyte opens a blocking socket per send over TCP: not on the event loop.
        await trio.to_thread.run_sync(send_all)
        await wait_for(lambda: mode.received == len(values) + 1, WAIT)
        assert mode.bad_lines == 0
        for index, value in enumerate(values):
            point = series.points[index]
            assert point.name == f"lab.disk.free{index}"
            assert point.tags == (("dc", "eu-1"), ("role", "db=primary"))
            assert point.fields == {"value": value}
            assert point.time == 1_700_000_000 + index
        last = series.points[-1]
        assert last.tags == (("dc", "eu-1"), ("role", "db=primary"), ("x", "y"))
        assert last.fields == {"value": 7.0} and last.time == 1_700_000_100


async def test_a_udp_collector_reads_the_kernels_drop_counter_and_tcp_has_none() -> None:
    async with open_manager() as manager:
        udp = await collector(manager, "udp://[::1]:0?mode=syslog")
        tcp = await collector(manager, "tcp://127.0.0.1:0?mode=syslog")
        udp_mode, _, logs = recording(udp)
        tcp_mode, _, _ = recording(tcp)
        await send_udp(udp.port, [b"<30>1 - v6host app - - - over IPv6"], host="::1")
        await wait_for(lambda: udp_mode.received == 1, WAIT)
        assert logs is not None and logs.records[0].host == "v6host"
        assert await udp_mode.refresh_kernel_drops() == 0
        assert await tcp_mode.refresh_kernel_drops() is None
        assert udp_mode.telemetry()["kernel_drops"] == 0


async def test_collectors_over_the_api_show_their_section_and_refuse_a_denied_upstream(
    lab: Lab,
) -> None:
    assert lab.web_port is not None
    with trio.fail_after(WAIT):
        refused = await http(
            lab.web_port,
            "POST",
            "/api/listeners",
            body={"url": "udp://127.0.0.1:0?mode=syslog", "forward": "192.0.2.9:514"},
        )
        assert refused.status == 403
        assert refused.json()["field"] == "forward"
        for mode in ("influx", "graphite", "syslog"):
            made = await http(
                lab.web_port,
                "POST",
                "/api/listeners",
                body={"url": f"tcp://127.0.0.1:0?mode={mode}", "max_keys": 50},
            )
            assert made.status == 201, made.body
            doc = ListenerInfo.model_validate(made.json()).model_dump()
            assert doc[mode]["max_series"] == 50 and doc[mode]["received"] == 0


_FLOOD_LINES = {
    "influx": (b"flood,n=%d value=%di", b"flood,n=%d value=%dj"),
    "graphite": (b"flood.n%d %d 1700000000", b"flood.n%d %dx 1700000000"),
    "syslog": (b"<14>1 - host app %d - - line %d", b"<999>1 - host app %d - - line %d"),
}


@pytest.mark.parametrize("mode_name", ["influx", "graphite", "syslog"])
async def test_a_burst_is_counted_whole_received_bad_or_dropped(mode_name: str) -> None:
    sent = 5000
    good, bad = _FLOOD_LINES[mode_name]
    async with open_manager() as manager:
        listener = await collector(manager, f"udp://127.0.0.1:0?mode={mode_name}&max_keys=100000")
        mode, _, _ = recording(listener)
        datagrams = [(bad if i % 10 == 0 else good) % (i, i) for i in range(sent)]
        await send_udp(listener.port, datagrams)

        async def accounted() -> bool:
            drops = await mode.refresh_kernel_drops() or 0
            total = mode.received + mode.bad_lines + drops + mode.intake.backlog_drops
            return total == sent

        await wait_for_async(accounted, WAIT)
        lost = (mode.intake.kernel_drops or 0) + mode.intake.backlog_drops
        if not lost:  # on a loaded machine the kernel may drop some: counted, above
            assert (mode.received, mode.bad_lines) == (sent - sent // 10, sent // 10)
