"""How a run ends: :func:`conclude` as a table, and the engine's outcome against real sockets.

The engine returns an :class:`Outcome` and writes nothing but the run's statistics; the
final status is decided in :func:`conclude` alone.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import pytest
import trio

from app.endpoint import Endpoint
from app.registry import Registry
from app.runs.engine import execute
from app.runs.outcome import Outcome, conclude
from app.runs.spec import parse_run_spec
from app.runs.stats import RunStats
from tests.helpers import wait_for


def _stats(
    *, sent: int = 0, received: int = 0, bytes_sent: int = 0, errors: dict[str, int] | None = None
) -> RunStats:
    stats = RunStats()
    stats.sent, stats.received, stats.bytes_sent = sent, received, bytes_sent
    for kind, count in (errors or {}).items():
        for _ in range(count):
            stats.record_error(kind)
    return stats


@pytest.mark.parametrize(
    ("pattern", "counts", "flags", "status", "error"),
    [
        ("pingpong", {"sent": 5, "received": 5, "bytes_sent": 320}, {}, "finished", None),
        ("pingpong", {}, {}, "finished", None),
        ("rate", {"sent": 5, "bytes_sent": 320, "errors": {"timeout": 5}}, {}, "finished", None),
        (
            "pingpong",
            {"errors": {"refused": 2}},
            {},
            "failed",
            "nothing got through; errors: refused x2",
        ),
        ("packet", {"sent": 1, "bytes_sent": 4}, {}, "finished", None),
        ("packet", {"errors": {"reset": 1, "closed": 1}}, {}, "failed", "closed, reset"),
        ("pingpong", {"sent": 9, "received": 9}, {"stopped": True}, "stopped", None),
        (
            "bulk",
            {"sent": 9, "bytes_sent": 9000},
            {"stopped": True, "note": "stopped at the cap"},
            "stopped",
            "stopped at the cap",
        ),
        # A failure wins over a stop: the run never went.
        (
            "pingpong",
            {"errors": {"dns": 1}},
            {"failure": "cannot resolve x", "stopped": True},
            "failed",
            "cannot resolve x",
        ),
        (
            "pingpong",
            {},
            {"reported": {"status": "finished", "summary": {"sent": 1}}},
            "finished",
            None,
        ),
        (
            "pingpong",
            {},
            {"reported": {"status": "cancelled"}},
            "failed",
            "the peer reported 'cancelled'",
        ),
    ],
)
def test_conclude_decides_the_final_status_from_the_counters(
    pattern: str,
    counts: dict[str, Any],
    flags: dict[str, Any],
    status: str,
    error: str | None,
) -> None:
    outcome = conclude(pattern, _stats(**counts), 1.0, **flags)
    assert (outcome.status, outcome.error) == (status, error)
    if "reported" in flags:
        assert outcome.summary == flags["reported"].get("summary", outcome.summary)
    else:
        assert outcome.summary["elapsed"] == 1.0


def _counted(
    *,
    received: int = 0,
    bytes_sent: int = 320,
    flows: int = 0,
    failed: int = 0,
    errors: dict[str, int] | None = None,
    samples: dict[str, str] | None = None,
    last_second: tuple[int, int] | None = None,
) -> RunStats:
    stats = _stats(sent=5, received=received, bytes_sent=bytes_sent, errors=errors)
    stats.flows, stats.flows_failed = flows, failed
    for kind, text in (samples or {}).items():
        stats.error_samples[kind] = [text]
    if last_second is not None:
        sent, got = last_second
        stats.series = [{"sent": 5, "received": 5}, {"sent": sent, "received": got}]
    return stats


SELF_SIGNED = "certificate verify failed: self-signed certificate"


@pytest.mark.parametrize(
    ("pattern", "stats", "status", "error"),
    [
        # UDP to a closed port: datagrams were written, the ICMP error says nobody is there.
        (
            "rate",
            _counted(errors={"unreachable": 5}),
            "failed",
            "nothing got through; errors: unreachable x5",
        ),
        # A TLS handshake refused: the reason is part of the error.
        (
            "pingpong",
            _counted(
                bytes_sent=0, flows=1, failed=1, errors={"tls": 1}, samples={"tls": SELF_SIGNED}
            ),
            "failed",
            f"nothing got through; errors: tls x1 ({SELF_SIGNED})",
        ),
        (
            "packet",
            _counted(errors={"tls": 1}, samples={"tls": SELF_SIGNED}),
            "failed",
            f"tls ({SELF_SIGNED})",
        ),
        # Every connection reset after replies came: the target went away.
        (
            "pingpong",
            _counted(received=5, flows=2, failed=2, errors={"reset": 2}),
            "failed",
            "the target went away: errors: reset x2",
        ),
        # One connection of two reset: the run goes on and finishes.
        (
            "pingpong",
            _counted(received=5, flows=2, failed=1, errors={"reset": 1}),
            "finished",
            None,
        ),
        (
            "pingpong",
            _counted(received=5, flows=1, failed=1, errors={"timeout": 1}),
            "failed",
            "an error ended every flow; errors: timeout x1",
        ),
        # UDP flows go on through ICMP errors: the last second of sending got nothing back.
        (
            "rate",
            _counted(received=5, errors={"unreachable": 9}, last_second=(100, 0)),
            "failed",
            "the target went away: errors: unreachable x9",
        ),
        (
            "rate",
            _counted(received=5, errors={"unreachable": 1}, last_second=(100, 90)),
            "finished",
            None,
        ),
    ],
)
def test_conclude_fails_a_run_nothing_got_through_or_whose_target_went_away(
    pattern: str, stats: RunStats, status: str, error: str | None
) -> None:
    outcome = conclude(pattern, stats, 1.0)
    assert (outcome.status, outcome.error) == (status, error)


def test_the_outcome_is_frozen() -> None:
    outcome = conclude("pingpong", RunStats(), 0.5)
    with pytest.raises(AttributeError):
        outcome.status = "failed"  # type: ignore[misc]


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def _echo_port(nursery: trio.Nursery) -> int:
    listeners: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, host="127.0.0.1"), _echo, 0
    )
    return int(listeners[0].socket.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _loopback(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
    return socket.AF_INET, ("127.0.0.1", endpoint.port)


async def _run(
    body: dict[str, Any],
    *,
    stop: trio.CancelScope | None = None,
    stats: RunStats | None = None,
    max_bytes: int | None = None,
) -> Outcome:
    spec = parse_run_spec(body)
    return await execute(
        "a1b2c3d4e5f6",
        spec,
        spec.target,
        stats or RunStats(),
        Registry(),
        stop=stop or trio.CancelScope(),
        resolver=_loopback,
        max_bytes=max_bytes,
    )


async def test_a_run_against_a_closed_port_fails_with_the_error_kind() -> None:
    with trio.fail_after(10):
        outcome = await _run({"target": f"tcp://127.0.0.1:{_closed_port()}", "count": 5})
    assert outcome.status == "failed"
    assert outcome.error == "nothing got through; errors: refused x1"
    assert outcome.summary["errors_by_kind"] == {"refused": 1}


async def test_a_name_that_does_not_resolve_fails_with_the_dns_kind(autojump_clock: Any) -> None:
    async def no_such_name(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    spec = parse_run_spec({"target": "tcp://nowhere.invalid:7", "count": 1})
    outcome = await execute(
        "a1b2c3d4e5f6",
        spec,
        spec.target,
        RunStats(),
        Registry(),
        stop=trio.CancelScope(),
        resolver=no_such_name,
    )
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("cannot resolve nowhere.invalid")
    assert outcome.summary["errors_by_kind"] == {"dns": 1}


async def test_a_run_that_gets_every_reply_finishes(nursery: trio.Nursery) -> None:
    port = await _echo_port(nursery)
    with trio.fail_after(10):
        outcome = await _run({"target": f"tcp://127.0.0.1:{port}", "count": 20, "connections": 2})
    assert (outcome.status, outcome.error) == ("finished", None)
    assert outcome.summary["sent"] == outcome.summary["received"] == 20
    assert outcome.summary["bottleneck"] is not None


async def test_a_stop_gives_stopped(nursery: trio.Nursery) -> None:
    port = await _echo_port(nursery)
    stop = trio.CancelScope()
    stats = RunStats()
    result: list[Outcome] = []

    async def run() -> None:
        result.append(
            await _run(
                {"target": f"tcp://127.0.0.1:{port}", "duration": 30}, stop=stop, stats=stats
            )
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(run)
            await wait_for(lambda: stats.received > 0)
            stop.cancel()
    (outcome,) = result
    assert (outcome.status, outcome.error) == ("stopped", None)
    assert outcome.summary["received"] > 0


async def test_the_byte_cap_stops_a_run_with_the_cap_error(nursery: trio.Nursery) -> None:
    port = await _echo_port(nursery)
    with trio.fail_after(10):
        outcome = await _run(
            {"target": f"tcp://127.0.0.1:{port}", "pattern": "bulk", "duration": 30},
            max_bytes=100_000,
        )
    assert outcome.status == "stopped"
    assert outcome.error == "stopped at the cap of 100,000 bytes per run"
    # Charged before each write: never past the cap, and within one 64-byte write of it.
    assert 100_000 - 64 < outcome.summary["bytes_sent"] <= 100_000
