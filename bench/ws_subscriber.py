"""A minimal dashboard subscriber: one WebSocket on ``/ws``, recording every message.

Usage: python ws_subscriber.py --port WEBPORT [--token T] [--duration S]

Connects as a browser would (wsproto over a plain socket), reads until SIGINT/SIGTERM or the
duration, and prints one JSON document: ``{"connected": bool, "messages": [[t, type, bytes],
...], "error": ...}`` where ``t`` is the wall-clock arrival time of each complete message.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

_stop = False


def _on_signal(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def _kind(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return "text"
    return str(doc.get("type", "?")) if isinstance(doc, dict) else "json"


def subscribe(port: int, token: str | None, duration: float) -> dict[str, Any]:
    result: dict[str, Any] = {"connected": False, "messages": [], "error": None}
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    deadline = time.monotonic() + duration
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            ws.send(Request(host=f"127.0.0.1:{port}", target="/ws", extra_headers=headers))
        )
        sock.settimeout(0.2)
        parts: list[str] = []
        size = 0
        while not _stop and time.monotonic() < deadline:
            try:
                data = sock.recv(262144)
            except TimeoutError:
                continue
            if not data:
                result["error"] = "server closed the connection"
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    result["connected"] = True
                elif isinstance(event, RejectConnection):
                    result["error"] = f"rejected with HTTP {event.status_code}"
                    return result
                elif isinstance(event, TextMessage | BytesMessage):
                    chunk = event.data
                    size += len(chunk)
                    if isinstance(chunk, str):
                        parts.append(chunk)
                    if event.message_finished:
                        kind = _kind("".join(parts)) if parts else "bytes"
                        result["messages"].append([time.time(), kind, size])
                        parts, size = [], 0
                elif isinstance(event, Ping):
                    sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    result["error"] = f"closed by the server ({event.code})"
                    return result
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token")
    parser.add_argument("--duration", type=float, default=3600.0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        result = subscribe(args.port, args.token, args.duration)
    except OSError as exc:
        result = {"connected": False, "messages": [], "error": str(exc)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
