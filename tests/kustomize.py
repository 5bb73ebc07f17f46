"""A small kustomize renderer for deploy/kubernetes: just the fields its kustomizations use.

``kubectl kustomize`` needs a kubectl whose kustomize knows components (v3.7+); Debian's
kubectl (1.20) is older, so the tests render with this loader and, where a recent kubectl
is installed, check that it renders the same documents (tests/test_kubernetes.py). It is
deliberately narrow: a kustomization field it does not know is an error, not ignored, so a
manifest change it cannot follow fails loudly instead of being validated half-rendered.

Supported: ``resources`` (YAML files or directories with a kustomization), ``components``
(directories whose kustomization is a ``Component``), ``namespace``, ``images`` (``name``,
``newName``, ``newTag``), ``secretGenerator`` (``envs`` files and ``literals``) with
``generatorOptions.disableNameSuffixHash: true`` (the content hash is not computed here).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "images",
    "secretGenerator",
    "generatorOptions",
}
# Kinds that live outside any namespace (those these manifests could hold).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(Exception):
    """A kustomization this loader cannot render (or one that is wrong)."""


def render(directory: Path) -> list[Doc]:
    """The documents ``kubectl kustomize directory`` gives (in file order, not kind order)."""
    return _render(directory.resolve(), want_kind="Kustomization")


def _kustomization(directory: Path) -> Doc:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.is_file():
            loaded = yaml.safe_load(path.read_text())
            if not isinstance(loaded, dict):
                raise KustomizeError(f"{path}: not a mapping")
            return loaded
    raise KustomizeError(f"{directory}: no kustomization file")


def _render(directory: Path, want_kind: str) -> list[Doc]:
    spec = _kustomization(directory)
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: fields this loader does not render: {sorted(unknown)}")
    kind = spec.get("kind", "Kustomization")
    if kind != want_kind:
        raise KustomizeError(f"{directory}: kind {kind}, expected {want_kind}")
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(_render(path.resolve(), "Kustomization"))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    docs.extend(_secrets(directory, spec))
    for entry in spec.get("components", []):
        docs = _apply_component((directory / entry).resolve(), docs)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["name"] = spec["namespace"]  # kustomize renames it so
            elif doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        _set_image(docs, image)
    return docs


def _apply_component(directory: Path, docs: list[Doc]) -> list[Doc]:
    """A component's resources join the documents it is applied to (its other transformers,
    which these manifests do not use, would then apply to all of them)."""
    return [*docs, *_render(directory, "Component")]


def _secrets(directory: Path, spec: Doc) -> list[Doc]:
    generators = spec.get("secretGenerator", [])
    if generators and not spec.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise KustomizeError(f"{directory}: a hashed Secret name is not computed here")
    out: list[Doc] = []
    for generator in generators:
        pairs: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            path = directory / env_file
            if not path.is_file():
                raise KustomizeError(f"{path}: the Secret's env file is missing")
            for line in path.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise KustomizeError(f"{path}: {line!r} is not KEY=VALUE")
                pairs[key] = value
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            pairs[key] = value
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": generator.get("type", "Opaque"),
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in pairs.items()},
            }
        )
    return out


def _set_image(docs: list[Doc], image: Doc) -> None:
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            name, _, tag = str(container["image"]).partition(":")
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """The documents of ``kind``."""
    return [d for d in docs if d["kind"] == kind]
