"""The ``socketlab`` command: argument parsing only; the work happens in lab and runs.

Exit codes: 0 success, 1 a run that failed (or a lab that could not be reached), 2 bad
arguments, a target the policy refuses, a port taken or a data directory that cannot hold
the database (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, NoReturn

import trio

from app import __version__, native
from app.clierrors import check_lab_url, error_line, socketlab_error
from app.endpoint import host_port
from app.errors import SocketlabError
from app.mesh.options import add_mesh_options, mesh_values
from app.runs.caps import check_mesh_caps
from app.runs.edit_cli import COMMANDS as EDIT_COMMANDS
from app.runs.edit_cli import add_edit_commands, edit_command
from app.runs.options import add_spec_options, spec_body
from app.runs.spec import parse_run_spec
from app.runs.targets import TargetPolicy
from app.settings import LISTENER_MODES, Settings, load_settings
from app.store import StoreLimits, check_data_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"socketlab: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


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

    serve = sub.add_parser(
        "serve",
        help="run the lab: listeners and the dashboard",
        description="Run the lab: listeners, runs and the dashboard in one process. "
        "Stop with Ctrl-C or SIGTERM.",
    )
    serve.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="where the dashboard and API listen (default 127.0.0.1:8000)",
    )
    serve.add_argument(
        "--listen",
        metavar="URL",
        action="append",
        help="a listener, e.g. tcp://127.0.0.1:9000?mode=echo or udp://[::1]:9000?mode=echo; "
        "repeat for more (default: TCP and UDP echo on 127.0.0.1:9000). Modes: echo, sink, "
        "respond, statsd, source, influx, graphite, syslog; options as for `socketlab listen`",
    )
    serve.add_argument(
        "--token",
        help="the API token (default: $SOCKETLAB_TOKEN, or a random one printed as a login URL)",
    )
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="no token at all; allowed only when the web bind is loopback",
    )
    serve.add_argument(
        "--data",
        metavar="DIR",
        help="where the SQLite database lives (default: $SOCKETLAB_DATA or ./data)",
    )
    serve.add_argument("--config", metavar="FILE", help="a TOML config file (flags win over it)")
    limits = StoreLimits()
    serve.add_argument(
        "--max-stored-runs",
        metavar="N",
        help=f"keep the newest N runs in the database; older ended ones are deleted "
        f"(default {limits.max_stored_runs:,}; config: [retention] runs)",
    )
    serve.add_argument(
        "--max-audit-entries",
        metavar="N",
        help=f"keep the newest N audit entries (default {limits.max_audit_entries:,}; "
        "config: [retention] audit)",
    )
    serve.add_argument(
        "--max-presets",
        metavar="N",
        help=f"refuse to save more than N presets (default {limits.max_presets:,}; "
        "config: [retention] presets)",
    )
    serve.add_argument(
        "--allow-target",
        metavar="CIDR|HOST",
        action="append",
        help="a network or host runs may send to, besides loopback; repeat for more",
    )
    serve.add_argument(
        "--allow-bind",
        metavar="CIDR",
        action="append",
        help="a network or address where listeners started over the API or the dashboard "
        "may bind, besides loopback (0.0.0.0/0 or ::/0 for every interface); repeat for more",
    )
    serve.add_argument(
        "--allow-multicast", action="store_true", help="let runs send to multicast groups"
    )
    serve.add_argument(
        "--allow-host",
        metavar="NAME[:PORT]",
        action="append",
        help="a Host name the dashboard answers to, besides loopback and the bind address "
        "(e.g. the name a compose service is reached by); repeat for more",
    )
    serve.add_argument(
        "--peer",
        metavar="URL",
        action="append",
        help="another socketlab node to show and start runs on, e.g. http://edge-a:8000, "
        "with its own token http://:TOKEN@edge-a:8000; repeat for more",
    )
    serve.add_argument(
        "--peer-token",
        metavar="TOKEN",
        help="the token sent to peers whose URL has none (also $SOCKETLAB_PEER_TOKEN); "
        "without it they get no token: this node's own is never sent unless given here",
    )
    serve.add_argument(
        "--peer-timeout",
        metavar="SECONDS",
        type=float,
        help="the longest a peer's whole answer is waited for (default 5)",
    )
    serve.add_argument(
        "--demo",
        nargs="?",
        const="gentle",
        choices=["gentle"],
        help="keep a demo profile of test traffic flowing to every peer: 'gentle' (the "
        "default) is 10 msg/s over TCP and 5 msg/s over UDP to each peer's echo listeners",
    )
    add_mesh_options(serve)
    serve.add_argument(
        "--allow-origin",
        metavar="ORIGIN",
        action="append",
        help="an extra exact browser Origin (scheme://host:port) allowed to make changes",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: peers and mesh rows ask each peer every second or
    # two, which would bury what the lab itself says.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, getattr(logging, level.upper())))


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            web=args.web,
            listen=args.listen,
            token=args.token,
            no_auth=args.no_auth,
            data=args.data,
            config=args.config,
            allow_target=args.allow_target,
            allow_bind=args.allow_bind,
            allow_host=args.allow_host,
            allow_origin=args.allow_origin,
            allow_multicast=args.allow_multicast,
            peer=args.peer,
            peer_token=args.peer_token,
            peer_timeout=args.peer_timeout,
            demo=args.demo is not None,
            retention={
                "runs": args.max_stored_runs,
                "audit": args.max_audit_entries,
                "presets": args.max_presets,
            },
            mesh=mesh_values(args),
        )
        check_mesh_caps(settings)
        TargetPolicy(settings.allow_targets)
        # Before anything logs: a data directory that cannot hold the database is one line.
        check_data_dir(settings.data_dir, settings.store_limits)
    except SocketlabError as exc:
        _usage_error(exc.message)
    _configure_logging(args.log_level)
    try:
        # The data directory can still fail between the check and the lab's own open; a
        # port taken is a BindError naming the flag's setting: both are one line, exit 2.
        trio.run(_serve_async, settings)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        sys.stderr.write(f"socketlab: error: {exc}\n")
        return EXIT_FAILED
    return EXIT_OK


async def _serve_async(settings: Settings) -> None:
    from app.lab import Lab
    from app.web.server import serve_web

    lab = Lab(settings, web=serve_web, handle_signals=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(lab.serve)
        # Everything made so far (modules, classes, the app) lives as long as the process:
        # out of the collector's sight, a full collection walks only what came later. Left
        # in, the oldest generation took 35 to 60 ms a pass here, a stall of every socket
        # and of /api/health each time.
        gc.collect()
        gc.freeze()
        host = settings.web_host
        base = f"http://{host_port(host, lab.web_port or 0)}/"
        listeners = ", ".join(listener.spec_url() for listener in lab.listeners)
        print(f"socketlab {__version__}: listeners {listeners or 'none'}", flush=True)
        if settings.token:
            print(f"dashboard: {base}?token={settings.token}", flush=True)
        else:
            print(f"dashboard: {base} (no auth)", flush=True)


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
        _usage_error("--both: fires from this process; it does not go with --via")
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
            _usage_error("--allow-multicast: the lab given with --via decides (its own flag)")
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
        _usage_error(exc.message)
    _configure_logging(args.log_level)
    try:
        trio.run(partial(run_listeners, specs, print_flushes=args.flushes, as_json=args.json))
    except SocketlabError as exc:
        _usage_error(exc.message)
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
    "serve": _serve,
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
        _usage_error(error_line(error))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
