"""Reflection limits for UDP replies: who may get a reply, how large, how often.

Theory of operation: a UDP datagram's source address can be forged, so a listener that
answers whatever arrives can be made to send to a victim (reflection), and to send more than
it got (amplification). A :class:`ReplyGuard` is asked before every reply and answers yes or
no; it keeps one small state per source, decided on the first reply to it:

- *silent*: a source port below :data:`MIN_SOURCE_PORT` (a server's port: where reflected
  traffic would be aimed) never gets a reply;
- *free*: a loopback source is not limited (it cannot be forged from off the machine);
- *limited*: any other source gets no reply larger than its request and at most ``rate``
  replies per second (a token bucket as deep as one second of it).

Nothing here does I/O or reads a clock: the caller passes the time, so the guard is tested
with synchronous tables.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Source ports below this are servers' (DNS 53, NTP 123, ...): where reflected traffic
# would be aimed. HAProxy refuses them by default for the same reason.
MIN_SOURCE_PORT = 1024
_UNSEEN = object()
_SILENT = object()


class ReplyGuard:
    """The reflection limits of one UDP listener.

    Before every reply:

    1. a source port below :data:`MIN_SOURCE_PORT` gets no reply;
    2. a source outside loopback gets no reply larger than its request (no amplification)
       and at most ``rate`` replies per second (a token bucket as deep as one second of
       it; ``rate`` 0 means no limit).

    Loopback sources are exempt from 2: they cannot be forged from off the machine (the
    kernel drops loopback sources arriving on other interfaces), and the lab's own load
    tests and the respond mode's longer replies to local tools must keep working.

    Resource handling: state is kept per source while its flow lives; the owner calls
    :meth:`forget` when it forgets the flow, so the table is bounded by the flows tracked.

    Args:
        rate: Replies per second to one source outside loopback; 0 for no limit.

    Attributes:
        dropped: Replies refused so far.
    """

    __slots__ = ("_state", "burst", "dropped", "free", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.dropped = 0
        # Per source: None (free), _SILENT (never answered) or [tokens, last time].
        self._state: dict[Any, Any] = {}
        # The sources answered without a limit (loopback, a port from 1024 up): a drain
        # loop tests membership here before it pays for a call to :meth:`allow`.
        self.free: set[Any] = set()

    def _classify(self, addr: Any, now: float) -> Any:
        if addr[1] < MIN_SOURCE_PORT:
            state: Any = _SILENT
        else:
            try:
                ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            except ValueError:
                loopback = False
            else:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                loopback = ip.is_loopback
            state = None if loopback else [self.burst, now]
        self._state[addr] = state
        if state is None:
            self.free.add(addr)
        return state

    def allow(self, addr: Any, request_size: int, reply_size: int, now: float) -> bool:
        """Whether a reply of ``reply_size`` bytes to ``addr`` may go; counts refusals.

        Args:
            addr: The source of the request (a socket address tuple).
            request_size: Size of the datagram being answered.
            reply_size: Size of the reply.
            now: The current time in seconds (any monotonic clock, the same every call).
        """
        state = self._state.get(addr, _UNSEEN)
        if state is _UNSEEN:
            state = self._classify(addr, now)
        if state is None:
            return True
        if state is _SILENT or reply_size > request_size:
            self.dropped += 1
            return False
        if not self.rate:
            return True
        tokens = min(self.burst, state[0] + (now - state[1]) * self.rate)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            self.dropped += 1
            return False
        state[0] = tokens - 1.0
        return True

    def forget(self, addr: Any) -> None:
        """Drop the state of ``addr``: its next reply is decided afresh (a full bucket)."""
        self._state.pop(addr, None)
        self.free.discard(addr)

    def __len__(self) -> int:
        return len(self._state)
