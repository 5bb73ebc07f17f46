"""The DaemonSet's container run as a pod would be: its args and environment, in a network
namespace with a pod IP, asked from another namespace what the kubelet (the probes' path
on the pod IP), a peer (the API with the token, the echo listeners) and Prometheus
(/metrics with the token) ask, and on loopback inside it what ``kubectl port-forward``
asks. The args are expanded as the kubelet does (``$(VAR)`` from the downward API and the
Secret's keys); the data directory is a temporary folder where the pod mounts an emptyDir.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube_manifests import (
    MESH_FLAGS,
    ROOT,
    checkout,
    container,
    flag_value,
    one,
    serve_flags,
    written_token,
)
from tests.kustomize import Doc, render
from tests.netns import in_ns, link, namespace, needs_netns

# Runs in the "node" namespace (the kubelet's, a peer's, Prometheus's view of the pod): the
# answers to what they ask, as one JSON document.
CHECKER = r"""
import json, socket, sys, urllib.error, urllib.request
pod_ip, token, health, metrics = sys.argv[1:5]
names = sys.argv[5:]
def status(path, token=None, host=None):
    request = urllib.request.Request(f"http://{pod_ip}:8000{path}")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if path.startswith("/api") else None
    except urllib.error.HTTPError as exc:
        return exc.code, None
out = {
    "health": status(health),
    "listeners_without_token": status("/api/listeners")[0],
    "listeners": status("/api/listeners", token),
    "metrics": status(metrics, token)[0],
    "hosts": {name: status(health, host=name)[0] for name in names},
    "mesh": status("/api/mesh", token)[0],
}
with socket.create_connection((pod_ip, 9000), timeout=10) as tcp:
    tcp.sendall(b"ping over tcp")
    out["tcp_echo"] = tcp.recv(100).decode()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.settimeout(10)
    udp.sendto(b"ping over udp", (pod_ip, 9000))
    out["udp_echo"] = udp.recv(100).decode()
print(json.dumps(out))
"""
POD_IP = "198.18.7.2"
NODE_IP = "198.18.7.1"


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in args (``$$`` escapes, unknown names stay)."""
    return re.sub(
        r"\$\$|\$\((\w+)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def pod_environment(docs: list[Doc], pod_ip: str) -> dict[str, str]:
    """The container's environment as the kubelet gives it (downward API, Secret keys)."""
    ns = one(docs, "DaemonSet")["metadata"]["namespace"]
    fields = {"status.podIP": pod_ip, "metadata.namespace": ns}
    env: dict[str, str] = {}
    for item in container(docs)["env"]:
        source = item.get("valueFrom", {})
        if "fieldRef" in source:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = one(docs, "Secret", ref["name"])["data"][ref["key"]]
            env[item["name"]] = base64.b64decode(data).decode()
        else:
            env[item["name"]] = item["value"]
    return env


def runnable(args: list[str]) -> list[str]:
    """``args`` without the mesh flags this branch's CLI does not have yet."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
        elif arg in MESH_FLAGS and arg not in serve_flags():
            skip = MESH_FLAGS[arg]
        else:
            out.append(arg)
    return out


def wait_for_line(process: subprocess.Popen[bytes], prefix: bytes, seconds: float) -> bytes:
    """Read the process's output until a line starts with ``prefix`` (what it prints once
    it serves); everything read comes back for the failure message."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            break
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"the pod did not serve within {seconds:g} s:\n{seen.decode()[-3000:]}")


@pytest.fixture
def pod_and_node() -> Iterator[tuple[str, str]]:
    with namespace("slpod") as pod, namespace("slnode") as node:
        link(pod, node, (f"{POD_IP}/24",), (f"{NODE_IP}/24",))
        yield pod, node


@needs_netns
def test_the_container_serves_as_the_kubelet_and_peers_ask(
    pod_and_node: tuple[str, str], tmp_path: Path
) -> None:
    pod, node = pod_and_node
    root = checkout(tmp_path / "checkout")
    docs, token = render(root / "my-socketlab"), written_token(root)
    env = pod_environment(docs, POD_IP)
    assert env["SOCKETLAB_TOKEN"] == env["SOCKETLAB_PEER_TOKEN"] == token
    args = [expand(arg, env) for arg in container(docs)["args"]]
    # The headless Service's name resolves to the pod itself here (the hosts file that
    # `ip netns exec` mounts), as it does to every node in a cluster.
    (peers_dns,) = flag_value(args, "--peers-dns")
    etc = Path("/etc/netns") / pod
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{POD_IP} {peers_dns.rpartition(':')[0]}\n")
    env["SOCKETLAB_DATA"] = str(tmp_path / "data")  # the emptyDir the pod mounts there
    process = subprocess.Popen(
        in_ns(pod, sys.executable, "-m", "app.cli", *runnable(args)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Unbuffered on this side too: select() sees what a buffered reader took in already.
        bufsize=0,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    drain: threading.Thread | None = None
    try:
        wait_for_line(process, b"dashboard:", 60)
        # Its request log goes on: keep reading it, so a full pipe never blocks the pod.
        drain = (
            threading.Thread(target=process.stdout.read, daemon=True) if process.stdout else None
        )
        if drain is not None:
            drain.start()
        spec = container(docs)
        ns = env["POD_NAMESPACE"]
        names = ["socketlab", f"socketlab.{ns}.svc", f"socketlab.{ns}.svc.cluster.local:8000"]
        result = subprocess.run(
            in_ns(
                node,
                sys.executable,
                "-c",
                CHECKER,
                POD_IP,
                token,
                spec["livenessProbe"]["httpGet"]["path"],
                one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["path"],
                *names,
                "evil.example",
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen: dict[str, Any] = json.loads(result.stdout)
        # `kubectl port-forward` connects to localhost inside the pod.
        local = subprocess.run(
            in_ns(
                pod,
                sys.executable,
                "-c",
                "import urllib.request as u; print(u.urlopen("
                "'http://127.0.0.1:8000/api/health', timeout=10).status)",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(20)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(etc, ignore_errors=True)
    assert seen["health"] == [200, {"status": "ok"}]
    assert seen["listeners_without_token"] == 401
    status, listeners = seen["listeners"]
    assert status == 200
    assert {item["url"] for item in listeners["items"]} >= {
        "tcp://0.0.0.0:9000?mode=echo",
        "udp://0.0.0.0:9000?mode=echo",
    }
    assert seen["metrics"] == 200
    assert seen["hosts"] == {**dict.fromkeys(names, 200), "evil.example": 403}
    assert seen["tcp_echo"] == "ping over tcp"
    assert seen["udp_echo"] == "ping over udp"
    assert local.stdout.strip() == "200", local.stderr
    if "--mesh" in serve_flags():
        assert seen["mesh"] == 200
