"""The bad answers a hostile peer plays (tests/hostile_peer.py), one :class:`Kind` each.

Each kind spoils one of the calls a lab makes to a peer: the listeners poll, the
connections poll, creating a run (``POST /api/runs``) or following it (``GET
/api/runs/ID``), and says which word the lab's reason must hold. The answers are raw bytes
(so they can break HTTP itself) or small coroutines that write them slowly or forever.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

RUN_ID = "0123456789ab"
BIG = 40 * 1024 * 1024  # 40 MB: the size that once raised a lab's memory by 330 MB
Play = Callable[[trio.SocketStream], Awaitable[None]]


def listener(**changes: Any) -> dict[str, Any]:
    """A listener document as the API documents it (``changes`` spoil it)."""
    doc: dict[str, Any] = {
        "id": "l1",
        "protocol": "tcp",
        "host": "127.0.0.1",
        "port": 9000,
        "mode": "echo",
        "url": "tcp://127.0.0.1:9000?mode=echo",
        "options": {},
        "connections": 0,
        "accepted": 0,
        "rejected": 0,
        "idle_closed": 0,
        "closed_by_api": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "msgs_in": 0,
        "msgs_out": 0,
        "errors": 0,
        "oversized": 0,
        "max_connections": 1000,
        "idle_timeout": 300.0,
        "max_message_size": 65536,
        "started_at": 1.0,
    }
    doc.update(changes)
    return doc


def run_doc(**changes: Any) -> dict[str, Any]:
    """A finished run's document as the API documents it (``changes`` spoil it)."""
    summary = {
        "sent": 1,
        "received": 1,
        "bytes_sent": 64,
        "bytes_received": 64,
        "lost": 0,
        "loss_pct": 0.0,
        "late": 0,
        "duplicates": 0,
        "reordered": 0,
        "jitter_ms": None,
        "send_lateness_ms": None,
        "errors": 0,
        "errors_by_kind": {},
        "connections_opened": 1,
        "elapsed": 0.1,
        "send_seconds": 0.1,
        "msgs_per_s": 10.0,
        "sent_per_s": 10.0,
        "bits_per_s": 5120.0,
        "bits_per_s_received": 5120.0,
        "rtt_ms": {"min": 0.1, "p50": 0.1, "p99": 0.1, "max": 0.1},
        "histogram": [[0.1, 1]],
        "reply": None,
        "bottleneck": None,
        "remote": None,
    }
    doc: dict[str, Any] = {
        "id": RUN_ID,
        "status": "finished",
        "spec": {"pattern": "pingpong", "target": "tcp://127.0.0.1:9000", "count": 1},
        "summary": summary,
        "error": None,
        "created_at": 1.0,
        "started_at": 1.0,
        "ended_at": 1.1,
        "series": [],
    }
    doc.update(changes)
    return doc


def response(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: tuple[str, ...] = (),
    length: int | None = None,
) -> bytes:
    """The raw bytes of one HTTP/1.1 answer (``length`` may lie about the body)."""
    lines = [
        f"HTTP/1.1 {status} Whatever",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def good_json(doc: Any, status: int = 200) -> bytes:
    return response(status, json.dumps(doc).encode())


# ---- ways to answer badly ------------------------------------------------------------


def sends(data: bytes) -> Play:
    async def play(stream: trio.SocketStream) -> None:
        await stream.send_all(data)

    return play


def streams_forever(head: bytes, chunk: bytes) -> Play:
    """A head, then ``chunk`` again and again (up to BIG bytes), as fast as it is taken."""

    async def play(stream: trio.SocketStream) -> None:
        await stream.send_all(head)
        for _ in range(BIG // len(chunk) + 1):
            await stream.send_all(chunk)

    return play


def trickles(head: bytes, data: bytes, interval: float = 0.05) -> Play:
    """``head`` at once, then ``data`` one byte every ``interval`` seconds."""

    async def play(stream: trio.SocketStream) -> None:
        await stream.send_all(head)
        for byte in data:
            await stream.send_all(bytes([byte]))
            await trio.sleep(interval)
        await trio.sleep_forever()

    return play


async def says_nothing(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def hangs_up(stream: trio.SocketStream) -> None:
    return


@functools.cache
def bomb(wbits: int, size: int = 200 * 1024 * 1024) -> bytes:
    """``{"items": [`` and ``size`` bytes of whitespace ``]}``, compressed about 1,000 to 1.

    Made in milliseconds, not seconds: each 1 MiB block is compressed after a full flush,
    which resets the compressor, so every block after the first compresses to the same
    bytes, which are repeated. ``wbits`` is 31 for gzip, 15 for zlib (HTTP's deflate).
    """
    block, head, tail = b" " * (1024 * 1024), b'{"items": [', b"]}"
    count = size // len(block)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = packer.compress(head + block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH) == again
    deflated = first + again * (count - 1) + packer.compress(tail) + packer.flush()
    check = zlib.crc32 if wbits > zlib.MAX_WBITS else zlib.adler32
    value = check(head, 0 if check is zlib.crc32 else 1)
    for _ in range(count):
        value = check(block, value)
    value = check(tail, value)
    if wbits > zlib.MAX_WBITS:  # gzip: header, deflate, CRC-32 and size (RFC 1952)
        length = (len(head) + count * len(block) + len(tail)) % 2**32
        trailer = value.to_bytes(4, "little") + length.to_bytes(4, "little")
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + deflated + trailer
    return b"\x78\xda" + deflated + value.to_bytes(4, "big")  # zlib (RFC 1950)


def gzipped(doc: Any) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(json.dumps(doc).encode()) + packer.flush()


def encoded(body: bytes, coding: str) -> bytes:
    return response(200, body, headers=(f"Content-Encoding: {coding}",))


def _bomb_answer(wbits: int, coding: str) -> Play:
    async def play(stream: trio.SocketStream) -> None:
        await stream.send_all(encoded(bomb(wbits), coding))

    return play


def _items(count: int) -> bytes:
    """``{"items": [{}, {}, ...]}``: ``count`` empty objects where listeners belong."""
    return response(200, b'{"items": [' + b",".join([b"{}"] * count) + b"]}")


HTML = b"<!doctype html><html><body><h1>It works!</h1></body></html>"
DEEP = 10_000  # under the bound on arrays and objects: the depth bound refuses it


@dataclass(frozen=True)
class Kind:
    """One bad answer: its name, the call it spoils, a word of the reason the lab gives."""

    name: str
    call: str
    reason: str
    play: Play


KINDS = [
    # The listeners poll, every two seconds with no user action.
    Kind(
        "deep_array", "listeners", "nested deeper", sends(response(200, b"[" * DEEP + b"]" * DEEP))
    ),
    Kind(
        "deep_object",
        "listeners",
        "nested deeper",
        sends(response(200, b'{"items": [' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"]}")),
    ),
    Kind("top_level_list", "listeners", "ListenerList", sends(good_json([listener()]))),
    Kind("null", "listeners", "ListenerList", sends(response(200, b"null"))),
    Kind("html", "listeners", "not JSON", sends(response(200, HTML, content_type="text/html"))),
    Kind(
        "huge_chunked",
        "listeners",
        "larger than",
        streams_forever(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"10000\r\n" + b" " * 0x10000 + b"\r\n",
        ),
    ),
    Kind(
        "huge_declared",
        "listeners",
        "declares",
        streams_forever(response(200, b"", length=BIG), b" " * 65536),
    ),
    Kind("gzip_bomb", "listeners", "once decoded", _bomb_answer(16 + zlib.MAX_WBITS, "gzip")),
    Kind("deflate_bomb", "listeners", "once decoded", _bomb_answer(zlib.MAX_WBITS, "deflate")),
    Kind("brotli", "listeners", "content coding 'br'", sends(encoded(b"\x1b\x00", "br"))),
    Kind(
        "stacked_codings",
        "listeners",
        "content coding",
        sends(encoded(gzipped({"items": []}), "gzip, gzip")),
    ),
    Kind("corrupt_gzip", "listeners", "corrupt", sends(encoded(b"not gzip at all", "gzip"))),
    Kind(
        "truncated_gzip",
        "listeners",
        "truncated",
        sends(encoded(gzipped({"items": [listener()] * 50})[:200], "gzip")),
    ),
    Kind(
        "truncated",
        "listeners",
        "broke off",
        sends(response(200, b'{"items": [', length=1000)),
    ),
    Kind(
        "truncated_chunked",
        "listeners",
        "broke off",
        sends(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"400\r\n" + b'{"items": ['
        ),
    ),
    Kind("no_answer", "listeners", "no answer within", says_nothing),
    Kind(
        "trickled_body",
        "listeners",
        "no whole answer within",
        trickles(response(200, b"", length=100_000), b" " * 100_000),
    ),
    Kind(
        "trickled_headers",
        "listeners",
        "no answer within",
        trickles(b"", response(200, b'{"items": []}')),
    ),
    Kind(
        "redirect",
        "listeners",
        "redirected",
        sends(response(302, b"", headers=("Location: http://127.0.0.1:1/steal-the-token",))),
    ),
    Kind(
        "wrong_types",
        "listeners",
        "ListenerList",
        sends(good_json({"items": [listener(port="eighty", protocol=5)]})),
    ),
    Kind("port_zero", "listeners", "ListenerList", sends(good_json({"items": [listener(port=0)]}))),
    Kind(
        "port_70000",
        "listeners",
        "ListenerList",
        sends(good_json({"items": [listener(port=70000, protocol="udp")]})),
    ),
    Kind(
        "server_error_html",
        "listeners",
        "answered 500",
        sends(response(500, HTML, content_type="text/html")),
    ),
    Kind(
        "unauthorized",
        "listeners",
        "--peer-token",
        sends(response(401, b'{"error": "a token is needed", "field": "Authorization"}')),
    ),
    Kind(
        "invalid_utf8", "listeners", "not JSON", sends(response(200, b'{"items": [], "x": "\xff"}'))
    ),
    Kind(
        "nan",
        "listeners",
        "NaN is not JSON",
        sends(response(200, json.dumps({"items": [listener(idle_timeout=float("nan"))]}).encode())),
    ),
    Kind(
        "lone_surrogate",
        "listeners",
        "surrogate",
        sends(
            response(
                200,
                b'{"items": ['
                + json.dumps(listener(host="X")).encode().replace(b'"X"', b'"\\ud800"')
                + b"]}",
            )
        ),
    ),
    Kind(
        "huge_integer",
        "listeners",
        "not JSON",
        sends(response(200, b'{"items": [], "total": 1' + b"0" * 100_000 + b"}")),
    ),
    Kind("unknown_field", "listeners", "unknown", sends(good_json({"items": [], "admin": True}))),
    # Under the value bound: validation stops at the first bad item (lists fail fast).
    Kind("many_bad_items", "listeners", "ListenerList", sends(_items(15_000))),
    # Two MiB of empty objects would be 40 MB once parsed: refused before parsing.
    Kind("too_many_objects", "listeners", "arrays and objects", sends(_items(600_000))),
    Kind(
        "too_many_values",
        "listeners",
        "JSON values",
        sends(response(200, b'{"items": [], "x": [' + b",".join([b"0"] * 200_000) + b"]}")),
    ),
    Kind(
        "huge_headers",
        "listeners",
        "no HTTP answer",
        sends(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 1_000_000 + b"\r\n\r\n"),
    ),
    Kind("not_http", "listeners", "no HTTP answer", sends(b"SSH-2.0-OpenSSH_9.2\r\n" * 10)),
    Kind("hangs_up", "listeners", "no HTTP answer", hangs_up),
    # The connections poll, right after a good listeners poll.
    Kind(
        "connections_wrong_types",
        "connections",
        "ConnectionPage",
        sends(good_json({"items": "none", "total": 0, "offset": 0, "limit": 100})),
    ),
    # Starting a run on the peer: the answer to POST /api/runs.
    Kind(
        "run_id_crlf",
        "create",
        "not a run id",
        sends(good_json({"id": "abc\r\nX-Evil: 1", "status": "running"}, 201)),
    ),
    Kind(
        "run_id_query",
        "create",
        "not a run id",
        sends(good_json({"id": "abc?admin=1", "status": "running"}, 201)),
    ),
    Kind("create_list", "create", "RunRef", sends(good_json([], 201))),
    # Following it: the answers to GET /api/runs/ID.
    Kind("follow_list", "follow", "RunDoc", sends(good_json([run_doc()]))),
    Kind("follow_html", "follow", "not JSON", sends(response(200, HTML, content_type="text/html"))),
    Kind(
        "follow_nested",
        "follow",
        "nested deeper",
        sends(response(200, b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
    ),
    Kind("follow_wrong_status", "follow", "RunDoc", sends(good_json(run_doc(status="exploded")))),
    Kind(
        "follow_huge_series",
        "follow",
        "2,097,152",
        sends(good_json(run_doc(series=[{"t": 1.0, "pad": "x" * 1000}] * 3000))),
    ),
]
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}
