"""One session of a scenario, without I/O: the step machine a driver feeds.

Theory of operation: a :class:`Conversation` runs a compiled :class:`~app.wire.scenario.Program`
the way a sans-IO protocol does. The driver asks :meth:`Conversation.next` what to do and does
it: :class:`SendBytes` (write these), :class:`AwaitReply` (read until :meth:`received`
says the reply is complete, or the deadline passes: :meth:`timed_out`), :class:`Wait`
(sleep until), :class:`OpenAgain` (close and connect again), :class:`Finished` (close; the
session passed or failed). Bytes that arrive go to :meth:`received`; the end of the stream to
:meth:`closed`; a failure of the I/O (refused, reset, a TLS error) to :meth:`broke`. Time is
given, never read, and so is the random source: the machine is tested with tables.

Every step that completes is recorded as a :class:`StepResult` in :attr:`results` (the
driver drains them into the run's figures): a send when it is handed over, an expect when its
reply is judged (with the latency from the last send), a capture, a delay. The first failed
step ends the session: its result names the kind (``mismatch``, ``timeout``, ``closed``,
``oversized``, ``capture``, or the driver's I/O kind) and keeps what was received, bounded.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from app.wire.scenario import (
    Again,
    Capture,
    Close,
    Delay,
    Expect,
    Loop,
    Program,
    Reconnect,
    Send,
)
from app.wire.template import render_template

__all__ = [
    "AwaitReply",
    "Conversation",
    "Finished",
    "OpenAgain",
    "SendBytes",
    "StepResult",
    "Wait",
]

# Bytes of a reply kept in a failed step's result, for the summary's samples.
SAMPLE_BYTES = 256


@dataclass(frozen=True, slots=True)
class SendBytes:
    data: bytes


@dataclass(frozen=True, slots=True)
class AwaitReply:
    deadline: float
    read_framed: bool  # the reply is what one read returns (framing = read)


@dataclass(frozen=True, slots=True)
class Wait:
    until: float


@dataclass(frozen=True, slots=True)
class OpenAgain:
    pass


@dataclass(frozen=True, slots=True)
class Finished:
    ok: bool


Action = SendBytes | AwaitReply | Wait | OpenAgain | Finished


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step as it ended: ``kind`` None when it passed; ``latency`` (seconds) for an
    expect that got its reply; ``received``: a failed step's reply, bounded (and a passed
    expect's, with ``keep``); ``sent``: a send's bytes, with ``keep``."""

    step: str
    kind: str | None
    latency: float | None = None
    received: bytes = b""
    sent: bytes = b""


class Conversation:
    """One session of ``program``.

    Args:
        program: The compiled scenario.
        counter: The value of ``{counter}`` in this session (the driver numbers sessions).
        rng: Source of ``{random}`` and of random delays.
        variables: Values captured before (a reconnect keeps them); copied.
        keep: Bytes of each send and passed reply kept in :attr:`results` (a dry run's
            transcript); 0 keeps only a failed step's reply, bounded.
    """

    def __init__(
        self,
        program: Program,
        counter: int,
        rng: random.Random,
        variables: Mapping[str, bytes] | None = None,
        keep: int = 0,
    ) -> None:
        self.program = program
        self.keep = keep
        self.counter = counter
        self.rng = rng
        self.variables: dict[str, bytes] = dict(variables or {})
        self.results: list[StepResult] = []
        self._pc = 0
        self._loops: dict[int, int | float] = {}  # Loop index -> times left or deadline
        self._buffer = bytearray()
        self._last_reply = b""
        self._sent_at: float | None = None
        self._waiting: Expect | None = None
        self._deadline = 0.0
        self._expect_started = 0.0
        self._delay_until: float | None = None
        self._done: bool | None = None
        # Ended at a ``close`` step: the driver does not reuse the connection.
        self.closed_by_step = False

    @property
    def done(self) -> bool:
        return self._done is not None

    def next(self, now: float) -> Action:
        """What the driver does next, at time ``now``."""
        if self._done is not None:
            return Finished(self._done)
        if self._waiting is not None:
            step = self._waiting
            return AwaitReply(self._deadline, step.framing == "read")
        if self._delay_until is not None:
            if now < self._delay_until:
                return Wait(self._delay_until)
            self._delay_until = None
        code = self.program.code
        while self._pc < len(code):
            op = code[self._pc]
            self._pc += 1
            if isinstance(op, Send):
                data = render_template(
                    op.template, counter=self.counter, now=now, rng=self.rng, values=self.variables
                )
                self._sent_at = now
                self.results.append(StepResult(op.path, None, sent=data[: self.keep]))
                return SendBytes(data)
            if isinstance(op, Expect):
                self._waiting = op
                self._expect_started = now
                self._deadline = now + op.timeout
                # Bytes that came before (pipelined replies) may finish it at once.
                if self._judge(now, whole_read=False):
                    return self.next(now)
                return AwaitReply(self._deadline, op.framing == "read")
            if isinstance(op, Capture):
                if not self._capture(op):
                    return self._fail(op.path, "capture", self._last_reply)
                continue
            if isinstance(op, Delay):
                seconds = op.low if op.high == op.low else self.rng.uniform(op.low, op.high)
                self.results.append(StepResult(op.path, None))
                if seconds > 0:
                    self._delay_until = now + seconds
                    return Wait(self._delay_until)
                continue
            if isinstance(op, Loop):
                self._enter(op, self._pc - 1, now)
                continue
            if isinstance(op, Again):
                self._again(op, now)
                continue
            if isinstance(op, Close):
                self.results.append(StepResult(op.path, None))
                self.closed_by_step = True
                break
            if isinstance(op, Reconnect):
                self.results.append(StepResult(op.path, None))
                self._buffer.clear()
                return OpenAgain()
        self._done = True
        return Finished(True)

    # --- what the driver reports --------------------------------------------------------

    def received(self, data: bytes, now: float) -> bool:
        """Bytes that arrived; True when they finished the awaited reply (call :meth:`next`)."""
        if self._waiting is None:
            self._buffer += data  # early bytes: the next expect reads them
            return False
        self._buffer += data
        read_framed = self._waiting.framing == "read"
        return self._judge(now, whole_read=read_framed)

    def timed_out(self, now: float) -> None:
        """The awaited reply did not come by its deadline."""
        if self._waiting is not None:
            self._fail(self._waiting.path, "timeout", bytes(self._buffer))

    def closed(self, now: float) -> None:
        """The server closed the stream: a failure if a reply was awaited."""
        if self._waiting is not None:
            self._fail(self._waiting.path, "closed", bytes(self._buffer))
        elif self._done is None:
            self._fail(self._current_path(), "closed", b"")

    def broke(self, kind: str, now: float) -> None:
        """The I/O failed (``refused``, ``reset``, ``tls``, ...): the current step fails."""
        if self._done is None:
            path = self._waiting.path if self._waiting is not None else self._current_path()
            self._fail(path, kind, bytes(self._buffer))

    # --- inside ---------------------------------------------------------------------------

    def _current_path(self) -> str:
        code = self.program.code
        index = min(max(self._pc - 1, 0), len(code) - 1)
        return code[index].path

    def _frame(self, whole_read: bool) -> bytes | None:
        """The awaited reply cut from the buffer, or None while it is incomplete."""
        step = self._waiting
        assert step is not None
        buffer = self._buffer
        if step.framing == "line":
            end = buffer.find(b"\n")
            if end < 0:
                return None
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line[:-1] if line.endswith(b"\r") else line
        if step.framing == "length":
            if len(buffer) < step.length:
                return None
            reply = bytes(buffer[: step.length])
            del buffer[: step.length]
            return reply
        if not whole_read or not buffer:
            return None
        reply = bytes(buffer)
        buffer.clear()
        return reply

    def _judge(self, now: float, *, whole_read: bool) -> bool:
        step = self._waiting
        assert step is not None
        reply = self._frame(whole_read)
        if reply is None:
            if len(self._buffer) > self.program.max_reply:
                self._fail(step.path, "oversized", bytes(self._buffer))
                return True
            return False
        self._waiting = None
        self._last_reply = reply
        if not self._matches(step, reply, now):
            self._fail(step.path, "mismatch", reply)
            return True
        started = self._sent_at if self._sent_at is not None else self._expect_started
        self.results.append(StepResult(step.path, None, now - started, reply[: self.keep]))
        return True

    def _matches(self, step: Expect, reply: bytes, now: float) -> bool:
        if step.regex is not None:
            return step.regex.search(reply) is not None
        needle = render_template(
            step.needle, counter=self.counter, now=now, rng=self.rng, values=self.variables
        )
        if step.match == "exact":
            return reply == needle
        if step.match == "prefix":
            return reply.startswith(needle)
        return needle in reply

    def _capture(self, op: Capture) -> bool:
        found = op.regex.search(self._last_reply)
        if found is None:
            return False
        for name, group in op.names:
            self.variables[name] = found.group(group) or b""
        self.results.append(StepResult(op.path, None))
        return True

    def _enter(self, op: Loop, index: int, now: float) -> None:
        self._loops[index] = op.times if op.times is not None else now + (op.seconds or 0)

    def _again(self, op: Again, now: float) -> None:
        loop = self.program.code[op.start]
        assert isinstance(loop, Loop)
        left = self._loops[op.start]
        if loop.times is not None:
            left = int(left) - 1
            self._loops[op.start] = left
            more = left > 0
        else:
            more = now < left
        if more:
            self._pc = op.start + 1

    def _fail(self, path: str, kind: str, received: bytes) -> Finished:
        self._waiting = None
        self._done = False
        bound = max(SAMPLE_BYTES, self.keep)
        self.results.append(StepResult(path, kind, None, received[:bound]))
        return Finished(False)
