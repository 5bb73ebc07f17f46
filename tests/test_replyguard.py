"""The UDP reflection limits (app.wire.replyguard): synchronous tables, the caller's clock."""

from __future__ import annotations

from typing import Any

import pytest

from app.wire.replyguard import MIN_SOURCE_PORT, ReplyGuard

LOOPBACK = ("127.0.0.1", 40000)
OUTSIDE = ("192.0.2.7", 40000)


@pytest.mark.parametrize(
    ("addr", "request_size", "reply_size", "allowed"),
    [
        # Loopback: any size, no rate limit; only a server's source port is refused.
        (LOOPBACK, 10, 1000, True),
        (("127.0.0.1", MIN_SOURCE_PORT), 4, 4, True),
        (("127.0.0.1", MIN_SOURCE_PORT - 1), 4, 4, False),
        (("127.8.9.10", 40000), 1, 2, True),
        (("::1", 40000, 0, 0), 10, 11, True),
        (("::ffff:127.0.0.1", 40000, 0, 0), 10, 11, True),
        # Outside loopback: never larger than the request.
        (OUTSIDE, 100, 100, True),
        (OUTSIDE, 100, 99, True),
        (OUTSIDE, 100, 101, False),
        (("192.0.2.7", 53), 100, 10, False),
        (("192.0.2.7", 0), 100, 10, False),
        (("::ffff:192.0.2.7", 40000, 0, 0), 10, 11, False),
        (("fe80::1%eth0", 40000, 0, 2), 10, 10, True),
        (("fe80::1%eth0", 40000, 0, 2), 10, 11, False),
        (("2001:db8::1", 40000, 0, 0), 10, 10, True),
        # A host name is not an address: it is treated as outside loopback.
        (("localhost", 40000), 10, 11, False),
    ],
)
def test_who_may_get_a_reply_and_how_large(
    addr: tuple[Any, ...], request_size: int, reply_size: int, allowed: bool
) -> None:
    guard = ReplyGuard(rate=100.0)
    assert guard.allow(addr, request_size, reply_size, 0.0) is allowed
    assert guard.dropped == (0 if allowed else 1)
    assert len(guard) == 1


@pytest.mark.parametrize(
    ("rate", "times", "allowed"),
    [
        # A bucket as deep as one second of the rate, refilled at the rate.
        (2.0, [0.0, 0.0, 0.0], [True, True, False]),
        (2.0, [0.0, 0.0, 0.0, 0.5], [True, True, False, True]),
        (2.0, [0.0, 0.0, 0.0, 0.49], [True, True, False, False]),
        (2.0, [0.0, 0.0, 10.0, 10.0, 10.0], [True, True, True, True, False]),
        # Below 1/s the bucket still holds one reply.
        (0.5, [0.0, 0.0, 1.9, 2.0], [True, False, False, True]),
        # 0: no rate limit at all.
        (0.0, [0.0] * 5, [True] * 5),
    ],
)
def test_the_rate_of_replies_to_an_outside_source(
    rate: float, times: list[float], allowed: list[bool]
) -> None:
    guard = ReplyGuard(rate)
    assert [guard.allow(OUTSIDE, 64, 64, now) for now in times] == allowed
    assert guard.dropped == allowed.count(False)


def test_each_source_has_its_own_bucket_and_a_forgotten_one_starts_full() -> None:
    guard = ReplyGuard(rate=1.0)
    other = ("192.0.2.8", 40000)
    assert guard.allow(OUTSIDE, 64, 64, 0.0)
    assert not guard.allow(OUTSIDE, 64, 64, 0.0)
    assert guard.allow(other, 64, 64, 0.0)
    guard.forget(OUTSIDE)
    assert len(guard) == 1
    assert guard.allow(OUTSIDE, 64, 64, 0.0)
    guard.forget(("192.0.2.9", 1))  # never seen: nothing to forget
    assert len(guard) == 2


def test_loopback_is_never_rate_limited() -> None:
    guard = ReplyGuard(rate=1.0)
    assert all(guard.allow(LOOPBACK, 64, 64, 0.0) for _ in range(1000))
    assert guard.dropped == 0
