"""socketlab nodes as ``socketlab serve`` processes, each in a namespace on one bridge.

:func:`serve_nodes` makes a namespace per node (:func:`tests.netns.namespace`), joins them
all to a bridge (:func:`tests.netns.bridge`), starts each node's command there with one
shared token (given to peers too) and stops them when the block ends. A node's web server
binds its IPv4 address, port 8000; :meth:`Nodes.get` and :meth:`Nodes.fire` reach it from
inside its namespace (the host has no route into them).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.netns import bridge, in_ns, namespace

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 60.0

# Runs inside a node's namespace: GET a path of a node and print the JSON answer.
GETTER = r"""
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(request, timeout=5) as response:
    print(response.read().decode())
"""


@dataclass
class Node:
    name: str
    ns: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def web(self) -> str:
        return f"http://{self.address}:8000"


@dataclass
class Nodes:
    token: str
    nodes: dict[str, Node] = field(default_factory=dict)
    # Given to every run fired: e.g. a longer --timeout, which is also how long a run's
    # receiving ends are waited for (a loaded machine may answer slowly).
    fire_options: tuple[str, ...] = ("--timeout", "5")

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def get(self, via: str, path: str) -> Any:
        """``GET path`` of node ``via`` (from its namespace); None when it fails."""
        node = self.nodes[via]
        result = subprocess.run(
            in_ns(node.ns, sys.executable, "-c", GETTER, node.web + path, self.token),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def fire(self, via: str, target: str, *options: str, as_json: bool = True) -> Any:
        """A run fired on node ``via`` through its API (``socketlab fire --via``), followed
        to its end: its document, or the text the CLI printed."""
        node = self.nodes[via]
        command = [sys.executable, "-m", "app.cli", "fire", "--via", node.web, target]
        command += ["--token", self.token, *self.fire_options, *options]
        command += ["--json"] if as_json else []
        result = subprocess.run(
            in_ns(node.ns, *command), capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return json.loads(result.stdout) if as_json else result.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-1500:]}" for n in self.nodes.values())

    def wait_for_peers(self, senders: Mapping[str, int]) -> None:
        """Each sender lists its peers (as many as given) up with their listeners."""
        deadline = time.monotonic() + STARTUP
        pending = dict(senders)
        while pending and time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.process.poll() is not None:
                    pytest.fail(f"{node.name} exited {node.process.returncode}\n{self.logs()}")
            for sender, count in sorted(pending.items()):
                peers = (self.get(sender, "/api/peers") or {}).get("items") or []
                if len(peers) == count and all(
                    p["status"] == "up" and p["listeners"] for p in peers
                ):
                    del pending[sender]
            if pending:
                time.sleep(0.5)  # other processes: poll them, there is no event to wait on
        if pending:
            pytest.fail(
                f"{sorted(pending)} did not see their peers in {STARTUP:g} s\n{self.logs()}"
            )


@contextmanager
def serve_nodes(
    tmp: Path,
    addrs: Mapping[str, tuple[str, str]],
    commands: Mapping[str, list[str]],
) -> Iterator[Nodes]:
    """Start ``socketlab serve`` with ``commands[name]`` in a namespace per node.

    Args:
        tmp: Where each node's data directory and log go.
        addrs: Each node's IPv4 and IPv6 address (a /24 and a /64 on the bridge).
        commands: Each node's arguments after ``python -m app.cli``.
    """
    nodes = Nodes(secrets.token_urlsafe(24))
    env = {
        **os.environ,
        "SOCKETLAB_TOKEN": nodes.token,
        "SOCKETLAB_PEER_TOKEN": nodes.token,
        "PYTHONUNBUFFERED": "1",
    }
    with ExitStack() as stack:
        spaces = {name: stack.enter_context(namespace(name[:6])) for name in addrs}
        members = {spaces[n]: (f"{v4}/24", f"{v6}/64") for n, (v4, v6) in addrs.items()}
        stack.enter_context(bridge(members))
        try:
            for name, command in commands.items():
                log = tmp / f"{name}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        in_ns(spaces[name], sys.executable, "-m", "app.cli", *command),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env={**env, "SOCKETLAB_DATA": str(tmp / name)},
                        cwd=ROOT,
                    )
                nodes.nodes[name] = Node(name, spaces[name], addrs[name][0], process, log)
            yield nodes
        finally:
            for node in nodes.nodes.values():
                if node.process.poll() is None:
                    node.process.terminate()
            for node in nodes.nodes.values():
                try:
                    node.process.wait(15)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
