"""Reading a peer's answer within bounds (sans-IO): bodies, run ids, paths, peer URLs."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SpecError
from app.peerhttp import PeerAnswerError, PeerLimits, answer_doc, check_run_id, one_line, peer_path
from app.peers import parse_peer
from app.settings import load_settings
from app.web.listener_schemas import ListenerList
from app.web.run_schemas import RunRef
from app.wire.bounded import BodyTooLargeError, BoundedBody

DOC = json.dumps({"items": [{"id": "x" * 100}] * 50}).encode()


def _deflated(data: bytes) -> bytes:
    return zlib.compress(data)


def _feed(body: BoundedBody, data: bytes, step: int) -> bytes:
    for start in range(0, len(data), step):
        body.feed(data[start : start + step])
    return body.finish()


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        (None, DOC),
        ("identity", DOC),
        ("gzip", gzip.compress(DOC)),
        ("GZip", gzip.compress(DOC)),
        ("x-gzip", gzip.compress(DOC)),
        ("deflate", _deflated(DOC)),
        # Several gzip members one after the other are one body (RFC 1952).
        ("gzip", gzip.compress(DOC[:100]) + gzip.compress(DOC[100:])),
    ],
)
@pytest.mark.parametrize("step", [1, 7, 65536])
def test_a_body_is_decoded_whole_fed_whole_or_byte_by_byte(
    coding: str | None, packed: bytes, step: int
) -> None:
    body = BoundedBody(coding, max_raw=1 << 20, max_decoded=1 << 20)
    assert _feed(body, packed, step) == DOC


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "gzip,identity"])
def test_a_coding_that_cannot_be_bounded_is_refused_before_the_body(coding: str) -> None:
    with pytest.raises(ValueError, match="content coding"):
        BoundedBody(coding, max_raw=100, max_decoded=100)


@pytest.mark.parametrize(("coding", "wbits"), [("gzip", 16 + zlib.MAX_WBITS), ("deflate", 15)])
def test_a_compression_bomb_stops_at_the_cap_not_at_its_size(coding: str, wbits: int) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(block) for _ in range(64)) + packer.flush()  # 64 MiB
    assert len(bomb) < 100_000
    body = BoundedBody(coding, max_raw=1 << 20, max_decoded=1 << 20)
    with pytest.raises(BodyTooLargeError, match="once decoded"):
        _feed(body, bomb, 65536)
    # Never more than the cap (and the one byte that showed it was passed) was kept.
    assert body.decoded_bytes <= (1 << 20) + 1


def test_the_raw_bytes_are_capped_too() -> None:
    body = BoundedBody(None, max_raw=10, max_decoded=1000)
    body.feed(b"0123456789")
    with pytest.raises(BodyTooLargeError, match="larger than 10 bytes"):
        body.feed(b"x")


@pytest.mark.parametrize(
    ("coding", "data", "message"),
    [
        ("gzip", b"not gzip at all", "corrupt"),
        ("deflate", b"\xff\xff\xff", "corrupt"),
        ("gzip", gzip.compress(DOC)[:50], "truncated"),
        ("deflate", _deflated(DOC)[:50], "truncated"),
        ("gzip", b"", "truncated"),
        ("deflate", _deflated(DOC) + b"junk", "after its end"),
    ],
)
def test_a_broken_compressed_body_is_a_value_error(coding: str, data: bytes, message: str) -> None:
    body = BoundedBody(coding, max_raw=1 << 20, max_decoded=1 << 20)
    with pytest.raises(ValueError, match=message):
        _feed(body, data, 16)


@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "identity"]))
def test_any_bytes_decode_or_raise_value_error(data: bytes, coding: str) -> None:
    body = BoundedBody(coding, max_raw=1000, max_decoded=1000)
    try:
        _feed(body, data, 13)
    except ValueError:
        pass


LIMITS = PeerLimits(max_values=1000, max_containers=500, max_depth=8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 20 + b"]" * 20, "nested deeper"),
        (b"<html></html>", "not JSON"),
        (b'{"items": [' + b",".join([b"{}"] * 600) + b"]}", "more than 500 arrays and objects"),
        (b'{"items": [' + b",".join([b"0"] * 2000) + b"]}", "more than 1,000 JSON values"),
        (b'{"items": [{}]}', "ListenerList"),
        (b"[]", "ListenerList"),
        (b'{"items": [], "extra": 1}', "unknown"),
        (b'{"items": NaN}', "NaN"),
        (b'{"items": "\xff"}', "not JSON"),
    ],
)
def test_an_answer_that_is_not_the_documented_document_is_refused(
    body: bytes, message: str
) -> None:
    with pytest.raises(PeerAnswerError, match=message):
        answer_doc(body, ListenerList, LIMITS)


def test_a_good_answer_is_what_the_model_dumps() -> None:
    doc = answer_doc(b'{"id": "0123456789ab", "status": "running"}', RunRef, LIMITS)
    assert doc == {"id": "0123456789ab", "status": "running"}


@pytest.mark.parametrize("run_id", ["0123456789ab", "edge-a~0123456789ab", "[::1]:8000~ab12"])
def test_run_ids_as_labs_make_them_pass(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    ["", "abc?admin=1", "abc\r\nX-Evil: 1", "a/b", "a#b", "a%2Fb", " a", "..", "a" * 200, 12, None],
)
def test_anything_else_is_not_a_run_id(run_id: object) -> None:
    with pytest.raises(SpecError, match="is not a run id"):
        check_run_id(run_id)


def test_path_parts_are_percent_encoded() -> None:
    assert peer_path("api", "runs", "a?b#c/d e") == "/api/runs/a%3Fb%23c%2Fd%20e"
    assert peer_path("api", "runs", "h~1") == "/api/runs/h~1"


@pytest.mark.parametrize(
    ("url", "default", "token", "shown"),
    [
        ("http://edge-a:8000", None, None, "http://edge-a:8000"),
        ("http://edge-a:8000", "shared", "shared", "http://edge-a:8000"),
        ("http://:own@edge-a:8000", "shared", "own", "http://edge-a:8000"),
        ("http://:@edge-a:8000", "shared", None, "http://edge-a:8000"),  # none for this one
        ("http://:a%2Bb@[::1]:8000", None, "a+b", "http://[::1]:8000"),
        ("https://edge-a", None, None, "https://edge-a"),
    ],
)
def test_a_peer_url_gives_its_own_token_or_the_default(
    url: str, default: str | None, token: str | None, shown: str
) -> None:
    peer = parse_peer(url, default)
    assert (peer.url, peer.token) == (shown, token)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://edge-a", "write http://host:port"),
        ("http://edge-a:99999", "out of range"),
        ("http://admin@edge-a:8000", "http://:TOKEN@host:port"),
        ("http://:a%0D%0Ab@edge-a:8000", "visible ASCII"),
    ],
)
def test_a_bad_peer_url_is_refused_without_echoing_its_token(url: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_peer(url, None)
    assert "a%0D" not in caught.value.message and "admin" not in caught.value.message


def test_one_line_keeps_text_printable_and_short() -> None:
    assert one_line("a\r\nb\x00c") == "a  b c"
    assert len(one_line("x" * 1000, 50)) == 50


def test_the_peers_token_and_timeout_come_from_the_config_file_or_flags(tmp_path: Path) -> None:
    config = tmp_path / "socketlab.toml"
    config.write_text('peers = ["http://edge-a:8000"]\npeer_token = "t1"\npeer_timeout = 2.5\n')
    settings = load_settings(config=str(config), environ={})
    assert (settings.peer_token, settings.peer_timeout) == ("t1", 2.5)
    flagged = load_settings(config=str(config), peer_token="t2", peer_timeout=1.0, environ={})
    assert (flagged.peer_token, flagged.peer_timeout) == ("t2", 1.0)
    assert load_settings(environ={}).peer_token is None  # not this lab's token


@pytest.mark.parametrize("timeout", [0.0, float("nan"), float("inf"), 4000.0])
def test_a_peer_timeout_out_of_range_is_refused(timeout: float) -> None:
    with pytest.raises(SpecError, match="peer-timeout"):
        load_settings(peer_timeout=timeout, environ={})
