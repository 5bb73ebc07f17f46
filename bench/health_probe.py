"""A small API client: ``GET /api/health`` in a loop on one keep-alive connection.

Usage: python health_probe.py --port WEBPORT [--interval 0.05] [--path /api/health]

Runs until SIGINT/SIGTERM and prints one JSON document: ``{"samples": [[t, seconds, status],
...]}`` where ``t`` is the wall-clock start of each request; a failed request has status 0
and reconnects.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time

_stop = False


def _on_signal(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--path", default="/api/health")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    samples: list[list[float]] = []
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
    while not _stop:
        t = time.time()
        t0 = time.perf_counter()
        try:
            conn.request("GET", args.path)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
            status = 0
        samples.append([t, time.perf_counter() - t0, status])
        if args.interval:
            time.sleep(args.interval)
    conn.close()
    sys.stdout.write(json.dumps({"samples": samples}) + "\n")


if __name__ == "__main__":
    main()
