"""The pingpong multiplexer's steady state in C (app/native/_pingpong.c), when built.

Theory of operation: per round trip the Python loop (app.runs.mux, mux_udp) spends about
400 bytecodes: the loop's dispatch, the receive, the match, the histogram, the counters,
the stamp and the send. :class:`NativeLoop` is the multiplexer's socket loop with each pass
done by the compiled engine instead: the engine serves the flows *adopted* into it, and
hands every other event back to the Python handler, as the plain loop would have run it.

A flow is adopted (:meth:`NativeLoop.adopt`) at the end of a pass that refilled it, once
it is in the steady state: counted (after the warm-up, nothing of the warm-up in flight),
not blocked or parked, one message size, every message with a probe header, a window the
engine holds (``MAXWIN``). While adopted, the engine owns the flow's sequence number, its
messages in flight and the bytes of a TCP reply read so far; Python takes them back
(:meth:`NativeLoop.reclaim`) before any code of its own looks at them: a hand-back, the
sweep's deadlines, a live edit's retire, a finish (a close from the API, a stop, the end).

The engine sends only while the run may (``may_send``, once per call: before the send
deadline), charging the run's caps before each send as :meth:`Budget.take` does (its
arithmetic, on the budget's own fields); a message the caps or a pause hold back, or one
past the deadline, is handed back, and Python parks the flow or ends it as it does.

Every figure comes from one place either way: the engine adds its counts to the run's
figures, the interval histogram and the flows' rows before each call returns. One call
serves passes one after the other while it hands nothing back, up to the loop's pass size
in events; waiting and yielding are :meth:`ReadyLoop.run <app.readyloop.ReadyLoop.run>`'s own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn, Protocol

from app.readyloop import ReadyLoop
from app.runs.budget import PACE_SLACK
from app.runs.context import FlowContext
from app.runs.error_kinds import CLOSED_DETAIL, UNREACHABLE_DETAIL
from app.runs.muxflow import MuxFlow

# The engine's hand-back codes (app/native/_pingpong.c).
(
    EVENT,
    CLOSED,
    ERROR,
    REFUSED,
    UNMATCHED,
    REFILL,
    BLOCKED,
    PARTIAL,
    SEND_REFUSED,
) = range(9)


def _not_started(*_: object) -> int:
    raise RuntimeError("the engine serves once the loop runs")


class Driver(Protocol):
    """What the loop needs of its multiplexer (app.runs.mux.Multiplexer)."""

    ctx: FlowContext
    _due: list[MuxFlow]
    _fixed: bool
    _all_headers: bool
    _window: int
    _sizes: list[int]
    _rbuf: bytearray

    def _handler(self) -> Callable[[MuxFlow, int], None]: ...
    def _on_error(self, flow: MuxFlow, exc: Exception) -> None: ...
    def _send_due(self) -> None: ...
    def _fail(self, flow: MuxFlow, kind: str, detail: str | None = None) -> None: ...
    def _unmatched(self, flow: MuxFlow, seq: int | None, n: int) -> None: ...
    def _watch_writable(self, flow: MuxFlow, on: bool) -> None: ...


class NativeLoop(ReadyLoop[MuxFlow]):
    """A :class:`~app.readyloop.ReadyLoop` whose passes the compiled engine does.

    Args:
        mux: The multiplexer whose flows it serves (its handler, errors and refills).
        module: The compiled module (``app.native.native("pingpong")``).
        udp: Whether the flows are UDP (replies matched by sequence number).
    """

    def __init__(self, mux: Driver, module: ModuleType, udp: bool) -> None:
        super().__init__(mux._handler(), mux._on_error, mux._send_due)
        self.mux = mux
        self._module = module
        self._udp = udp
        self._engine: object | None = None
        self._handed: list[tuple[int, int, object, object]] = []
        self._engine_serve: Callable[..., int] = _not_started
        self._pass_args: tuple[Any, ...] = ()
        ctx = mux.ctx
        # What every adopted flow has in common (checked once): one message size, each
        # with a header, a window the engine holds.
        self.serves = mux._fixed and mux._all_headers and mux._window <= module.MAXWIN
        self._warmup = ctx.spec.warmup > 0

    def engine(self) -> object:
        """The engine, made with the loop's epoll (opened now if it was not yet)."""
        if self._engine is None:
            ep = self._open()
            hist = self.mux.ctx.stats.interval
            self._engine = self._module.Engine(
                ep.fileno(), self._udp, self.mux._rbuf, hist.layout(), PACE_SLACK
            )
        return self._engine

    def adopt(self, flow: MuxFlow) -> None:
        """Let the engine serve ``flow`` from now on, if it is in the steady state."""
        if flow.native or flow.blocked or flow.parked or flow.pending is not None:
            return
        first = flow.first_counted
        if first > flow.seq or self.items.get(flow.fd) is not flow:
            return  # still warming up, or ended
        measure_from = self.mux.ctx.measure_from_ns
        if self._udp:
            inflight = list(flow.inflight.items())
        else:
            inflight = [(0, t0) for t0, _ in flow.outstanding]
        if not inflight or inflight[0][1] < measure_from:
            return  # nothing out (it ends or waits), or a warm-up message still is
        engine = self.engine()
        engine.adopt(  # type: ignore[attr-defined]
            flow.fd,
            flow.conn,
            flow.buf,
            self.mux._sizes[0],
            flow.seq,
            first,
            -1 if flow.quota is None else flow.quota,
            self._warmup,
            self.mux._window,
            flow.got,
            inflight,
        )
        flow.native = True

    def reclaim(self, flow: MuxFlow) -> None:
        """Take ``flow``'s state back from the engine (nothing when it is not adopted)."""
        if not flow.native:
            return
        flow.native = False
        state = self.engine().release(flow.fd)  # type: ignore[attr-defined]
        if state is None:
            return
        flow.seq, flow.got, inflight = state
        if self._udp:
            flow.inflight.clear()
            flow.inflight.update(inflight)
        else:
            size = self.mux._sizes[0]
            flow.outstanding.clear()
            flow.outstanding.extend((t0, size) for _, t0 in inflight)

    def oldest(self, flow: MuxFlow) -> int | None:
        """The send time of ``flow``'s oldest message in flight, adopted or not."""
        if flow.native:
            t0: int | None = self.engine().oldest(flow.fd)  # type: ignore[attr-defined]
            return t0
        if self._udp:
            return next(iter(flow.inflight.values()), None)
        return flow.outstanding[0][0] if flow.outstanding else None

    def finish(self, item: MuxFlow, error: Exception | None = None) -> bool:
        self.reclaim(item)  # its unanswered messages are Python's to count
        return super().finish(item, error)

    async def run(self) -> NoReturn:
        """Serve the registered sockets until cancelled, each pass in the engine."""
        engine = self.engine()  # made with the epoll, before the first pass
        ctx = self.mux.ctx
        stats = ctx.stats
        self._pass_args = (stats, stats.interval, ctx.budget, self._handed)
        self._engine_serve = engine.serve  # type: ignore[attr-defined]
        await super().run()

    def _serve(self, size: int, now: float) -> tuple[int, bool]:
        """One call of the engine (passes until it has served ``size`` events or hands
        something back), then what it handed back, as :meth:`ReadyLoop._serve` returns."""
        ctx = self.mux.ctx
        may_send = now < ctx.send_deadline
        events: int = self._engine_serve(size, may_send, now, ctx.measure_from_ns, *self._pass_args)
        if self._handed:
            self._hand_back()
        return events, not events

    def _hand_back(self) -> None:
        """Deal with what the engine handed back in a pass, as the Python loop would."""
        handed = list(self._handed)
        self._handed.clear()
        items = self.items
        for fd, code, a, b in handed:
            flow = items.get(fd)
            if flow is None:
                continue  # ended earlier in this pass
            self.reclaim(flow)
            try:
                self._handle(flow, code, a, b)
            except Exception as exc:
                self.mux._on_error(flow, exc)

    def _handle(self, flow: MuxFlow, code: int, a: object, b: object) -> None:
        mux = self.mux
        if code == EVENT:
            assert isinstance(a, int)
            self._handler(flow, a)
        elif code == CLOSED:
            mux._fail(flow, "closed", CLOSED_DETAIL)
        elif code == ERROR:
            assert isinstance(a, int)
            raise OSError(a, os.strerror(a))
        elif code == UNMATCHED:
            assert isinstance(b, int)
            mux._unmatched(flow, a if isinstance(a, int) else None, b)  # UDP only
            mux._due.append(flow)
        elif code in (REFUSED, SEND_REFUSED):
            # An ICMP port unreachable (app.runs.mux_udp): counted; the flow goes on.
            mux.ctx.stats.record_error("unreachable", UNREACHABLE_DETAIL)
            mux._due.append(flow)
        elif code == BLOCKED:
            mux._watch_writable(flow, True)
        elif code == PARTIAL:
            assert isinstance(a, int)
            flow.pending = flow.view[a : mux._sizes[0]]
            mux._watch_writable(flow, True)
        else:  # REFILL: the end of the pass decides (park, end, or send in Python)
            mux._due.append(flow)
