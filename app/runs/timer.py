"""A sleep to the microsecond for an open-loop sender: a Linux timerfd under trio.

Theory of operation: trio sleeps in ``epoll_wait``, whose timeout is whole milliseconds
(Python rounds it up), so a sender that sleeps until each message is due wakes up to a
millisecond late: at 1,000 msg/s its gaps come out near 1.2 ms, or near 0 when it catches
up, never evenly spaced. A timerfd armed at an absolute ``CLOCK_MONOTONIC`` time becomes
readable when the kernel's high-resolution timer fires (tens of microseconds late on a quiet
machine), and trio waits for a readable fd like any socket. Python's ``perf_counter_ns`` is
``CLOCK_MONOTONIC`` on Linux, so a deadline in that clock arms the timer as it is.

:class:`PreciseTimer` holds one timerfd (one per sending flow, closed with it). Where there
is no timerfd (not Linux, or no fd left), it falls back to :func:`trio.sleep_until`, which is
as late as epoll makes it; nothing else changes.

Python 3.11 has no ``os.timerfd_create`` (3.13 does), so the two calls go through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from typing import Any

import trio

__all__ = ["PreciseTimer", "precise_timers_available"]

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _load() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    # The deadline must be in the timer's clock: true where perf_counter is CLOCK_MONOTONIC.
    if "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    create.restype = ctypes.c_int
    settime.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(_Itimerspec),
        ctypes.c_void_p,
    ]
    settime.restype = ctypes.c_int
    return create, settime


_CALLS = _load()


def precise_timers_available() -> bool:
    """Whether this platform has timerfd (else :class:`PreciseTimer` sleeps as trio does)."""
    return _CALLS is not None


class PreciseTimer:
    """Waits until a ``perf_counter_ns`` deadline, to tens of microseconds where it can.

    Resource handling: the timerfd is opened on the first wait and closed by :meth:`close`
    (use the timer as a context manager). Error handling: a timerfd that cannot be made or
    armed (``EMFILE``, an old kernel) is not an error: the timer falls back to trio's sleep.
    """

    __slots__ = ("_fd", "_scope", "_spec", "_usable")

    def __init__(self) -> None:
        self._fd = -1
        self._usable = _CALLS is not None
        self._spec = _Itimerspec()
        self._scope: trio.CancelScope | None = None  # the fallback's sleep, to wake it

    def __enter__(self) -> PreciseTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def sleep_until_ns(self, deadline_ns: int, trio_deadline: float) -> None:
        """Sleep until ``perf_counter_ns() >= deadline_ns``.

        Args:
            deadline_ns: The deadline in the ``perf_counter_ns`` clock.
            trio_deadline: The same instant in trio's clock, for the fallback.
        """
        if self._usable and self._arm(deadline_ns):
            fd = self._fd
            await trio.lowlevel.wait_readable(fd)
            try:
                os.read(fd, 8)  # the expiration count; reading re-arms readiness
            except BlockingIOError:
                pass
            return
        with trio.move_on_at(trio_deadline) as self._scope:
            await trio.sleep_forever()
        self._scope = None

    def wake(self) -> None:
        """End the current sleep now (the schedule changed: a live edit of the run).

        Arming the timerfd at a time long past makes it readable at once; when nobody
        sleeps on it, the next :meth:`sleep_until_ns` arms it again, which clears that.
        """
        if self._fd >= 0 and self._usable:
            self._arm(1)
        if self._scope is not None:
            self._scope.cancel()

    def _arm(self, deadline_ns: int) -> bool:
        assert _CALLS is not None
        create, settime = _CALLS
        if self._fd < 0:
            fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd < 0:
                self._usable = False
                return False
            self._fd = fd
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        if settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            self.close()
            self._usable = False
            return False
        return True

    def close(self) -> None:
        """Close the timerfd, if one was opened."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            trio.lowlevel.notify_closing(fd)
            os.close(fd)
