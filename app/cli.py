"""The ``socketlab`` command: argument parsing only; the work happens in lab and runs.

Exit codes: 0 success, 1 a run that failed (or a lab that could not be reached), 2 bad
arguments, a target the policy refuses, a port taken or a data directory that cannot hold
the database (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, NoReturn

import trio

from app import __version__, native
from app.clierrors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    check_lab_url,
    error_line,
    socketlab_error,
    usage_error,
)
from app.errors import SocketlabError
from app.runs.edit_cli import COMMANDS as EDIT_COMMANDS
from app.runs.edit_cli import add_edit_commands, edit_command
from app.runs.options import add_spec_options, spec_body
from app.runs.spec import parse_run_spec
from app.serve_cli import add_serve_command, configure_logging, serve_command
from app.settings import LISTENER_MODES


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_fire_options(fire: argparse.ArgumentParser) -> None:
    """Every option of a run, generated from the run spec models, plus ``--json``."""
    add_spec_options(fire)
    fire.add_argument(
        "--json", action="store_true", help="print the run document the API returns, as JSON"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="socketlab",
        description="A network traffic lab: TCP/UDP listeners, test traffic and a live dashboard.",
    )
    parser.add_argument(
        "--version", action="version", version=f"socketlab {__version__} ({native.describe()})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    add_serve_command(sub)

    fire = sub.add_parser(
        "fire",
        help="fire test traffic at a target and print the measurements",
        description="Fire test traffic at URL (tcp://, udp:// or tls://host:port) from this "
        "process and print RTT percentiles, throughput, loss and errors.",
    )
    fire.add_argument("url", metavar="URL", help="the target, e.g. tcp://127.0.0.1:9000")
    add_fire_options(fire)
    fire.add_argument(
        "--via",
        metavar="LAB_URL",
        help="start the run on the lab at LAB_URL (e.g. http://edge-a:8000) and stream its "
        "progress here, instead of firing from this process",
    )
    fire.add_argument(
        "--token", help="the token of the lab given with --via (default: $SOCKETLAB_TOKEN)"
    )
    fire.add_argument(
        "--allow-multicast",
        action="store_true",
        help="let this run send to a multicast group (a lab's runs: the lab's own flag)",
    )
    fire.add_argument(
        "--both",
        action="store_true",
        help="compare transports: run the same load over TCP and UDP to URL's host:port at "
        "once, and print the two results side by side",
    )

    kill = sub.add_parser(
        "stop-all",
        help="the kill switch: stop every run on a running lab",
        description="Stop every running run on the lab at --url (POST /api/runs/stop-all).",
    )
    kill.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the lab (http://127.0.0.1:8000)"
    )
    kill.add_argument("--token", help="the lab's token (default: $SOCKETLAB_TOKEN)")
    add_edit_commands(sub)

    send = sub.add_parser(
        "send",
        help="send one packet and show the reply as hex and text",
        description="Send one message to URL and print the reply as hex and as text "
        "(the packet pattern).",
    )
    send.add_argument("url", metavar="URL", help="the target, e.g. udp://127.0.0.1:9000")
    send.add_argument(
        "payload",
        metavar="PAYLOAD",
        help=r"text with escapes (\r \n \t \\ \xNN), or hex with --hex",
    )
    send.add_argument("--hex", action="store_true", help="PAYLOAD is hex, e.g. 'de ad be ef'")
    add_spec_options(send, ["packet"], payload=False)
    send.add_argument("--json", action="store_true", help="print the run document as JSON")

    listen = sub.add_parser(
        "listen",
        help="run listeners only (no dashboard): echo, sink, respond, statsd, influx, graphite, "
        "syslog, over tcp/udp/tls",
        description="Run listeners without the dashboard until Ctrl-C or SIGTERM, then print "
        "their totals. URL: tcp://, udp:// or tls://HOST:PORT?mode=MODE&option=value..., "
        "e.g. udp://127.0.0.1:8125?mode=statsd or tcp://127.0.0.1:9000?mode=echo&delay=50ms. "
        "Options in a URL win over the flags below.",
    )
    listen.add_argument("urls", metavar="URL", nargs="+", help="a listener URL; several allowed")
    listen.add_argument(
        "--mode",
        choices=LISTENER_MODES,
        help="mode (default echo)",
    )
    listen.add_argument("--rules", metavar="FILE", help="respond: rules file (JSON or TOML)")
    listen.add_argument("--default-reply", metavar="TEMPLATE", help="respond: default reply")
    listen.add_argument(
        "--flush-interval", metavar="SECONDS", help="statsd: seconds between flushes (10)"
    )
    listen.add_argument("--max-connections", metavar="N", help="connections (TCP) or flows (UDP)")
    listen.add_argument("--idle-timeout", metavar="SECONDS", help="close idle connections")
    listen.add_argument("--max-message-size", metavar="BYTES", help="largest datagram or line")
    listen.add_argument(
        "--flushes", action="store_true", help="statsd: print every flush as a JSON line"
    )
    listen.add_argument(
        "--json", action="store_true", help="at exit, print the listeners' documents as JSON"
    )
    listen.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    return parser


def _run_and_print(body: dict[str, Any], as_json: bool, allow_multicast: bool = False) -> int:
    from app.runs.fire import fire_in_process, print_result

    spec = parse_run_spec(body)
    try:
        # A target the policy refuses (an always-denied range) is a SocketlabError: main().
        doc = trio.run(
            partial(fire_in_process, allow_multicast=allow_multicast),
            spec,
            not as_json and sys.stderr.isatty(),
        )
    except KeyboardInterrupt:
        return EXIT_FAILED
    print_result(doc, as_json=as_json)
    return EXIT_OK if doc["status"] == "finished" else EXIT_FAILED


def _fire_both(args: argparse.Namespace) -> int:
    from app.runs.compare import fire_both_in_process, format_side_by_side, transport_specs

    if args.via:
        usage_error("--both: fires from this process; it does not go with --via")
    specs = transport_specs(spec_body(args.url, args))
    try:
        doc = trio.run(fire_both_in_process, specs)
    except KeyboardInterrupt:
        return EXIT_FAILED
    print(json.dumps(doc, indent=2) if args.json else format_side_by_side(doc["runs"]))
    return EXIT_OK if doc["status"] == "finished" else EXIT_FAILED


def _fire(args: argparse.Namespace) -> int:
    if args.both:
        return _fire_both(args)
    if args.via:
        from app.runs.remote import fire_via

        if args.allow_multicast:
            usage_error("--allow-multicast: the lab given with --via decides (its own flag)")
        check_lab_url(args.via, "--via")
        body = spec_body(args.url, args)
        parse_run_spec(body)
        token = args.token or os.environ.get("SOCKETLAB_TOKEN")
        return fire_via(args.via, token, body, as_json=args.json)
    return _run_and_print(spec_body(args.url, args), args.json, args.allow_multicast)


def _send(args: argparse.Namespace) -> int:
    body = {
        **spec_body(args.url, args),
        "pattern": "packet",
        "payload": {"kind": "hex" if args.hex else "text", "text": args.payload},
    }
    return _run_and_print(body, args.json)


def _listen(args: argparse.Namespace) -> int:
    from app.listeners.parse import parse_listener
    from app.listeners.standalone import run_listeners

    flags = {
        "mode": args.mode,
        "rules_file": args.rules,
        "default_reply": args.default_reply,
        "flush_interval": args.flush_interval,
        "max_connections": args.max_connections,
        "idle_timeout": args.idle_timeout,
        "max_message_size": args.max_message_size,
    }
    defaults = {name: value for name, value in flags.items() if value is not None}
    try:
        specs = [parse_listener(url, "url", defaults=defaults) for url in args.urls]
    except SocketlabError as exc:
        usage_error(exc.message)
    configure_logging(args.log_level)
    try:
        trio.run(partial(run_listeners, specs, print_flushes=args.flushes, as_json=args.json))
    except SocketlabError as exc:
        usage_error(exc.message)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _stop_all(args: argparse.Namespace) -> int:
    """The kill switch from the command line: ``POST /api/runs/stop-all`` on a lab."""
    from app.runs.remote import stop_all_via

    check_lab_url(args.url, "--url")
    token = args.token or os.environ.get("SOCKETLAB_TOKEN")
    return stop_all_via(args.url, token)


_COMMANDS = {
    "serve": serve_command,
    "fire": _fire,
    "send": _send,
    "stop-all": _stop_all,
    "listen": _listen,
    **dict.fromkeys(EDIT_COMMANDS, edit_command),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. An error of ours (a bad option, a target the policy refuses, a port
    taken), raised alone or in a group from a nursery, is one line on stderr, exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = _COMMANDS.get(args.command)
    if command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return command(args)
    except (SocketlabError, BaseExceptionGroup) as exc:
        error = socketlab_error(exc)
        if error is None:
            raise
        usage_error(error_line(error))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
