"""The deploy/kubernetes manifests as the tests see them: rendered from a checkout's copy.

:func:`checkout` lays out what a user has after following the README: deploy/kubernetes
with the ``token.env`` the README's command writes, and the README's own kustomization
(my-socketlab/) that adds the ServiceMonitor component. The rest picks objects and
container fields out of the rendered documents.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.kustomize import Doc, by_kind

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
README = (ROOT / "README.md").read_text()
# Flags the mesh work adds to `socketlab serve`, with how many values each takes. While a
# branch lacks them, the checks that need them are skipped (visibly) and the pod runs
# without them.
MESH_FLAGS = {"--mesh": 0, "--peers-dns": 1}


def checkout(root: Path) -> Path:
    """``root`` laid out as a checkout after the README's steps; returns ``root``."""
    shutil.copytree(BASE, root / "deploy" / "kubernetes")
    make_token = re.search(r"^python3 -c .+ > deploy/kubernetes/token\.env$", README, re.M)
    assert make_token is not None, "the README says how to make token.env"
    subprocess.run(["sh", "-c", make_token.group(0)], cwd=root, check=True, timeout=60)
    block = re.search(r"```yaml\n(# my-socketlab/kustomization.yaml.*?)```", README, re.S)
    assert block is not None, "the README shows the ServiceMonitor kustomization"
    (root / "my-socketlab").mkdir()
    (root / "my-socketlab" / "kustomization.yaml").write_text(block.group(1))
    return root


def written_token(root: Path) -> str:
    """The token the README's command wrote into ``root``'s token.env."""
    text = (root / "deploy" / "kubernetes" / "token.env").read_text()
    found = re.fullmatch(r"token=([\w-]{32})\n", text)
    assert found is not None, text
    return found.group(1)


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


def container_port(spec: Doc, name_or_number: str | int, protocol: str = "TCP") -> int:
    for port in spec["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            assert port.get("protocol", "TCP") == protocol
            return int(port["containerPort"])
    raise AssertionError(f"no container port {name_or_number}")
