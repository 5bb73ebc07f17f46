import random
import re
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SpecError
from app.wire.rules import (
    MATCH_KINDS,
    FrameTooLongError,
    LineFramer,
    Responder,
    Rule,
    RuleError,
)

NOW = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


def reply(rule: Rule, message: bytes, counter: int = 1, seed: int = 0) -> bytes | None:
    return rule.reply_to(message, counter=counter, now=NOW, rng=random.Random(seed))


@pytest.mark.parametrize(
    ("kind", "pattern", "message", "matches"),
    [
        ("exact", "PING", b"PING", True),
        ("exact", "PING", b"PING\n", False),
        ("exact", "PING", b"ping", False),
        ("exact", r"PING\r\n", b"PING\r\n", True),
        ("prefix", "GET ", b"GET /index.html", True),
        ("prefix", "GET ", b"POST / GET ", False),
        ("prefix", "GET ", b"GET", False),
        ("contains", "err", b"an error happened", True),
        ("contains", "err", b"all good", False),
        ("contains", r"\x00\xff", b"ab\x00\xffcd", True),
        ("suffix", r"\r\n", b"hello\r\n", True),
        ("suffix", r"\r\n", b"hello\n", False),
        ("regex", r"^HELO \w+$", b"HELO mail", True),
        ("regex", r"^HELO \w+$", b"EHLO mail", False),
        ("regex", r"\d{3}", b"code 404 here", True),  # search, not match
        ("regex", r"\x00\xff", b"ab\x00\xffcd", True),  # regexes work on raw bytes
        ("regex", r"(?i)ping", b"PiNg", True),
        ("exact", "héllo", "héllo".encode(), True),
    ],
)
def test_each_match_kind_on_text(kind: str, pattern: str, message: bytes, matches: bool) -> None:
    rule = Rule.from_dict({"match": kind, "pattern": pattern, "reply": "ok"})
    assert rule.matches(message) is matches
    assert reply(rule, message) == (b"ok" if matches else None)


@pytest.mark.parametrize(
    ("kind", "pattern", "message", "matches"),
    [
        ("exact", "de ad be ef", b"\xde\xad\xbe\xef", True),
        ("exact", "DEADBEEF", b"\xde\xad\xbe\xef\x00", False),
        ("prefix", "0x1603", b"\x16\x03\x01\x02", True),
        ("prefix", "16 03", b"\x15\x03", False),
        ("contains", "00:ff", b"ab\x00\xffcd", True),
        ("contains", "00:ff", b"ab\x00\xfe", False),
        ("suffix", "0d 0a", b"hi\r\n", True),
        ("suffix", "0d 0a", b"hi\n", False),
    ],
)
def test_each_match_kind_on_hex(kind: str, pattern: str, message: bytes, matches: bool) -> None:
    rule = Rule.from_dict({"match": kind, "pattern": pattern, "reply": "4f 4b", "encoding": "hex"})
    assert rule.matches(message) is matches
    assert reply(rule, message) == (b"OK" if matches else None)


@pytest.mark.parametrize(
    ("pattern", "template", "message", "expected"),
    [
        (r"^GET (\S+)", "you asked for {1}", b"GET /a HTTP/1.0", b"you asked for /a"),
        (r"(\w+)=(\w+)", "{2}={1}", b"key=value", b"value=key"),
        (r"(?P<user>\w+)@(?P<host>\w+)", "{host}:{user}", b"ann@box", b"box:ann"),
        (r"(?P<user>\w+)@", "{1}/{user}", b"ann@", b"ann/ann"),
        (r"\d+", "[{0}]", b"id 42!", b"[42]"),
        (r"a(b)?c", "<{1}>", b"ac", b"<>"),  # an unmatched group is empty
        (r"(.)", "{1}", b"\xff", b"\xff"),  # captures stay raw bytes
        (r"(\d)(\d)(\d)(\d)(\d)(\d)(\d)(\d)(\d)(\d)", "{10}{1}", b"1234567890", b"01"),
    ],
)
def test_regex_captures_fill_the_template(
    pattern: str, template: str, message: bytes, expected: bytes
) -> None:
    rule = Rule("regex", pattern, template)
    assert reply(rule, message) == expected


def test_counter_macro_is_the_hit_number() -> None:
    rule = Rule("exact", "x", "hit {counter}")
    assert reply(rule, b"x", counter=7) == b"hit 7"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.0, b"1970-01-01T00:00:00.000Z"),
        (NOW, b"2023-11-14T22:13:20.250Z"),
        (951_782_400.999, b"2000-02-29T00:00:00.999Z"),
    ],
)
def test_time_macro_is_iso_8601_utc(now: float, expected: bytes) -> None:
    rule = Rule("exact", "x", "{time}")
    assert rule.reply_to(b"x", counter=1, now=now, rng=random.Random(0)) == expected


def test_unix_macro_is_whole_seconds() -> None:
    assert reply(Rule("exact", "x", "{unix}"), b"x") == b"1700000000"


def test_random_macros_come_from_the_injected_source() -> None:
    source = random.Random(42)
    number = source.getrandbits(32)
    digits = source.getrandbits(4 * 12)
    rule = Rule("exact", "x", "{random} {random:12}")
    assert reply(rule, b"x", seed=42) == f"{number} {digits:012x}".encode()


@pytest.mark.parametrize("digits", [1, 5, 64, 1024])
def test_random_hex_macro_has_exactly_n_hex_digits(digits: int) -> None:
    out = reply(Rule("exact", "x", f"{{random:{digits}}}"), b"x", seed=digits)
    assert out is not None
    assert len(out) == digits
    int(out, 16)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{counter}}", b"{counter}"),
        ("{{{counter}}}", b"{3}"),
        ("}}{{", b"}{"),
        (r"line\r\n", b"line\r\n"),
        (r"tab\there", b"tab\there"),
        (r"back\\slash", b"back\\slash"),
        (r"\x00\xff{counter}\x41", b"\x00\xff3A"),
        ("", b""),
        ("é", "é".encode()),
    ],
)
def test_text_templates_have_escapes_and_literal_braces(template: str, expected: bytes) -> None:
    assert reply(Rule("exact", "x", template), b"x", counter=3) == expected


def test_hex_templates_mix_raw_bytes_and_macros() -> None:
    rule = Rule("exact", "01", "02 {counter} 0d0a {{", encoding="hex")
    assert reply(rule, b"\x01", counter=12) == b"\x0212\r\n{"


def test_first_matching_rule_wins_and_counts_its_hits() -> None:
    responder = Responder(
        [
            Rule("prefix", "GET", "get #{counter}"),
            Rule("contains", "E", "has E #{counter}"),
            Rule("regex", ".", "any #{counter}"),
        ]
    )
    answers = [responder.respond(m, NOW) for m in [b"GET /", b"PUT E", b"GET", b"x", b""]]
    assert answers == [b"get #1", b"has E #1", b"get #2", b"any #1", None]
    assert responder.hits() == [2, 1, 1]
    assert responder.default_hits == 0


def test_default_reply_answers_the_rest_with_its_own_counter() -> None:
    responder = Responder([Rule("exact", "ping", "pong {counter}")], "what? {counter} {unix}")
    answers = [responder.respond(m, NOW) for m in [b"ping", b"x", b"ping", b"y"]]
    assert answers == [b"pong 1", b"what? 1 1700000000", b"pong 2", b"what? 2 1700000000"]
    assert responder.hits() == [2]
    assert responder.default_hits == 2


def test_no_match_and_no_default_reply_means_silence() -> None:
    responder = Responder([Rule("exact", "ping", "pong")])
    assert responder.respond(b"pong", NOW) is None
    assert responder.hits() == [0]


def test_default_reply_can_be_hex() -> None:
    responder = Responder([], "ff {counter}", default_encoding="hex")
    assert responder.respond(b"", NOW) == b"\xff1"


def test_responder_random_is_deterministic_given_a_seed() -> None:
    def run() -> list[bytes | None]:
        responder = Responder([], "{random:8}", rng=random.Random(5))
        return [responder.respond(b"x", NOW) for _ in range(3)]

    first = run()
    assert first == run()
    assert len(set(first)) == 3


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"pattern": "a", "reply": "b"}, "match", "match is required"),
        ({"match": "glob", "pattern": "a", "reply": "b"}, "match", "one of exact"),
        ({"match": "exact", "reply": "b"}, "pattern", "required"),
        ({"match": "exact", "pattern": "a"}, "reply", "required"),
        ({"match": "exact", "pattern": 1, "reply": "b"}, "pattern", "must be a string"),
        ({"match": "exact", "pattern": "a", "reply": "b", "encoding": "b64"}, "encoding", "hex"),
        ({"match": "exact", "pattern": "a", "reply": "b", "colour": "red"}, "colour", "unknown"),
        ({"match": "exact", "pattern": "", "reply": "b"}, "pattern", "empty"),
        ({"match": "regex", "pattern": "", "reply": "b"}, "pattern", "empty"),
        ({"match": "exact", "pattern": " ", "reply": "b", "encoding": "hex"}, "pattern", "empty"),
        ({"match": "exact", "pattern": "abc", "reply": "b", "encoding": "hex"}, "pattern", "odd"),
        ({"match": "exact", "pattern": r"a\q", "reply": "b"}, "pattern", r"unknown escape \q"),
        ({"match": "regex", "pattern": "(", "reply": "b"}, "pattern", "not a valid regex"),
        ({"match": "regex", "pattern": "a{2,1}", "reply": "b"}, "pattern", "not a valid regex"),
        ({"match": "regex", "pattern": "\ud800", "reply": "b"}, "pattern", "Unicode"),
        ({"match": "exact", "pattern": "a", "reply": "{"}, "reply", "never closed"),
        ({"match": "exact", "pattern": "a", "reply": "x}"}, "reply", "lone '}' at offset 1"),
        ({"match": "exact", "pattern": "a", "reply": "{}"}, "reply", "unknown field {}"),
        ({"match": "exact", "pattern": "a", "reply": "{date}"}, "reply", "not a macro"),
        ({"match": "exact", "pattern": "a", "reply": "{1}"}, "reply", "need a regex rule"),
        ({"match": "regex", "pattern": "(a)", "reply": "{2}"}, "reply", "no group {2}"),
        ({"match": "regex", "pattern": "a", "reply": "{name}"}, "reply", "no group {name}"),
        ({"match": "exact", "pattern": "a", "reply": "{random:0}"}, "reply", "from 1 to"),
        ({"match": "exact", "pattern": "a", "reply": "{random:x}"}, "reply", "from 1 to"),
        ({"match": "exact", "pattern": "a", "reply": "{random:1025}"}, "reply", "from 1 to"),
        ({"match": "exact", "pattern": "a", "reply": "{random:²}"}, "reply", "from 1 to"),
        ({"match": "exact", "pattern": "a", "reply": "{²}"}, "reply", "unknown field"),
        ({"match": "exact", "pattern": "a", "reply": "{random:99999}"}, "reply", "from 1 to"),
        (
            {"match": "exact", "pattern": "a", "reply": "{random:" + "9" * 5000 + "}"},
            "reply",
            "1 to",
        ),
        (
            {"match": "regex", "pattern": "(a)", "reply": "{" + "9" * 5000 + "}"},
            "reply",
            "no group",
        ),
        ({"match": "exact", "pattern": "a", "reply": "{" + "9" * 5000 + "}"}, "reply", "a regex"),
        ({"match": "regex", "pattern": "(" * 5000 + ")" * 5000, "reply": ""}, "pattern", "regex"),
        ({"match": "exact", "pattern": "a", "reply": "{time:x}"}, "reply", "unknown field"),
        ({"match": "exact", "pattern": "a", "reply": "{a b}"}, "reply", "unknown field"),
        ({"match": "exact", "pattern": "a", "reply": r"ok {counter} \x4"}, "reply", "offset 13"),
        ({"match": "exact", "pattern": "a", "reply": "ok\\{counter}"}, "reply", "offset 2"),
        (
            {"match": "exact", "pattern": "61", "reply": "0{counter}1", "encoding": "hex"},
            "reply",
            "odd",
        ),
        (
            {"match": "regex", "pattern": "(?P<time>.)", "reply": "{time}"},
            "reply",
            "both a macro and a regex group",
        ),
    ],
)
def test_bad_rules_raise_rule_error_naming_the_field(
    data: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RuleError) as caught:
        Rule.from_dict(data)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_rule_error_is_a_value_error_and_a_spec_error() -> None:
    with pytest.raises(RuleError) as caught:
        Rule("exact", "", "x")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, SpecError)
    assert caught.value.to_dict() == {"error": "pattern is empty", "field": "pattern"}


def test_the_constructor_validates_like_from_dict() -> None:
    with pytest.raises(RuleError) as caught:
        Rule("glob", "a", "b")  # type: ignore[arg-type]
    assert caught.value.field == "match"


def test_a_rule_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(RuleError) as caught:
        Rule.from_dict(["exact", "a", "b"])  # type: ignore[arg-type]
    assert caught.value.field is None


def test_a_bad_default_reply_is_refused_when_the_responder_is_built() -> None:
    with pytest.raises(RuleError) as caught:
        Responder([], "hello {1}")
    assert caught.value.field == "default_reply"


def test_a_group_named_like_a_macro_is_fine_when_the_template_does_not_use_it() -> None:
    rule = Rule("regex", "(?P<time>.)", "{counter}")
    assert reply(rule, b"a", counter=2) == b"2"


def test_rules_round_trip_through_their_json_form() -> None:
    data = {"match": "suffix", "pattern": "0a", "reply": "{counter}", "encoding": "hex"}
    rule = Rule.from_dict(data)
    assert rule.to_dict() == data
    assert Rule.from_dict(rule.to_dict()) == rule
    assert Rule.from_dict({**data, "encoding": None}).encoding == "text"


@pytest.mark.parametrize(
    ("stream", "lines", "pending"),
    [
        (b"", [], b""),
        (b"one\n", [b"one"], b""),
        (b"one\r\ntwo\n", [b"one", b"two"], b""),
        (b"one\ntwo", [b"one"], b"two"),
        (b"\n\r\n", [b"", b""], b""),
        (b"a\rb\n", [b"a\rb"], b""),
        (b"a\r\r\n", [b"a\r"], b""),
        (b"ab\r", [], b"ab\r"),
        (b"12345678\n", [b"12345678"], b""),
        (b"12345678\r\n", [b"12345678"], b""),
        (b"12345678\r", [], b"12345678\r"),
    ],
)
def test_line_framer_gives_the_same_lines_whole_and_byte_by_byte(
    stream: bytes, lines: list[bytes], pending: bytes
) -> None:
    whole = LineFramer(max_line=8)
    assert whole.feed(stream) == lines
    assert whole.pending == pending
    by_byte = LineFramer(max_line=8)
    assert [line for i in range(len(stream)) for line in by_byte.feed(stream[i : i + 1])] == lines
    assert by_byte.pending == pending


@pytest.mark.parametrize(
    "stream", [b"ok\n123456789\n", b"ok\n123456789", b"ok\n12345678\r\r\n", b"ok\n123456789\r"]
)
def test_line_framer_refuses_a_line_past_max_line(stream: bytes) -> None:
    framer = LineFramer(max_line=8)
    with pytest.raises(FrameTooLongError) as caught:
        framer.feed(stream)
    assert caught.value.lines == [b"ok"]
    assert caught.value.max_line == 8
    with pytest.raises(FrameTooLongError):
        framer.feed(b"\n")


def test_line_framer_refuses_early_without_waiting_for_the_newline() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"1234") == []
    with pytest.raises(FrameTooLongError) as caught:
        framer.feed(b"5")
    assert caught.value.lines == []


def test_line_framer_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)


# Property tests

rule_fields = st.sampled_from(["match", "pattern", "reply", "encoding", "other"])
rule_values = st.one_of(
    st.sampled_from([*MATCH_KINDS, "text", "hex", "{counter}", "{1}", "(a)", "", "ab"]),
    st.text(max_size=20),
)


@given(st.dictionaries(rule_fields, rule_values))
def test_rule_from_dict_returns_a_rule_or_raises_rule_error(data: dict[str, str]) -> None:
    try:
        rule = Rule.from_dict(data)
    except RuleError as exc:
        assert exc.field in (*data, "match", "pattern", "reply", None)
    else:
        assert Rule.from_dict(rule.to_dict()) == rule


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=20)))
def test_rule_from_dict_on_arbitrary_dicts_raises_only_rule_error(data: dict[str, str]) -> None:
    try:
        Rule.from_dict(data)
    except RuleError:
        pass


templates = st.lists(
    st.sampled_from(
        [
            "{",
            "}",
            "{{",
            "}}",
            "{1}",
            "{0}",
            "{w}",
            "{counter}",
            "{time}",
            "{unix}",
            "{random}",
            "{random:3}",
            "\\",
            "\\x",
            "\\x4",
            "1",
            "a",
            "0x",
            "f",
            " ",
            ":",
        ]
    )
).map("".join)


@given(templates, st.sampled_from(["text", "hex"]))
def test_templates_compile_or_raise_rule_error(template: str, encoding: str) -> None:
    try:
        rule = Rule("regex", "(?P<w>a)?", template, encoding)  # type: ignore[arg-type]
    except RuleError as exc:
        assert exc.field == "reply"
    else:
        assert isinstance(reply(rule, b"a"), bytes)


responders = st.lists(
    st.builds(
        lambda kind, pattern, template: (kind, pattern, template),
        st.sampled_from(MATCH_KINDS),
        st.sampled_from(["a", "(a)(b)?", "^x", r"\x00", "ff", "(?P<n>.)"]),
        st.sampled_from(["{counter}", "{1}", "{n}", "{0}{random:4}{time}", "r"]),
    ),
    max_size=4,
)


@given(responders, st.lists(st.binary(max_size=20), max_size=10))
def test_respond_never_raises_on_arbitrary_bytes(
    specs: list[tuple[str, str, str]], messages: list[bytes]
) -> None:
    rules = []
    for kind, pattern, template in specs:
        try:
            rules.append(Rule.from_dict({"match": kind, "pattern": pattern, "reply": template}))
        except RuleError:
            continue
    responder = Responder(rules, "default {counter}", rng=random.Random(0))
    for message in messages:
        answer = responder.respond(message, NOW)
        assert isinstance(answer, bytes)
    assert sum(responder.hits()) + responder.default_hits == len(messages)


def _frame(framer: LineFramer, chunks: list[bytes]) -> tuple[list[bytes], bool, bytes]:
    lines: list[bytes] = []
    try:
        for chunk in chunks:
            lines += framer.feed(chunk)
    except FrameTooLongError as exc:
        return lines + exc.lines, True, b""
    return lines, False, framer.pending


@given(
    st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"\x00"])).map(b"".join)
    | st.binary(),
    st.integers(1, 6),
    st.data(),
)
def test_line_framer_byte_by_byte_or_in_any_chunks_equals_whole(
    stream: bytes, max_line: int, data: st.DataObject
) -> None:
    whole = _frame(LineFramer(max_line), [stream])
    by_byte = _frame(LineFramer(max_line), [stream[i : i + 1] for i in range(len(stream))])
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)))))
    bounds = [0, *cuts, len(stream)]
    chunked = _frame(LineFramer(max_line), [stream[a:b] for a, b in pairwise(bounds)])
    assert by_byte == whole
    assert chunked == whole
    if not whole[1]:
        assert b"\n".join([*whole[0], whole[2]]) == stream.replace(b"\r\n", b"\n")


# Regexes are RE2: linear time, so no message can stall the loop.

# Python's backtracking re took 6 s on the first pattern at 27 bytes, doubling per byte.
REDOS_LINE = b"a" * 28 + b"!"


@pytest.mark.parametrize(
    ("pattern", "message", "expected"),
    [
        (r"(a+)+$", REDOS_LINE, None),
        (r"^(a|aa)+$", REDOS_LINE, None),
        (r"^(a|a?)+$", REDOS_LINE, None),
        (r"(\w+\s?)*!x", REDOS_LINE, None),
        (r"^(a|aa)+$", b"a" * 40, b"<a>"),  # {1} is the last repetition, as in Python
        (r"(a+)+!", REDOS_LINE, b"<" + b"a" * 28 + b">"),
    ],
)
def test_catastrophic_patterns_answer_a_hostile_line(
    pattern: str, message: bytes, expected: bytes | None
) -> None:
    assert reply(Rule("regex", pattern, "<{1}>"), message) == expected


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"(a)\1", "backreferences are not supported"),
        (r"(?P<x>a)(?P=x)", "backreferences are not supported"),
        (r"a(?=b)", "lookahead is not supported"),
        (r"a(?!b)", "lookahead is not supported"),
        (r"(?<=a)b", "lookbehind is not supported"),
        (r"(?<!a)b", "lookbehind is not supported"),
        (r"(?>a+)b", "atomic groups are not supported"),
        (r"a++b", "possessive repeats are not supported"),
        (r"a*+b", "possessive repeats are not supported"),
        (r"a{2}+b", "possessive repeats are not supported"),
        (r"(?x) a b", "verbose mode (?x) is not supported"),
        (r"(a)?(?(1)b|c)", "conditionals are not supported"),
        (r"\x{100}", "not a valid regex"),  # beyond a byte
        (r"a{1001}", "not a valid regex"),
        (r"(?#note)a", "comments are not supported"),
        (r"(?a)\w", "not a valid regex: invalid perl operator: (?a"),
        ("(?P<é>a)", "not a valid regex: invalid named capture group: (?P<é>"),
        ("a{1000}" * 5, "too complex a regex: it compiles to"),
        ("(" * 5000 + ")" * 5000, "too complex a regex"),
        ("(a)" * 100_000, "too complex a regex: it needs more than RE2's 1 MiB budget"),
    ],
)
def test_patterns_re2_cannot_match_in_linear_time_are_refused(pattern: str, words: str) -> None:
    with pytest.raises(RuleError) as caught:
        Rule.from_dict({"match": "regex", "pattern": pattern, "reply": "x"})
    assert caught.value.field == "pattern"
    assert words in str(caught.value)
    assert str(caught.value).startswith("pattern is ")


@pytest.mark.parametrize(
    ("pattern", "template", "message", "expected"),
    [
        (r"^PING$", "yes", b"PING", b"yes"),
        (r"^PING$", "yes", b"PING\n", None),  # RE2's $ is the very end (Python's was not)
        (r"^PING\n?$", "yes", b"PING\n", b"yes"),
        (r"(?m)^PING$", "yes", b"PING\nmore", b"yes"),
        (r"PING\Z", "yes", b"PING", b"yes"),  # Python's \Z is RE2's \z
        (r"PING\Z", "yes", b"PING\n", None),
        (r"\\Z", "yes", b"\\Z", b"yes"),  # an escaped backslash then Z stays literal
        (r"(?<key>\w+)=", "{key}", b"k=v", b"k"),  # RE2's spelling of a named group
        (r"(?s)a.b", "yes", b"a\nb", b"yes"),
        (r"a.b", "yes", b"a\nb", None),
        (r"(?U)a+", "{0}", b"aaa", b"a"),  # RE2's ungreedy flag
        (r"(\w+)@(\w+)", "{0}", b"ann@box", b"ann@box"),  # groups compiled away, match kept
        ("(?:é)+", "{0}", "éé".encode(), "éé".encode()),  # non-ASCII stands for its UTF-8
        ("é+", "{0}", "éé".encode(), "é".encode()),  # bytes, so + repeats the last one
        (r"[\x80-\xff]+", "{0}", b"a\x80\xfe\xffb", b"\x80\xfe\xff"),
        (r"(?i)\xe9", "yes", b"\xc9", None),  # case folds ASCII only, as Python's re did
        (r"\s", "yes", b"\x0b", None),  # RE2's \s has no \v (Python's had)
    ],
)
def test_re2_syntax_on_raw_bytes(
    pattern: str, template: str, message: bytes, expected: bytes | None
) -> None:
    assert reply(Rule("regex", pattern, template), message) == expected


def test_rule_cost_is_the_regex_program_size() -> None:
    assert Rule("exact", "a", "b").cost == 0
    small = Rule("regex", "^GET (\\S+)", "{1}")
    large = Rule("regex", "x{200}", "b")
    assert 0 < small.cost < 50 < 200 <= large.cost
    assert Responder([small, large, Rule("prefix", "a", "b")]).cost == small.cost + large.cost


regex_tokens = st.sampled_from(
    [
        "a",
        "b",
        "\\x00",
        "\\xff",
        "é",
        ".",
        "[ab]",
        "[^a]",
        "\\d",
        "\\w",
        "\\s",
        "\\b",
        "*",
        "+",
        "?",
        "{2}",
        "{1,3}",
        "{1001}",
        "(",
        ")",
        "(?:",
        "(?P<n>",
        "(?P=n)",
        "(?=",
        "(?<=",
        "|",
        "^",
        "$",
        "\\Z",
        "\\z",
        "\\1",
        "\\",
        "(?i)",
        "(?m)",
        "(?x)",
        "[",
        "]",
        "{",
        "}",
    ]
)
regex_patterns = st.lists(regex_tokens, max_size=12).map("".join) | st.text(max_size=12)


@given(
    regex_patterns,
    st.sampled_from(["{0}", "{1}", "{n}", "r", "{counter}"]),
    st.lists(st.binary(max_size=40) | st.just(REDOS_LINE), max_size=5),
)
def test_regex_rules_build_or_raise_spec_error_and_never_raise_when_matching(
    pattern: str, template: str, messages: list[bytes]
) -> None:
    try:
        rule = Rule.from_dict({"match": "regex", "pattern": pattern, "reply": template})
    except SpecError as exc:
        assert isinstance(exc, RuleError)
        assert exc.field in ("pattern", "reply")
        return
    responder = Responder([rule], rng=random.Random(0))
    for message in messages:
        answer = responder.respond(message, NOW)
        assert answer is None or isinstance(answer, bytes)
        assert rule.matches(message) is (answer is not None)


common_tokens = st.sampled_from(
    [
        *("a", "b", "A", "1", "\\x00", "\\xff", "\n", ".", "[ab]", "[^a]", "\\d", "\\w", "\\b"),
        *("*", "+", "?", "*?", "+?", "{2}", "{1,3}", "(", ")", "(?:", "(?P<n>", "|", "^"),
        *("\\Z", "(?i)", "(?m)", "(?s)"),
    ]
)
short_messages = st.lists(
    st.lists(st.sampled_from([b"a", b"b", b"A", b"1", b"\n", b"\xff", b"\x00"]), max_size=8).map(
        b"".join
    )
    | st.binary(max_size=8),
    max_size=4,
)


@given(st.lists(common_tokens, min_size=1, max_size=10).map("".join), short_messages)
def test_re2_finds_what_python_re_found_on_their_common_syntax(
    pattern: str, messages: list[bytes]
) -> None:
    """Rules written for Python's re (before RE2) still match and capture the same bytes."""
    try:
        python = re.compile(pattern.encode())
    except re.error:
        return
    template = "{0}|{1}" if python.groups else "{0}"
    try:
        rule = Rule("regex", pattern, template)
    except RuleError as exc:
        assert "possessive repeats are not supported" in str(exc)  # Python 3.11 has a*+
        return
    for message in messages:
        found = python.search(message)
        expected = None
        if found is not None:
            expected = found.group(0)
            if python.groups:
                expected += b"|" + (found.group(1) or b"")
        assert reply(rule, message) == expected
