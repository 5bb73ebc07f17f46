"""Bare trio UDP ping-pong client: N flows as tasks, same output format as netbench udp-pingpong.

Usage: python ref_trio_udp_client.py --port P [--host H] [--flows N] [--size S] [--duration D]

Each flow is a connected trio UDP socket with one datagram in flight; the first 8 bytes carry
a sequence number (so ``--size`` is at least 8). A datagram unanswered after ``--timeout-ms``
is counted lost; replies with an old sequence number are counted late.
"""

import argparse
import time

import trio


async def pingpong(sock, size, wait_s, deadline, lat, counts):
    pad = b"x" * (size - 8)
    seq = 0
    try:
        while time.perf_counter() < deadline:
            seq += 1
            t = time.perf_counter()
            await sock.send(seq.to_bytes(8, "little") + pad)
            with trio.move_on_after(wait_s) as scope:
                while True:
                    data = await sock.recv(65536)
                    if int.from_bytes(data[:8], "little") == seq:
                        break
                    counts["late"] += 1
            if scope.cancelled_caught:
                counts["lost"] += 1
                continue
            lat.append(time.perf_counter() - t)
    except OSError:
        counts["errors"] += 1


async def main(a):
    socks = []
    for _ in range(a.flows):
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.connect((a.host, a.port))
        socks.append(sock)
    lat, counts = [], {"lost": 0, "late": 0, "errors": 0}
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for s in socks:
            nursery.start_soon(
                pingpong, s, a.size, a.timeout_ms / 1000, t0 + a.duration, lat, counts
            )
    el = time.perf_counter() - t0
    lat.sort()

    def pct(p):
        return lat[int(p * (len(lat) - 1))] * 1e6 if lat else 0.0

    print(
        f"trio-udp-pingpong flows={a.flows} size={a.size} duration={el:.2f} rtt_total={len(lat)} "
        f"rtt_per_s={len(lat) / el:.0f} p50_us={pct(0.5):.1f} p99_us={pct(0.99):.1f} "
        f"lost={counts['lost']} late={counts['late']} errors={counts['errors']}"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--flows", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--timeout-ms", type=int, default=200)
    trio.run(main, p.parse_args())
