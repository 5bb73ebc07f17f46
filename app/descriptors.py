"""The process's file descriptors, shared out so that the web API always has some left.

Theory of operation: a process may hold ``RLIMIT_NOFILE`` descriptors (1,024 by default on
most systems). Connections are what an outsider multiplies without a token, so connections
are what is budgeted, in two shares:

- TCP and TLS listener connections together hold at most ``limit - reserve`` descriptors.
  A listener takes its descriptor before it accepts (:meth:`DescriptorBudget.acquire`, so a
  listener waiting in ``accept`` counts one: its next connection) and gives it back when
  the connection is closed (:meth:`DescriptorBudget.give`): a counter against the limit,
  not a scan of ``/proc`` per accept. When the share is used up, listeners stop accepting
  until one of their connections ends; new clients wait in the kernel's backlog, as they
  would if the process had no descriptor left, but the reserve is untouched.
- The ``reserve`` is everything else the lab opens (its store, UDP sockets, epoll
  descriptors, run flows) and the web server, whose own connections are capped at
  :attr:`DescriptorBudget.web_max` (half the reserve); the web server makes room for a new
  connection by closing its longest-idle one (:mod:`app.web.accept`).

So 1,100 idle connections to a listener leave the reserve untouched, and 1,100 idle
connections to the web port cost the web server its idle connections, not its API.
"""

from __future__ import annotations

import errno
import resource

import trio

# Errors from accept() that mean "out of resources, try again soon" (trio's list, in
# trio._highlevel_serve_listeners).
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# The reserve is an eighth of the limit, at least 128 descriptors (the lab itself opens a
# few dozen: store, epolls, UDP sockets) and at most half the limit.
MIN_RESERVE = 128
RESERVE_SHARE = 8
# A limit the kernel reports as unlimited is treated as this many descriptors.
_UNLIMITED = 1 << 20


def soft_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE``."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED if soft == resource.RLIM_INFINITY else int(soft)


class DescriptorBudget:
    """Descriptors listener connections may hold, and the reserve kept for the rest.

    Attributes:
        limit: The descriptor limit the shares are computed from.
        reserve: Descriptors listener connections leave for the lab and the web server.
        held: Descriptors listeners hold now (their connections, and one per listener
            waiting in ``accept``).
        pauses: Times a listener had to wait for a descriptor of its share.
    """

    __slots__ = ("_room", "_waiting", "held", "limit", "pauses", "reserve")

    def __init__(self, limit: int | None = None) -> None:
        self.held = 0
        self.pauses = 0
        self.limit = 0
        self.reserve = 0
        self._waiting = 0
        self._room = trio.Event()
        self.set_limit(soft_limit() if limit is None else limit)

    def set_limit(self, limit: int) -> None:
        """Compute the shares from ``limit`` (descriptors held stay counted)."""
        self.limit = limit
        self.reserve = min(limit // 2, max(MIN_RESERVE, limit // RESERVE_SHARE))

    def refresh(self) -> None:
        """Read the process's limit again (it may have changed since start)."""
        self.set_limit(soft_limit())

    @property
    def listener_max(self) -> int:
        """Descriptors listener connections may hold together."""
        return self.limit - self.reserve

    @property
    def web_max(self) -> int:
        """Connections the web server keeps open at most: half the reserve."""
        return max(1, self.reserve // 2)

    def full(self) -> bool:
        """Whether the listeners' share is used up."""
        return self.held >= self.limit - self.reserve

    def take_nowait(self) -> bool:
        """Take one descriptor of the listeners' share; False when it is used up."""
        if self.full():
            return False
        self.held += 1
        return True

    async def acquire(self) -> None:
        """Take one descriptor of the listeners' share, waiting until there is one.

        Callers that count or log a wait call :meth:`take_nowait` first.
        """
        if self.take_nowait():
            return
        self.pauses += 1
        self._waiting += 1
        try:
            while not self.take_nowait():
                await self._room.wait()
        finally:
            self._waiting -= 1

    def give(self) -> None:
        """Give back a descriptor taken by :meth:`acquire` or :meth:`take_nowait`."""
        self.held -= 1
        if self._waiting:
            # Wake every waiting listener; each checks again (one of them gets it).
            self._room.set()
            self._room = trio.Event()


# One per process, as the limit is: every listener and the web server share it.
DESCRIPTORS = DescriptorBudget()
