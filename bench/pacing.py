"""How evenly a ``rate`` run spaces its sends: the share of gaps within ±10 % of the period.

Usage: python -m bench.pacing [--rate 1000] [--count 5000] [--flows 1]

Fires a UDP ``rate`` run in this process (as ``socketlab fire`` does) at a plain socket
that only reads, and reads each datagram's probe header with its own decoder: the header
carries the actual send time, so the gaps between consecutive send times of a flow are the
sender's real spacing. Prints the share of gaps within ±10 % of the period (iperf3 puts
about 96 % of its gaps there at 1,000 msg/s), their percentiles, the count sent and the
average rate. A bench figure for a quiet machine, not a test: it does not fail.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import threading
import time

import trio

from app.runs.fire import fire_in_process
from app.runs.spec import parse_run_spec


def _reader(sock: socket.socket, stamps: dict[int, list[int]], stop: threading.Event) -> None:
    # A thread with a blocking socket: the run's event loop is not shared with the reader.
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if len(data) >= 28 and data[:2] == b"SL" and not data[3] & 1:
            flow = int.from_bytes(data[8:12], "big")
            stamps.setdefault(flow, []).append(int.from_bytes(data[20:28], "big"))


def measure(rate: float, count: int, flows: int) -> dict[str, float]:
    """Run one rate run and return its pacing figures."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    stamps: dict[int, list[int]] = {}
    stop = threading.Event()
    thread = threading.Thread(target=_reader, args=(sock, stamps, stop), daemon=True)
    thread.start()
    spec = parse_run_spec(
        {
            "target": f"udp://127.0.0.1:{sock.getsockname()[1]}",
            "pattern": "rate",
            "rate": rate,
            "count": count,
            "connections": flows,
            "expect_replies": False,
        }
    )
    try:
        doc = trio.run(fire_in_process, spec, False)
        time.sleep(0.3)  # the reader thread takes the last datagrams off the socket
    finally:
        stop.set()
        thread.join()
        sock.close()
    period_ns = 1e9 * flows / rate
    gaps = [b - a for times in stamps.values() for a, b in itertools.pairwise(times)]
    within = sum(1 for gap in gaps if abs(gap - period_ns) <= 0.1 * period_ns)
    quantiles = statistics.quantiles(gaps, n=100) if len(gaps) > 1 else [0.0] * 99
    summary = doc["summary"]
    return {
        "sent": summary["sent"],
        "arrived": sum(len(times) for times in stamps.values()),
        "sent_per_s": summary["sent_per_s"],
        "within_10pct": 100.0 * within / len(gaps) if gaps else 0.0,
        "gap_p1_ms": quantiles[0] / 1e6,
        "gap_p50_ms": quantiles[49] / 1e6,
        "gap_p99_ms": quantiles[98] / 1e6,
        "lateness_mean_ms": summary["send_lateness_ms"]["mean"],
        "lateness_max_ms": summary["send_lateness_ms"]["max"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--flows", type=int, default=1)
    args = parser.parse_args()
    figures = measure(args.rate, args.count, args.flows)
    print(f"rate run at {args.rate:g} msg/s, {args.count} messages, {args.flows} flow(s)")
    for name, value in figures.items():
        print(f"  {name:18} {value:,.3f}" if isinstance(value, float) else f"  {name:18} {value}")


if __name__ == "__main__":
    main()
