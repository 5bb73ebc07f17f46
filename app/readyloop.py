"""Many sockets served by one task through a private epoll: :class:`ReadyLoop`, the sockets
it serves (:class:`Served`), what their owners wait on (:class:`Done`) and the compiled
passes it may run (:class:`NativePass`).

The hottest paths use it: the plain TCP echo (app.listeners.modes.echo, its compiled pass
app/native/_tcpecho.c) and pingpong runs (app.runs.mux, with the compiled engine of
app.runs.mux_native). Its theory of operation is :class:`ReadyLoop`'s docstring.
"""

from __future__ import annotations

import select
import socket as stdsocket
from collections.abc import Callable
from typing import Generic, NoReturn, Protocol, TypeVar

import trio

from app.turns import WEB


class Done:
    """A one-shot event with at most one waiter: what the owner of a served socket waits for.

    It does ``trio.Event``'s job (``set``, ``is_set``, ``wait``) for the one task that owns
    a socket, without the event's parking lot: about 400 bytes less per connection, which
    10,000 idle connections feel. ``wait`` checkpoints like ``trio.Event.wait``; a
    cancelled wait leaves the event unset.
    """

    __slots__ = ("_flag", "_task")

    def __init__(self) -> None:
        self._flag = False
        self._task: trio.lowlevel.Task | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the event and wake its waiter, if any (idempotent)."""
        if self._flag:
            return
        self._flag = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait(self) -> None:
        """Wait until :meth:`set` (at once, with a checkpoint, when it was set already).

        Raises:
            RuntimeError: Another task waits already (a socket has one owner).
        """
        if self._flag:
            await trio.lowlevel.checkpoint()
            return
        if self._task is not None:
            raise RuntimeError("a served socket has one owner waiting for it")
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)


class Served:
    """A socket served by a :class:`ReadyLoop`, and what the task that owns it waits for.

    Subclasses add the state their handler keeps between events. Items no task ever waits
    for (a listener's adopted connections) may share one ``done``: :meth:`ReadyLoop.finish`
    sets it and nobody awaits it, which saves an object per socket.
    """

    __slots__ = ("done", "error", "fd", "sock")

    def __init__(self, sock: stdsocket.socket, done: Done | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.done = Done() if done is None else done
        self.error: Exception | None = None


S = TypeVar("S", bound=Served)
S_contra = TypeVar("S_contra", bound=Served, contravariant=True)


class NativePass(Protocol[S_contra]):
    """A compiled pass of a :class:`ReadyLoop` (such as ``app.native._tcpecho.EchoPass``).

    It polls the loop's epoll itself, serves the items it was given (:meth:`adopt`) in C,
    and calls the loop's handler (and ``on_error``) for every other ready socket, as the
    Python pass does.
    """

    def run(self, max_events: int, now: float, /) -> int:
        """Serve ready sockets until ``max_events`` were served or none is ready; returns
        how many were served."""

    def adopt(self, item: S_contra, /) -> None:
        """Serve ``item`` (already added to the loop) in C."""

    def forget(self, fd: int, /) -> None:
        """The item of ``fd`` has ended (idempotent)."""

    def close(self) -> None:
        """The loop has ended: let go of every item and callback."""


# What a loop builds its native pass with: (epoll fd, items, handler, on_error).
NativeFactory = Callable[
    [int, dict[int, S], Callable[[S, int], None], Callable[[S, Exception], object]],
    NativePass[S],
]


class ReadyLoop(Generic[S]):
    """Many sockets served by one task through a private epoll.

    Theory of operation: trio's own epoll registers interest per wait (``EPOLLONESHOT``), so
    a task per socket pays, for every message, a pair of ``epoll_ctl`` calls, a scheduler
    round and a task switch: about as much CPU as the socket calls themselves, and more the
    more sockets trio watches. Here each socket is registered once, level-triggered, with a
    private ``select.epoll``; one task waits for that epoll's descriptor with
    ``trio.lowlevel.wait_readable`` and then serves every ready socket in one pass, calling
    ``handler(item, mask)``. It yields once it has served :data:`app.turns.PASS_SIZE` ready sockets
    since it last did (a checkpoint), or when none is ready (waiting for the epoll is one),
    so other tasks keep their turn and cancellation lands, and a few sockets ready at a
    time (a pingpong client's) do not pay a scheduler round (about 2.7 us) per pass. Level
    triggering makes a socket with more to read come back in the next pass, which keeps one
    busy socket from starving the others.

    The task that owns a socket keeps it (its cancel scope, its registry row, closing it):
    it calls :meth:`add`, then waits in :meth:`wait` until the handler ends the item with
    :meth:`finish` (end of stream, an error, done sending), or until it is cancelled itself.

    The handler must not await: it does non-blocking socket calls and counts. A socket
    that cannot take what it must send is watched for ``EPOLLOUT`` instead (:meth:`watch`).

    Error handling: an exception from the handler goes to ``on_error(item, exc)``; by
    default that finishes the item and its owner raises the exception. The loop goes on with
    the others.

    Resource handling: the epoll descriptor is opened by the first :meth:`add` or
    :meth:`run`, whichever comes first, and closed when :meth:`run` ends. A loop that is
    made but never used (a mode built for a listener that serves UDP or TLS, or that failed
    to bind) opens nothing, so nothing waits for the garbage collector to close it.

    Compiled passes: given ``native`` (a factory of a :class:`NativePass`), the loop's
    passes run in C: the items added with ``native=True`` are served there without a
    Python call, and every other ready socket goes to ``handler`` as before. A subclass
    may do its passes its own way by overriding :meth:`_serve` (the pingpong client's
    compiled engine, app.runs.mux_native). The loop waits, yields and ends the same way
    whatever does the passes.

    Args:
        handler: Called with the item of each ready socket and its epoll event mask.
        on_error: Called when ``handler`` raised an ``Exception`` for that item.
        after_pass: Called after each pass (it must not await either): a client sends
            there what the pass's replies made room for, back to back.
        native: Builds the compiled pass when the epoll opens (``None``: Python passes).
    """

    def __init__(
        self,
        handler: Callable[[S, int], None],
        on_error: Callable[[S, Exception], object] | None = None,
        after_pass: Callable[[], None] | None = None,
        native: NativeFactory[S] | None = None,
    ) -> None:
        self._after_pass = after_pass
        self._ep: select.epoll | None = None  # opened on first use: see Resource handling
        self._ended = False
        self._handler = handler
        self._on_error = on_error or self.finish
        self._native_factory = native
        self._native: NativePass[S] | None = None  # built with the epoll
        self.items: dict[int, S] = {}
        self.now = 0.0  # trio's clock when the current pass began

    def add(self, item: S, mask: int = select.EPOLLIN, *, native: bool = False) -> None:
        """Serve ``item`` (its socket is non-blocking).

        Args:
            native: Serve it in the compiled pass, when the loop has one.

        Raises:
            trio.ClosedResourceError: The loop has ended.
        """
        ep = self._open()
        self.items[item.fd] = item
        ep.register(item.fd, mask)
        if native and self._native is not None:
            self._native.adopt(item)

    @property
    def compiled(self) -> bool:
        """Whether the passes run in C (a native factory was given, and the epoll is open)."""
        return self._native is not None

    def _open(self) -> select.epoll:
        """The loop's epoll, opened now if it was not yet.

        Raises:
            trio.ClosedResourceError: The loop has ended.
        """
        if self._ended:
            raise trio.ClosedResourceError("the socket loop has ended")
        ep = self._ep
        if ep is None:
            ep = self._ep = select.epoll()
            if self._native_factory is not None:
                self._native = self._native_factory(
                    ep.fileno(), self.items, self._handler, self._on_error
                )
        return ep

    def finish(self, item: S, error: Exception | None = None) -> bool:
        """Stop serving ``item`` and wake its owner, which raises ``error`` if given.

        Idempotent; returns False when the item was not served any more. By identity: once
        a socket is closed, its descriptor number may serve a newer item.
        """
        item.done.set()
        fd = item.fd
        if self.items.get(fd) is not item:
            return False
        del self.items[fd]
        if self._native is not None:
            self._native.forget(fd)
        item.error = error
        try:
            if self._ep is not None:  # it is once an item was added
                self._ep.unregister(fd)
        except (OSError, ValueError):  # the socket or the loop is closed already
            pass
        return True

    async def wait(self, item: S) -> None:
        """Wait until ``item`` is finished (or this task is cancelled: then it is finished).

        Raises:
            Exception: What the handler ran into for this item, if anything.
        """
        done = item.done
        try:
            if done._flag or done._task is not None:
                await done.wait()  # set already (a checkpoint), or a second waiter (refused)
            else:
                # Done.wait inline: one coroutine frame less per idle connection.
                done._task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(done._abort)
        finally:
            self.finish(item)
        if item.error is not None:
            raise item.error

    def watch(self, item: S, mask: int) -> None:
        """Change the events wanted for ``item`` (``EPOLLIN``, ``EPOLLOUT`` or both)."""
        self._open().modify(item.fd, mask)

    async def run(self) -> NoReturn:
        """Serve the registered sockets until cancelled; then the loop is closed.

        One loop for every kind of pass (:meth:`_serve`: Python's, the compiled echo's, a
        subclass's): the sockets served between two checkpoints are everyone else's wait
        for a turn, :data:`app.turns.PASS_SIZE` or fewer while the web server answers a
        request (see app.turns). Level triggering hands the sockets left out to the next
        pass.

        Raises:
            trio.ClosedResourceError: The loop has ended already.
        """
        ep = self._open()
        serve = self._serve
        pass_size = WEB.pass_size
        current_time = trio.current_time
        after_pass = self._after_pass
        served = 0  # ready sockets served since this task last yielded
        try:
            while True:
                size = pass_size()
                self.now = now = current_time()
                n, drained = serve(size, now)
                if n and after_pass is not None:
                    after_pass()
                if drained:
                    await trio.lowlevel.wait_readable(ep)  # yields: a checkpoint
                    served = 0
                    continue
                served += n
                if served >= size:
                    await trio.lowlevel.checkpoint()
                    served = 0
        finally:
            self._ended = True
            self._close_native()
            ep.close()

    def _serve(self, size: int, now: float) -> tuple[int, bool]:
        """One pass over at most ``size`` ready sockets, begun at trio time ``now``.

        Returns:
            How many ready sockets it served, and whether it found the epoll empty (then
            :meth:`run` waits for it rather than polling again).
        """
        native = self._native
        if native is not None:
            # The compiled pass polls again until it has served ``size`` sockets or finds
            # none ready: fewer than ``size`` means the epoll was empty.
            n = native.run(size, now)
            return n, n < size
        assert self._ep is not None  # opened by run
        events = self._ep.poll(0, size)
        items = self.items
        handler = self._handler
        for fd, mask in events:
            item = items.get(fd)
            if item is None:
                continue  # ended earlier in this pass
            try:
                handler(item, mask)
            except Exception as exc:
                self._on_error(item, exc)
        return len(events), not events

    def _close_native(self) -> None:
        native = self._native
        if native is not None:
            self._native = None
            native.close()
