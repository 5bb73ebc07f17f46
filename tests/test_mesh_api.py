"""The mesh's API and metrics with in-process labs on loopback: ``/api/mesh``, its row and a
pair's series match their documented schemas, ``/metrics`` says what the API says (and
promtool accepts it), a node not in mesh mode is not probed, bad flags are one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from app.lab import Lab
from app.mesh.config import MeshSettings
from tests.conftest import running_lab
from tests.helpers import TOKEN, http, promtool_check, wait_for_async
from tests.test_openapi import openapi, response_validator

ROOT = Path(__file__).resolve().parent.parent
MESH = MeshSettings(enabled=True, port=0, rate=10, window=10)


def mesh(name: str) -> MeshSettings:
    return MeshSettings(enabled=True, port=0, rate=MESH.rate, window=MESH.window, name=name)


@dataclass
class Mesh:
    a: Lab
    b: Lab
    c: Lab


@pytest.fixture
async def three(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Mesh]:
    """c has no peers, b has c, a has both: pairs a→b, a→c, b→c."""
    async with running_lab(nursery, tmp_path / "c", mesh=mesh("c")) as c:
        peer_c = f"http://127.0.0.1:{c.web_port}"
        async with running_lab(
            nursery, tmp_path / "b", mesh=mesh("b"), peers=(peer_c,), peer_token=TOKEN
        ) as b:
            peer_b = f"http://127.0.0.1:{b.web_port}"
            async with running_lab(
                nursery, tmp_path / "a", mesh=mesh("a"), peers=(peer_b, peer_c), peer_token=TOKEN
            ) as a:
                yield Mesh(a, b, c)


async def get(lab: Lab, path: str) -> Any:
    assert lab.web_port is not None
    answer = await http(lab.web_port, "GET", path)
    assert answer.status == 200, (path, answer.body)
    return answer.json()


async def all_ok(lab: Lab, expected: set[tuple[str, str]]) -> dict[str, Any] | None:
    doc = await get(lab, "/api/mesh")
    pairs = {(p["src"], p["dst"]): p for row in doc["rows"] for p in row["pairs"]}
    ok = {k for k, p in pairs.items() if p["state"] == "ok"}
    return doc if ok == expected == set(pairs) else None


EXPECTED = {("a", "b"), ("a", "c"), ("b", "c")}


async def test_the_matrix_row_and_series_match_their_schemas(three: Mesh) -> None:
    doc = await wait_for_async(lambda: all_ok(three.a, EXPECTED), timeout=30)
    schemas = await openapi(three.a)
    response_validator(schemas, "/api/mesh", "get", 200).validate(doc)
    assert doc["node"] == "a" and doc["nodes"] == ["a", "b", "c"]
    row = await get(three.a, "/api/mesh/row")
    response_validator(schemas, "/api/mesh/row", "get", 200).validate(row)
    assert [p["dst"] for p in row["pairs"]] == ["b", "c"]
    assert three.a.mesh is not None and row["port"] == three.a.mesh.port
    path = "/api/mesh/pairs/{src}/{dst}/series"
    own = await get(three.a, "/api/mesh/pairs/a/b/series")
    response_validator(schemas, path, "get", 200).validate(own)
    assert own["points"] and own["columns"][0] == "t"
    # A pair of b's, asked of a: a asks b.
    relayed = await get(three.a, "/api/mesh/pairs/b/c/series")
    assert (relayed["src"], relayed["dst"]) == ("b", "c") and relayed["points"]
    assert three.a.web_port is not None
    missing = await http(three.a.web_port, "GET", "/api/mesh/pairs/a/nobody/series")
    assert missing.status == 404
    response_validator(schemas, path, "get", 404).validate(missing.json())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("socketlab_mesh_")
    }


async def test_the_metrics_say_what_the_api_says_and_promtool_accepts_them(three: Mesh) -> None:
    await wait_for_async(lambda: all_ok(three.a, EXPECTED), timeout=30)
    assert three.a.web_port is not None

    async def same_moment() -> tuple[dict[str, Any], str] | None:
        row = await get(three.a, "/api/mesh/row")
        text = (await http(three.a.web_port or 0, "GET", "/metrics")).body.decode()
        again = await get(three.a, "/api/mesh/row")
        # The figures are taken once a second: compare what one taking gave both.
        return (row, text) if row["at"] == again["at"] else None

    row, text = await wait_for_async(same_moment, timeout=20)
    got = samples(text)
    assert got[("socketlab_mesh_row_timestamp_seconds", (("src", "a"),))] == row["at"]
    for pair in row["pairs"]:
        labels = (("dst", pair["dst"]), ("src", "a"))
        assert got[("socketlab_mesh_pair_up", labels)] == 1
        for protocol in ("udp", "tcp"):
            figures = pair[protocol]
            flow = tuple(sorted((*labels, ("protocol", protocol))))
            assert got[("socketlab_mesh_rtt_p50_seconds", flow)] == pytest.approx(
                figures["rtt_p50_ms"] / 1000
            )
            assert got[("socketlab_mesh_rtt_p99_seconds", flow)] == pytest.approx(
                figures["rtt_p99_ms"] / 1000
            )
            assert got[("socketlab_mesh_loss_ratio", flow)] == figures["loss_pct"] / 100
            assert got[("socketlab_mesh_probes_window", flow)] == figures["sent"]
        retrans = got[("socketlab_mesh_tcp_retransmits_window", labels)]
        assert retrans == pair["tcp"]["retransmits"]
    returncode, output = await promtool_check(text)
    assert returncode == 0 and output.strip() == "", output


async def test_a_node_not_in_mesh_mode_is_shown_and_not_probed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with running_lab(nursery, tmp_path / "plain") as plain:
        peer = f"http://127.0.0.1:{plain.web_port}"
        row = await get(plain, "/api/mesh/row")
        assert row["enabled"] is False and row["pairs"] == []
        assert (await get(plain, "/api/mesh"))["enabled"] is False
        async with running_lab(
            nursery, tmp_path / "m", mesh=mesh("m"), peers=(peer,), peer_token=TOKEN
        ) as node:

            async def told() -> dict[str, Any] | None:
                pairs = (await get(node, "/api/mesh/row"))["pairs"]
                return pairs[0] if pairs and pairs[0]["last_error"] else None

            pair = await wait_for_async(told, timeout=20)
            assert pair["state"] == "unknown" and "not in mesh mode" in pair["last_error"]
            assert pair["udp"] is None and pair["tcp"] is None
            assert node.mesh is not None
            assert all(t.pair is None for t in node.mesh.targets.values())


async def test_a_peer_that_does_not_answer_is_failing_with_the_reason(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    peers = (f"http://127.0.0.1:{port}",)
    async with running_lab(nursery, tmp_path / "m", mesh=mesh("m"), peers=peers) as node:

        async def failing() -> dict[str, Any] | None:
            pairs = (await get(node, "/api/mesh/row"))["pairs"]
            return pairs[0] if pairs and pairs[0]["state"] == "failing" else None

        pair = await wait_for_async(failing, timeout=20)
        assert "cannot connect" in pair["last_error"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mesh-rate", "1000"], "mesh.rate must be between"),
        (["--mesh-name", "a/b"], "mesh.name"),
        (["--peers-dns", "mesh:0"], "peers_dns"),
    ],
)
def test_bad_mesh_flags_are_one_line_and_exit_2(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--mesh", "--data", str(tmp_path), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_serve_help_lists_the_mesh_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in ("--mesh", "--mesh-rate", "--mesh-window", "--peers-dns", "--mesh-name"):
        assert flag in done.stdout


async def test_another_node_at_a_peers_address_gets_a_pair_of_its_own(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A pod's IP given to a new pod: the pair follows the node that answers there now."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        web_port = sock.getsockname()[1]
    peers = (f"http://127.0.0.1:{web_port}",)
    async with running_lab(
        nursery, tmp_path / "m", mesh=mesh("m"), peers=peers, peer_token=TOKEN
    ) as node:

        async def measured(name: str) -> bool:
            pairs = (await get(node, "/api/mesh/row"))["pairs"]
            return [(p["dst"], p["state"]) for p in pairs] == [(name, "ok")]

        async with running_lab(nursery, tmp_path / "old", mesh=mesh("old"), web_port=web_port):
            await wait_for_async(lambda: measured("old"), timeout=30)
        async with running_lab(nursery, tmp_path / "new", mesh=mesh("new"), web_port=web_port):
            await wait_for_async(lambda: measured("new"), timeout=30)
