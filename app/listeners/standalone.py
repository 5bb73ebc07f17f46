"""``socketlab listen``: listeners without the lab (no dashboard, no store, no runs).

One trio run holds a :class:`~app.listeners.manager.ListenerManager` and a registry, prints
one line per listener once it is bound (``listening URL (id)``, the URL with the real
port), optionally one JSON line per StatsD flush, and on SIGINT/SIGTERM a summary line per
listener (or, with ``--json``, their final documents), then exits 0.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import trio

from app.errors import SocketlabError
from app.listeners.base import Listener
from app.listeners.manager import ListenerManager
from app.listeners.modes.statsd import StatsdMode
from app.listeners.spec import ListenerSpec
from app.registry import Registry

# Without the lab's snapshot loop nobody would empty the registry's change lists.
_HOUSEKEEPING_PERIOD = 0.5


def summary_line(listener: Listener) -> str:
    """One human line of a listener's totals."""
    doc = listener.to_dict()
    parts = [
        f"{doc['id']} {doc['url']}:",
        f"accepted={doc['accepted']}",
        f"rejected={doc['rejected']}",
        f"msgs_in={doc['msgs_in']}",
        f"msgs_out={doc['msgs_out']}",
        f"bytes_in={doc['bytes_in']}",
        f"bytes_out={doc['bytes_out']}",
        f"errors={doc['errors']}",
        f"oversized={doc['oversized']}",
    ]
    if "statsd" in doc:
        stats = doc["statsd"]
        parts += [
            f"metrics={stats['metrics_received']}",
            f"bad_lines={stats['bad_lines']}",
            f"overflow={stats['overflow']}",
            f"kernel_drops={stats['kernel_drops']}",
        ]
    for mode in ("influx", "graphite", "syslog"):
        if mode in doc:
            stats = doc[mode]
            parts += [
                f"received={stats['received']}",
                f"bad_lines={stats['bad_lines']}",
                f"overflow={stats['overflow']}",
                f"kernel_drops={stats['kernel_drops']}",
            ]
            if "forward" in stats:
                parts.append(f"forwarded={stats['forwarded']} failed={stats['forward_failed']}")
    if "respond" in doc:
        hits = [rule["hits"] for rule in doc["respond"]["rules"]]
        parts.append(f"rule_hits={hits} default_hits={doc['respond']['default_hits']}")
    if "probe" in doc:
        parts.append(f"probes={doc['probe']['probes']}")
    if "source" in doc:
        source = doc["source"]
        sent = sum(run["tx_messages"] for run in source["runs"].values())
        parts.append(f"sent_messages={sent} refused_requests={source['refused']}")
    return " ".join(parts)


async def run_listeners(
    specs: Sequence[ListenerSpec],
    *,
    out: TextIO = sys.stdout,
    print_flushes: bool = False,
    as_json: bool = False,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve ``specs`` until SIGINT/SIGTERM (or ``shutdown`` is set), printing as described.

    Raises:
        ConflictError: A listener cannot bind (nothing is left running).
        SpecError: A TLS certificate cannot be loaded.
    """
    registry = Registry()
    manager = ListenerManager(registry)
    stop = shutdown if shutdown is not None else trio.Event()

    def printer(listener: Listener) -> Any:
        def on_flush(snapshot: Any) -> None:
            line = {"listener": listener.id, **snapshot}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            out.flush()

        return on_flush

    async def watch_signals() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async def housekeeping() -> None:
        while True:
            await trio.sleep(_HOUSEKEEPING_PERIOD)
            registry.take_diff(rows=False)

    # A failed start is raised after the nursery closes, so it is not wrapped in a group.
    failure: SocketlabError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)
        await nursery.start(manager.serve)
        nursery.start_soon(housekeeping)
        try:
            for spec in specs:
                listener = await manager.start(spec)
                if print_flushes and isinstance(listener.mode, StatsdMode):
                    listener.mode.on_flush = printer(listener)
                out.write(f"listening {listener.spec_url()} ({listener.id})\n")
        except SocketlabError as exc:
            failure = exc
            stop.set()
        out.flush()
        await stop.wait()
        listeners = list(manager)
        manager.stop_accepting()
        for listener in listeners:
            await listener.stopped.wait()
        if failure is None:
            if as_json:
                out.write(json.dumps([item.to_dict() for item in listeners], indent=2) + "\n")
            else:
                for listener in listeners:
                    out.write(summary_line(listener) + "\n")
            out.flush()
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
