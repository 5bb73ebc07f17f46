"""What a spec says in advance is checked against the caps before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import SpecError
from app.runs.caps import check_run_caps
from app.runs.spec import parse_run_spec
from app.settings import Settings

TCP = "tcp://127.0.0.1:9000"
UDP = "udp://127.0.0.1:9000"
CAPS = Settings(
    max_run_duration=2.0,
    max_run_rate=100.0,
    max_run_bitrate=80_000.0,
    max_run_bytes=100_000,
    max_run_connections=10,
)

REFUSED: list[tuple[dict[str, Any], str]] = [
    # The duration cap covers warm-up and ramp-up too.
    ({"target": TCP, "duration": 3}, "duration"),
    ({"target": TCP, "duration": 1.5, "warmup": 1}, "warmup"),
    ({"target": TCP, "count": 10, "warmup": 2.5}, "warmup"),
    ({"target": TCP, "duration": 1, "ramp_up": 2.5, "connections": 2}, "ramp_up"),
    # A count on a schedule takes a known time: 21 messages at 10/s take 2.1 s.
    ({"target": TCP, "pattern": "rate", "rate": 10, "count": 21}, "count"),
    ({"target": UDP, "pattern": "bulk", "rate": 10, "count": 21, "warmup": 1}, "count"),
    # Four bursts of ten, one a second: the last goes at 3 s.
    ({"target": TCP, "pattern": "burst", "burst": 10, "interval": 1, "count": 31}, "count"),
    ({"target": TCP, "pattern": "rate", "rate": 200, "duration": 1}, "rate"),
    ({"target": UDP, "pattern": "bulk", "rate": 101, "duration": 1}, "rate"),
    # 100 msg/s of 200 bytes is 160 kbit/s.
    ({"target": TCP, "pattern": "rate", "rate": 100, "size": 200, "duration": 1}, "bitrate"),
    (
        {"target": TCP, "pattern": "rate", "bitrate": 90_000, "size": 1000, "duration": 1},
        "bitrate",
    ),
    # Bursts: on average, and all of one burst within a second of the cap.
    ({"target": TCP, "pattern": "burst", "burst": 60, "interval": 0.5, "duration": 1}, "burst"),
    ({"target": TCP, "pattern": "burst", "burst": 101, "interval": 2, "duration": 1}, "burst"),
    (
        {"target": UDP, "pattern": "burst", "burst": 20, "connections": 6, "duration": 1},
        "burst",
    ),
    # One message larger than a second of the bit-rate cap (10,000 bytes).
    ({"target": TCP, "pattern": "bulk", "size": 10_001, "duration": 1}, "size"),
    ({"target": TCP, "size": 64, "size_max": 20_000, "duration": 1}, "size"),
    ({"target": TCP, "count": 2_000, "size": 64}, "count"),
    ({"target": TCP, "connections": 11, "duration": 1}, "connections"),
    (
        {"target": TCP, "pattern": "packet", "payload": {"kind": "text", "text": "x" * 10_001}},
        "payload",
    ),
]

ALLOWED: list[dict[str, Any]] = [
    {"target": TCP, "duration": 1.5, "warmup": 0.5},
    {"target": TCP, "duration": 1, "ramp_up": 2, "connections": 2},
    {"target": TCP, "count": 10, "size": 64},
    {"target": TCP, "pattern": "rate", "rate": 100, "duration": 2},
    {"target": TCP, "pattern": "rate", "bitrate": 80_000, "size": 1000, "duration": 2},
    {"target": TCP, "pattern": "burst", "burst": 50, "interval": 0.5, "duration": 2},
    {"target": TCP, "pattern": "burst", "burst": 100, "interval": 1, "duration": 2},
    {"target": UDP, "pattern": "bulk", "rate": 100, "duration": 2},
    # Pingpong and TCP bulk have no rate: they are paced to the caps while they run.
    {"target": TCP, "pattern": "bulk", "size": 10_000, "duration": 2},
    {"target": TCP, "connections": 10, "duration": 2},
    {"target": TCP, "pattern": "rate", "rate": 10, "count": 20},
    {"target": TCP, "pattern": "burst", "burst": 10, "interval": 1, "count": 30},
    {
        "target": UDP,
        "pattern": "burst",
        "burst": 5,
        "interval": 1,
        "count": 30,
        "connections": 2,
    },
    # A self-paced count run's length is not known in advance: it is stopped at the cap.
    {"target": TCP, "count": 1_000, "size": 100},
    {"target": TCP, "pattern": "packet", "payload": {"kind": "text", "text": "hello"}},
]


@pytest.mark.parametrize(("body", "field"), REFUSED)
def test_a_spec_beyond_a_cap_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        check_run_caps(parse_run_spec(body), CAPS)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize("body", ALLOWED)
def test_a_spec_within_the_caps_passes(body: dict[str, Any]) -> None:
    check_run_caps(parse_run_spec(body), CAPS)
