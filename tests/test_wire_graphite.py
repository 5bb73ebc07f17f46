"""Graphite plaintext parser (app/wire/graphite.py): tables of carbon's syntax and tagged
series, and Hypothesis: any bytes parse or raise GraphiteError, a valid point round-trips,
and the collector counts every line as received or bad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.listeners.modes import create_listener
from app.listeners.modes.collector import CollectorMode
from app.listeners.parse import parse_listener
from app.telemetry.points import Point, tags_of
from app.wire.graphite import GraphiteError, format_point, parse_line

_TABLE: list[tuple[bytes, Point]] = [
    (b"servers.web1.cpu 42.5 1700000000", Point("servers.web1.cpu", {"value": 42.5}, (), 1.7e9)),
    (b"a.b -1e3 1700000000.25\n", Point("a.b", {"value": -1000.0}, (), 1700000000.25)),
    (b"a.b\t7\t1700000000\r\n", Point("a.b", {"value": 7.0}, (), 1.7e9)),
    (b"a.b 7 -1", Point("a.b", {"value": 7.0})),  # -1: the time it arrived
    (b"a.b 7", Point("a.b", {"value": 7.0})),
    (
        b"disk.used;host=web1;dc=eu=west 0.5 1700000000",
        Point("disk.used", {"value": 0.5}, (("dc", "eu=west"), ("host", "web1")), 1.7e9),
    ),
]


@pytest.mark.parametrize(("line", "point"), _TABLE)
def test_carbon_lines_parse(line: bytes, point: Point) -> None:
    assert parse_line(line) == point


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"a.b",
        b"a.b 1 2 3",
        b"a.b x 1700000000",
        b"a.b nan 1700000000",
        b"a.b inf 1700000000",
        b"a.b 1 soon",
        b";t=v 1 1700000000",
        b"a.b;t 1 1700000000",
        b"a.b;=v 1 1700000000",
        b"a.b;t= 1 1700000000",
        b"a.b;t=~v 1 1700000000",
        b"a.b;t!=v 1 1700000000",
        b"a.b;t=v;t=w 1 1700000000",
        b"a.b 1_0 1700000000",
        b"\xff.b 1 1700000000",
    ],
)
def test_malformed_lines_raise_graphite_error(line: bytes) -> None:
    with pytest.raises(GraphiteError):
        parse_line(line)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_graphite_error(data: bytes) -> None:
    try:
        parse_line(data)
    except GraphiteError:
        pass


_path_chars = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters=";"
)
_paths = st.text(_path_chars, min_size=1, max_size=20)
_tag_names = st.text(
    st.characters(
        codec="ascii", exclude_categories=("Cc", "Zs"), exclude_characters=";!^=~\x1c\x1d\x1e\x1f"
    ),
    min_size=1,
    max_size=8,
)
_tag_values = _paths.filter(lambda value: not value.startswith("~"))


@st.composite
def _points(draw: st.DrawFn) -> Point:
    tags = draw(st.dictionaries(_tag_names, _tag_values, max_size=3))
    value = draw(st.floats(allow_nan=False, allow_infinity=False))
    stamp = draw(st.none() | st.floats(0, 4e9, allow_nan=False))
    return Point(draw(_paths), {"value": value}, tags_of(tags), stamp)


@given(_points())
def test_a_valid_point_round_trips(point: Point) -> None:
    assert parse_line(format_point(point)) == point


def test_the_collector_counts_every_line_received_or_bad() -> None:
    listener = create_listener("l1", parse_listener("tcp://127.0.0.1:0?mode=graphite"))
    mode = listener.mode
    assert isinstance(mode, CollectorMode)

    @given(st.lists(st.binary(max_size=60), max_size=20))
    def check(lines: list[bytes]) -> None:
        before = mode.received + mode.bad_lines
        mode.consume(lines)
        counted = [line for line in lines if line.strip()]
        assert mode.received + mode.bad_lines - before == len(counted)
        assert len(mode.bad_samples) == min(mode.bad_lines, 10)

    check()
