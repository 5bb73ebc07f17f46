"""A hostile peer: a small trio HTTP server that answers a lab's calls to a peer badly.

Each :class:`HostilePeer` plays one kind of bad answer (tests/hostile_answers.py) on one of
the calls a lab makes to a peer; every other call gets a good answer, so the one bad answer
is what the lab must survive. While ``switch.armed`` is false every call gets a good answer
(a baseline). One request per connection (``Connection: close``); every request is recorded
(its target and its ``Authorization`` header), so a test can check what reached the peer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import h11
import trio

from tests.hostile_answers import RUN_ID, Kind, good_json, response, run_doc


def _good_answer(method: str, path: str) -> bytes:
    if path.startswith("/api/listeners"):
        return good_json({"items": []})
    if path.startswith("/api/connections"):
        return good_json({"items": [], "total": 0, "offset": 0, "limit": 100})
    if method == "POST" and path == "/api/runs":
        return good_json({"id": RUN_ID, "status": "running"}, 201)
    if method == "POST" and path.endswith("/stop"):
        return good_json({"id": RUN_ID, "status": "stopped"})
    if path.startswith("/api/runs/"):
        return good_json(run_doc())
    return response(404, b'{"error": "no such route", "field": null}')


def call_of(method: str, path: str) -> str:
    """Which of a lab's calls to a peer this request is."""
    if path.startswith("/api/listeners"):
        return "listeners"
    if path.startswith("/api/connections"):
        return "connections"
    if method == "POST" and path == "/api/runs":
        return "create"
    return "follow" if path.startswith("/api/runs/") else "other"


@dataclass
class Switch:
    """Whether the peers sharing it answer badly (armed) or well (a baseline)."""

    armed: bool = True


@dataclass
class Seen:
    """One request that reached the peer."""

    method: str
    target: str
    authorization: str | None


@dataclass
class HostilePeer:
    """Serves ``kind``'s bad answer on its call, good answers on the others."""

    kind: Kind
    switch: Switch = field(default_factory=Switch)
    seen: list[Seen] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on 127.0.0.1, a free port, until cancelled; reports the port."""
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            task_status.started(listeners[0].socket.getsockname()[1])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                request = await _read_request(stream)
                if request is None:
                    return
                method, target = request.method.decode(), request.target.decode()
                auth = dict(request.headers).get(b"authorization")
                self.seen.append(Seen(method, target, None if auth is None else auth.decode()))
                if self.switch.armed and call_of(method, target) == self.kind.call:
                    await self.kind.play(stream)
                else:
                    await stream.send_all(_good_answer(method, target))
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
                pass  # the lab hung up on the bad answer: that is its job


async def _read_request(stream: trio.SocketStream) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data:
                return None
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None
