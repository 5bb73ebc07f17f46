import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.wire.payload import (
    KINDS,
    MAX_PAYLOAD_SIZE,
    PayloadError,
    make_payload,
    parse_escaped,
    parse_hex,
    to_hex,
    to_text,
)

DEADBEEF = b"\xde\xad\xbe\xef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("deadbeef", DEADBEEF),
        ("de ad be ef", DEADBEEF),
        ("DE:AD:BE:EF", DEADBEEF),
        ("de-ad-be-ef", DEADBEEF),
        ("de,ad,be,ef", DEADBEEF),
        ("de, ad, be, ef", DEADBEEF),
        ("0xde 0xad 0xbe 0xef", DEADBEEF),
        ("0xde,0xad,0xbe,0xef", DEADBEEF),
        ("0Xde 0XAD", b"\xde\xad"),
        ("0xdeadbeef", DEADBEEF),
        ("0x de ad", b"\xde\xad"),
        ("  de\tad\nbe\r\nef  ", DEADBEEF),
        ("dead beef", DEADBEEF),
        ("00 0a 0b", b"\x00\x0a\x0b"),
        ("", b""),
        (" :,- ", b""),
    ],
)
def test_parse_hex_accepts_every_usual_spelling(text: str, expected: bytes) -> None:
    assert parse_hex(text) == expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("dg", 1, "'g'"),
        ("de ad zz", 6, "'z'"),
        ("abc", 0, "odd number"),
        ("de a be", 3, "odd number"),
        ("a b", 0, "odd number"),
        ("0xabc", 0, "odd number"),
        ("de 0x0x", 6, "'x'"),
        ("de_ad", 2, "'_'"),
        ("déad", 1, "'é'"),
        ("\u0660\u0661", 0, "'\u0660'"),  # Arabic-Indic digits are not hex digits
    ],
)
def test_parse_hex_names_the_offset_of_the_problem(text: str, position: int, words: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_hex(text)
    assert caught.value.position == position
    assert f"offset {position}" in str(caught.value)
    assert words in str(caught.value)
    assert caught.value.field == "text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", b"hello"),
        ("", b""),
        (r"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"),
        (r"a\tb", b"a\tb"),
        (r"back\\slash", b"back\\slash"),
        (r"nul\0", b"nul\x00"),
        (r"\0x", b"\x00x"),
        (r"\x00\xff\x7F", b"\x00\xff\x7f"),
        (r"\xc3", b"\xc3"),
        (r"say \"hi\"", b'say "hi"'),
        (r"it\'s", b"it's"),
        ('plain "quotes"', b'plain "quotes"'),
        ("é€", "é€".encode()),
        (r"é\x41", b"\xc3\xa9A"),
    ],
)
def test_parse_escaped_turns_each_escape_into_its_byte(text: str, expected: bytes) -> None:
    assert parse_escaped(text) == expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("abc\\", 3, "ends the text"),
        (r"\q", 0, r"unknown escape \q"),
        (r"ok\N", 2, r"unknown escape \N"),
        (r"\x4", 0, "two hex digits"),
        (r"\x", 0, "two hex digits"),
        (r"\xg0", 0, "two hex digits"),
        (r"ab\x0g", 2, "two hex digits"),
        ("\\x\u0660\u0661", 0, "two hex digits"),
        (r"\012", 0, "ambiguous"),
        ("ab\ud800", 2, "UTF-8"),
    ],
)
def test_parse_escaped_names_the_offset_of_a_bad_escape(
    text: str, position: int, words: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_escaped(text)
    assert caught.value.position == position
    assert f"offset {position}" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"hello", "hello"),
        (b"\r\n\t", r"\r\n\t"),
        (b"\\", r"\\"),
        (b"\x00\x7f\x80\xff", r"\x00\x7f\x80\xff"),
        (b'"quoted"', '"quoted"'),
        ("é".encode(), r"\xc3\xa9"),
        (b"", ""),
    ],
)
def test_to_text_escapes_everything_that_is_not_printable_ascii(data: bytes, text: str) -> None:
    assert to_text(data) == text


def test_to_hex_spaces_lowercase_pairs() -> None:
    assert to_hex(DEADBEEF) == "de ad be ef"
    assert to_hex(b"") == ""


@given(st.binary())
def test_to_text_is_undone_by_parse_escaped(data: bytes) -> None:
    assert parse_escaped(to_text(data)) == data


@given(st.binary())
def test_to_hex_is_undone_by_parse_hex(data: bytes) -> None:
    assert parse_hex(to_hex(data)) == data


@given(st.text(alphabet=st.characters(codec="ascii", exclude_characters="\\")))
def test_parse_escaped_leaves_text_without_backslashes_alone(text: str) -> None:
    assert parse_escaped(text) == text.encode("ascii")


def _parses_or_raises_our_error(parse: object, text: str) -> None:
    assert callable(parse)
    try:
        result = parse(text)
    except PayloadError as exc:
        assert exc.position is not None
        assert 0 <= exc.position < len(text)
    else:
        assert isinstance(result, bytes)


# Characters that matter to the parsers, so that arbitrary text often hits a real path.
_INTERESTING = st.sampled_from(list("0123456789abcdefABCDEFxX \t:,-\\rnt0'\"g\u00e9\ud800"))
_TEXT = st.one_of(st.text(), st.lists(_INTERESTING).map("".join))


@given(_TEXT)
def test_parse_hex_parses_or_raises_our_error_never_anything_else(text: str) -> None:
    _parses_or_raises_our_error(parse_hex, text)


@given(_TEXT)
def test_parse_escaped_parses_or_raises_our_error_never_anything_else(text: str) -> None:
    _parses_or_raises_our_error(parse_escaped, text)


@given(st.binary(max_size=64))
def test_parse_hex_reads_hex_with_any_separators_between_tokens(data: bytes) -> None:
    rng = random.Random(data)
    pieces = []
    for byte in data:
        digits = rng.choice([f"{byte:02x}", f"{byte:02X}"])
        pieces.append(rng.choice(["", "0x", "0X"]) + digits)
        pieces.append(rng.choice([" ", ":", ",", "-", ", ", "\n"]))
    assert parse_hex("".join(pieces)) == data


def test_make_payload_zeros_and_random_have_the_asked_size() -> None:
    assert make_payload("zeros", 5) == bytes(5)
    assert len(make_payload("random", 100)) == 100
    assert make_payload("random", 0) == b""
    assert make_payload("zeros", 0) == b""


def test_make_payload_random_with_a_seed_is_reproducible() -> None:
    first = make_payload("random", 64, seed=7)
    assert make_payload("random", 64, seed=7) == first
    assert make_payload("random", 64, seed=8) != first


def test_make_payload_random_without_a_seed_differs_each_time() -> None:
    assert make_payload("random", 32) != make_payload("random", 32)


@pytest.mark.parametrize(
    ("kind", "size", "text", "expected"),
    [
        ("text", 7, "abc", b"abcabca"),
        ("text", 3, "abc", b"abc"),
        ("text", 2, "abc", b"ab"),
        ("text", 0, "abc", b""),
        ("text", None, r"ab\r\n", b"ab\r\n"),
        ("text", 5, r"\r\n", b"\r\n\r\n\r"),
        ("text", None, "", b""),
        ("text", 0, "", b""),
        ("hex", None, "de ad", b"\xde\xad"),
        ("hex", 5, "de ad", b"\xde\xad\xde\xad\xde"),
        ("hex", 1, "0xdeadbeef", b"\xde"),
        ("hex", 0, "de", b""),
    ],
)
def test_make_payload_repeats_text_and_hex_to_fill_the_size(
    kind: str, size: int | None, text: str, expected: bytes
) -> None:
    assert make_payload(kind, size, text=text) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "fortune"}, "kind"),
        ({"kind": "Zeros", "size": 1}, "kind"),
        ({"kind": "zeros", "size": -1}, "size"),
        ({"kind": "random", "size": MAX_PAYLOAD_SIZE + 1}, "size"),
        ({"kind": "random"}, "size"),
        ({"kind": "zeros"}, "size"),
        ({"kind": "text", "size": 4}, "text"),
        ({"kind": "hex"}, "text"),
        ({"kind": "hex", "size": 4, "text": "xyz"}, "text"),
        ({"kind": "text", "size": 4, "text": "\\"}, "text"),
        ({"kind": "text", "size": 4, "text": ""}, "text"),
        ({"kind": "hex", "size": 4, "text": " "}, "text"),
    ],
)
def test_make_payload_rejects_bad_specs_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        make_payload(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_make_payload_lists_the_known_kinds_when_the_kind_is_unknown() -> None:
    with pytest.raises(PayloadError, match="random, zeros, text, hex"):
        make_payload("nope", 1)
    assert KINDS == ("random", "zeros", "text", "hex")


@given(st.binary(min_size=1, max_size=16), st.integers(min_value=0, max_value=200))
def test_make_payload_hex_is_its_unit_repeated_and_cut_to_size(unit: bytes, size: int) -> None:
    payload = make_payload("hex", size, text=to_hex(unit))
    assert len(payload) == size
    assert all(payload[i] == unit[i % len(unit)] for i in range(size))


@pytest.mark.parametrize("text", ["\x1f", "  ", "\t\n"])
def test_hex_of_nothing_but_separators_is_refused_not_sent(text: str) -> None:
    from app.errors import SpecError
    from app.runs.spec import parse_run_spec

    body = {"target": "tcp://127.0.0.1:9", "payload": {"kind": "hex", "text": text}}
    with pytest.raises(SpecError) as caught:
        parse_run_spec(body)
    assert caught.value.field == "payload.text"
