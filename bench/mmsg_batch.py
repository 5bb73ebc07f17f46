"""CPU per datagram of a UDP echo's receive-and-reply, recvmmsg/sendmmsg against the fallback.

Usage: python -m bench.mmsg_batch [--rounds 3000]

For bursts of 1 to 64 datagrams of 64 B queued on a socket, one drain of the burst with
:class:`app.mmsg.MmsgBatch` (one ``recvmmsg`` and one ``sendmmsg`` per burst) and with
:class:`app.mmsg.PlainBatch` (``recvfrom_into`` until EAGAIN, a ``sendto`` per datagram):
the process CPU time spent per datagram, kernel delivery of the replies included. A figure
for a quiet machine; it fails nothing.
"""

from __future__ import annotations

import argparse
import socket
import time

from app.mmsg import MmsgBatch, PlainBatch, mmsg_available


def cpu_per_datagram(cls: type[MmsgBatch] | type[PlainBatch], burst: int, rounds: int) -> float:
    """Microseconds of CPU per datagram, drained and echoed ``burst`` at a time."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        for sock in (server, client):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        batch = cls(server, 2048)
        target, message = server.getsockname(), b"x" * 64
        cpu = 0.0
        for _ in range(rounds):
            for _ in range(burst):
                client.sendto(message, target)
            t0 = time.process_time()
            while True:
                count = batch.recv()
                for i in range(count):
                    batch.reply(i, batch.sizes[i])
                if count:
                    batch.flush()
                if count < batch.slots:
                    break
            cpu += time.process_time() - t0
            while True:
                try:
                    client.recv(100)
                except BlockingIOError:
                    break
    return 1e6 * cpu / (rounds * burst)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mmsg_batch")
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    if not mmsg_available():
        print("recvmmsg is not available here (or SOCKETLAB_NO_MMSG is set)")
        return 1
    print("| burst | recvmmsg/sendmmsg µs/datagram | fallback µs/datagram | ratio |")
    print("|---:|---:|---:|---:|")
    for burst in (1, 2, 4, 10, 32, 64):
        fast = cpu_per_datagram(MmsgBatch, burst, args.rounds)
        plain = cpu_per_datagram(PlainBatch, burst, args.rounds)
        print(f"| {burst} | {fast:.2f} | {plain:.2f} | {fast / plain:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
