"""The open-loop schedule: piecewise, so a live edit never moves a message already sent."""

from __future__ import annotations

import math

from app.runs.pacer import Schedule


def test_a_rate_schedule_is_evenly_spaced_from_its_phase() -> None:
    schedule = Schedule(0.25, 0.5)
    assert [schedule.at(i) for i in range(4)] == [0.25, 0.75, 1.25, 1.75]


def test_a_burst_schedule_sends_per_slot_messages_each_period() -> None:
    schedule = Schedule(0.0, 2.0, per_slot=3)
    assert [schedule.at(i) for i in range(7)] == [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0]


def test_a_retime_keeps_the_times_of_the_messages_before_it() -> None:
    schedule = Schedule(0.0, 1.0)
    schedule.retime(3, 10.0, 0.1)  # from message 3: at 10 s, ten a second
    assert [schedule.at(i) for i in range(3)] == [0.0, 1.0, 2.0]
    assert [round(schedule.at(i), 6) for i in range(3, 6)] == [10.0, 10.1, 10.2]
    schedule.retime(5, 20.0, 1.0)
    assert [round(schedule.at(i), 6) for i in range(7)] == [0.0, 1.0, 2.0, 10.0, 10.1, 20.0, 21.0]


def test_a_pause_then_a_resume_before_any_send_leaves_one_segment() -> None:
    schedule = Schedule(0.0, 1.0)
    schedule.retime(2, math.inf, 1.0)  # paused
    assert schedule.at(2) == math.inf and schedule.at(1) == 1.0
    schedule.retime(2, 7.0, 1.0)  # resumed at 7 s before message 2 went
    assert [schedule.at(i) for i in range(4)] == [0.0, 1.0, 7.0, 8.0]
    assert len(schedule._past) == 1
