"""The ``scenario`` pattern: a scenario's steps over ``connections`` sessions at once.

Each flow runs sessions one after another until the run's duration ends or its share of
``iterations`` is done: one :class:`~app.wire.conversation.Conversation` per session, driven
here with the I/O it asks for. A session keeps its connection for the next one when it passed
and did not close; after a failure the next session connects again, so bytes left over from a
broken exchange never reach it. ``{counter}`` is the session's number in the run (1, 2, ...).

The run's counters are the steps': ``sent`` counts sends, ``received`` the replies that
passed, the RTT histogram their latency (from the last send); each failed step is an error of
its kind (``mismatch``, ``timeout``, ``closed``, ``capture``, ``oversized``, or the I/O's:
``refused``, ``reset``, ``tls``). Per-step figures go to the run's
:class:`~app.runs.steps.StepTable`.
"""

from __future__ import annotations

import math
import random
import socket as stdsocket
from itertools import count

import trio

from app.registry import Conn
from app.runs.channel import Channel
from app.runs.context import FlowContext
from app.runs.error_kinds import ERROR_MEANINGS, error_detail, error_kind
from app.runs.spec import ScenarioSpec
from app.runs.steps import StepTable
from app.wire.conversation import (
    AwaitReply,
    Conversation,
    Finished,
    OpenAgain,
    SendBytes,
    StepResult,
    Wait,
)
from app.wire.scenario import Program

_READ = 65_536


class _Stopped(Exception):
    """The run sends no more (its duration, or a cap): the session ends uncounted."""


def _program(ctx: FlowContext) -> Program:
    spec = ctx.spec
    assert isinstance(spec, ScenarioSpec)  # the flow table runs these flows for it only
    return spec.program


def prepare_steps(ctx: FlowContext) -> None:
    """The run's step table (unless the caller gave one: a dry run's transcript) and
    session numbers, shared by its flows."""
    if ctx.stats.steps is None:
        ctx.stats.steps = StepTable(_program(ctx))
    ctx.sessions = count(1)


class _Session:
    """The I/O of one flow's sessions over TCP/TLS (``channel``) or UDP (``sock``)."""

    def __init__(self, ctx: FlowContext, table: StepTable) -> None:
        self.ctx = ctx
        self.table = table
        self.stats = ctx.stats
        self.view = memoryview(bytearray(_READ))
        self.channel: Channel | None = None
        self.sock: stdsocket.socket | None = None
        self.conn: Conn | None = None
        # Why the I/O failed, by kind (the OS's or TLS's words), for the error's sample.
        self.details: dict[str, str] = {}

    def account(self, results: list[StepResult]) -> None:
        """Move the conversation's finished steps into the run's figures."""
        if not results:
            return
        stats = self.stats
        for result in results:
            if result.kind is not None:
                why = self.details.pop(result.kind, None) or ERROR_MEANINGS.get(result.kind)
                stats.record_error(result.kind, f"{result.step}: {why or result.kind}")
            elif result.latency is not None:
                stats.received += 1
                stats.interval.record_value(max(int(result.latency * 1e9), 1))
        self.table.add(results)
        results.clear()

    async def open(self, conv: Conversation) -> bool:
        ctx = self.ctx
        if ctx.protocol == "udp":
            opened_udp = ctx.open_udp()
            if opened_udp is None:
                conv.broke("other", trio.current_time())
                return False
            self.sock, self.conn = opened_udp
            return True

        def refused(kind: str, detail: str) -> None:
            self.details[kind] = detail
            conv.broke(kind, trio.current_time())

        opened = await ctx.open_tcp(on_error=refused)
        if opened is None:
            return False
        self.channel, self.conn = opened
        return True

    def close(self) -> None:
        if self.conn is not None:
            self.ctx.registry.close(self.conn)
            self.conn = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def send(self, data: bytes) -> None:
        """Send ``data`` within the run's caps (app.runs.budget), as every flow does.

        Raises:
            _Stopped: The run sends no more: its duration is over or a cap is reached.
        """
        ctx = self.ctx
        while True:
            if not ctx.sending():
                raise _Stopped
            wait = ctx.budget.take(len(data), trio.current_time())
            if not wait:
                break
            if wait == math.inf:
                raise _Stopped  # the byte cap: the budget stopped the run's sending
            await trio.sleep_until(min(wait, ctx.send_deadline))
        if self.sock is not None:
            await trio.lowlevel.wait_writable(self.sock)
            self.sock.send(data)
        else:
            assert self.channel is not None
            await self.channel.send_all(memoryview(data))
        stats = self.stats
        stats.sent += 1
        stats.bytes_sent += len(data)
        conn = self.conn
        assert conn is not None
        conn.bytes_out += len(data)
        conn.msgs_out += 1
        conn.touch()

    async def read(self, deadline: float) -> int | None:
        """Bytes read into ``view`` (0 at the end of the stream), None past ``deadline``."""
        with trio.move_on_at(deadline):
            if self.sock is not None:
                while True:
                    await trio.lowlevel.wait_readable(self.sock)
                    try:
                        return self.sock.recv_into(self.view)
                    except BlockingIOError:
                        continue
            assert self.channel is not None
            return await self.channel.recv_into(self.view, _READ)
        return None

    async def run(self, conv: Conversation) -> bool | None:
        """One session to its end; True when every step passed, None when the run stopped
        sending before it ended (it counts neither way)."""
        try:
            if self.conn is None and not await self.open(conv):
                return False
            while True:
                action = conv.next(trio.current_time())
                if isinstance(action, SendBytes):
                    await self.send(action.data)
                elif isinstance(action, AwaitReply):
                    n = await self.read(action.deadline)
                    now = trio.current_time()
                    if n is None:
                        conv.timed_out(now)
                    elif n == 0:
                        conv.closed(now)
                    else:
                        self.stats.bytes_received += n
                        assert self.conn is not None
                        self.conn.bytes_in += n
                        self.conn.msgs_in += 1
                        conv.received(bytes(self.view[:n]), now)
                elif isinstance(action, Wait):
                    await trio.sleep_until(action.until)
                elif isinstance(action, OpenAgain):
                    self.close()
                    if not await self.open(conv):
                        continue  # the failure is the conversation's: Finished next
                elif isinstance(action, Finished):
                    return action.ok
                # After the action: a send counts once it is made, not when it is asked for.
                self.account(conv.results)
        except _Stopped:
            conv.results.clear()  # the send it was about to make was not made
            return None
        except ConnectionRefusedError as exc:
            kind = "unreachable" if self.sock is not None else "refused"
            self.details[kind] = error_detail(exc)
            conv.broke(kind, trio.current_time())
        except OSError as exc:
            kind = error_kind(exc)
            self.details[kind] = error_detail(exc)
            conv.broke(kind, trio.current_time())
        finally:
            self.account(conv.results)
        return False


async def scenario_flow(ctx: FlowContext, flow_id: int, quota: int | None) -> None:
    """Sessions one after another on this flow, until the duration or ``quota`` ends."""
    program = _program(ctx)
    table = ctx.stats.steps
    assert isinstance(table, StepTable)
    rng = random.Random(ctx.run_tag * 65_537 + flow_id)
    session = _Session(ctx, table)
    done = 0
    try:
        while ctx.sending() and (quota is None or done < quota):
            conv = Conversation(program, next(ctx.sessions), rng, keep=table.keep)
            ok = await session.run(conv)
            if ok is None:
                break
            table.session_ended(ok)
            done += 1
            # A passed session that left its connection open hands it to the next one.
            if not ok or conv.closed_by_step:
                session.close()
    finally:
        session.close()
