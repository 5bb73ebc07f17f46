"""Mesh mode with three nodes as local processes in namespaces linked in a triangle (IPv4,
and once IPv6 only).

The truth comes from outside the nodes: nftables in a node's namespace drops 5 % of one
link's packets (and counts what it dropped), and counts the UDP probes a node receives; the
TCP probes a node's mesh echo received are its connection's bytes over the probe size. The
nodes are other processes, so the tests poll their APIs (there is no event to wait on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.meshnet import MESH_PORT, NAMES, Triangle, address, interface, open_triangle
from tests.netns import needs_netns

pytestmark = needs_netns

RATE = 10.0
WINDOW = 15.0
SIZE = 64
EXTRA = ("--mesh-rate", f"{RATE:g}", "--mesh-window", f"{WINDOW:g}")
START_TIMEOUT = 60.0
# What the issue asks: all pairs, and a stopped node's pairs failing, within 10 s.
DEADLINE = 10.0
ALL_PAIRS = {(s, d) for s in NAMES for d in NAMES if s != d}


def wait_for(check: Callable[[], Any], timeout: float, what: str, triangle: Triangle) -> Any:
    """Poll ``check`` (other processes: no event to wait on) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in triangle.nodes.values():
            if node.exited():
                pytest.fail(f"node {node.name} exited\n{triangle.logs()}")
        last = check()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"{what}: not within {timeout:g} s\n{matrix(triangle)}\n{triangle.logs()}")


def pairs_of(matrix: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["src"], p["dst"]): p for row in matrix.get("rows", []) for p in row["pairs"]}


def matrix(triangle: Triangle, node: str = "a") -> dict[str, Any]:
    doc: dict[str, Any] = triangle.ask(node, "/api/mesh").get("/api/mesh", {})
    return doc


def wait_all_up(triangle: Triangle) -> None:
    def up() -> bool:
        return all("status" in triangle.ask(n, "/api/health")["/api/health"] for n in NAMES)

    wait_for(up, START_TIMEOUT, "every node answering /api/health", triangle)


def all_ok(triangle: Triangle, node: str = "a") -> dict[tuple[str, str], dict[str, Any]] | None:
    pairs = pairs_of(matrix(triangle, node))
    ok = {key for key, p in pairs.items() if p["state"] == "ok"}
    return pairs if ok == ALL_PAIRS and set(pairs) == ALL_PAIRS else None


@pytest.fixture(scope="module")
def triangle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triangle]:
    with ExitStack() as stack:
        yield open_triangle(stack, tmp_path_factory.mktemp("mesh"), extra=EXTRA)


def test_the_matrix_has_all_six_directed_pairs_within_10_s(triangle: Triangle) -> None:
    wait_all_up(triangle)
    started = time.monotonic()
    pairs = wait_for(lambda: all_ok(triangle), 3 * DEADLINE, "all 6 pairs ok", triangle)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE, f"all pairs ok after {elapsed:.1f} s"
    # Every node serves the matrix: its own row and both peers' (as fetched a second ago).
    for node in ("b", "c"):
        wait_for(partial(all_ok, triangle, node), DEADLINE, f"{node}'s matrix", triangle)
    for pair in pairs.values():
        assert pair["udp"]["received"] > 0 and pair["tcp"]["received"] > 0
        assert pair["udp"]["rtt_p50_ms"] > 0


# Dropped as they arrive, at both ends of the link: what a lossy wire does. (A drop in the
# output hook is a local error the sender sees, EPERM, and TCP sends the segment again as a
# new transmission, not a retransmission.)
LOSSY = """
table inet meshloss {
  counter dropped {}
  chain input {
    type filter hook input priority 0;
    iifname "IFACE" numgen random mod 100 < 5 counter name dropped drop;
  }
}
"""


def test_a_lossy_link_shows_on_exactly_the_two_pairs_that_cross_it(
    triangle: Triangle, tmp_path: Path
) -> None:
    wait_for(lambda: all_ok(triangle), 3 * DEADLINE, "all 6 pairs ok", triangle)
    for x, y in (("a", "b"), ("b", "a")):
        rules = tmp_path / f"lossy-{x}.nft"
        rules.write_text(LOSSY.replace("IFACE", interface(x, y)))
        triangle.nft(x, "-f", str(rules))
    crossing = {("a", "b"), ("b", "a")}
    try:
        # Loss fades out of the window WINDOW seconds after it starts to show, so the
        # figures are read while the drop goes on: both crossing pairs lose probes and
        # retransmit, every other pair (with enough probes to tell) loses none.
        def shows() -> dict[tuple[str, str], dict[str, Any]] | None:
            pairs = pairs_of(matrix(triangle))
            if set(pairs) != ALL_PAIRS:
                return None
            lossy = {k for k, p in pairs.items() if p["udp"] and p["udp"]["lost"] > 0}
            retrans = {k for k, p in pairs.items() if p["tcp"] and p["tcp"]["retransmits"] > 0}
            return pairs if crossing <= lossy and crossing <= retrans else None

        pairs = wait_for(shows, 60.0, "loss and retransmits on a→b and b→a", triangle)
        for node in ("a", "b"):  # nftables, not the mesh, says it dropped
            listed = triangle.nft(node, "list", "counter", "inet", "meshloss", "dropped")
            assert int(listed.split("packets", 1)[1].split()[0]) > 0
        for key, pair in pairs.items():
            if key in crossing:
                continue
            assert pair["udp"]["sent"] >= 20, pair
            assert pair["udp"]["lost"] == 0, (key, pair)
            assert pair["tcp"]["lost"] == 0, (key, pair)
            assert pair["tcp"]["retransmits"] == 0, (key, pair)
    finally:
        for node in ("a", "b"):
            triangle.nft(node, "delete", "table", "inet", "meshloss")


COUNTING = """
table inet meshcount {
  counter udp_from_a {}
  chain input {
    type filter hook input priority 0;
    ip saddr SRC udp dport PORT counter name udp_from_a;
  }
}
"""


def _udp_count(triangle: Triangle) -> int:
    listed = triangle.nft("b", "list", "counter", "inet", "meshcount", "udp_from_a")
    return int(listed.split("packets", 1)[1].split()[0])


def _tcp_count(triangle: Triangle) -> int:
    """TCP probes a's flow delivered to b's mesh echo: its connection's bytes / size."""
    doc = triangle.ask("b", "/api/connections?limit=1000")["/api/connections?limit=1000"]
    a = address("a", "b")
    total = sum(
        c["bytes_in"]
        for c in doc["items"]
        if c["protocol"] == "tcp"
        and c["remote"].startswith(f"{a}:")
        and c["local"].endswith(f":{MESH_PORT}")
    )
    return int(total // SIZE)


def test_the_load_per_node_stays_within_its_configured_rate(
    triangle: Triangle, tmp_path: Path
) -> None:
    wait_for(lambda: all_ok(triangle), 3 * DEADLINE, "all 6 pairs ok", triangle)
    rules = tmp_path / "count.nft"
    rules.write_text(COUNTING.replace("SRC", address("a", "b")).replace("PORT", str(MESH_PORT)))
    triangle.nft("b", "-f", str(rules))
    try:
        opened = time.monotonic()
        udp0, tcp0 = _udp_count(triangle), _tcp_count(triangle)
        measured = time.monotonic()
        wait_for(lambda: time.monotonic() - measured > 5.0, 30.0, "5 s of probes", triangle)
        before = time.monotonic()
        udp1, tcp1 = _udp_count(triangle), _tcp_count(triangle)
        closed = time.monotonic()
        # The longest the counts could have been counting: from before the first reads
        # started to after the last ones ended (+1: a probe due at each edge).
        most = RATE * (closed - opened) + 1
        least = RATE * (before - measured) / 4  # a loaded machine skips probes, never adds
        assert least <= udp1 - udp0 <= most, (udp1 - udp0, most)
        assert least <= tcp1 - tcp0 <= most, (tcp1 - tcp0, most)
    finally:
        triangle.nft("b", "delete", "table", "inet", "meshcount")


def test_a_stopped_node_shows_failing_within_10_s_and_comes_back(triangle: Triangle) -> None:
    wait_for(lambda: all_ok(triangle), 3 * DEADLINE, "all 6 pairs ok", triangle)
    c = triangle.nodes["c"]
    with_c = {k for k in ALL_PAIRS if "c" in k}
    c.stop()
    stopped = time.monotonic()

    def failing() -> dict[tuple[str, str], dict[str, Any]] | None:
        pairs = pairs_of(matrix(triangle))
        bad = {k for k, p in pairs.items() if p["state"] == "failing"}
        return pairs if bad == with_c and set(pairs) == ALL_PAIRS else None

    pairs = wait_for(failing, 3 * DEADLINE, "c's 4 pairs failing, the others ok", triangle)
    elapsed = time.monotonic() - stopped
    assert elapsed < DEADLINE, f"failing after {elapsed:.1f} s"
    assert pairs[("a", "b")]["state"] == pairs[("b", "a")]["state"] == "ok"
    assert all(pairs[k]["last_error"] for k in with_c)
    rows = {r["src"]: r for r in matrix(triangle)["rows"]}
    assert rows["c"]["status"] == "unreachable"
    c.start()
    wait_for(lambda: all_ok(triangle), START_TIMEOUT, "all 6 pairs ok again", triangle)


@pytest.fixture
def dns_triangle(tmp_path: Path) -> Iterator[Triangle]:
    extra = (*EXTRA, "--peers-dns-interval", "1")
    with ExitStack() as stack:
        yield open_triangle(stack, tmp_path / "dns", dns="mesh.test", extra=extra)


def test_peers_found_through_a_name_resolving_to_every_node(dns_triangle: Triangle) -> None:
    triangle = dns_triangle
    wait_all_up(triangle)
    pairs = wait_for(lambda: all_ok(triangle), 3 * DEADLINE, "all 6 pairs ok", triangle)
    # The name gives each node its own address too: it is not a pair of its own.
    assert all(src != dst for src, dst in pairs)
    # The name is looked up again: a node left out of a's answers leaves a's row.
    hosts = triangle.hosts["a"]
    hosts.write_text(
        "".join(
            line + "\n" for line in hosts.read_text().splitlines() if address("c", "a") not in line
        )
    )

    def without_c() -> bool:
        row = triangle.ask("a", "/api/mesh/row")["/api/mesh/row"]
        return {p["dst"] for p in row["pairs"]} == {"b"}

    wait_for(without_c, 30.0, "a's row without c", triangle)


@pytest.fixture
def v6_triangle(tmp_path: Path) -> Iterator[Triangle]:
    with ExitStack() as stack:
        yield open_triangle(stack, tmp_path / "v6", extra=EXTRA, v6=True)


def test_an_ipv6_only_mesh_measures_all_six_pairs_over_both_transports(
    v6_triangle: Triangle,
) -> None:
    triangle = v6_triangle
    wait_all_up(triangle)
    pairs = wait_for(lambda: all_ok(triangle), 3 * START_TIMEOUT, "all 6 pairs ok", triangle)
    for pair in pairs.values():
        assert pair["udp"]["received"] > 0 and pair["tcp"]["received"] > 0
    # The probes crossed the IPv6 links: what a's mesh echo received from b came from b's
    # address on their link (its connections, as a's own API lists them).
    b_on_ab = address("b", "a", v6=True)
    conns = triangle.ask("a", "/api/connections?limit=500")["/api/connections?limit=500"]
    remotes = {row["remote"] for row in conns["items"]}
    assert any(row.startswith(f"[{b_on_ab}]:") for row in remotes), remotes
