"""Three mesh nodes as local processes, each in a namespace, linked in a triangle.

Each pair of nodes shares a veth link of its own (tests/netns.py ``link()``), with a /30 per
link, so traffic between two nodes crosses exactly their link: a drop on one link reaches
the two directed pairs that cross it and no other. Nodes are ``socketlab serve --mesh``
bound on every interface of their namespace (and told their own addresses as allowed
Hosts, since their peers reach them by address). Their APIs are asked from inside a
namespace by a small checker process, as the compose topology test does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import TOKEN
from tests.netns import in_ns, link, namespace

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("a", "b", "c")
MESH_PORT = 9101
WEB_PORT = 8000
# (node, node, third octet of the link's 10.77.X.0/30): a is .1, b or c .2.
LINKS = (("a", "b", 1), ("b", "c", 2), ("a", "c", 3))

CHECKER = r"""
import json, sys, urllib.request
token, base, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {}
for path in paths:
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
            out[path] = json.loads(body) if path.startswith("/api") else body
    except Exception as exc:
        out[path] = {"error": repr(exc)}
print(json.dumps(out))
"""


def address(node: str, other: str, *, v6: bool = False) -> str:
    """``node``'s address on its link with ``other`` (``v6``: in ``fd77:X::/64`` instead)."""
    for x, y, octet in LINKS:
        if {x, y} == {node, other}:
            if v6:
                return f"fd77:{octet}::{1 if node == x else 2}"
            return f"10.77.{octet}.{1 if node == x else 2}"
    raise KeyError((node, other))


def in_url(host: str) -> str:
    """``host`` as a URL's host: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def interface(node: str, other: str) -> str:
    return f"m{node}{other}"


@dataclass
class Node:
    name: str
    ns: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    def start(self) -> None:
        self.stopped = False
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SOCKETLAB_TOKEN", None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                in_ns(self.ns, sys.executable, "-m", "app.cli", *self.args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )

    def stop(self) -> None:
        self.stopped = True
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def exited(self) -> bool:
        """Whether it ended without being stopped."""
        return self.process is not None and not self.stopped and self.process.poll() is not None


@dataclass
class Triangle:
    nodes: dict[str, Node]
    hosts: dict[str, Path] = field(default_factory=dict)
    v6: bool = False  # the links, the web servers and the peers are IPv6 only

    def ask(self, node: str, *paths: str, via: str | None = None) -> dict[str, Any]:
        """GET ``paths`` of ``node``'s API from inside namespace ``via`` (default: its own)."""
        via = via or node
        loopback = "::1" if self.v6 else "127.0.0.1"
        host = loopback if via == node else address(node, via, v6=self.v6)
        base = f"http://{in_url(host)}:{WEB_PORT}"
        done = subprocess.run(
            in_ns(self.nodes[via].ns, sys.executable, "-c", CHECKER, TOKEN, base, *paths),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            return {"error": done.stderr[-500:]}
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def nft(self, node: str, *args: str) -> str:
        done = subprocess.run(
            in_ns(self.nodes[node].ns, "nft", *args),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-3000:]}" for n in self.nodes.values())


def node_args(
    name: str, data: Path, *, dns: str | None, extra: tuple[str, ...], v6: bool = False
) -> list[str]:
    others = [n for n in NAMES if n != name]
    args = [
        "serve",
        "--web",
        f"{'[::]' if v6 else '0.0.0.0'}:{WEB_PORT}",
        "--token",
        TOKEN,
        "--peer-token",
        TOKEN,
        "--data",
        str(data / name),
        "--listen",
        "tcp://127.0.0.1:9000?mode=echo",
        "--mesh",
        "--mesh-name",
        name,
        *extra,
    ]
    for other in others:
        args += ["--allow-host", in_url(address(name, other, v6=v6))]
        if dns is None:
            args += ["--peer", f"http://{in_url(address(other, name, v6=v6))}:{WEB_PORT}"]
    if dns is not None:
        args += ["--peers-dns", dns]
    return args


def open_triangle(
    stack: ExitStack,
    data: Path,
    *,
    dns: str | None = None,
    extra: tuple[str, ...] = (),
    v6: bool = False,
) -> Triangle:
    """Build the namespaces and links, start the three nodes; undone by ``stack``.

    With ``v6``, the links carry only IPv6 addresses (a /64 each), the nodes serve on
    ``[::]`` and know their peers by IPv6 address.

    With ``dns``, no ``--peer`` is given: every node finds the others through ``--peers-dns
    mesh.test:8000``, a name its namespace's hosts file gives all three nodes' addresses (its
    own first, then each other's address on their shared link).
    """
    spaces = {name: stack.enter_context(namespace(f"mesh{name}")) for name in NAMES}
    prefix = "/64" if v6 else "/30"
    for x, y, _ in LINKS:
        link(
            spaces[x],
            spaces[y],
            (address(x, y, v6=v6) + prefix,),
            (address(y, x, v6=v6) + prefix,),
            names=(interface(x, y), interface(y, x)),
        )
    triangle = Triangle({}, v6=v6)
    if dns is not None:
        for name in NAMES:
            etc = Path("/etc/netns") / spaces[name]
            etc.mkdir(parents=True, exist_ok=True)
            stack.callback(shutil.rmtree, etc, True)
            hosts = etc / "hosts"
            others = [n for n in NAMES if n != name]
            lines = [f"{address(name, others[0])} {dns}"]
            lines += [f"{address(other, name)} {dns}" for other in others]
            hosts.write_text("127.0.0.1 localhost\n" + "\n".join(lines) + "\n")
            triangle.hosts[name] = hosts
    data.mkdir(parents=True, exist_ok=True)
    dns_arg = None if dns is None else f"{dns}:{WEB_PORT}"
    for name in NAMES:
        args = node_args(name, data, dns=dns_arg, extra=extra, v6=v6)
        node = Node(name, spaces[name], args, data / f"{name}.log")
        triangle.nodes[name] = node
        stack.callback(node.stop)
        node.start()
    return triangle
