"""Scenarios and the step machine, synchronously: every step kind, framing, escapes,
captures, repeats, failures by kind, and malformed documents with the step and field named."""

from __future__ import annotations

import random
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SpecError
from app.wire.conversation import (
    AwaitReply,
    Conversation,
    Finished,
    OpenAgain,
    SendBytes,
    StepResult,
    Wait,
)
from app.wire.scenario import MAX_STEPS, parse_scenario


def conversation(steps: list[dict[str, Any]], counter: int = 1, **extra: Any) -> Conversation:
    return Conversation(parse_scenario({"steps": steps, **extra}), counter, random.Random(7))


def play(conv: Conversation, replies: list[bytes], now: float = 0.0) -> list[Any]:
    """Run ``conv`` to its end: each AwaitReply gets the next reply (one read each) 0.01 s
    later, each Wait is slept; returns the actions in order."""
    actions: list[Any] = []
    pending = list(replies)
    while True:
        action = conv.next(now)
        actions.append(action)
        if isinstance(action, Finished):
            return actions
        if isinstance(action, AwaitReply):
            if not pending:
                conv.timed_out(action.deadline)
                now = action.deadline
                continue
            now += 0.01
            while not conv.received(pending.pop(0), now) and pending:
                pass
        elif isinstance(action, Wait):
            now = action.until


def sent(actions: list[Any]) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, SendBytes)]


def kinds(conv: Conversation) -> list[tuple[str, str | None]]:
    return [(r.step, r.kind) for r in conv.results]


# --- sends: escapes, hex, macros, variables ---------------------------------------------


@pytest.mark.parametrize(
    ("step", "data"),
    [
        ({"send": "PING\\r\\n"}, b"PING\r\n"),
        ({"send": "\\x00\\x01tab\\t"}, b"\x00\x01tab\t"),
        ({"send": "de ad be ef", "encoding": "hex"}, b"\xde\xad\xbe\xef"),
        ({"send": "k{counter}"}, b"k42"),
        ({"send": "{{literal}}"}, b"{literal}"),
        ({"send": "{random:4}"}, None),
    ],
)
def test_a_send_renders_escapes_hex_and_macros(step: dict[str, Any], data: bytes | None) -> None:
    conv = conversation([step], counter=42)
    action = conv.next(0.0)
    assert isinstance(action, SendBytes)
    if data is None:
        assert len(action.data) == 4 and int(action.data, 16) >= 0
    else:
        assert action.data == data
    assert conv.next(0.0) == Finished(True)


# --- expects: match kinds and framing ----------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "reply", "ok"),
    [
        ({"expect": "+PONG"}, b"+PONG\r\n", True),
        ({"expect": "+PONG"}, b"+PONGX\r\n", False),
        ({"expect": "+PO", "match": "prefix"}, b"+PONG\n", True),
        ({"expect": "ON", "match": "contains"}, b"+PONG\n", True),
        ({"expect": "^\\+P.NG$", "match": "regex"}, b"+PONG\n", True),
        ({"expect": "^\\+X", "match": "regex"}, b"+PONG\n", False),
        ({"expect": "k{counter}"}, b"k3\n", True),
        ({"expect": "50 4f", "encoding": "hex", "match": "prefix"}, b"PONG\n", True),
        ({"expect": "abc", "framing": "length", "length": 3}, b"abcdef", True),
        ({"expect": "abcdef", "framing": "read"}, b"abcdef", True),
    ],
)
def test_an_expect_compares_the_framed_reply(
    expect: dict[str, Any], reply: bytes, ok: bool
) -> None:
    conv = conversation([{"send": "x"}, expect], counter=3)
    play(conv, [reply])
    assert kinds(conv)[-1] == ("steps.1", None if ok else "mismatch")
    assert conv.next(1.0) == Finished(ok)


def test_a_line_reply_split_over_reads_is_put_back_together() -> None:
    conv = conversation([{"expect": "hello world"}])
    assert isinstance(conv.next(0.0), AwaitReply)
    assert not conv.received(b"hel", 0.1)
    assert not conv.received(b"lo wor", 0.2)
    assert conv.received(b"ld\r\n", 0.3)
    assert conv.next(0.3) == Finished(True)
    assert conv.results[0].latency == pytest.approx(0.3)  # from the start of the wait


def test_pipelined_replies_in_one_read_serve_the_next_expects() -> None:
    conv = conversation([{"send": "a"}, {"expect": "1"}, {"expect": "2"}, {"expect": "3"}])
    actions = play(conv, [b"1\n2\n3\n"])
    assert actions[-1] == Finished(True)
    assert [r.kind for r in conv.results] == [None, None, None, None]


def test_latency_runs_from_the_last_send_to_the_reply() -> None:
    conv = conversation([{"send": "a"}, {"expect": "b"}])
    conv.next(10.0)
    conv.next(10.0)
    conv.received(b"b\n", 10.25)
    last = conv.results[-1]
    assert (last.step, last.kind, last.received) == ("steps.1", None, b"")
    assert last.latency == pytest.approx(0.25)


# --- failures by kind ----------------------------------------------------------------------


def test_a_timeout_fails_the_step_with_what_came() -> None:
    conv = conversation([{"send": "a"}, {"expect": "b", "timeout": 0.5}, {"send": "never"}])
    actions = play(conv, [])
    assert isinstance(actions[1], AwaitReply) and actions[1].deadline == 0.5
    assert kinds(conv) == [("steps.0", None), ("steps.1", "timeout")]
    assert sent(actions) == [b"a"]


def test_a_close_by_the_server_or_a_broken_connection_fails_the_awaited_step() -> None:
    closed = conversation([{"expect": "b"}])
    closed.next(0.0)
    closed.received(b"partial", 0.1)
    closed.closed(0.2)
    assert closed.results[-1] == StepResult("steps.0", "closed", None, b"partial")
    reset = conversation([{"send": "a"}, {"expect": "b"}])
    reset.next(0.0)
    reset.next(0.0)
    reset.broke("reset", 0.1)
    assert kinds(reset)[-1] == ("steps.1", "reset")
    assert reset.next(0.1) == Finished(False)


def test_a_reply_longer_than_max_reply_fails_as_oversized() -> None:
    conv = conversation([{"expect": "x"}], max_reply=8)
    conv.next(0.0)
    assert conv.received(b"0123456789", 0.1)
    assert kinds(conv) == [("steps.0", "oversized")]


def test_a_failed_step_keeps_a_bounded_sample_of_the_reply() -> None:
    conv = conversation([{"expect": "x", "framing": "read"}])
    conv.next(0.0)
    conv.received(b"y" * 1000, 0.1)
    assert conv.results[-1].kind == "mismatch" and conv.results[-1].received == b"y" * 256


# --- captures, delays, repeats, close and reconnect ------------------------------------


def test_a_capture_feeds_a_later_send() -> None:
    conv = conversation(
        [
            {"send": "GET\n"},
            {"expect": "token=", "match": "prefix"},
            {"capture": "token=(?P<token>[0-9a-f]+)"},
            {"send": "USE {token}\n"},
        ]
    )
    actions = play(conv, [b"token=beef42\n"])
    assert sent(actions) == [b"GET\n", b"USE beef42\n"]
    assert conv.variables == {"token": b"beef42"}


def test_a_capture_that_finds_nothing_fails() -> None:
    conv = conversation([{"expect": "x", "match": "prefix"}, {"capture": "(?P<n>[0-9]+)"}])
    play(conv, [b"x only\n"])
    assert kinds(conv)[-1] == ("steps.1", "capture")


def test_delays_are_fixed_or_drawn_from_their_range() -> None:
    conv = conversation([{"delay": 0.5}, {"delay": [1, 2]}, {"send": "a"}])
    first = conv.next(0.0)
    assert first == Wait(0.5)
    second = conv.next(0.5)
    assert isinstance(second, Wait) and 1.5 <= second.until <= 2.5
    assert conv.next(1.0) == second  # still waiting
    assert conv.next(second.until) == SendBytes(b"a")


def test_repeat_runs_its_block_that_many_times_and_repeat_for_as_long() -> None:
    counted = conversation([{"repeat": 3, "steps": [{"send": "a"}, {"send": "b"}]}, {"send": "z"}])
    assert sent(play(counted, [])) == [b"a", b"b"] * 3 + [b"z"]
    timed = conversation([{"repeat_for": 1.0, "steps": [{"send": "t"}, {"delay": 0.3}]}])
    assert sent(play(timed, [])) == [b"t"] * 4  # at 0, 0.3, 0.6, 0.9


def test_nested_repeats_multiply() -> None:
    conv = conversation([{"repeat": 2, "steps": [{"repeat": 3, "steps": [{"send": "x"}]}]}])
    assert sent(play(conv, [])) == [b"x"] * 6


def test_close_ends_the_session_and_reconnect_opens_a_new_one_keeping_variables() -> None:
    conv = conversation(
        [
            {"expect": "id ", "match": "prefix"},
            {"capture": "id (?P<id>[0-9]+)"},
            {"reconnect": True},
            {"send": "resume {id}"},
            {"close": True},
            {"send": "never"},
        ]
    )
    actions = play(conv, [b"id 77\n"])
    assert OpenAgain() in actions
    assert sent(actions) == [b"resume 77"]
    assert actions[-1] == Finished(True)


# --- the document: TOML and malformed scenarios ------------------------------------------

TOML = """
name = "redis"
[[steps]]
send = 'PING\\r\\n'
[[steps]]
expect = "+PONG"
[[steps]]
repeat = 2
steps = [{ send = "x" }, { delay = [0.01, 0.02] }]
"""


def test_a_toml_scenario_parses_to_the_same_program_as_its_json() -> None:
    from_toml = parse_scenario(tomllib.loads(TOML))
    from_json = parse_scenario(
        {
            "name": "redis",
            "steps": [
                {"send": "PING\\r\\n"},
                {"expect": "+PONG"},
                {"repeat": 2, "steps": [{"send": "x"}, {"delay": [0.01, 0.02]}]},
            ],
        }
    )
    assert from_toml.scenario == from_json.scenario
    assert from_toml.steps == ("steps.0", "steps.1", "steps.2.steps.0", "steps.2.steps.1")


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ({}, "steps", "required"),
        ({"steps": []}, "steps", "at least 1"),
        ({"steps": [{}]}, "steps.0", "exactly one of"),
        ({"steps": [{"send": "a", "expect": "b"}]}, "steps.0", "exactly one of"),
        ({"steps": [{"send": 5}]}, "steps.0.send", "string"),
        ({"steps": [{"send": "a", "colour": "red"}]}, "steps.0.colour", "unknown"),
        ({"steps": [{"send": "\\q"}]}, "steps.0.send", "escape"),
        ({"steps": [{"send": "zz", "encoding": "hex"}]}, "steps.0.send", "hex"),
        ({"steps": [{"send": "{token}"}]}, "steps.0.send", "captured by an earlier step"),
        ({"steps": [{"send": "{"}]}, "steps.0.send", "never closed"),
        ({"steps": [{"expect": ""}]}, "steps.0.expect", "empty"),
        ({"steps": [{"expect": "a", "framing": "length"}]}, "steps.0.length", "framing"),
        ({"steps": [{"expect": "a", "length": 3}]}, "steps.0.length", "framing"),
        ({"steps": [{"expect": "(a", "match": "regex"}]}, "steps.0.expect", "regex"),
        ({"steps": [{"expect": "(a)\\1", "match": "regex"}]}, "steps.0.expect", "regex"),
        ({"steps": [{"expect": "a", "timeout": 0}]}, "steps.0.timeout", "greater than 0"),
        ({"steps": [{"capture": "(a)"}]}, "steps.0.capture", "names no group"),
        ({"steps": [{"capture": "(?P<counter>a)"}]}, "steps.0.capture", "macro"),
        ({"steps": [{"delay": -1}]}, "steps.0.delay", "0 to 3600"),
        ({"steps": [{"delay": [2, 1]}]}, "steps.0.delay", "low <= high"),
        ({"steps": [{"repeat": 0, "steps": [{"send": "a"}]}]}, "steps.0.repeat", "1"),
        ({"steps": [{"repeat": 2}]}, "steps.0.steps", "required"),
        (
            {"steps": [{"repeat": 2, "repeat_for": 1, "steps": [{"send": "a"}]}]},
            "steps.0.repeat",
            "one of them",
        ),
        ({"steps": [{"repeat": 1, "steps": [{"nope": 1}]}]}, "steps.0.steps.0", "exactly one"),
        ({"steps": [{"close": False}]}, "steps.0.close", "true"),
        ({"steps": [{"send": "a"}], "max_reply": 0}, "max_reply", "greater than"),
    ],
)
def test_a_malformed_scenario_names_the_step_and_field(
    doc: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_scenario(doc)
    assert caught.value.field == field
    assert words.lower() in caught.value.message.lower(), caught.value.message


def test_blocks_nest_four_deep_at_most_and_steps_are_bounded() -> None:
    deep: dict[str, Any] = {"send": "x"}
    for _ in range(5):
        deep = {"repeat": 1, "steps": [deep]}
    with pytest.raises(SpecError, match="nest at most 4") as caught:
        parse_scenario({"steps": [deep]})
    assert caught.value.field == "steps.0.steps.0.steps.0.steps.0.steps.0"
    many = {"repeat": 1, "steps": [{"send": "x"}] * MAX_STEPS}
    with pytest.raises(SpecError, match=f"more than {MAX_STEPS} steps"):
        parse_scenario({"steps": [many]})


# --- any document validates or names a step and field ------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.lists(st.integers(-1, 5), max_size=3),
)
_keys = st.sampled_from(
    ["send", "expect", "capture", "delay", "repeat", "repeat_for", "steps", "close",
     "reconnect", "match", "encoding", "framing", "length", "timeout", "bogus"]
)  # fmt: skip
_steps = st.recursive(
    st.dictionaries(_keys, _values, max_size=4),
    lambda inner: st.dictionaries(
        _keys, st.one_of(_values, st.lists(inner, max_size=3)), max_size=4
    ),
    max_leaves=12,
)


@given(st.one_of(st.dictionaries(st.sampled_from(["steps", "name", "max_reply", "x"]),
                                 st.one_of(_values, st.lists(_steps, max_size=4)), max_size=3),
                 _values))  # fmt: skip
def test_any_document_validates_or_names_a_step_and_field(doc: Any) -> None:
    try:
        program = parse_scenario(doc)
    except SpecError as exc:
        assert exc.message
        if exc.field is not None:
            assert exc.message.startswith(exc.field + ": ")
            top = exc.field.split(".")[0]
            assert top in ("steps", "name", "max_reply", "x", "scenario")
    else:
        assert program.code
        conv = Conversation(program, 1, random.Random(1))
        play(conv, [b"reply\n"] * 4)  # never raises
