"""One summary shape: a running run and a finished run have the same summary keys, for every
pattern over TCP and UDP, against the lab's real echo listeners; both match the documented
model (``RunSummary`` in the OpenAPI document)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs.spec import parse_run_spec
from app.runs.stats import RunStats
from app.web.run_schemas import RunSummary
from tests.conftest import listener_port
from tests.helpers import wait_for

# Only fields each pattern uses, so each spec stays valid for that pattern's own model.
PATTERNS: dict[str, dict[str, Any]] = {
    "pingpong": {"duration": 0.6},
    "rate": {"rate": 200, "duration": 0.6},
    "bulk": {"rate": 200, "duration": 0.6},
    "burst": {"burst": 5, "interval": 0.2, "duration": 0.6},
    "packet": {"payload": {"kind": "text", "text": "ping\\n"}},
}


def _shape(summary: dict[str, Any]) -> tuple[set[str], set[str]]:
    return set(summary), set(summary["rtt_ms"])


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
async def test_a_running_and_a_finished_run_have_the_same_summary_keys(
    lab: Lab, pattern: str, protocol: str
) -> None:
    fields = dict(PATTERNS[pattern])
    if pattern == "bulk" and protocol == "tcp":
        del fields["rate"]  # TCP bulk writes as fast as it can
    target = f"{protocol}://127.0.0.1:{listener_port(lab, protocol)}"
    with trio.fail_after(20):
        run = await lab.runs.start(parse_run_spec({"target": target, "pattern": pattern, **fields}))
        assert run.status == "running"
        running = [run.summary()]
        if pattern != "packet":
            # Once a second has closed the live figures are filled in; the keys stay.
            await wait_for(lambda: run.stats.series or run.status != "running", timeout=10)
            if run.status == "running":
                running.append(run.summary())
        await run.done.wait()
        finished = (await lab.runs.get(run.id))["summary"]
    assert run.status == "finished", run.error
    for live in running:
        assert _shape(live) == _shape(finished)
        RunSummary.model_validate(live)
    RunSummary.model_validate(finished)
    # Not known while running, known at the end.
    assert running[0]["bottleneck"] is None and finished["bottleneck"] is not None
    assert (finished["reply"] is not None) == (pattern == "packet")


def test_a_live_summary_leaves_the_open_second_to_the_series() -> None:
    stats = RunStats()
    for rtt_ns in (40_000, 50_000):
        stats.sent += 1
        stats.received += 1
        stats.interval.record_value(rtt_ns)
    live = stats.summary(0.5, final=False)
    assert live["received"] == 2
    assert live["rtt_ms"]["p50"] is None  # no second closed yet
    point = stats.tick(1.0)
    assert point["received"] == 2 and point["rtt_ms"]["max"] == pytest.approx(0.05, rel=1e-3)
    assert stats.summary(1.0, final=False)["rtt_ms"]["max"] == pytest.approx(0.05, rel=1e-3)
    final = stats.summary(1.0, final=True)
    assert final["rtt_ms"]["mean"] == pytest.approx(0.045, rel=1e-2)
    assert set(final) == set(live)
