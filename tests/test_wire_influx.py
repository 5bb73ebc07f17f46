"""InfluxDB line protocol parser (app/wire/influx.py): tables of the documented syntax and
escapes, and Hypothesis: any bytes parse or raise InfluxError, a valid point round-trips,
and the collector counts every line as received or bad."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.listeners.modes import create_listener
from app.listeners.modes.collector import CollectorMode
from app.listeners.parse import parse_listener
from app.telemetry.points import Point, tags_of
from app.wire.influx import (
    InfluxError,
    _Reader,
    _split_escaped,
    _split_plain,
    format_point,
    is_comment,
    parse_line,
)

# Examples from InfluxDB's line protocol reference (escaping, types, timestamps).
_TABLE: list[tuple[bytes, Point]] = [
    (
        b'myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000',
        Point(
            "myMeasurement",
            {"fieldKey": "fieldValue"},
            (("tag1", "value1"), ("tag2", "value2")),
            1556813561.098,
        ),
    ),
    (b"home,room=Kitchen temp=22.5", Point("home", {"temp": 22.5}, (("room", "Kitchen"),))),
    (b"m f=1i,g=-9223372036854775808i", Point("m", {"f": 1, "g": -(2**63)})),
    (b"m u=18446744073709551615u", Point("m", {"u": 2**64 - 1})),
    (b"m a=t,b=T,c=true,d=True,e=TRUE", Point("m", dict.fromkeys("abcde", True))),
    (b"m a=f,b=F,c=false,d=False,e=FALSE", Point("m", dict.fromkeys("abcde", False))),
    (b"m f=1,g=-1.5e3,h=.5,i=1.", Point("m", {"f": 1.0, "g": -1500.0, "h": 0.5, "i": 1.0})),
    # Measurement: commas and spaces escaped; an equals sign needs none.
    (b"my\\ meas\\,ure=x f=1", Point("my meas,ure=x", {"f": 1.0})),
    # Tag keys, tag values, field keys: commas, equals signs and spaces escaped.
    (
        b"m,tag\\ key\\,\\=x=tag\\ value\\,\\=y field\\ key\\,\\=z=1",
        Point("m", {"field key,=z": 1.0}, (("tag key,=x", "tag value,=y"),)),
    ),
    # String field values: double quotes and backslashes escaped; others are literal.
    (b'm s="a \\"q\\" \\\\ b\\n"', Point("m", {"s": 'a "q" \\ b\\n'})),
    (b'm s="a, b=c d"', Point("m", {"s": "a, b=c d"})),
    # A backslash before anything else is a backslash; two are one.
    (b"m,p=C:\\temp f=1", Point("m", {"f": 1.0}, (("p", "C:\\temp"),))),
    (b"m,p=a\\\\b f=1", Point("m", {"f": 1.0}, (("p", "a\\b"),))),
    (b"m f=1 -1000000000\r\n", Point("m", {"f": 1.0}, (), -1.0)),
]


@pytest.mark.parametrize(("line", "point"), _TABLE)
def test_documented_lines_parse(line: bytes, point: Point) -> None:
    parsed = parse_line(line)
    assert parsed == point
    assert [type(v) for v in parsed.fields.values()] == [type(v) for v in point.fields.values()]


@pytest.mark.parametrize(
    ("precision", "seconds"), [("ns", 1.5), ("us", 1500.0), ("ms", 1_500_000.0), ("s", 1.5e9)]
)
def test_timestamps_are_read_in_the_listeners_precision(precision: str, seconds: float) -> None:
    assert parse_line(b"m f=1 1500000000", precision).time == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"m",
        b"m ",
        b"m f",
        b"m f=",
        b"m =1",
        b",t=v f=1",
        b"m,t f=1",
        b"m,t= f=1",
        b"m,t=v,t=w f=1",
        b"m,t=a=b f=1",
        b"m f=1j",
        b"m f=9223372036854775808i",
        b"m f=-1u",
        b"m f=18446744073709551616u",
        b"m f=1e999",
        b"m f=nan",
        b"m f=inf",
        b'm f="open',
        b"m f=1 12.5",
        b"m f=1 1 2",
        b'm f="x"y',
        b"m f=1 99999999999999999999",
        b"m f=yes",
        b"\xff f=1",
    ],
)
def test_malformed_lines_raise_influx_error(line: bytes) -> None:
    with pytest.raises(InfluxError):
        parse_line(line)


def test_comments_and_blank_lines_are_skipped() -> None:
    assert is_comment(b"# m f=1") and is_comment(b"   ") and not is_comment(b"m f=1")


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_influx_error(data: bytes) -> None:
    try:
        parse_line(data)
    except InfluxError:
        pass


_printable = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
_names = st.text(_printable, min_size=1, max_size=12)
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.text(_printable, max_size=20),
)


@st.composite
def _points(draw: st.DrawFn) -> Point:
    name = draw(_names.filter(lambda n: not n.startswith("#")))
    tags = draw(st.dictionaries(_names, _names, max_size=4))
    fields = draw(st.dictionaries(_names, _values, min_size=1, max_size=5))
    stamp = draw(st.none() | st.integers(-(2**40), 2**40))
    return Point(name, fields, tags_of(tags), None if stamp is None else float(stamp))


@given(_points())
def test_a_valid_point_round_trips(point: Point) -> None:
    line = format_point(point, "s")
    parsed = parse_line(line, "s")
    assert parsed == point
    for key, value in point.fields.items():
        assert type(parsed.fields[key]) is type(value)
        if isinstance(value, float):
            assert math.copysign(1, value) == math.copysign(1, parsed.fields[key])  # type: ignore[arg-type]


def _outcome(split: Callable[[], object]) -> object:
    try:
        return split()
    except InfluxError:
        return "refused"


@given(st.text(alphabet=" ,=#abm01ituTfFe.-+", max_size=40))
def test_the_fast_reader_agrees_with_the_escaping_reader(text: str) -> None:
    # Lines without backslashes or quotes take the str.split path; the loop per
    # character must read them the same (or refuse them both).
    raw = text.encode()
    assert _outcome(lambda: _split_plain(text, raw)) == _outcome(
        lambda: _split_escaped(_Reader(text, raw))
    )


def _collector() -> CollectorMode:
    listener = create_listener("l1", parse_listener("udp://127.0.0.1:0?mode=influx"))
    assert isinstance(listener.mode, CollectorMode)
    return listener.mode


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_the_collector_counts_every_line_received_or_bad(lines: list[bytes]) -> None:
    mode = _collector()
    mode.consume(lines)
    counted = [line for line in lines if not is_comment(line)]
    assert mode.received + mode.bad_lines == len(counted)
    assert len(mode.bad_samples) == min(mode.bad_lines, 10)
