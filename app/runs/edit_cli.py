"""``socketlab edit``, ``pause`` and ``resume``: live edits of a run on a running lab.

The options of ``edit`` are generated from :class:`~app.runs.control.RunEdit`, the model
``PATCH /api/runs/{id}`` validates (one option per field, its description as the help), and
only what the user gave is sent, so the lab's answer is the one judge of what a run can
change live. Any refusal is one line on stderr naming the option, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from app.runs.control import RunEdit
from app.runs.options import option_name

EXIT_OK, EXIT_USAGE = 0, 2
_METAVARS = {"rate": "MSG/S", "bitrate": "BIT/S", "connections": "N"}
COMMANDS = ("edit", "pause", "resume")


def _lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="the run's id, as the page shows it")
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the lab (http://127.0.0.1:8000)"
    )
    parser.add_argument("--token", help="the lab's token (default: $SOCKETLAB_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the run document as JSON")


def add_edit_commands(sub: Any) -> None:
    """Add ``edit``, ``pause`` and ``resume`` to the ``socketlab`` subcommands."""
    edit = sub.add_parser(
        "edit",
        help="change a running run's rate or connections, or pause or resume it",
        description="Edit a run going on the lab at --url (PATCH /api/runs/RUN); its "
        "statistics go on and its series shows the change from the next second.",
    )
    _lab_options(edit)
    for name, info in RunEdit.model_fields.items():
        flags = [option_name(name)]
        common: dict[str, Any] = {"dest": name, "default": None, "help": info.description}
        if name == "paused":
            common["help"] = "--paused pauses the run, --no-paused resumes it"
            edit.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
            continue
        kind = int if info.annotation in (int, int | None) else float
        edit.add_argument(*flags, type=kind, metavar=_METAVARS.get(name, "N"), **common)
    pause = sub.add_parser(
        "pause",
        help="pause a running run (it sends nothing until resumed)",
        description="Pause a run on the lab at --url; paused time counts against its duration.",
    )
    _lab_options(pause)
    resume = sub.add_parser("resume", help="resume a paused run", description="Resume a run.")
    _lab_options(resume)


def edit_command(args: argparse.Namespace) -> int:
    """Carry out ``edit``, ``pause`` or ``resume``; returns the exit status."""
    base = args.url.rstrip("/") + f"/api/runs/{quote(args.run_id, safe='')}"
    if args.command == "edit":
        body = {name: getattr(args, name) for name in RunEdit.model_fields}
        body = {name: value for name, value in body.items() if value is not None}
        if not body:
            return _fail("give --rate, --bitrate, --connections, --paused or --no-paused")
        method, url, data = "PATCH", base, json.dumps(body).encode()
    else:
        method, url, data = "POST", f"{base}/{args.command}", b""
    request = urllib.request.Request(url, data=data or None, method=method)
    if data:
        request.add_header("Content-Type", "application/json")
    token = args.token or os.environ.get("SOCKETLAB_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return _fail(_refusal(exc))
    except (OSError, ValueError) as exc:
        return _fail(f"cannot reach the lab at {args.url}: {exc}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(describe(doc))
    return EXIT_OK


def describe(doc: dict[str, Any]) -> str:
    """One line: the run, its status and its live settings."""
    control = doc.get("control") or {}
    parts = [f"run {doc['id']} {doc['status']}"]
    if control.get("rate_target") is not None:
        parts.append(f"rate {control['rate_target']:,g} msg/s")
    n = control.get("connections")
    if n is not None:
        parts.append(f"{n:,} connection{'' if n == 1 else 's'}")
    return " · ".join(parts)


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read(65536))
        message, field = str(answer["error"]), answer.get("field")
    except (ValueError, KeyError, TypeError, OSError):
        return f"the lab answered {exc.code}"
    if isinstance(field, str) and field in RunEdit.model_fields:
        head, sep, rest = message.partition(": ")
        if sep and head == field:
            return f"{option_name(field)}: {rest}"
    return message


def _fail(message: str) -> int:
    sys.stderr.write(f"socketlab: error: {message}\n")
    return EXIT_USAGE
