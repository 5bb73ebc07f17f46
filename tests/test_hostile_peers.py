"""A lab against hostile peers: a bad answer marks the peer failing with the reason, and
nothing else happens to the lab.

In-process, one kind of bad answer at a time (tests/hostile_answers.py, played by
tests/hostile_peer.py): the peer is shown ``failing`` with the reason, a run followed there
ends ``failed`` with it, /api/health answers. In a subprocess, every kind at once, measured
from outside: the lab stays up, its resident memory stays within 50 MB of where it was
before the peers turned hostile, and /api/health answers throughout (every answer within
100 ms: the ``timing`` test).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import trio

from app.lab import Lab
from tests.conftest import running_lab
from tests.helpers import TOKEN, ServedLab, http, start_served_lab, wait_for_async
from tests.hostile_answers import KINDS, RUN_ID, Kind, bomb
from tests.hostile_peer import HostilePeer, Seen, Switch

POLL_KINDS = [kind for kind in KINDS if kind.call in ("listeners", "connections")]
RUN_KINDS = [kind for kind in KINDS if kind.call in ("create", "follow")]
MEMORY_BOUND = 50 * 1024 * 1024


def test_the_hostile_peer_plays_at_least_25_kinds_of_bad_answer() -> None:
    assert len(KINDS) >= 25
    assert len({kind.name for kind in KINDS}) == len(KINDS)


async def _peer_doc(lab: Lab) -> dict[str, Any]:
    doc = (await http(lab.web_port or 0, "GET", "/api/peers")).json()
    peer: dict[str, Any] = doc["items"][0]
    return peer


async def _healthy(port: int) -> None:
    with trio.fail_after(5):
        health = await http(port, "GET", "/api/health", token=None)
    assert health.status == 200, health.body


@dataclass
class Setup:
    lab: Lab
    peer: HostilePeer
    peer_port: int


@asynccontextmanager
async def _lab_with(
    nursery: trio.Nursery, tmp_path: Path, kind: Kind, *, url: str = "http://{}", **overrides: Any
) -> AsyncIterator[Setup]:
    peer = HostilePeer(kind)
    port = await nursery.start(peer.serve)
    peers = (url.format(f"127.0.0.1:{port}"),)
    # A kind that is about time ("no answer within") gets a short timeout; every other kind
    # a generous one, so a loaded machine's slow parse is never mistaken for the answer's.
    timeout = 0.5 if "within" in kind.reason else 5.0
    settings: dict[str, Any] = {"peers": peers, "peer_timeout": timeout, "demo": True, **overrides}
    async with running_lab(nursery, tmp_path / "lab", **settings) as lab:
        yield Setup(lab, peer, port)


@pytest.mark.parametrize("kind", POLL_KINDS, ids=[kind.name for kind in POLL_KINDS])
async def test_a_bad_answer_to_a_poll_marks_the_peer_failing_with_the_reason(
    kind: Kind, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with _lab_with(nursery, tmp_path, kind) as setup:
        lab = setup.lab

        async def failing() -> dict[str, Any] | None:
            doc = await _peer_doc(lab)
            return doc if doc["status"] == "failing" else None

        doc = await wait_for_async(failing, timeout=10)
        assert kind.reason in doc["error"]
        assert doc["listeners"] == [] and doc["last_seen"] is None
        await _healthy(lab.web_port or 0)
        # --demo starts nothing towards a peer that never answered well.
        assert list(lab.runs.running()) == []


@pytest.mark.parametrize("kind", RUN_KINDS, ids=[kind.name for kind in RUN_KINDS])
async def test_a_bad_answer_about_a_run_on_a_peer_fails_that_run_only(
    kind: Kind, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with _lab_with(nursery, tmp_path, kind, demo=False) as setup:
        port = setup.lab.web_port or 0
        spec = {"target": f"tcp://127.0.0.1:{setup.peer_port}", "count": 1}
        created = await http(port, "POST", "/api/peers/127.0.0.1/runs", body=spec)
        if kind.call == "create":
            assert created.status == 502, created.body
            assert kind.reason in created.json()["error"]
            assert (await http(port, "GET", "/api/runs")).json()["items"] == []
        else:
            assert created.status == 201, created.body
            local_id = created.json()["id"]

            async def ended() -> dict[str, Any] | None:
                doc = (await http(port, "GET", f"/api/runs/{local_id}")).json()
                return doc if doc["status"] != "running" else None

            doc = await wait_for_async(ended, timeout=10)
            assert doc["status"] == "failed"
            assert kind.reason in doc["error"]
        await _healthy(port)
        assert "admin" not in " ".join(seen.target for seen in setup.peer.seen)


async def test_a_run_id_given_for_a_peer_is_checked_before_it_reaches_the_peer(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    quiet = Kind("none", "nothing", "", KINDS[0].play)
    async with _lab_with(nursery, tmp_path, quiet, demo=False) as setup:
        port = setup.lab.web_port or 0
        for bad in ("abc%3Fadmin=1", "abc%0D%0AX-Evil:%201", "abc%23x", "%2E%2E", "a%25b"):
            answer = await http(port, "GET", f"/api/peers/127.0.0.1/runs/{bad}")
            assert (answer.status, answer.json()["field"]) == (422, "run_id"), bad
        good = await http(port, "GET", f"/api/peers/127.0.0.1/runs/{RUN_ID}")
        assert good.status == 200, good.body
        targets = [seen.target for seen in setup.peer.seen if seen.target.startswith("/api/runs")]
        assert targets == [f"/api/runs/{RUN_ID}"]


def _authorizations(seen: list[Seen]) -> set[str | None]:
    return {s.authorization for s in seen}


@pytest.mark.parametrize(
    ("url", "peer_token", "sent"),
    [
        ("http://{}", None, None),  # this lab's own token is never sent by default
        ("http://:peer-secret@{}", None, "Bearer peer-secret"),
        ("http://{}", "shared-secret", "Bearer shared-secret"),
        ("http://:own-secret@{}", "shared-secret", "Bearer own-secret"),
    ],
)
async def test_a_peer_gets_only_the_token_configured_for_it(
    url: str, peer_token: str | None, sent: str | None, nursery: trio.Nursery, tmp_path: Path
) -> None:
    quiet = Kind("none", "nothing", "", KINDS[0].play)
    async with _lab_with(nursery, tmp_path, quiet, url=url, peer_token=peer_token) as setup:
        await wait_for_async(lambda: _up(setup.lab), timeout=10)
        assert _authorizations(setup.peer.seen) == {sent}


async def _up(lab: Lab) -> bool:
    return bool((await _peer_doc(lab))["status"] == "up")


async def test_a_peer_that_refuses_the_token_it_was_given_says_so(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    unauthorized = next(kind for kind in KINDS if kind.name == "unauthorized")
    async with _lab_with(nursery, tmp_path, unauthorized, peer_token="wrong") as setup:

        async def failing() -> dict[str, Any] | None:
            doc = await _peer_doc(setup.lab)
            return doc if doc["status"] == "failing" else None

        doc = await wait_for_async(failing, timeout=10)
        assert "refused this lab's token" in doc["error"]
        assert "http://:TOKEN@host:port" in doc["error"]


# ---- every kind at once, against a lab in its own process -----------------------------


@dataclass
class Figures:
    """What was measured of the lab while its peers answered badly."""

    baseline_rss: int
    peak_rss: int = 0
    health_seconds: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)


def _rss(pid: int, key: str = "VmRSS") -> int:
    """The process's resident memory in bytes: now (VmRSS) or its peak so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key}")


async def _watch(served: ServedLab, figures: Figures, stop: trio.Event, done: trio.Event) -> None:
    """Read the memory again and again until ``stop``; /api/health is asked meanwhile by a
    process of its own (tests/healthwatch.py), so the test's loop, busy serving the hostile
    peers, does not count against the lab."""
    watcher = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.healthwatch", str(served.web_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert watcher.stdin is not None and watcher.stdout is not None
    chunks: list[bytes | bytearray] = []

    async def read_all(stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some():
            chunks.append(chunk)

    async with trio.open_nursery() as reading:
        reading.start_soon(read_all, watcher.stdout)
        try:
            while not stop.is_set():
                if served.process.poll() is not None:
                    figures.health_failures.append("the lab exited")
                    break
                figures.peak_rss = max(figures.peak_rss, _rss(served.process.pid))
                with trio.move_on_after(0.02):
                    await stop.wait()
        finally:
            await watcher.stdin.aclose()  # the watcher stops at the end of its input
    await watcher.wait()
    out = b"".join(chunks).decode()
    for line in out.splitlines():
        if line.startswith("!"):
            figures.health_failures.append(line[1:].strip())
        else:
            figures.health_seconds.append(float(line))
    done.set()


async def _served_peers(served: ServedLab) -> dict[str, dict[str, Any]]:
    doc = (await http(served.web_port, "GET", "/api/peers")).json()
    return {item["name"]: item for item in doc["items"]}


async def _play_every_kind(tmp_path: Path) -> Figures:
    switch = Switch(armed=False)
    peers = [HostilePeer(kind, switch) for kind in KINDS]
    # The lab's log, for the failure message when it exits.
    log_path = tmp_path / "lab.log"
    with log_path.open("wb") as log:
        return await _play_with_log(peers, switch, tmp_path, log)


async def _play_with_log(
    peers: list[HostilePeer], switch: Switch, tmp_path: Path, log: IO[bytes]
) -> Figures:
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(peer.serve) for peer in peers]
        names = {f"127.0.0.1:{port}": peer for port, peer in zip(ports, peers, strict=True)}
        args = [arg for port in ports for arg in ("--peer", f"http://127.0.0.1:{port}")]

        def start() -> ServedLab:
            return start_served_lab(
                tmp_path / "lab", *args, "--peer-timeout", "2", "--demo", stderr=log
            )

        served = await trio.to_thread.run_sync(start)
        for wbits in (16 + zlib.MAX_WBITS, zlib.MAX_WBITS):  # made once, before measuring
            await trio.to_thread.run_sync(bomb, wbits)
        try:

            async def all_up() -> bool:
                states = await _served_peers(served)
                return {s["status"] for s in states.values()} == {"up"}

            await wait_for_async(all_up, timeout=30)
            figures = Figures(baseline_rss=_rss(served.process.pid))
            switch.armed = True
            stop, watched = trio.Event(), trio.Event()
            nursery.start_soon(_watch, served, figures, stop, watched)

            polled = {n: p for n, p in names.items() if p.kind.call in ("listeners", "connections")}

            async def all_failing() -> bool:
                states = await _served_peers(served)
                return all(
                    states[n]["status"] == "failing" and p.kind.reason in states[n]["error"]
                    for n, p in polled.items()
                )

            await wait_for_async(all_failing, timeout=30)
            for name, peer in names.items():
                if peer.kind.call in ("create", "follow"):
                    await _run_on(served, name, peer)
            # Two more polls of every peer, memory and health still watched.
            counts = {name: len(peer.seen) for name, peer in polled.items()}

            async def polled_twice_more() -> bool:
                return all(len(p.seen) >= counts[n] + 2 for n, p in polled.items())

            await wait_for_async(polled_twice_more, timeout=30)
            stop.set()
            await watched.wait()
            if served.process.poll() is not None:
                tail = (tmp_path / "lab.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the lab exited {served.process.returncode}:\n{tail}")
            # The kernel's high-water mark: the peak between samples counts too.
            figures.peak_rss = max(figures.peak_rss, _rss(served.process.pid, "VmHWM"))
            await _healthy(served.web_port)
        finally:
            await trio.to_thread.run_sync(served.stop)
            served.close_stdout()
            nursery.cancel_scope.cancel()
    return figures


async def _run_on(served: ServedLab, name: str, peer: HostilePeer) -> None:
    port = int(name.rsplit(":", 1)[1])
    spec = {"target": f"tcp://127.0.0.1:{port}", "count": 1}
    created = await http(served.web_port, "POST", f"/api/peers/{name}/runs", body=spec)
    if peer.kind.call == "create":
        assert created.status == 502 and peer.kind.reason in created.json()["error"]
        return
    assert created.status == 201, created.body
    local_id = created.json()["id"]

    async def ended() -> dict[str, Any] | None:
        doc = (await http(served.web_port, "GET", f"/api/runs/{local_id}")).json()
        return doc if doc["status"] != "running" else None

    doc = await wait_for_async(ended, timeout=15)
    assert doc["status"] == "failed" and peer.kind.reason in doc["error"], doc["error"]


async def test_every_bad_answer_at_once_leaves_the_lab_up_and_its_memory_bounded(
    tmp_path: Path,
) -> None:
    figures = await _play_every_kind(tmp_path)
    assert figures.health_failures == []
    assert len(figures.health_seconds) > 10
    grown = figures.peak_rss - figures.baseline_rss
    slowest = max(figures.health_seconds)
    print(
        f"{len(KINDS)} kinds: memory +{grown / 2**20:.1f} MB, /api/health at most {slowest:.3f} s"
    )
    assert grown <= MEMORY_BOUND, f"memory grew {grown / 2**20:.1f} MB"


@pytest.mark.timing
async def test_health_answers_within_100_ms_while_every_peer_answers_badly(
    tmp_path: Path,
) -> None:
    figures = await _play_every_kind(tmp_path)
    assert figures.health_failures == []
    slowest = max(figures.health_seconds)
    p99 = statistics.quantiles(figures.health_seconds, n=100)[98]
    assert slowest < 0.1, f"/api/health took {slowest * 1000:.0f} ms (p99 {p99 * 1000:.0f} ms)"


CREATE_KINDS = [kind for kind in KINDS if kind.call == "create"]


@pytest.mark.parametrize("kind", CREATE_KINDS, ids=[kind.name for kind in CREATE_KINDS])
async def test_fire_via_a_lab_that_answers_badly_says_so_in_one_line(
    kind: Kind, nursery: trio.Nursery
) -> None:
    peer = HostilePeer(kind)
    port = await nursery.start(peer.serve)
    command = [sys.executable, "-m", "app.cli", "fire", "tcp://127.0.0.1:9000", "--count", "1"]
    with trio.fail_after(30):
        result = await trio.run_process(
            [*command, "--via", f"http://127.0.0.1:{port}", "--token", TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    errors = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert len(errors) == 1 and kind.reason in errors[0], errors
    assert [seen.target for seen in peer.seen] == ["/api/runs"]  # nothing after the bad id
