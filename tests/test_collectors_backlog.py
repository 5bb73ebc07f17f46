"""A collector's UDP backlog is parsed in steps of messages, not one step per datagram:
syslog has one message per datagram (RFC 5426), and a checkpoint each costs more than the
parse. Between two steps the event loop runs other tasks (the flood never holds it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import trio

from app.listeners.base import DatagramPort
from app.listeners.modes import create_listener
from app.listeners.modes.collector import LINES_PER_STEP
from app.listeners.modes.syslog import SyslogMode
from app.listeners.parse import parse_listener_url
from app.registry import Conn


async def test_queued_datagrams_are_parsed_a_step_of_messages_between_checkpoints() -> None:
    url = "udp://127.0.0.1:0?mode=syslog"
    listener = create_listener("s1", parse_listener_url(url))
    mode = listener.mode
    assert isinstance(mode, SyslogMode)
    # The receive path's handler, as the UDP loop calls it for each datagram.
    handle = mode.intake.handler(cast(DatagramPort, SimpleNamespace(sock=None)))
    count = 3 * LINES_PER_STEP
    for i in range(count):
        data = b"<14>1 - host app - - - line %d" % i
        handle(memoryview(data), len(data), ("127.0.0.1", 9), cast(Conn, None))
    seen: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mode._parse_backlog)
            # This task runs between two of the parser's steps: it sees where each ended.
            while mode.received < count:
                await trio.lowlevel.checkpoint()
                seen.append(mode.received)
            nursery.cancel_scope.cancel()
    # Trio runs a round's tasks in either order, so a step end may go unseen; every one
    # seen is a whole step, and the loop ran other tasks before the last step.
    assert all(received % LINES_PER_STEP == 0 for received in seen), seen
    assert len(set(seen) - {0}) >= 2, seen
    assert mode.bad_lines == 0 and mode.logs.received == count
