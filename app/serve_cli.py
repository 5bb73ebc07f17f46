"""``socketlab serve``: the lab's options and the process that runs it.

Theory of operation: the options are read into one frozen
:class:`~app.settings.Settings` (flags over the TOML file over the environment), which is
checked whole before anything logs or binds (mesh caps, the target policy, a data directory
that can hold the database), so a bad setting is one line on stderr and exit status 2. Only
then does logging start and :class:`~app.lab.Lab` run under trio until Ctrl-C or SIGTERM;
the lab and the web server are imported there, so ``fire`` and ``send`` never pay for them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import Any

import trio

from app import __version__
from app.clierrors import EXIT_FAILED, EXIT_OK, usage_error
from app.endpoint import host_port
from app.errors import SocketlabError
from app.mesh.options import add_mesh_options, mesh_values
from app.runs.caps import check_mesh_caps
from app.runs.targets import TargetPolicy
from app.settings import Settings, load_settings
from app.store import StoreLimits, check_data_dir


def add_serve_command(sub: Any) -> None:
    """Add ``serve`` and its options to the ``socketlab`` subcommands."""
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


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` for a long-lived process (``serve``, and ``listen``)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: peers and mesh rows ask each peer every second or
    # two, which would bury what the lab itself says.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, getattr(logging, level.upper())))


def serve_command(args: argparse.Namespace) -> int:
    """Run the lab the options describe until Ctrl-C or SIGTERM; the exit status.

    A bad setting is one line on stderr and exit status 2 before anything logs or binds.
    """
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
        usage_error(exc.message)
    configure_logging(args.log_level)
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
    """Start the lab, then print where its listeners and dashboard are."""
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
