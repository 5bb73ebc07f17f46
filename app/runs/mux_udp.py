"""UDP pingpong on the multiplexer: ``in_flight`` datagrams out per flow, each on its own
deadline.

Theory of operation: each flow keeps up to ``in_flight`` datagrams out, each with its own
send time in ``MuxFlow.inflight`` (sequence number → send time, in send order, so the
oldest is first). A reply is matched by the probe header's sequence number, or by order
when messages are too small to carry a header; its RTT is measured from its own datagram's
send time. A datagram past its deadline (``timeout``, noticed by the sweep) is counted lost
and another is sent in its place, so a loss holds one slot of the window for a timeout while
the others go on. A reply to a datagram that is no longer in flight is a *duplicate* when
that datagram was answered, *late* when it was counted lost. Every datagram a flow receives
counts its bytes, whatever its size (an echo may merge or split datagrams): the one receive
buffer holds the largest datagram there is.

Error handling: as for TCP (:mod:`app.runs.mux`); an ICMP port unreachable is counted
as ``unreachable`` and the flow goes on, its datagrams waiting out their deadlines.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from app.runs.context import FlowContext
from app.runs.error_kinds import UNREACHABLE_DETAIL
from app.runs.mux import (
    EPOLLOUT,
    HEADER_SIZE,
    SEQ_OFFSET,
    WARMUP,
    Multiplexer,
    MuxFlow,
    perf_ns,
    stamp,
)
from app.wire import probe

peek = probe.PEEK.unpack_from
PREFIX = probe.PREFIX

# Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6): a reply is never
# cut, whatever the size of its request.
MAX_DATAGRAM = 65_536
# Sequence numbers of lost datagrams a flow remembers, to tell a late reply from a duplicate.
LATE_MEMORY = 1024


class UdpMultiplexer(Multiplexer):
    """Drives the UDP pingpong flows of one run."""

    udp = True

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        # Without a warm-up every message is counted and numbered as the flow numbers it.
        self._warmup = ctx.spec.warmup > 0

    @staticmethod
    def receive_size(ctx: FlowContext) -> int:
        return MAX_DATAGRAM

    def _handler(self) -> Callable[[MuxFlow, int], None]:
        return self._on_udp

    def _start(self, flow: MuxFlow) -> None:
        self._fill_udp(flow)

    def _overdue(self, flow: MuxFlow, oldest_allowed: int) -> None:
        inflight = flow.inflight
        if inflight and next(iter(inflight.values())) < oldest_allowed:
            self._expire(flow, oldest_allowed)

    def _abandon(self, flow: MuxFlow) -> None:
        self.ctx.stats.count_unanswered(flow.inflight.values(), self.ctx.measure_from_ns)
        flow.inflight.clear()

    def _on_udp(self, flow: MuxFlow, mask: int) -> None:
        if mask & EPOLLOUT:
            self._watch_writable(flow, False)
            if mask == EPOLLOUT:
                self._fill_udp(flow)
                return
        sock = flow.sock
        rbuf = self._rbuf
        inflight = flow.inflight
        conn = flow.conn
        measure_from = self.ctx.measure_from_ns
        stats = self.ctx.stats
        record = self._record
        warmup = self._warmup
        # With every message carrying a header, a reply without one answers nothing.
        by_order = not self._all_headers
        # Up to a window of replies per event, then the window is refilled in one go; with
        # one in flight that is one recv, as before (no recv that only says EAGAIN).
        reads = self._window
        while reads:
            reads -= 1
            try:
                n = sock.recv_into(rbuf)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                # ICMP port unreachable: counted; the datagrams in flight wait out their
                # deadlines, so a dead port is not flooded.
                stats.record_error("unreachable", UNREACHABLE_DETAIL)
                break
            conn.bytes_in += n
            conn.msgs_in += 1
            seq: int | None = None
            if n >= HEADER_SIZE:
                word, seq = peek(rbuf)
                if word >> 8 != PREFIX:
                    seq = None  # not a probe header
                elif warmup and not word & WARMUP:
                    seq += flow.first_counted  # a counted reply: its number in the flow
            if seq is None and by_order:
                seq = next(iter(inflight), None)  # no header to match: the oldest one
            t0 = inflight.pop(seq, None) if seq is not None else None
            if t0 is None:
                self._unmatched(flow, seq, n)
                continue
            if t0 >= measure_from:
                record(perf_ns() - t0)
                stats.received += 1
                stats.bytes_received += n
            if not conn.dirty:
                conn.touch()  # once per snapshot: the test saves a call per reply
        self._due.append(flow)  # the window is refilled at the end of the pass (_send_due)

    def _unmatched(self, flow: MuxFlow, seq: int | None, n: int) -> None:
        """A datagram that answers nothing in flight: a duplicate, a late reply or a stray.

        Its bytes were on the wire, so they count once the flow counts (not for the
        replies to warm-up messages); a datagram without a header (a piece of a reply an
        echo split, or someone else's) counts as bytes only.
        """
        if seq is not None and seq < flow.first_counted:
            return
        if flow.seq <= flow.first_counted:
            return  # still warming up
        stats = self.ctx.stats
        stats.bytes_received += n
        if seq is None or seq >= flow.seq:
            return
        if flow.lost_seqs.pop(seq, False):
            stats.late += 1  # it was counted lost at its deadline; a second copy is a duplicate
        else:
            stats.duplicates += 1

    def _expire(self, flow: MuxFlow, oldest_allowed: int) -> None:
        """Count the datagrams past their deadline lost, and send others in their place."""
        inflight = flow.inflight
        expired = []
        for seq, t0 in inflight.items():  # in send order: the oldest first
            if t0 >= oldest_allowed:
                break
            expired.append((seq, t0))
        measure_from = self.ctx.measure_from_ns
        stats = self.ctx.stats
        lost_seqs = flow.lost_seqs
        for seq, t0 in expired:
            del inflight[seq]
            if t0 >= measure_from:
                stats.lost += 1
                if len(lost_seqs) >= LATE_MEMORY:
                    del lost_seqs[next(iter(lost_seqs))]
                lost_seqs[seq] = True
        flow.conn.touch()
        self._fill_udp(flow)

    def _fill_udp(self, flow: MuxFlow) -> None:
        """Send until ``in_flight`` datagrams are out; end the flow once none is out and
        none may be sent (the quota or the time is up).

        One function per reply, the sends inlined: this runs for every datagram.
        """
        if flow.blocked or flow.parked:
            return  # the rest goes when the socket is writable, or the sweep resumes it
        inflight = flow.inflight
        now = self._loop.now
        ctx = self.ctx
        if now < ctx.send_deadline:
            quota = flow.quota
            window = self._window
            sizes = self._sizes
            take = self._take
            measure_from = ctx.measure_from_ns
            stats = ctx.stats
            conn = flow.conn
            sock = flow.sock
            while len(inflight) < window and (quota is None or flow.seq < quota):
                seq = flow.seq
                size = sizes[seq % len(sizes)]
                wait = take(size, now)
                if wait:
                    if wait != math.inf:
                        self._park(flow, wait)  # the rate caps: the sweep resumes it
                        return
                    break  # the byte cap: nothing more to send; it ends once replies are in
                # A counted reply's number plus ``first_counted`` is the flow's own (see
                # _on_udp). Once the flow counts, stamped here without the call (see _fill).
                first = flow.first_counted
                if first <= seq and self._all_headers:
                    t0 = perf_ns()
                    stamp(flow.buf, SEQ_OFFSET, seq - first, t0)
                else:
                    t0 = self._stamp(flow, seq, size)
                try:
                    sock.send(flow.msg if flow.msg is not None else flow.view[:size])
                except BlockingIOError:
                    self._watch_writable(flow, True)  # sent (with a new send time) when writable
                    return
                except ConnectionRefusedError:
                    # An ICMP port unreachable for an earlier datagram: this one was not
                    # sent and is counted lost at its deadline, as a dead port deserves.
                    stats.record_error("unreachable", UNREACHABLE_DETAIL)
                inflight[seq] = t0
                flow.seq = seq + 1
                conn.msgs_out += 1
                conn.bytes_out += size
                if t0 >= measure_from:
                    stats.sent += 1
                    stats.bytes_sent += size
        if not inflight:
            self._loop.finish(flow)

    # The end of a pass refills the window of each flow answered in it (one call less).
    _refill = _fill_udp
