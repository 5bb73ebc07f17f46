"""The run caps hold in a real lab: atomically under simultaneous requests, and for every
pattern, measured at the receiving end (the echo listener's own byte counter), not from
the run's own figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from app.errors import SpecError
from app.lab import Lab
from app.listeners.base import Listener
from app.runs.budget import PACE_SLACK
from app.runs.spec import parse_run_spec
from app.settings import parse_listener_url
from tests.conftest import listener_port, running_lab
from tests.helpers import http, wait_for


async def post_all(port: int, bodies: list[dict[str, Any]]) -> list[int]:
    """POST every body to /api/runs at the same time; the statuses, in order."""
    statuses = [0] * len(bodies)

    async def post(i: int, body: dict[str, Any]) -> None:
        statuses[i] = (await http(port, "POST", "/api/runs", body=body)).status

    async with trio.open_nursery() as nursery:
        for i, body in enumerate(bodies):
            nursery.start_soon(post, i, body)
    return statuses


@pytest.mark.parametrize(("cap", "posts"), [(16, 40), (2, 30)])
async def test_simultaneous_posts_start_exactly_the_concurrent_run_cap(
    nursery: trio.Nursery, tmp_path: Path, cap: int, posts: int
) -> None:
    async with running_lab(nursery, tmp_path / "data", max_concurrent_runs=cap) as lab:
        assert lab.web_port is not None
        # Slow runs: what is tested is the count, not the traffic.
        body = {
            "target": f"udp://127.0.0.1:{listener_port(lab, 'udp')}",
            "pattern": "rate",
            "rate": 1,
            "duration": 60,
        }
        with trio.fail_after(30):
            statuses = await post_all(lab.web_port, [body] * posts)
            assert sorted(statuses) == [201] * cap + [409] * (posts - cap)
            assert len(lab.runs.running()) == cap
            assert await lab.runs.stop_running() == cap
            # Every place is free again.
            statuses = await post_all(lab.web_port, [body] * cap)
            assert statuses == [201] * cap
            await lab.runs.stop_running()


async def test_a_refused_request_gives_its_place_back(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with running_lab(nursery, tmp_path / "data", max_concurrent_runs=1) as lab:
        assert lab.web_port is not None
        port = lab.web_port
        body = {"target": f"udp://127.0.0.1:{listener_port(lab, 'udp')}", "duration": 60}
        with trio.fail_after(20):
            for _ in range(5):  # refused by the target policy after taking a place
                denied = await http(
                    port, "POST", "/api/runs", body=body | {"target": "udp://10.1.2.3:9"}
                )
                assert denied.status == 403
                beyond = await http(port, "POST", "/api/runs", body=body | {"duration": 7200})
                assert beyond.status == 422
            assert (await http(port, "POST", "/api/runs", body=body)).status == 201
            assert (await http(port, "POST", "/api/runs", body=body)).status == 409
            await lab.runs.stop_running()


# --- every cap, every pattern ------------------------------------------------------------

SIZE = 100
SECONDS = 1.0  # warmup + duration of every paced row
# (name, listener URL, spec fields), without target; each row sends as fast as its pattern
# allows within the caps of the column.
PATTERNS: list[tuple[str, str, dict[str, Any]]] = [
    ("pingpong tcp", "tcp://127.0.0.1:0", {"connections": 2}),
    ("pingpong udp", "udp://127.0.0.1:0", {"connections": 2}),
    ("pingpong tls", "tls://127.0.0.1:0", {"insecure": True}),
    ("rate tcp", "tcp://127.0.0.1:0", {"pattern": "rate"}),
    ("rate udp", "udp://127.0.0.1:0", {"pattern": "rate", "connections": 2}),
    ("burst tcp", "tcp://127.0.0.1:0", {"pattern": "burst", "interval": 0.1}),
    ("burst udp", "udp://127.0.0.1:0", {"pattern": "burst", "interval": 0.1}),
    ("bulk tcp", "tcp://127.0.0.1:0", {"pattern": "bulk", "connections": 2}),
    ("bulk tls", "tls://127.0.0.1:0", {"pattern": "bulk", "insecure": True}),
    ("bulk udp", "udp://127.0.0.1:0", {"pattern": "bulk"}),
    ("scenario tcp", "tcp://127.0.0.1:0", {"pattern": "scenario", "connections": 2}),
    ("scenario udp", "udp://127.0.0.1:0", {"pattern": "scenario", "connections": 2}),
    ("scenario tls", "tls://127.0.0.1:0", {"pattern": "scenario", "insecure": True}),
]
# How long a reply may take: generous, since a loaded machine can hold a TLS reply for
# longer than a run's pace (the caps bound what is sent, not how fast replies come).
TIMEOUT = 2.0
# A scenario row: one message of SIZE bytes and its echo, session after session.
ECHOED = {
    "steps": [
        {"send": "x" * SIZE},
        {"expect": "x" * SIZE, "framing": "length", "length": SIZE, "timeout": TIMEOUT},
    ]
}
# Rows on a schedule known in advance (pingpong and TCP bulk set their own pace).
SCHEDULED = {"rate tcp", "rate udp", "burst tcp", "burst udp", "bulk udp"}
RATE_CAP = 200.0  # msg/s
BITRATE_CAP = 80_000.0  # bit/s: 100 msg/s of 100 bytes
BYTES_CAP = 20_000
DURATION_CAP = 1.0


def spec_for(cap: str, url: str, fields: dict[str, Any], port: int) -> dict[str, Any]:
    """The row's spec for the column ``cap``: at the cap where the pattern takes a rate,
    as fast as it goes where it does not."""
    scheme = url.split(":", 1)[0]
    target = f"{scheme}://127.0.0.1:{port}"
    if fields.get("pattern") == "scenario":
        # Its sessions set their own pace; it has no size, count or warm-up of its own.
        length = {"rate": {"duration": SECONDS}, "bitrate": {"duration": SECONDS}}.get(
            cap, {"duration": 5} if cap == "bytes" else {"iterations": 10_000_000}
        )
        return {"target": target, "scenario": ECHOED, **fields, **length}
    body = {"target": target, "size": SIZE, "timeout": TIMEOUT, **fields}
    pattern = body.get("pattern", "pingpong")
    # Under the byte cap, 40 kB/s: it comes after 0.5 s, and no burst overflows a socket.
    per_second = {"rate": RATE_CAP, "bitrate": BITRATE_CAP / 8 / SIZE, "bytes": 400.0}.get(
        cap, 1_000.0
    )
    if pattern == "burst":
        body["burst"] = round(per_second * body["interval"])
    elif pattern == "rate" or (pattern == "bulk" and scheme == "udp"):
        body["rate"] = per_second
    if cap in ("rate", "bitrate"):
        body |= {"warmup": 0.25, "duration": SECONDS - 0.25}
    elif cap == "bytes":
        body["duration"] = 5  # the cap comes well before
    else:
        body["count"] = 10_000_000  # far more than the cap lets it send
    return body


async def run_row(
    lab: Lab, cap: str, name: str, url: str, fields: dict[str, Any], failures: list[str]
) -> None:
    listener: Listener = await lab.listeners.start(parse_listener_url(f"{url}?mode=echo"))
    body = spec_for(cap, url, fields, listener.port)
    started = trio.current_time()
    try:
        run = await lab.runs.start(parse_run_spec(body))
    except SpecError as exc:
        # A count on a schedule has a known length: beyond the duration cap, it is refused.
        if not (cap == "duration" and exc.field == "count" and name in SCHEDULED):
            failures.append(f"{name} under the {cap} cap: refused: {exc.message}")
        await lab.listeners.stop(listener.id)
        return
    if cap == "duration" and name in SCHEDULED:
        failures.append(f"{name} under the {cap} cap: a count of 10,000,000 was not refused")
    await run.done.wait()
    elapsed = trio.current_time() - started
    if not url.startswith("udp"):
        # Everything the run sent has reached the echo once its connections are closed.
        # (A UDP run has its replies, so the echo has had every datagram already.)
        await wait_for(lambda: listener.connections == 0)
    received = listener.bytes_in
    await lab.listeners.stop(listener.id)
    summary = run.summary()
    problem = None
    if cap == "rate":
        bound = RATE_CAP * (SECONDS + PACE_SLACK) + 1
        if not 0 < received / SIZE <= bound:
            problem = f"{received / SIZE:.0f} messages, bound {bound:.0f}"
    elif cap == "bitrate":
        bound = BITRATE_CAP / 8 * (SECONDS + PACE_SLACK) + SIZE
        if not 0 < received <= bound:
            problem = f"{received} bytes, bound {bound:.0f}"
    elif cap == "bytes":
        if not BYTES_CAP - SIZE < received <= BYTES_CAP:
            problem = f"{received} bytes for a cap of {BYTES_CAP} (one write is {SIZE})"
        elif run.error != f"stopped at the cap of {BYTES_CAP:,} bytes per run":
            problem = f"ended {run.status}: {run.error}"
    else:
        # Sending ends at the cap; replies in flight get at most the timeout.
        if not elapsed <= DURATION_CAP + TIMEOUT + 2.0 or received == 0:
            problem = f"ran {elapsed:.2f} s with a cap of {DURATION_CAP:g} s"
        elif run.error != f"stopped at the cap of {DURATION_CAP:g} s per run":
            problem = f"ended {run.status}: {run.error}"
    if problem is None and summary["errors"] and cap != "duration":
        problem = f"errors {summary['errors']}"
    if problem is not None:
        failures.append(f"{name} under the {cap} cap: {problem}")


@pytest.mark.parametrize(
    ("cap", "overrides"),
    [
        ("rate", {"max_run_rate": RATE_CAP}),
        ("bitrate", {"max_run_bitrate": BITRATE_CAP}),
        ("bytes", {"max_run_bytes": BYTES_CAP}),
        ("duration", {"max_run_duration": DURATION_CAP}),
    ],
)
async def test_every_cap_holds_for_every_pattern_at_the_receiving_end(
    nursery: trio.Nursery, tmp_path: Path, cap: str, overrides: dict[str, Any]
) -> None:
    failures: list[str] = []
    async with running_lab(nursery, tmp_path / "data", **overrides) as lab:
        with trio.fail_after(30):
            async with trio.open_nursery() as rows:
                for name, url, fields in PATTERNS:
                    rows.start_soon(run_row, lab, cap, name, url, fields, failures)
    assert not failures, "\n".join(failures)


def test_the_table_covers_every_flow_that_sends_more_than_one_message() -> None:
    from app.runs.flows import FLOWS

    # Rows by the code that serves them: TLS rate and burst run tcp_openloop_flow, as TCP.
    covered = {
        FLOWS[pattern, protocol] for pattern, protocol in (n.split() for n, _, _ in PATTERNS)
    }
    assert covered == {kind for (pattern, _), kind in FLOWS.items() if pattern != "packet"}
