"""Calls to a peer's API: every answer bounded in time, bytes and depth, and checked.

Theory of operation: :meth:`PeerClient.call` makes one request and returns the answer's
JSON document once the pydantic model the API documents for it (:mod:`app.web.schemas`)
has accepted it, as that model dumps it: only the documented fields, of the documented
types. Nothing a peer sends goes further unchecked:

- time: connecting is bounded by ``connect_timeout``, the status line and headers by
  ``first_byte_timeout`` and the whole answer by ``answer_timeout``. The last two are trio
  deadlines, not per-read timeouts, so a peer that trickles a byte a second still ends;
- bytes: a ``Content-Length`` over the cap is refused before the body is read; the body is
  read raw and decoded here (:class:`~app.wire.bounded.BoundedBody`), both counted, so a
  gzip bomb stops at the cap;
- shape: arrays, objects and values are counted in the raw bytes first (``max_containers``,
  ``max_values``: what a parsed document costs in memory and time is per value), then
  :func:`app.wire.jsondoc.loads` with ``max_depth``, then the model. The models' lists
  fail fast, so a huge list of bad items costs one validation error, not millions. This
  runs in a worker thread, one document at a time, so the loop keeps its turn and the
  memory bound holds however many peers answer at once;
- redirects are not followed (a peer is its URL), proxies from the environment are not
  used, the path parts of a request are percent-encoded (:func:`peer_path`) and run ids
  are checked against :data:`RUN_ID` before they are put in one.

Error handling: :class:`PeerUnreachableError` when no connection could be made (the peer is
down); :class:`PeerAnswerError` when it answered badly: too big, too slow, not HTTP, not
the documented document, a redirect, a 5xx, or a 401 (the peer is failing and the message
says how); :class:`PeerRefusedError` when it answered a documented error (another 4xx), whose
status and message are relayed. Messages are one line of printable text, cut short, since
they are shown in the dashboard and logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import trio
from pydantic import BaseModel

from app.errors import ConflictError, SocketlabError, SpecError
from app.validation import validate
from app.web.schemas import ErrorResponse
from app.wire import jsondoc
from app.wire.bounded import BoundedBody

# A run id as labs make them (12 hex digits) or name them when they follow a run elsewhere
# (``peer~id``, the peer being host or host:port): no ``/``, ``?``, ``#``, ``%``, space or
# control character, so it can never change the request it is put in.
RUN_ID = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9._:~\[\]-]{0,127}")
# An error answer is read only this far: its message is one line.
MAX_ERROR_BYTES = 64 * 1024
_MESSAGE_CHARS = 300


class PeerUnreachableError(ConflictError):
    """No connection to the peer could be made (the peer is down)."""


class PeerAnswerError(SocketlabError):
    """The peer answered, but not an answer its API documents (the peer is failing)."""

    status = 502


class PeerRefusedError(SocketlabError):
    """The peer refused the request with a documented error (relayed with its status)."""

    def __init__(self, message: str, field: str | None, status: int) -> None:
        super().__init__(message, field)
        self.status = status


@dataclass(frozen=True)
class PeerLimits:
    """How much of a peer's answer is read, and how long it is waited for.

    Args:
        max_bytes: The most bytes an answer may have, as received and once decoded.
        max_depth: The most arrays and objects nested in one another in its JSON.
        max_values: The most values in its JSON (an upper bound: commas and brackets).
        max_containers: The most arrays and objects in its JSON (an upper bound: brackets).
        connect_timeout: Seconds to connect.
        first_byte_timeout: Seconds from the request to the end of the answer's headers.
        answer_timeout: Seconds from the request to the end of the whole answer.
    """

    # Two MiB is two hours or so of a run's per-second series, or a thousand listeners.
    max_bytes: int = 2 * 1024 * 1024
    # A run document is four levels deep, a listener with respond rules five or six.
    max_depth: int = 16
    # JSON values (counted as commas and brackets, before parsing): an hour of a run's
    # series is about 50,000. What a document costs once parsed is per value (a small
    # object is 50 to 60 bytes), so this, not the bytes, bounds the memory of the worst
    # documents, such as two MiB of ``{},{},...``.
    max_values: int = 150_000
    # Arrays and objects: checking the depth walks each of them in Python (about 2 µs
    # apiece), so they are bounded apart. An hour of a run's series is 7,200; the bytes cap
    # allows about 18,000 in a real document.
    max_containers: int = 20_000
    connect_timeout: float = 2.0
    first_byte_timeout: float = 2.5
    answer_timeout: float = 5.0

    @classmethod
    def within(cls, answer_timeout: float) -> PeerLimits:
        """The default limits with the whole answer bounded by ``answer_timeout``: the
        headers must come within half of it, the connection within 2 s (or that half)."""
        half = answer_timeout / 2
        return cls(
            connect_timeout=min(cls.connect_timeout, half),
            first_byte_timeout=half,
            answer_timeout=answer_timeout,
        )


def one_line(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """``text`` as one line of printable characters, at most ``limit`` of them."""
    line = "".join(c if c.isprintable() else " " for c in text[: limit + 1]).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_run_id(value: Any, field: str = "run_id") -> str:
    """``value`` if it is a run id (see :data:`RUN_ID`).

    Raises:
        SpecError: It is not a string that matches the pattern; names ``field``.
    """
    if not isinstance(value, str) or RUN_ID.fullmatch(value) is None:
        shown = one_line(repr(value), 80)
        raise SpecError(f"{field}: {shown} is not a run id", field)
    return value


def peer_path(*parts: str) -> str:
    """``/part/part/...`` with every part percent-encoded (``/``, ``?`` and ``#`` too)."""
    return "".join("/" + quote(part, safe="") for part in parts)


def answer_doc(body: bytes, model: type[BaseModel], limits: PeerLimits) -> dict[str, Any]:
    """The answer's document as ``model`` accepts and dumps it.

    Raises:
        PeerAnswerError: Not JSON, too deep, too many values, or not what ``model``
            documents.
    """
    max_depth = limits.max_depth
    # Counted in C before anything is built (brackets and commas in strings count too:
    # an upper bound, which is what a bound needs).
    containers = body.count(b"[") + body.count(b"{")
    if containers > limits.max_containers:
        raise PeerAnswerError(
            f"the answer holds more than {limits.max_containers:,} arrays and objects"
        )
    if body.count(b",") + containers > limits.max_values:
        raise PeerAnswerError(f"the answer holds more than {limits.max_values:,} JSON values")
    try:
        doc = jsondoc.loads(body, max_depth=max_depth)
    except ValueError as exc:
        start = one_line(body[:40].decode("utf-8", "replace"), 40)
        reason = one_line(str(exc), 120)
        raise PeerAnswerError(f"the answer is not JSON ({reason}): {start!r}") from None
    try:
        checked = validate(model, doc, whole="answer")
    except SpecError as exc:
        reason = one_line(exc.message)
        raise PeerAnswerError(f"not the {model.__name__} it documents: {reason}") from None
    dumped: dict[str, Any] = checked.model_dump(mode="json", exclude_unset=True)
    return dumped


class PeerClient:
    """One HTTP client for every peer; use it inside ``async with``.

    Args:
        limits: How much of an answer is read and how long it is waited for.
    """

    def __init__(self, limits: PeerLimits | None = None) -> None:
        self.limits = limits or PeerLimits()
        self._parsing = trio.CapacityLimiter(1)
        limits = self.limits
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=limits.connect_timeout,
                read=limits.first_byte_timeout,
                write=limits.first_byte_timeout,
                pool=limits.connect_timeout,
            ),
            follow_redirects=False,
            trust_env=False,
            # Only codings BoundedBody decodes within its cap.
            headers={"Accept-Encoding": "gzip, deflate"},
        )

    async def __aenter__(self) -> PeerClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._client.__aexit__(*exc_info)

    async def call(
        self,
        base: str,
        method: str,
        path: str,
        model: type[BaseModel],
        *,
        token: str | None,
        body: Any = None,
    ) -> dict[str, Any]:
        """``method base+path`` with ``body`` as JSON; the answer as ``model`` documents it.

        Args:
            base: The peer's ``scheme://host:port``.
            path: Built with :func:`peer_path` (plus a fixed query string, if any).
            model: What the API documents for a 2xx answer to this request.
            token: The peer's token (sent as a bearer token), or None for none.

        Raises:
            PeerUnreachableError: No connection could be made.
            PeerAnswerError: The answer is too big, too slow, or not the documented one.
            PeerRefusedError: The peer refused with a documented 4xx error.
        """
        limits = self.limits
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = self._client.build_request(method, base + path, json=body, headers=headers)
        try:
            with trio.fail_after(limits.answer_timeout):
                status, raw = await self._exchange(request)
        except trio.TooSlowError:
            raise PeerAnswerError(
                f"no whole answer within {limits.answer_timeout:g} s (too slow)"
            ) from None
        if not 200 <= status < 300:
            raise self._error(status, raw, token is not None)
        try:
            data = raw.finish()
        except ValueError as exc:  # a compressed body that ends early
            raise PeerAnswerError(one_line(str(exc))) from None
        # Parsing and checking two MiB takes tens of ms, most of it in Python (the depth
        # walk): in a thread, so the loop keeps its turn every switch interval (5 ms); one
        # document at a time, so the memory bound holds however many peers answer at once.
        return await trio.to_thread.run_sync(answer_doc, data, model, limits, limiter=self._parsing)

    async def _exchange(self, request: httpx.Request) -> tuple[int, BoundedBody]:
        """Send ``request``; its status and body, read within the caps."""
        limits = self.limits
        try:
            with trio.fail_after(limits.first_byte_timeout):
                response = await self._client.send(request, stream=True)
        except trio.TooSlowError:
            raise PeerAnswerError(
                f"no answer within {limits.first_byte_timeout:g} s of the request"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = one_line(str(exc)) or "refused"
            raise PeerUnreachableError(f"cannot connect: {reason}") from None
        except httpx.HTTPError as exc:
            raise PeerAnswerError(f"no HTTP answer: {_describe(exc)}") from None
        try:
            status = response.status_code
            if 300 <= status < 400:
                location = one_line(response.headers.get("location", ""), 120)
                raise PeerAnswerError(f"redirected ({status}) to {location!r}: not followed")
            cap = limits.max_bytes if status < 300 else MAX_ERROR_BYTES
            try:
                declared = int(response.headers.get("content-length", "0"))
            except ValueError:
                declared = 0
            if declared > cap:
                raise PeerAnswerError(f"the answer declares {declared:,} bytes, over {cap:,}")
            try:
                raw = BoundedBody(
                    response.headers.get("content-encoding"), max_raw=cap, max_decoded=cap
                )
            except ValueError as exc:
                raise PeerAnswerError(one_line(str(exc))) from None
            refused = await self._read_body(response, raw)
            if refused is not None:
                raise refused
            return status, raw
        finally:
            await response.aclose()

    @staticmethod
    async def _read_body(response: httpx.Response, raw: BoundedBody) -> PeerAnswerError | None:
        """Feed the body to ``raw``; the error that stopped it, if one did.

        A body stopped at a cap is closed first and then read on: httpx reads through a
        chain of async generators, and leaving the loop would leave the inner ones to the
        garbage collector. Read on after the close, each of them ends at its next step.
        """
        refused: PeerAnswerError | None = None
        try:
            async for chunk in response.aiter_raw():
                if refused is None:
                    try:
                        raw.feed(chunk)
                    except ValueError as exc:
                        refused = PeerAnswerError(one_line(str(exc)))
                        await response.aclose()
        except httpx.HTTPError as exc:
            if refused is None:
                refused = PeerAnswerError(f"the answer broke off: {_describe(exc)}")
        return refused

    def _error(self, status: int, raw: BoundedBody, sent_token: bool) -> SocketlabError:
        """The error for a 4xx or 5xx answer."""
        if status == 401:
            how = (
                "the peer refused this lab's token for it (401)"
                if sent_token
                else "the peer wants a token (401), and this lab sends none unless told"
            )
            return PeerAnswerError(
                f"{how}: give it with --peer-token TOKEN or in the peer's URL "
                "(http://:TOKEN@host:port)"
            )
        try:
            doc = answer_doc(raw.finish(), ErrorResponse, self.limits)
        except (PeerAnswerError, ValueError):
            return PeerAnswerError(f"answered {status} without an error document")
        message, field = one_line(str(doc["error"])), doc.get("field")
        if status >= 500 or status < 400:
            return PeerAnswerError(f"answered {status}: {message}")
        return PeerRefusedError(message, one_line(field, 64) if field else None, status)


def _describe(exc: Exception) -> str:
    return one_line(str(exc)) or type(exc).__name__
