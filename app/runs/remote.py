"""``socketlab fire --via URL``: start a run on another lab and follow it from here.

The run is created with ``POST /api/runs`` on the remote lab, then followed through its
event stream (``GET /api/events?run=ID``): one progress line a second, and the result when it
ends. The remote lab does the firing, stores the run and applies its own target policy.

What the remote lab answers is read the way a lab reads its peers (:mod:`app.peerhttp`):
each answer bounded in bytes, compressed and decoded (:class:`~app.wire.bounded.BoundedBody`)
and in time, parsed with a depth bound and checked against the model the API documents
(``RunRef``, ``RunDoc``); each line of the event stream is bounded in bytes and must come
within ``LINE_TIMEOUT`` (the stream sends a heartbeat every second). The run id is checked
before it is put in a URL, and percent-encoded there. Redirects are not followed: the
token would go with them. Anything wrong is one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPResponse
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from app.errors import SocketlabError
from app.peerhttp import (
    MAX_ERROR_BYTES,
    PeerAnswerError,
    PeerLimits,
    answer_doc,
    check_run_id,
    one_line,
    peer_path,
)
from app.peers import parse_peer
from app.runs.fire import print_result, progress_text
from app.web.run_schemas import RunDoc, RunRef
from app.web.schemas import ErrorResponse, StoppedRuns
from app.wire import jsondoc
from app.wire.bounded import BoundedBody

EXIT_OK, EXIT_FAILED = 0, 1
LIMITS = PeerLimits()
ANSWER_TIMEOUT = 30.0
# One event line (a run interval is well under a kilobyte), and how long one may take.
MAX_LINE_BYTES = 256 * 1024
LINE_TIMEOUT = 30.0
# A run lasts at most a day (the largest duration cap); the stream is followed that long.
STREAM_TIMEOUT = 86_400.0 + 120.0


class RemoteError(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is raised as an HTTPError, and refused


_OPENER = urllib.request.build_opener(_NoRedirect)


def _open(url: str, token: str | None, body: Any = None, timeout: float = 30) -> HTTPResponse:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Accept-Encoding", "gzip, deflate")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        response: HTTPResponse = _OPENER.open(request, timeout=timeout)
        return response
    except urllib.error.HTTPError as exc:
        with exc:
            detail = _error_detail(exc)
        raise RemoteError(f"{exc.code} from {url}: {detail}") from None
    except OSError as exc:
        # urllib wraps the socket's error ("<urlopen error [Errno 111] ...>"): its words.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise RemoteError(f"cannot reach {url}: {one_line(str(text))}") from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400:
        location = one_line(exc.headers.get("Location", ""), 120)
        return f"redirected to {location!r}, not followed"
    try:
        raw = BoundedBody(
            exc.headers.get("Content-Encoding"),
            max_raw=MAX_ERROR_BYTES,
            max_decoded=MAX_ERROR_BYTES,
        )
        raw.feed(exc.read(MAX_ERROR_BYTES + 1))
        return one_line(str(answer_doc(raw.finish(), ErrorResponse, LIMITS)["error"]))
    except (ValueError, OSError, PeerAnswerError):
        return one_line(str(exc.reason))


def _read_doc(response: HTTPResponse, model: type[BaseModel]) -> dict[str, Any]:
    """The answer's document as ``model`` documents it, read within the caps."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    cap = LIMITS.max_bytes
    try:
        raw = BoundedBody(response.headers.get("Content-Encoding"), max_raw=cap, max_decoded=cap)
        while chunk := response.read1(65536):
            raw.feed(chunk)
            if time.monotonic() > deadline:
                raise RemoteError(f"no whole answer within {ANSWER_TIMEOUT:g} s")
        return answer_doc(raw.finish(), model, LIMITS)
    except (ValueError, PeerAnswerError) as exc:
        raise RemoteError(f"the remote lab answered badly: {one_line(str(exc))}") from None
    except OSError as exc:
        raise RemoteError(f"the answer broke off: {one_line(str(exc))}") from None


def _events(response: HTTPResponse) -> Any:
    """The event stream's events (dicts with a string ``type``), one line at a time."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        raise RemoteError("the remote lab's event stream is encoded; it is read plain only")
    end = time.monotonic() + STREAM_TIMEOUT
    buffer = b""
    line_deadline = time.monotonic() + LINE_TIMEOUT
    while True:
        while b"\n" not in buffer:
            now = time.monotonic()
            if now > line_deadline or now > end:
                raise RemoteError(f"the event stream sent no line within {LINE_TIMEOUT:g} s")
            if len(buffer) > MAX_LINE_BYTES:
                raise RemoteError(f"an event line is longer than {MAX_LINE_BYTES:,} bytes")
            chunk = response.read1(65536)
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        line_deadline = time.monotonic() + LINE_TIMEOUT
        try:
            event = jsondoc.loads(line, max_depth=LIMITS.max_depth)
        except ValueError as exc:
            raise RemoteError(f"a bad event line: {one_line(str(exc))}") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise RemoteError("a bad event line: not an object with a type")
        yield event


def _progress(event: dict[str, Any]) -> str:
    live = event.get("live")
    try:
        return "\r" + progress_text(live if isinstance(live, dict) else {})
    except (KeyError, TypeError, ValueError):
        raise RemoteError("a bad run.interval event: its live figures are malformed") from None


def fire_via(base: str, token: str | None, body: dict[str, Any], *, as_json: bool) -> int:
    """Start ``body`` on the lab at ``base`` and stream its progress; returns the exit code.

    ``base`` is ``http://host:port``, or ``http://:TOKEN@host:port`` with the lab's token.
    """
    show = not as_json and sys.stderr.isatty()
    try:
        try:
            lab = parse_peer(base, token)
        except SocketlabError as exc:
            raise RemoteError(exc.message.replace("peer ", "--via ", 1)) from None
        base, token = lab.url, lab.token
        with _open(f"{base}/api/runs", token, body) as response:
            created = _read_doc(response, RunRef)
        try:
            run_id = check_run_id(created["id"], "id")
        except SocketlabError as exc:
            raise RemoteError(f"the remote lab answered badly: {exc.message}") from None
        events = f"{base}/api/events?run={quote(run_id, safe='')}&types=run"
        with _open(events, token, timeout=LINE_TIMEOUT) as stream:
            for event in _events(stream):
                if event["type"] == "run.interval":
                    if show:
                        sys.stderr.write(_progress(event))
                        sys.stderr.flush()
                    elif not as_json:
                        print(_progress(event).strip(), flush=True)
                elif event["type"] == "run.ended":
                    break
        if show:
            sys.stderr.write("\n")
        with _open(base + peer_path("api", "runs", run_id), token) as response:
            doc = _read_doc(response, RunDoc)
    except RemoteError as exc:
        sys.stderr.write(f"socketlab: error: {exc}\n")
        return EXIT_FAILED
    print_result(doc, as_json=as_json)
    return EXIT_OK if doc.get("status") == "finished" else EXIT_FAILED


def stop_all_via(base: str, token: str | None) -> int:
    """The kill switch of the lab at ``base``: ``POST /api/runs/stop-all``, its answer read
    like any other (bounded, checked against ``StoppedRuns``) and said in words."""
    try:
        try:
            lab = parse_peer(base, token)
        except SocketlabError as exc:
            raise RemoteError(exc.message.replace("peer ", "--url ", 1)) from None
        with _open(f"{lab.url}/api/runs/stop-all", lab.token, {}) as response:
            stopped = int(_read_doc(response, StoppedRuns)["stopped"])
    except RemoteError as exc:
        sys.stderr.write(f"socketlab: error: {exc}\n")
        return EXIT_FAILED
    print(f"stopped {stopped} run" + ("" if stopped == 1 else "s"))
    return EXIT_OK
