"""The compose demo run without a Docker engine: each service as a local process.

The test reads docker-compose.yml and starts every socketlab service's command with that
service's environment. As root, each service gets a network namespace of its own, joined by
veth pairs to a bridge in one more namespace, with the service names in that namespace's
hosts file (``ip netns exec`` mounts /etc/netns/NAME/hosts over /etc/hosts): the same shape
as a compose network. The addresses come from 198.18.0.0/24, the range set aside for testing
network equipment; nothing is routed outside the namespaces. Without root, each service
binds a distinct 127.0.0.x address and the service names in its command are rewritten to
those addresses.

Within 20 s the lab must list both peers as up, the peers' demo traffic must show as live
connections on the lab, the mesh matrix on the lab must have all six directed pairs ok, and
every node's /metrics must parse with prometheus-client's parser.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SUBNET = "198.18.0"
DEADLINE = 20.0

# Runs inside a service's namespace (or on the host in the fallback): fetches what the
# assertions need from every node and prints it as one JSON document.
CHECKER = r"""
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
token, lab, nodes = sys.argv[1], sys.argv[2], sys.argv[3:]
def get(base, path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=3) as response:
        return response.read().decode()
out = {"peers": None, "connections": None, "metrics": {}, "mesh": None}
try:
    out["peers"] = json.loads(get(lab, "/api/peers"))["items"]
    out["connections"] = json.loads(get(lab, "/api/connections?limit=1000"))["items"]
    rows = json.loads(get(lab, "/api/mesh"))["rows"]
    pairs = [p for r in rows for p in r["pairs"] if p["state"] == "ok"]
    out["mesh"] = sorted(p["src"] + ">" + p["dst"] for p in pairs)
except Exception as exc:
    out["error"] = repr(exc)
for node in nodes:
    try:
        families = list(text_string_to_metric_families(get(node, "/metrics")))
        out["metrics"][node] = len(families)
    except Exception as exc:
        out["metrics"][node] = "error: " + repr(exc)
print(json.dumps(out))
"""


def expand(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} interpolation."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if op == ":-":
            return env.get(name) or arg
        if op == ":?":
            if not env.get(name):
                raise AssertionError(f"compose needs {name}: {arg}")
            return env[name]
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, value)


@dataclass
class Service:
    name: str
    command: list[str]
    environment: dict[str, str]
    address: str = ""
    namespace: str = ""
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class Topology:
    services: dict[str, Service]
    token: str
    namespaces: list[str] = field(default_factory=list)
    isolated: bool = False

    def url(self, name: str) -> str:
        return f"http://{name if self.isolated else self.services[name].address}:8000"


def load_services(token: str, data_root: Path) -> dict[str, Service]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {"SOCKETLAB_TOKEN": token}
    services = {}
    for name, spec in doc["services"].items():
        if "build" not in spec:
            continue  # prometheus: an image of its own, not ours
        command = [expand(str(part), env) for part in spec["command"]]
        environment = {k: expand(str(v), env) for k, v in spec.get("environment", {}).items()}
        environment["SOCKETLAB_DATA"] = str(data_root / name)
        services[name] = Service(name, command, environment)
    return services


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def build_namespaces(topology: Topology) -> None:
    tag = secrets.token_hex(3)
    bridge_ns = f"slbr-{tag}"
    ip("netns", "add", bridge_ns)
    topology.namespaces.append(bridge_ns)
    ip("netns", "exec", bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
    ip("netns", "exec", bridge_ns, "ip", "link", "set", "br0", "up")
    hosts = "127.0.0.1 localhost\n" + "".join(
        f"{SUBNET}.{10 + i} {name}\n" for i, name in enumerate(topology.services)
    )
    for i, service in enumerate(topology.services.values()):
        ns = f"sl{i}-{tag}"
        ip("netns", "add", ns)
        topology.namespaces.append(ns)
        service.namespace = ns
        service.address = f"{SUBNET}.{10 + i}"
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        outside, inside = f"v{i}{tag}", f"p{i}{tag}"
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", outside, "netns", bridge_ns)
        ip("link", "set", inside, "netns", ns)
        ip("netns", "exec", bridge_ns, "ip", "link", "set", outside, "master", "br0", "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{service.address}/24", "dev", inside)
        ip("netns", "exec", ns, "ip", "link", "set", inside, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")


def rewrite_for_loopback(topology: Topology) -> None:
    """No namespaces: every service binds 127.0.0.(10+i) and names become addresses."""
    for i, service in enumerate(topology.services.values()):
        service.address = f"127.0.0.{10 + i}"
    names = {s.name: s.address for s in topology.services.values()}
    for service in topology.services.values():
        command = []
        for part in service.command:
            part = part.replace("0.0.0.0", service.address)
            for name, address in names.items():
                part = part.replace(f"//{name}:", f"//{address}:")
            command.append(part)
        service.command = command


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    token = secrets.token_urlsafe(24)
    topology = Topology(load_services(token, tmp_path), token)
    topology.isolated = (
        os.geteuid() == 0
        and shutil.which("ip") is not None
        and not os.environ.get("SOCKETLAB_TEST_NO_NETNS")
    )
    try:
        if topology.isolated:
            build_namespaces(topology)
        else:
            rewrite_for_loopback(topology)
        for service in topology.services.values():
            service.log = tmp_path / f"{service.name}.log"
            prefix = ["ip", "netns", "exec", service.namespace] if topology.isolated else []
            env = {**os.environ, **service.environment, "PYTHONUNBUFFERED": "1"}
            with service.log.open("wb") as log:
                service.process = subprocess.Popen(
                    [*prefix, sys.executable, "-m", "app.cli", *service.command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                )
        yield topology
    finally:
        for service in topology.services.values():
            if service.process is not None and service.process.poll() is None:
                service.process.terminate()
        for service in topology.services.values():
            if service.process is not None:
                try:
                    service.process.wait(10)
                except subprocess.TimeoutExpired:
                    service.process.kill()
                    service.process.wait()
        for ns in topology.namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def check(topology: Topology) -> dict[str, Any]:
    lab = topology.services["lab"]
    prefix = ["ip", "netns", "exec", lab.namespace] if topology.isolated else []
    nodes = [topology.url(name) for name in topology.services]
    result = subprocess.run(
        [*prefix, sys.executable, "-c", CHECKER, topology.token, topology.url("lab"), *nodes],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return {"error": result.stderr[-500:]}
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_compose_topology_comes_alive_without_docker(topology: Topology) -> None:
    edges = {name for name in topology.services if name != "lab"}
    assert edges == {"edge-a", "edge-b"}
    started = time.monotonic()
    state: dict[str, Any] = {}
    while time.monotonic() - started < DEADLINE:
        for service in topology.services.values():
            assert service.process is not None
            if service.process.poll() is not None:
                log = service.log.read_text() if service.log else ""
                pytest.fail(f"{service.name} exited {service.process.returncode}:\n{log[-2000:]}")
        state = check(topology)
        peers = state.get("peers") or []
        up = {p["url"] for p in peers if p["status"] == "up"}
        # A connection on the lab's listeners is demo traffic of the edge whose run
        # connection has that address as its local end (as each edge reports to the lab).
        inbound = {c["remote"] for c in state.get("connections") or [] if c.get("listener_id")}
        demo = {
            p["url"]
            for p in peers
            if any(c.get("run_id") and c["local"] in inbound for c in p["connections"])
        }
        metrics = state.get("metrics", {})
        names = list(topology.services)
        mesh = {f"{s}>{d}" for s in names for d in names if s != d}
        if (
            up == {topology.url(name) for name in edges}
            and demo == up
            and set(state.get("mesh") or []) == mesh
            and len(metrics) == 3
            and all(isinstance(n, int) and n > 0 for n in metrics.values())
        ):
            break
        time.sleep(0.5)  # the nodes are other processes: poll them, there is no event
    else:
        logs = {s.name: s.log.read_text()[-1500:] for s in topology.services.values() if s.log}
        pytest.fail(f"not alive within {DEADLINE:g} s: {state}\n{logs}")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE
    print(f"alive after {elapsed:.1f} s ({'namespaces' if topology.isolated else 'loopback'})")
