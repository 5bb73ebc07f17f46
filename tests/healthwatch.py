"""Ask a lab's /api/health again and again from a process of its own, until stdin closes.

The watcher measures from outside both the lab and the test: the test's own event loop
serves the hostile peers, and a delay there is not the lab's. Each answer's time (seconds)
is one line on stdout; a failure is a line starting with ``!``.

Usage: ``python -m tests.healthwatch PORT [INTERVAL]``.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time


def _watch(port: int, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            conn.close()
            line = f"{time.perf_counter() - started:.6f}"
            if response.status != 200:
                line = f"! status {response.status}"
        except OSError as exc:
            line = f"! {exc!r}"
        print(line, flush=True)
        stop.wait(interval)


def main() -> None:
    port = int(sys.argv[1])
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(port, interval, stop), daemon=True)
    watcher.start()
    sys.stdin.read()  # until the test closes it
    stop.set()
    watcher.join()


if __name__ == "__main__":
    main()
