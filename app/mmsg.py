"""Datagrams in batches: ``recvmmsg``/``sendmmsg`` through libc, or a pure-Python fallback.

Theory of operation: a UDP listener's drain loop paid one system call per datagram read,
one more for the read that finally said EAGAIN, and one per reply. :class:`MmsgBatch` reads
up to ``slots`` datagrams with one ``recvmmsg(2)`` into buffers allocated once, and sends
the replies of a pass with one ``sendmmsg(2)`` that points at those same buffers (an echo
copies nothing). A read that returns fewer datagrams than it asked for drained the socket,
so the loop goes to wait for readiness without the EAGAIN call. Python's socket module has
neither call, so they are reached through ctypes; the ``mmsghdr`` arrays are written and
read through ``memoryview`` casts of their memory, which costs a fraction of ctypes field
access on the hot path.

:class:`PlainBatch` is the fallback with the same interface: ``recvfrom_into`` until
EAGAIN (or ``slots``) and one ``sendto`` per reply. It is used where libc has no
``recvmmsg`` (not Linux), and when ``SOCKETLAB_NO_MMSG=1`` is set, so that every test can
run over both paths (``make test`` does).

Both read into ``views[i]`` (``max_size + 1`` bytes each: a longer datagram is cut there),
report sizes in ``sizes`` (the datagram's real length, even when it was cut: ``MSG_TRUNC``)
and peer addresses in ``addrs`` as Python's ``recvfrom`` spells them (``(host, port)`` or
``(host, port, flowinfo, scope_id)``), and count nothing themselves: the caller counts
what :meth:`flush` reports.

Addresses: decoding a ``sockaddr`` into a tuple costs more than the rest of a datagram's
work, so the decoded tuples are kept in a dict keyed by the raw address (for IPv4 its
first 8 bytes as one integer: family, port, address). The dict is emptied when it reaches
``MAX_ADDRS`` entries, so a flood of forged sources cannot grow it.

Error handling: ``recvmmsg`` reports an error queued on the socket (an ICMP
port-unreachable for an earlier reply) only when it received nothing; :meth:`recv` raises
it as ``OSError`` and the next call goes on. A reply the kernel refuses (full send buffer,
ICMP error) is skipped and reported as failed by :meth:`flush`; the others are sent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket as stdsocket
import struct
from typing import Any

# Datagrams per system call: enough to amortise it, small enough for a pass to stay short.
SLOTS = 64
# Decoded peer addresses kept (see Addresses above).
MAX_ADDRS = 65536
ENV_NO_MMSG = "SOCKETLAB_NO_MMSG"

# Linux x86-64/aarch64 layout. struct iovec {void *base; size_t len} = 16 bytes.
# struct mmsghdr {struct msghdr {void *name; socklen_t namelen; struct iovec *iov;
# size_t iovlen; void *control; size_t controllen; int flags}; unsigned len} = 64 bytes:
# as 64-bit words, [0] name, [1] namelen, [2] iov, [3] iovlen, [4] control,
# [5] controllen, [6] flags, [7] len (low 32 bits).
_HDR_WORDS = 8
_IOV_WORDS = 2
_ADDR_STRIDE = 32  # sockaddr_in6 is 28 bytes; 32 keeps every slot 8-byte aligned
_MSG_DONTWAIT = 0x40
# With MSG_TRUNC a datagram longer than its buffer reports its real length, so an oversized
# one is counted at the size it had on the wire (its first ``max_size + 1`` bytes are kept).
_MSG_TRUNC = getattr(stdsocket, "MSG_TRUNC", 0x20)


def _load_libc() -> Any | None:
    """libc's ``recvmmsg``/``sendmmsg``, or None where they are missing.

    Through ``PyDLL``, which keeps the GIL over the call: both are always called with
    ``MSG_DONTWAIT``, so they never block, and releasing and taking back the GIL would cost
    more than the call. Arguments are given as ctypes objects built once (no ``argtypes``
    conversion per call): together about half a microsecond less per call.
    """
    if ctypes.sizeof(ctypes.c_void_p) != 8 or not hasattr(stdsocket, "AF_INET6"):
        return None  # the layout above is the 64-bit one
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.restype = ctypes.c_int
    sendmmsg.restype = ctypes.c_int
    return libc


_LIBC = _load_libc()


def mmsg_available() -> bool:
    """Whether :func:`open_batch` gives the ``recvmmsg`` path (libc has it, not disabled)."""
    return _LIBC is not None and os.environ.get(ENV_NO_MMSG, "") in ("", "0")


def decode_sockaddr(family: int, raw: bytes) -> Any:
    """A ``sockaddr`` as Python's ``recvfrom`` returns it."""
    if family == stdsocket.AF_INET:
        port = struct.unpack_from("!H", raw, 2)[0]
        return (stdsocket.inet_ntop(stdsocket.AF_INET, raw[4:8]), port)
    port, flowinfo = struct.unpack_from("!HI", raw, 2)
    (scope_id,) = struct.unpack_from("=I", raw, 24)
    return (stdsocket.inet_ntop(stdsocket.AF_INET6, raw[8:24]), port, flowinfo, scope_id)


class PlainBatch:
    """The fallback: one ``recvfrom_into`` per datagram and one ``sendto`` per reply.

    Args:
        sock: A bound, non-blocking UDP socket (the caller owns and closes it).
        max_size: The largest datagram accepted; buffers hold one byte more.
        slots: Datagrams per :meth:`recv` at most.
    """

    mmsg = False

    def __init__(self, sock: stdsocket.socket, max_size: int, slots: int = SLOTS) -> None:
        self.sock = sock
        self.slots = slots
        self._size = max_size + 1
        self._bufs = [bytearray(max_size + 1) for _ in range(slots)]
        self.views = [memoryview(b) for b in self._bufs]
        self.sizes = [0] * slots
        self.addrs: list[Any] = [None] * slots
        self._replies: list[tuple[int, int]] = []

    def recv(self) -> int:
        """Read what the kernel has, up to ``slots`` datagrams; 0 when it had none.

        Raises:
            OSError: An error queued on the socket, before any datagram was read.
        """
        recvfrom_into = self.sock.recvfrom_into
        sizes, addrs = self.sizes, self.addrs
        count = 0
        for buf in self._bufs:
            try:
                n, addr = recvfrom_into(buf, 0, _MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError:
                if count:
                    break  # reported by the next call, after these are handled
                raise
            sizes[count] = n
            addrs[count] = addr
            count += 1
        return count

    def reply(self, slot: int, n: int) -> None:
        """Queue the first ``n`` bytes of ``views[slot]`` back to ``addrs[slot]``.

        Raises:
            ValueError: ``n`` is more than the slot holds.
        """
        if n > self._size:
            raise ValueError(f"a reply of {n} bytes from a slot of {self._size}")
        self._replies.append((slot, n))

    def flush(self) -> list[int]:
        """Send the queued replies; returns the indexes (in queue order) that failed."""
        failed: list[int] = []
        sendto, views, addrs = self.sock.sendto, self.views, self.addrs
        for i, (slot, n) in enumerate(self._replies):
            try:
                sendto(views[slot][:n], addrs[slot])
            except OSError:
                failed.append(i)
        self._replies.clear()
        return failed


class MmsgBatch:
    """``recvmmsg``/``sendmmsg`` over buffers allocated once (see the module docstring).

    Args:
        sock: A bound, non-blocking UDP socket (the caller owns and closes it).
        max_size: The largest datagram accepted; buffers hold one byte more.
        slots: Datagrams per :meth:`recv` at most.

    Resource handling: the arrays are plain memory freed with the object; the socket is
    the caller's.
    """

    mmsg = True

    def __init__(self, sock: stdsocket.socket, max_size: int, slots: int = SLOTS) -> None:
        assert _LIBC is not None
        self.sock = sock
        self.slots = slots
        self._fd = sock.fileno()
        self._family = sock.family
        self._namelen = 16 if sock.family == stdsocket.AF_INET else 28
        self._size = size = max_size + 1
        # Anonymous memory is given pages only where datagrams are written: 64 slots of
        # 64 KiB cost what the datagrams received touch, not 4 MiB up front.
        self._data = mmap.mmap(-1, size * slots)
        self._data_c = ctypes.c_char.from_buffer(self._data)
        self._names = ctypes.create_string_buffer(_ADDR_STRIDE * slots)
        self._rhdr = ctypes.create_string_buffer(8 * _HDR_WORDS * slots)
        self._riov = ctypes.create_string_buffer(8 * _IOV_WORDS * slots)
        self._shdr = ctypes.create_string_buffer(8 * _HDR_WORDS * slots)
        self._siov = ctypes.create_string_buffer(8 * _IOV_WORDS * slots)
        data_mv = memoryview(self._data)
        self.views = [data_mv[i * size : (i + 1) * size] for i in range(slots)]
        self._names_mv = memoryview(self._names).cast("B")
        self._names_q = self._names_mv.cast("Q")
        rhdr = memoryview(self._rhdr).cast("B").cast("Q")
        riov = memoryview(self._riov).cast("B").cast("Q")
        self._shdr_q = memoryview(self._shdr).cast("B").cast("Q")
        self._siov_q = memoryview(self._siov).cast("B").cast("Q")
        data_at = ctypes.addressof(self._data_c)
        names_at = ctypes.addressof(self._names)
        riov_at, siov_at = ctypes.addressof(self._riov), ctypes.addressof(self._siov)
        self._buf_at = [data_at + i * size for i in range(slots)]
        self._name_at = [names_at + i * _ADDR_STRIDE for i in range(slots)]
        for i in range(slots):
            h = i * _HDR_WORDS
            # The kernel writes each received address's length back; it is always the
            # family's sockaddr size, so it never needs setting again.
            rhdr[h], rhdr[h + 1] = self._name_at[i], self._namelen
            rhdr[h + 2], rhdr[h + 3] = riov_at + 16 * i, 1
            riov[2 * i], riov[2 * i + 1] = self._buf_at[i], size
            self._shdr_q[h + 1] = self._namelen
            self._shdr_q[h + 2], self._shdr_q[h + 3] = siov_at + 16 * i, 1
        # msg_len of entry i, as a 32-bit index into the receive headers.
        self._lens = memoryview(self._rhdr).cast("B").cast("I")
        rhdr_at, shdr_at = ctypes.addressof(self._rhdr), ctypes.addressof(self._shdr)
        # The calls' arguments as ctypes objects, built once (see _load_libc).
        self._fd_arg = ctypes.c_int(self._fd)
        self._recvmmsg = _LIBC.recvmmsg
        self._recv_args = (
            self._fd_arg,
            ctypes.c_void_p(rhdr_at),
            ctypes.c_uint(slots),
            ctypes.c_int(_MSG_DONTWAIT | _MSG_TRUNC),
            None,
        )
        self._sendmmsg = _LIBC.sendmmsg
        self._send_flags = ctypes.c_int(_MSG_DONTWAIT)
        self._send_at = [ctypes.c_void_p(shdr_at + 64 * i) for i in range(slots)]
        self._counts = [ctypes.c_uint(i) for i in range(slots + 1)]
        self.sizes = [0] * slots
        self.addrs: list[Any] = [None] * slots
        self._known: dict[Any, Any] = {}
        self._queued = 0

    def recv(self) -> int:
        """Read what the kernel has, up to ``slots`` datagrams, in one system call.

        Returns:
            How many were read (0 when the kernel had none).

        Raises:
            OSError: An error queued on the socket, before any datagram was read.
        """
        count: int = self._recvmmsg(*self._recv_args)
        if count <= 0:
            if count == 0:
                return 0
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        lens, sizes, addrs, known = self._lens, self.sizes, self.addrs, self._known
        if self._family == stdsocket.AF_INET:
            names_q = self._names_q
            for i in range(count):
                sizes[i] = lens[16 * i + 14]
                key = names_q[4 * i]
                addr = known.get(key)
                if addr is None:
                    addr = self._learn(key, i)
                addrs[i] = addr
        else:
            names_mv = self._names_mv
            for i in range(count):
                sizes[i] = lens[16 * i + 14]
                raw = names_mv[32 * i : 32 * i + 28].tobytes()
                addr = known.get(raw)
                if addr is None:
                    addr = self._learn(raw, i)
                addrs[i] = addr
        return count

    def _learn(self, key: Any, slot: int) -> Any:
        known = self._known
        if len(known) >= MAX_ADDRS:
            known.clear()
        start = slot * _ADDR_STRIDE
        raw = self._names_mv[start : start + self._namelen].tobytes()
        addr = decode_sockaddr(self._family, raw)
        known[key] = addr
        return addr

    def reply(self, slot: int, n: int) -> None:
        """Queue the first ``n`` bytes of ``views[slot]`` back to ``addrs[slot]``.

        Call it before the next :meth:`recv` overwrites the slot; :meth:`flush` sends.

        Raises:
            ValueError: ``n`` is more than the slot holds (the kernel would read past it).
        """
        if n > self._size:
            raise ValueError(f"a reply of {n} bytes from a slot of {self._size}")
        j = self._queued
        self._shdr_q[_HDR_WORDS * j] = self._name_at[slot]
        siov = self._siov_q
        siov[2 * j] = self._buf_at[slot]
        siov[2 * j + 1] = n
        self._queued = j + 1

    def flush(self) -> list[int]:
        """Send the queued replies with ``sendmmsg``; returns the indexes that failed.

        ``sendmmsg`` stops at the first datagram the kernel refuses: that one is counted
        failed and the rest are sent by the next call.
        """
        total = self._queued
        self._queued = 0
        failed: list[int] = []
        done = 0
        sendmmsg, fd, flags = self._sendmmsg, self._fd_arg, self._send_flags
        at, counts = self._send_at, self._counts
        while done < total:
            sent: int = sendmmsg(fd, at[done], counts[total - done], flags)
            if sent <= 0:
                if sent < 0 and ctypes.get_errno() == errno.EINTR:
                    continue  # nothing was sent: try again
                failed.append(done)
                done += 1
            else:
                done += sent
        return failed


Batch = PlainBatch | MmsgBatch


def open_batch(sock: stdsocket.socket, max_size: int, slots: int = SLOTS) -> Batch:
    """The batch reader for ``sock``: :class:`MmsgBatch` where available, else the fallback.

    ``SOCKETLAB_NO_MMSG=1`` forces :class:`PlainBatch` (read when the listener starts).
    """
    if mmsg_available() and sock.family in (stdsocket.AF_INET, stdsocket.AF_INET6):
        return MmsgBatch(sock, max_size, slots)
    return PlainBatch(sock, max_size, slots)
