"""The Kubernetes manifests (deploy/kubernetes): valid, wired together, and following the CLI.

The kustomization is rendered (tests/kustomize.py; compared with ``kubectl kustomize``
where a recent kubectl is installed) and every built-in object is validated strictly with
``kubernetes-validate`` for a current Kubernetes version. Beyond the schemas: the
container's args use only flags ``socketlab serve --help`` lists, the probes hit
/api/health on the web port, the token reaches the nodes and the ServiceMonitor from the
one Secret, and the NetworkPolicy, Services and ServiceMonitor select the DaemonSet's
pods. tests/test_kubernetes_pod.py runs the container's args as a pod would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.kube_manifests import (
    BASE,
    MESH_FLAGS,
    ROOT,
    checkout,
    container,
    container_port,
    flag_value,
    one,
    serve_flags,
)
from tests.kustomize import Doc, KustomizeError, by_kind, render

# The versions validated against: the newest kubernetes-validate knows, and an older one
# still served by the big providers.
VERSIONS = [kubernetes_validate.latest_version(), "1.31.0"]


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    return checkout(tmp_path)


@pytest.fixture
def docs(deploy: Path) -> list[Doc]:
    return render(deploy / "my-socketlab")


def test_without_the_token_file_nothing_renders(tmp_path: Path) -> None:
    shutil.copytree(BASE, tmp_path / "kubernetes")
    (tmp_path / "kubernetes" / "token.env").unlink(missing_ok=True)
    with pytest.raises(KustomizeError, match=r"token\.env"):
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
    # Service links would put SOCKETLAB_PORT=tcp://... (the Service socketlab) beside the
    # lab's own SOCKETLAB_* settings.
    assert pod["enableServiceLinks"] is False
    spec = container(docs)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in spec["env"]}
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert env["SOCKETLAB_DATA"] in mounts  # the database is written to a volume
