"""The state a pingpong flow keeps between two events (app.runs.mux, mux_udp, mux_native)."""

from __future__ import annotations

import socket as stdsocket
from collections import deque

from app.readyloop import Served
from app.registry import Conn

# ``first_counted`` until a flow sends a counted message (above every u64 seq number).
NOT_COUNTED = 1 << 64


class MuxFlow(Served):
    """The state of one flow between two events."""

    __slots__ = (
        "blocked",
        "buf",
        "conn",
        "first_counted",
        "flow_id",
        "got",
        "inflight",
        "lost_seqs",
        "msg",
        "native",
        "outstanding",
        "parked",
        "pending",
        "quota",
        "seq",
        "view",
    )

    def __init__(
        self, sock: stdsocket.socket, conn: Conn, flow_id: int, quota: int | None, buf: bytearray
    ) -> None:
        super().__init__(sock)
        self.conn = conn
        self.flow_id = flow_id
        self.quota = quota
        self.seq = 0
        self.buf = buf
        self.view = memoryview(buf)
        self.msg: memoryview | None = None  # the message view when every message has one size
        # TCP: (send time, size) of the replies still due, bytes of the first one read so
        # far, and what the kernel did not take of the last send.
        self.outstanding: deque[tuple[int, int]] = deque()
        self.got = 0
        self.pending: memoryview | None = None
        # UDP: sequence number → send time of the datagrams in flight (in send order), the
        # lost ones remembered. Both: the first one counted (after the warm-up), from which
        # the probe header numbers the counted messages.
        self.inflight: dict[int, int] = {}
        self.lost_seqs: dict[int, bool] = {}
        self.first_counted = NOT_COUNTED
        self.blocked = False
        self.parked = False  # held back by the run's rate caps until the next sweep
        self.native = False  # served by the compiled engine (app.runs.mux_native)
