"""``socketlab fire --via URL``: start a run on another lab and follow it from here.

The run is created with ``POST /api/runs`` on the remote lab, then followed through its
event stream (``GET /api/events?run=ID``): one progress line a second, and the result when it
ends. The remote lab does the firing, stores the run and applies its own target policy.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from app.runs.fire import print_result, progress_text

EXIT_OK, EXIT_FAILED = 0, 1


class RemoteError(Exception):
    pass


def _request(url: str, token: str | None, body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error")
        except ValueError:
            detail = None
        raise RemoteError(f"{exc.code} from {url}: {detail or exc.reason}") from None
    except OSError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from None


def _progress(live: dict[str, Any]) -> str:
    return "\r" + progress_text(live)


def fire_via(base: str, token: str | None, body: dict[str, Any], *, as_json: bool) -> int:
    """Start ``body`` on the lab at ``base`` and stream its progress; returns the exit code."""
    base = base.rstrip("/")
    show = not as_json and sys.stderr.isatty()
    try:
        with _request(f"{base}/api/runs", token, body) as response:
            run_id = json.loads(response.read())["id"]
        with _request(f"{base}/api/events?run={run_id}&types=run", token, timeout=60) as stream:
            for raw in stream:
                event = json.loads(raw)
                if event["type"] == "run.interval":
                    if show:
                        sys.stderr.write(_progress(event["live"]))
                        sys.stderr.flush()
                    elif not as_json:
                        print(_progress(event["live"]).strip(), flush=True)
                elif event["type"] == "run.ended":
                    break
        if show:
            sys.stderr.write("\n")
        with _request(f"{base}/api/runs/{run_id}", token) as response:
            doc = json.loads(response.read())
    except RemoteError as exc:
        sys.stderr.write(f"socketlab: error: {exc}\n")
        return EXIT_FAILED
    print_result(doc, as_json=as_json)
    return EXIT_OK if doc.get("status") == "finished" else EXIT_FAILED
