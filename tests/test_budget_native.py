"""The pingpong engine charges a run's caps with its own copy of Budget.take's arithmetic
(app/native/_pingpong.c): for any caps and any sequence of messages, times, pauses and
resumes, it charges exactly the messages Budget.take charges and leaves the budget's
fields as Budget.take does."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.native import native
from app.runs.budget import PACE_SLACK, Budget

ENGINE = native("pingpong")
pytestmark = pytest.mark.skipif(ENGINE is None, reason="the compiled engine is not built")

_FIELDS = ("bytes_left", "_due", "_per_message", "_per_byte")

caps = st.fixed_dictionaries(
    {
        "max_bytes": st.none() | st.integers(0, 10**6),
        "max_rate": st.none() | st.floats(0.5, 1e6),
        "max_bitrate": st.none() | st.floats(8.0, 1e10),
    }
)
# A message of some size a while after the last one, or a pause, or a resume.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 70_000), st.floats(0.0, 0.3)),
        st.tuples(st.just("pause"), st.just(0), st.just(0.0)),
        st.tuples(st.just("resume"), st.just(0), st.just(0.0)),
    ),
    max_size=60,
)


def _fields(budget: Budget) -> tuple[float, ...]:
    return tuple(getattr(budget, name) for name in _FIELDS)


@settings(max_examples=300, deadline=None)
@given(caps=caps, steps=steps, start=st.floats(0.0, 1e6))
def test_the_engine_charges_what_budget_take_charges(
    caps: dict[str, float | int | None], steps: list[tuple[str, int, float]], start: float
) -> None:
    assert ENGINE is not None
    budget = Budget(**caps)  # type: ignore[arg-type]
    now = start
    for kind, size, later in steps:
        if kind == "pause":
            budget.pause()
            continue
        if kind == "resume":
            budget.resume()
            continue
        now += later
        twin = copy.copy(budget)
        charged = ENGINE.take(twin, size, now, PACE_SLACK)
        answer = budget.take(size, now)
        assert charged == (answer == 0.0), (kind, size, now, _fields(budget))
        if charged:
            assert _fields(twin) == _fields(budget)
        # Refused: the engine hands the flow back and Python's own take decides what follows.
