"""The Kubernetes manifests (deploy/kubernetes): valid, wired together, and following the CLI.

The kustomization is rendered (tests/kustomize.py; compared with ``kubectl kustomize``
where a recent kubectl is installed) and every built-in object is validated strictly with
``kubernetes-validate`` for a current Kubernetes version. Beyond the schemas: the
container's args use only flags ``socketlab serve --help`` lists, the probes hit
/api/health on the web port, the token reaches the nodes and the ServiceMonitor from the
one Secret, and the NetworkPolicy, Services and ServiceMonitor select the DaemonSet's
pods. Last, the container itself runs as a process in a network namespace with the pod's
address and environment, and is asked from outside what the kubelet, a peer and
Prometheus ask (health on the pod IP, the token required, the echo listeners).
"""

from __future__ import annotations

import functools
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

import kubernetes_validate
import pytest
import yaml

from tests.kustomize import Doc, by_kind, render
from tests.netns import in_ns, link, namespace, needs_netns

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
README = (ROOT / "README.md").read_text()
# Flags the mesh work adds to `socketlab serve`. While a branch lacks them, the checks that
# need them are skipped (visibly) and the pod runs without them.
MESH_FLAGS = {"--mesh": 0, "--peers-dns": 1}
# The versions validated against: the newest kubernetes-validate knows, and an older one
# still served by the big providers.
VERSIONS = [kubernetes_validate.latest_version(), "1.31.0"]


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    """A checkout's deploy/ with the token file a user writes first, beside the README's
    kustomization of one's own that adds the ServiceMonitor component (my-socketlab/)."""
    shutil.copytree(BASE, tmp_path / "deploy" / "kubernetes")
    make_token = re.search(r"^python3 -c .+ > deploy/kubernetes/token\.env$", README, re.M)
    assert make_token is not None, "the README says how to make token.env"
    subprocess.run(["sh", "-c", make_token.group(0)], cwd=tmp_path, check=True, timeout=60)
    block = re.search(r"```yaml\n(# my-socketlab/kustomization.yaml.*?)```", README, re.S)
    assert block is not None, "the README shows the ServiceMonitor kustomization"
    (tmp_path / "my-socketlab").mkdir()
    (tmp_path / "my-socketlab" / "kustomization.yaml").write_text(block.group(1))
    return tmp_path


@pytest.fixture
def token(deploy: Path) -> str:
    """The token the README's command wrote."""
    text = (deploy / "deploy" / "kubernetes" / "token.env").read_text()
    found = re.fullmatch(r"token=([\w-]{32})\n", text)
    assert found is not None, text
    return found.group(1)


@pytest.fixture
def docs(deploy: Path) -> list[Doc]:
    return render(deploy / "my-socketlab")


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    result: Doc = pod["containers"][0]
    return result


def flag_value(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


@functools.cache
def serve_flags() -> frozenset[str]:
    """The flags ``socketlab serve --help`` lists (the CLI as it is, not as assumed)."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))


def test_without_the_token_file_nothing_renders(tmp_path: Path) -> None:
    shutil.copytree(BASE, tmp_path / "kubernetes")
    (tmp_path / "kubernetes" / "token.env").unlink(missing_ok=True)
    with pytest.raises(Exception, match=r"token\.env"):
        render(tmp_path / "kubernetes")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_passes_kubernetes_validate(docs: list[Doc], version: str) -> None:
    kinds = []
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a custom resource: no schema in kubernetes-validate (checked below)
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == sorted(
        ["Namespace", "Secret", "Service", "Service", "DaemonSet", "NetworkPolicy"]
    )


def test_a_broken_manifest_is_caught(docs: list[Doc]) -> None:
    """The validation has teeth: a misspelt probe field fails it."""
    daemonset = one(docs, "DaemonSet")
    container(docs)["readinessProbe"]["httpGet"]["pth"] = "/api/health"
    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        kubernetes_validate.validate(daemonset, VERSIONS[0], strict=True)


def test_the_render_equals_kubectl_kustomize(deploy: Path, docs: list[Doc]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl installed: the loader's render is not cross-checked")
    version = subprocess.run(
        [kubectl, "version", "--client"], capture_output=True, text=True, timeout=60, check=False
    )
    found = re.search(r"Kustomize Version: v(\d+)", version.stdout)
    if found is None or int(found.group(1)) < 5:
        pytest.skip(f"this kubectl's kustomize is older than v5: {version.stdout.strip()!r}")
    result = subprocess.run(
        [kubectl, "kustomize", str(deploy / "my-socketlab")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    def keyed(items: list[Doc]) -> dict[tuple[str, str], Doc]:
        return {(d["kind"], d["metadata"]["name"]): d for d in items}

    assert keyed([d for d in yaml.safe_load_all(result.stdout) if d]) == keyed(docs)


def test_everything_lives_in_one_namespace(docs: list[Doc]) -> None:
    ns = one(docs, "Namespace")["metadata"]["name"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == ns, doc["kind"]


def test_another_namespace_is_one_line(deploy: Path) -> None:
    """``namespace:`` in the kustomization moves everything, the peers' DNS name included
    (the args name the pod's own namespace, from the downward API)."""
    path = deploy / "deploy" / "kubernetes" / "kustomization.yaml"
    text = path.read_text()
    assert text.count("\nnamespace: socketlab\n") == 1
    path.write_text(text.replace("\nnamespace: socketlab\n", "\nnamespace: lab\n"))
    docs = render(deploy / "deploy" / "kubernetes")
    assert one(docs, "Namespace")["metadata"]["name"] == "lab"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"lab"}
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = container(docs)["args"]
    assert not [a for a in args if ".socketlab." in a or a.endswith(".socketlab")]
    assert ".$(POD_NAMESPACE).svc." in flag_value(args, "--peers-dns")[0]


def test_container_args_are_serve_flags(docs: list[Doc]) -> None:
    """The container runs the image's entrypoint (``socketlab``) with ``serve`` and flags
    the CLI lists; a renamed or removed flag fails here, not in someone's cluster."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["socketlab"]' in dockerfile
    spec = container(docs)
    assert "command" not in spec  # the image's entrypoint is kept
    args = spec["args"]
    assert args[0] == "serve"
    used = {arg for arg in args[1:] if arg.startswith("--")}
    unknown = used - serve_flags() - set(MESH_FLAGS)
    assert not unknown, f"flags socketlab serve does not list: {sorted(unknown)}"
    assert set(MESH_FLAGS) <= used


def test_mesh_flags_are_serve_flags(docs: list[Doc]) -> None:
    missing = set(MESH_FLAGS) - serve_flags()
    if missing:
        pytest.skip(f"socketlab serve has no {sorted(missing)} yet (the mesh work adds them)")
    args = container(docs)["args"]
    assert args.count("--mesh") == 1


def test_peers_are_found_through_the_headless_service(docs: list[Doc]) -> None:
    args = container(docs)["args"]
    (peers_dns,) = flag_value(args, "--peers-dns")
    name, _, port = peers_dns.rpartition(":")
    service = one(docs, "Service", "socketlab-mesh")
    assert name == "socketlab-mesh.$(POD_NAMESPACE).svc.cluster.local"
    assert service["spec"]["clusterIP"] == "None"
    # Pod template labels ⊇ the Service's selector: its name resolves to every node.
    labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (web,) = flag_value(args, "--web")
    assert int(port) == int(web.rpartition(":")[2])  # peers are asked on their web port


def container_port(spec: Doc, name_or_number: str | int, protocol: str = "TCP") -> int:
    for port in spec["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            assert port.get("protocol", "TCP") == protocol
            return int(port["containerPort"])
    raise AssertionError(f"no container port {name_or_number}")


def test_probes_hit_health_on_the_web_port(docs: list[Doc]) -> None:
    spec = container(docs)
    (web,) = flag_value(spec["args"], "--web")
    host, _, port = web.rpartition(":")
    assert host == "0.0.0.0"  # the pod IP and loopback (port-forward), not loopback only
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == "/api/health", probe
        assert container_port(spec, get["port"]) == int(port), probe
        assert "host" not in get  # the kubelet asks the pod IP, which --allow-host names
    assert "$(POD_IP)" in flag_value(spec["args"], "--allow-host")
    for key in ("requests", "limits"):
        assert set(spec["resources"][key]) == {"cpu", "memory"}


def test_services_reach_the_container_ports(docs: list[Doc]) -> None:
    spec = container(docs)
    labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    for service in by_kind(docs, "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            container_port(spec, port["targetPort"], port.get("protocol", "TCP"))
    listens = flag_value(spec["args"], "--listen")
    assert {"tcp://0.0.0.0:9000?mode=echo", "udp://0.0.0.0:9000?mode=echo"} <= set(listens)


def test_the_token_comes_from_the_secret(docs: list[Doc]) -> None:
    secret = one(docs, "Secret", "socketlab-token")
    env = {e["name"]: e for e in container(docs)["env"]}
    for name in ("SOCKETLAB_TOKEN", "SOCKETLAB_PEER_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["data"]
    assert "--token" not in container(docs)["args"]  # never in the args, which ps shows
    monitor = one(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    assert credentials["name"] == secret["metadata"]["name"]
    assert credentials["key"] in secret["data"]


def test_the_service_monitor_scrapes_each_node_once(docs: list[Doc]) -> None:
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    chosen = [
        s for s in by_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in chosen] == ["socketlab-mesh"]  # headless: every pod
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in chosen[0]["spec"]["ports"]}
    annotations = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == container_port(container(docs), "web")


def test_the_network_policy_covers_the_nodes(docs: list[Doc]) -> None:
    policy = one(docs, "NetworkPolicy")
    labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ingress, egress = policy["spec"]["ingress"], policy["spec"]["egress"]
    # Node to node on every port (API, echo listeners, mesh probes), both ways.
    for rules in (ingress, egress):
        peers = [r for r in rules if "ports" not in r]
        assert any(
            p["podSelector"]["matchLabels"].items() <= labels.items()
            for r in peers
            for p in r.get("from", r.get("to", []))
        )
    # The web port from anywhere (dashboard, Prometheus; the token guards it), DNS out.
    assert any(
        "from" not in r and {"port": "web", "protocol": "TCP"} in r["ports"] for r in ingress
    )
    dns = [p for r in egress if "to" not in r for p in r["ports"]]
    assert {"port": 53, "protocol": "UDP"} in dns and {"port": 53, "protocol": "TCP"} in dns


def test_the_pod_runs_as_the_image_user_on_a_read_only_root(docs: list[Doc]) -> None:
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsGroup"] == int(user.group(2))
    spec = container(docs)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in spec["env"]}
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert env["SOCKETLAB_DATA"] in mounts  # the database is written to a volume


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
    import base64

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
    docs: list[Doc], token: str, pod_and_node: tuple[str, str], tmp_path: Path
) -> None:
    pod, node = pod_and_node
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
