"""StatsD listener vs the event loop: ``/api/health`` latency during a flood of 3,000-line
datagrams and during a flush of 2.4 M timer samples.

Usage (from the repository, in its venv)::

    python -m bench.statsd_loop [--seconds 30] [--keys 240]

Prints one JSON document: for each phase, the health probe's p50, p99 and max in ms and
the number of probes. The target (issue 14) is p99 under 100 ms in both phases.

Phases:

1. ``flood``: datagrams of 3,000 counter lines each, sent as fast as one sender can for
   ``--seconds``, while ``GET /api/health`` is probed every 20 ms.
2. ``flush``: ``--keys`` timer keys get 10,000 samples each (2.4 M with 240 keys: every
   sample is kept), then ``POST /api/listeners/<id>/flush`` runs while health is probed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.common import pct

_URL = "udp://127.0.0.1:0?mode=statsd&flush_interval=86400&max_keys=100000"


class Probe(threading.Thread):
    """``GET /api/health`` every ``interval`` seconds until stopped; keeps each latency."""

    def __init__(self, port: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopped.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/health")
                conn.getresponse().read()
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            self.samples.append((time.perf_counter() - t0) * 1000)
            self.stopped.wait(self.interval)
        conn.close()

    def stop(self) -> dict[str, Any]:
        self.stopped.set()
        self.join()
        return {
            "probes": len(self.samples),
            "p50_ms": pct(self.samples, 50),
            "p99_ms": pct(self.samples, 99),
            "max_ms": max(self.samples, default=None),
        }


def _post(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _listener_id(lab: harness.Lab) -> str:
    _, _, doc = lab.get("/api/telemetry")
    return str(doc["items"][0]["listener_id"])


def flood(lab: harness.Lab, port: int, seconds: float) -> dict[str, Any]:
    datagram = b"\n".join(b"flood.k%d:1|c" % (i % 100) for i in range(3_000))
    probe = Probe(lab.web_port)
    probe.start()
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() < deadline:
            try:
                sock.sendto(datagram, ("127.0.0.1", port))
                sent += 1
            except OSError:
                time.sleep(0.001)
    return {"datagrams_sent": sent, **probe.stop()}


def big_flush(lab: harness.Lab, port: int, keys: int) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for key in range(keys):
            for start in range(0, 10_000, 2_000):
                lines = b"\n".join(b"big.t%d:%d|ms" % (key, v) for v in range(start, start + 2_000))
                sock.sendto(lines, ("127.0.0.1", port))
                time.sleep(0.002)  # let the lab keep up: this phase measures the flush
    time.sleep(2.0)
    _, _, doc = lab.get("/api/telemetry")
    held = len(doc["items"][0]["current"]["timers"])
    probe = Probe(lab.web_port)
    probe.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    status, _ = _post(lab.web_port, f"/api/listeners/{_listener_id(lab)}/flush")
    flush_s = time.perf_counter() - t0
    time.sleep(0.5)
    return {"timer_keys": held, "flush_status": status, "flush_s": flush_s, **probe.stop()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keys", type=int, default=240)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab = harness.start_lab("statsd-loop", [_URL], Path(tmp), Path(tmp) / "data")
        try:
            port = lab.ports["udp:statsd"]
            result = {
                "flood": flood(lab, port, args.seconds),
                "flush": big_flush(lab, port, args.keys),
            }
        finally:
            lab.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
