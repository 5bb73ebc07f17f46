"""docker-compose.yml and Dockerfile, checked without a Docker engine: Debian's docker-compose
accepts the file with the .env.example values, and the safety rules of the demo hold."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# Longest orderly shutdown of a node: runs stopped and stored (the lab allows them 2 s), then
# the web server's graceful timeout plus 0.5 s, then the store closes.
DRAIN_SECONDS = 2.0 + Settings().graceful_timeout + 0.5
SOCKETLAB_SERVICES = {"lab", "edge-a", "edge-b"}


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is not installed: it comes with Debian's docker-compose package "
            "(make system-deps installs it)"
        )
    return path


def compose_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would override .env.example's values."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOCKETLAB_", "PROMETHEUS_", "COMPOSE_", "DOCKER_"))
    }
    env.update(extra)
    return env


def run_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *extra],
        capture_output=True,
        text=True,
        env=compose_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with the .env.example values."""
    result = run_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(result.stdout)
    return doc


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text)):
        total += float(number) * units[unit]
    return total


def test_docker_compose_accepts_the_file_and_lists_the_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"lab", "edge-a", "edge-b", "prometheus"}
    assert config["services"]["prometheus"]["profiles"] == ["prometheus"]
    quiet = run_config(ENV_EXAMPLE, "--quiet")
    assert quiet.returncode == 0, quiet.stderr


def test_compose_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("# no token here\n")
    result = run_config(env_file)
    assert result.returncode != 0
    assert "SOCKETLAB_TOKEN" in result.stderr


def test_the_token_comes_from_the_env_file(config: dict[str, Any]) -> None:
    token = env_example()["SOCKETLAB_TOKEN"]
    for name, service in config["services"].items():
        assert service["environment"]["SOCKETLAB_TOKEN"] == token, name
    assert token not in COMPOSE_FILE.read_text()  # the compose file itself holds no token


def test_every_published_port_is_bound_to_loopback(config: dict[str, Any]) -> None:
    published = []
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                host_ip, target = port.get("host_ip"), port.get("target")
            else:
                parts = str(port).split(":")
                assert len(parts) == 3, f"{name}: {port} does not name a host address"
                host_ip, target = parts[0], parts[2]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published.append((name, str(target)))
    # UDP is published as UDP, not only TCP.
    assert ("lab", "9000/udp") in published
    assert ("lab", "8000/tcp") in published
    assert {name for name, _ in published} == set(config["services"])


def test_every_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert seconds(check["timeout"]) < seconds(check["interval"]), name
        command = " ".join(check["test"])
        if name in SOCKETLAB_SERVICES:
            # python:3.11-slim has no curl: the check is Python's urllib, on /api/health.
            assert check["test"][:2] == ["CMD", "python"], name
            assert "http://127.0.0.1:8000/api/health" in command, name
        else:
            assert "/-/healthy" in command, name


def test_every_service_runs_under_init_and_outlasts_the_lab_drain(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert service.get("init") is True, name
        grace = seconds(service.get("stop_grace_period", "10s"))
        assert grace > DRAIN_SECONDS, f"{name}: stop_grace_period {grace} s <= {DRAIN_SECONDS} s"


def test_data_lives_in_named_volumes(config: dict[str, Any]) -> None:
    volumes = set(config["volumes"])
    for name in SOCKETLAB_SERVICES:
        service = config["services"][name]
        data = service["environment"]["SOCKETLAB_DATA"]
        mounts = [str(v).split(":") for v in service["volumes"]]
        assert any(source in volumes and target == data for source, target, *_ in mounts), name
    prometheus = config["services"]["prometheus"]
    assert any(str(v).startswith("prometheus-data:/prometheus") for v in prometheus["volumes"])


def dockerfile_user() -> str:
    users = [
        line.split(None, 1)[1].strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    assert users, "the Dockerfile sets no USER: the image would run as root"
    return users[-1]


def test_no_service_runs_as_root(config: dict[str, Any]) -> None:
    user = dockerfile_user()
    uid = user.split(":")[0]
    assert uid not in ("root", "0"), user
    assert uid.isdigit(), "use a numeric uid, so runAsNonRoot checks can verify it"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--uid {uid}" in dockerfile  # the user exists in the image
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages[-1] == "FROM python:3.11-slim"
    for name, service in config["services"].items():
        if "build" in service:
            assert service.get("user") in (None, user), name  # the image's own user
        else:
            assert str(service.get("user", "")).split(":")[0] not in ("", "root", "0"), name


def test_every_node_is_a_peer_of_the_others_and_the_edges_make_traffic(
    config: dict[str, Any],
) -> None:
    parser = build_parser()
    for name in SOCKETLAB_SERVICES:
        args = parser.parse_args(config["services"][name]["command"])  # no unknown flag
        assert args.command == "serve", name
        assert args.web == "0.0.0.0:8000", name
        assert args.listen == ["tcp://0.0.0.0:9000?mode=echo", "udp://0.0.0.0:9000?mode=echo"]
        others = SOCKETLAB_SERVICES - {name}
        assert sorted(args.peer) == sorted(f"http://{other}:8000" for other in others), name
        # The others reach this node by its service name, which the Host check must accept.
        assert name in (args.allow_host or []), name
        assert args.demo == (None if name == "lab" else "gentle"), name
        # A node sends no token to its peers unless told: this one is told the shared one.
        environment = config["services"][name]["environment"]
        assert environment["SOCKETLAB_PEER_TOKEN"] == environment["SOCKETLAB_TOKEN"], name


def test_prometheus_scrapes_every_node_with_the_token(
    config: dict[str, Any], tmp_path: Path
) -> None:
    service = config["services"]["prometheus"]
    prometheus_config = yaml.safe_load(service["environment"]["PROMETHEUS_CONFIG"])
    (job,) = prometheus_config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8000" for name in SOCKETLAB_SERVICES}
    token_file = job["authorization"]["credentials_file"]
    entrypoint = " ".join(service["entrypoint"])
    assert f"> {token_file}" in entrypoint  # the entrypoint writes the token where it is read
    assert "umask 077" in entrypoint

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: install Debian's prometheus package")
    # promtool checks that the token file exists: point it at one here.
    local_token = tmp_path / "token"
    local_token.write_text("x")
    checked = tmp_path / "prometheus.yml"
    checked.write_text(
        service["environment"]["PROMETHEUS_CONFIG"].replace(token_file, str(local_token))
    )
    result = subprocess.run(
        [promtool, "check", "config", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_image_holds_only_what_the_package_needs() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "tests", "data"} <= ignored
    # The wheel build needs these (pyproject names README.md as the readme).
    assert not {"app", "templates", "static", "pyproject.toml", "README.md"} & ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["socketlab"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile
