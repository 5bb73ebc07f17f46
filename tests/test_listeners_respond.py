"""Respond listeners: rule replies over TCP (per line, per read) and UDP, to real peers."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SpecError
from app.listeners.modes.respond import RespondSession
from app.listeners.parse import parse_listener
from app.listeners.spec import MAX_MESSAGE_SIZE
from app.wire.regex import MAX_MESSAGE_WORK
from app.wire.rules import FrameTooLongError, Responder, Rule
from tests.listener_fixtures import open_manager, read_to_eof, read_until, start

RULES = [
    {"match": "exact", "pattern": "PING", "reply": "PONG {counter}\\n"},
    {"match": "regex", "pattern": r"^GET (?P<key>\w+)", "reply": "VALUE {key} at {unix}\\n"},
    {"match": "prefix", "pattern": "de ad", "encoding": "hex", "reply": "be ef 0a"},
]


def respond_spec(url: str, **options: object) -> dict[str, object]:
    return {"url": url, "rules": RULES, "default_reply": "? {counter}\\n", **options}


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd is not installed")
async def test_nc_gets_templated_replies_over_tcp() -> None:
    async with open_manager() as manager:
        listener = await start(manager, respond_spec("tcp://127.0.0.1:0?mode=respond"))
        with trio.fail_after(10):
            # -N: shut down the sending side at the end of input, as `printf | nc` users do.
            result = await trio.run_process(
                ["nc", "-N", "127.0.0.1", str(listener.port)],
                stdin=b"PING\nGET temperature\nPING\r\nhello\n\xde\xad\xbe\n",
                capture_stdout=True,
            )
    lines = result.stdout.split(b"\n")
    assert lines[0] == b"PONG 1"
    assert re.fullmatch(rb"VALUE temperature at \d{10}", lines[1])
    assert lines[2] == b"PONG 2"  # \r\n line ends work too
    assert lines[3] == b"? 1"
    assert lines[4] == b"\xbe\xef"  # a hex rule: raw bytes in, raw bytes out
    hits = [rule["hits"] for rule in listener.to_dict()["respond"]["rules"]]
    assert hits == [2, 1, 1]
    assert listener.to_dict()["respond"]["default_hits"] == 1


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
async def test_socat_gets_templated_replies_over_udp() -> None:
    async with open_manager() as manager:
        listener = await start(manager, respond_spec("udp://127.0.0.1:0?mode=respond"))
        with trio.fail_after(10):
            # One datagram per socat run: a datagram is one message, newline included.
            outputs = []
            for message in (b"GET humidity", b"PING", b"PING"):
                result = await trio.run_process(
                    ["socat", "-t", "0.5", "-", f"UDP:127.0.0.1:{listener.port}"],
                    stdin=message,
                    capture_stdout=True,
                )
                outputs.append(result.stdout)
    assert re.fullmatch(rb"VALUE humidity at \d{10}\n", outputs[0])
    assert outputs[1:] == [b"PONG 1\n", b"PONG 2\n"]


async def test_read_framing_answers_each_read() -> None:
    spec = respond_spec("tcp://127.0.0.1:0?mode=respond&framing=read")
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"PING")  # no newline needed per read
                assert await stream.receive_some(100) == b"PONG 1\n"
                await stream.send_all(b"GET x and more")
                assert (await stream.receive_some(100)).startswith(b"VALUE x at ")


async def test_no_rule_and_no_default_reply_means_silence() -> None:
    spec = {"url": "udp://127.0.0.1:0?mode=respond", "rules": RULES[:1]}
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"nothing matches")
            await sock.send(b"PING")
            assert await sock.recv(100) == b"PONG 1\n"  # the first datagram got no reply
    assert listener.msgs_in == 2
    assert listener.msgs_out == 1


async def test_rules_file_in_toml_drives_a_tcp_listener(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'default_reply = "unknown\\n"\n'
        "[[rules]]\n"
        'match = "suffix"\n'
        'pattern = "?"\n'
        'reply = "yes\\n"\n',
        encoding="utf-8",
    )
    url = f"tcp://127.0.0.1:0?mode=respond&rules_file={rules}"
    async with open_manager() as manager:
        listener = await start(manager, url)
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as stream:
                await stream.send_all(b"ready?\nhm\n")
                assert await read_until(stream, b"unknown\n") == b"yes\nunknown\n"
                await stream.send_eof()
                assert await read_to_eof(stream) == b""


async def test_rules_file_in_json_is_a_list_of_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES[:1]), encoding="utf-8")
    async with open_manager() as manager:
        listener = await start(manager, f"udp://127.0.0.1:0?mode=respond&rules_file={rules}")
        with trio.fail_after(5), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(b"PING")
            assert await sock.recv(100) == b"PONG 1\n"


# The sans-IO session: framing of a TCP stream into messages.


def _responder() -> Responder:
    import random

    return Responder(
        [Rule.from_dict(rule) for rule in RULES], "? {counter}\\n", rng=random.Random(0)
    )


def test_a_session_answers_each_complete_line() -> None:
    session = RespondSession(_responder(), "line", max_line=100)
    assert session.feed(b"PI", 0.0) == []
    assert session.feed(b"NG\nPING\nxx", 0.0) == [b"PONG 1\n", b"PONG 2\n"]
    assert session.feed(b"\n", 0.0) == [b"? 1\n"]
    assert session.messages == 3


def test_a_session_gives_the_replies_before_a_line_that_is_too_long() -> None:
    session = RespondSession(_responder(), "line", max_line=8)
    with pytest.raises(FrameTooLongError) as caught:
        session.feed(b"PING\n" + b"x" * 20, 0.0)
    assert caught.value.lines == [b"PONG 1\n"]


stream_pieces = st.lists(
    st.sampled_from([b"PING", b"\n", b"\r\n", b"GET ", b"key", b"\xde\xad", b"x", b"?"]),
    max_size=30,
)


@given(stream_pieces, st.data())
def test_a_session_fed_whole_or_byte_by_byte_or_in_chunks_replies_the_same(
    pieces: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(pieces)
    whole = RespondSession(_responder(), "line", max_line=64).feed(stream, 1e9)
    by_byte_session = RespondSession(_responder(), "line", max_line=64)
    by_byte = [r for i in range(len(stream)) for r in by_byte_session.feed(stream[i : i + 1], 1e9)]
    chunked_session = RespondSession(_responder(), "line", max_line=64)
    chunked: list[bytes] = []
    rest = stream
    while rest:
        take = data.draw(st.integers(1, len(rest)))
        chunked += chunked_session.feed(rest[:take], 1e9)
        rest = rest[take:]
    assert by_byte == whole
    assert chunked == whole


@given(st.binary(max_size=200))
def test_a_session_on_any_bytes_replies_or_raises_only_frame_too_long(data: bytes) -> None:
    session = RespondSession(_responder(), "line", max_line=16)
    try:
        replies = session.feed(data, 1e9)
    except FrameTooLongError:
        return
    assert all(isinstance(reply, bytes) for reply in replies)


def test_nc_is_the_openbsd_one_with_shutdown_on_eof() -> None:
    # The TCP test relies on -N; the traditional netcat has no such flag.
    if shutil.which("nc") is None:
        pytest.skip("netcat-openbsd is not installed")
    result = subprocess.run(["nc", "-h"], capture_output=True, text=True, check=False)
    assert "-N" in result.stdout + result.stderr


# A hostile line against a catastrophic regex: RE2 answers it in linear time.

REDOS_RULES = [
    {"match": "exact", "pattern": "PING", "reply": "PONG\\n"},
    {"match": "regex", "pattern": r"(a+)+$", "reply": "tail {1}\\n"},
    {"match": "regex", "pattern": r"^(a|aa)+$", "reply": "all a\\n"},
]
# 29 bytes: Python's backtracking re spent 6 s on 27 of them, doubling per byte, with the
# loop blocked; the hang guard would then fail the test (a longer line would hang it).
REDOS_LINE = b"a" * 28 + b"!"


async def test_a_redos_line_is_answered_and_other_clients_are_served_meanwhile() -> None:
    spec = {"url": "tcp://127.0.0.1:0?mode=respond", "rules": REDOS_RULES, "default_reply": "?\\n"}
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(10):  # a hang guard only: the answers come at once
            attacker = await trio.open_tcp_stream("127.0.0.1", listener.port)
            other = await trio.open_tcp_stream("127.0.0.1", listener.port)
            async with attacker, other:
                await attacker.send_all(REDOS_LINE + b"\n" + b"a" * 40 + b"\n")
                await other.send_all(b"PING\n")
                assert await read_until(other, b"\n") == b"PONG\n"
                assert await read_until(attacker, b"a\n") == b"?\ntail " + b"a" * 40 + b"\n"
    hits = [rule["hits"] for rule in listener.to_dict()["respond"]["rules"]]
    assert hits == [1, 1, 0]


async def test_a_redos_datagram_is_answered() -> None:
    spec = {"url": "udp://127.0.0.1:0?mode=respond", "rules": REDOS_RULES[2:]}
    async with open_manager() as manager:
        listener = await start(manager, spec)
        with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", listener.port))
            await sock.send(REDOS_LINE)  # no reply: no rule matches and there is no default
            await sock.send(b"a" * 39)
            assert await sock.recv(100) == b"all a\n"
    assert listener.msgs_in == 2


@pytest.mark.parametrize(
    ("rules", "options", "field", "words"),
    [
        (
            [{"match": "regex", "pattern": r"(\w)\1", "reply": "x"}],
            {},
            "rules.0.pattern",
            "backref",
        ),
        (
            [REDOS_RULES[0], {"match": "regex", "pattern": "a(?=b)", "reply": "x"}],
            {},
            "rules.1.pattern",
            "lookahead is not supported",
        ),
        (
            [{"match": "regex", "pattern": "(?<!a)b", "reply": "x"}],
            {},
            "rules.0.pattern",
            "lookbehind is not supported",
        ),
        (
            [{"match": "regex", "pattern": "x{400}", "reply": "x"}],
            {},
            "rules.0.pattern",
            "set max_message_size to",
        ),
        (
            [{"match": "regex", "pattern": "x{160}", "reply": "x"}] * 2,
            {},
            "rules.1.pattern",
            "the regexes up to this rule cost",
        ),
        (
            [{"match": "regex", "pattern": "x{4000}", "reply": "x"}],
            {"max_message_size": 1},
            "rules.0.pattern",
            "not a valid regex",
        ),
    ],
)
def test_rules_re2_cannot_bound_are_refused_naming_the_rule(
    rules: list[dict[str, str]], options: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_listener({"url": "tcp://127.0.0.1:0?mode=respond", "rules": rules, **options})
    assert caught.value.field == field
    assert words in caught.value.message
    assert caught.value.message.startswith(field.removesuffix(".pattern") + ": ")


def test_a_costly_regex_is_fine_with_shorter_messages() -> None:
    rule = {"match": "regex", "pattern": "x{400}", "reply": "x"}
    cost = Rule.from_dict(rule).cost
    assert cost * MAX_MESSAGE_SIZE > MAX_MESSAGE_WORK
    size = MAX_MESSAGE_WORK // cost
    url = f"tcp://127.0.0.1:0?mode=respond&max_message_size={size}"
    spec = parse_listener({"url": url, "rules": [rule]})
    assert spec.build_responder().respond(b"x" * 400, 0.0) == b"x"
    with pytest.raises(SpecError):
        parse_listener({"url": url, "rules": [rule], "max_message_size": size + 1})
