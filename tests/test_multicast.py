"""Multicast listeners and runs, in network namespaces joined by a bridge.

Two senders (``tx1``, ``tx2``) and two receivers (``rx1``, ``rx2``) are socketlab nodes,
each a ``socketlab serve`` process in a namespace of its own, all four on one bridge
(:func:`tests.netns.bridge`). The senders have both receivers as peers. The receivers' sinks
join IPv4 and IPv6 groups on ``veth0``; ``rx1`` has two sinks on the same group and port
(shared with SO_REUSEPORT) and source-specific sinks that take ``tx1``'s datagrams only,
where ``rx2`` joins the same groups for any source.

A run is fired on a sender from inside its namespace (``socketlab fire --via``, the CLI
the README shows) and its result's ``receivers`` table is compared with the truth from
outside: the count the run was told to send, and the packets an nftables rule in ``rx2``'s
namespace dropped (``numgen random mod 100 < 5``, counted by a named nft counter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.wire.probe import run_tag_of
from tests.netns import in_ns, needs_netns
from tests.nsnodes import ROOT, Nodes, serve_nodes

ADDRS = {
    "tx1": ("10.51.0.1", "fd51::1"),
    "tx2": ("10.51.0.2", "fd51::2"),
    "rx1": ("10.51.0.11", "fd51::11"),
    "rx2": ("10.51.0.12", "fd51::12"),
}
GROUP4, GROUP6 = "239.1.2.3", "ff15::1:2"
# Source-specific groups (RFC 4607's ranges 232.0.0.0/8 and ff3x::/32).
SSM4, SSM6 = "232.1.1.1", "ff35::1:3"
PORT, SSM_PORT, ECHO_PORT = 5000, 7000, 5001
# Big receive buffers: a loaded machine may pause a receiver, and the kernel must not
# drop datagrams meanwhile (that would be loss no rule made).
SINK = "mode=sink&iface=veth0&rcvbuf=4194304"


def group_url(group: str, port: int, options: str = "") -> str:
    host = f"[{group}]" if ":" in group else group
    return f"udp://{host}:{port}" + (f"?{options}" if options else "")


def receiver_command(name: str) -> list[str]:
    address = ADDRS[name][0]
    listeners = [
        group_url(GROUP4, PORT, SINK),
        group_url(GROUP6, PORT, SINK),
    ]
    if name == "rx1":
        # A second sink on the same group and port, sinks that take tx1's only, an echo.
        listeners.append(group_url(GROUP4, PORT, SINK))
        listeners.append(group_url(GROUP4, ECHO_PORT, "mode=echo&iface=veth0"))
        listeners.append(group_url(SSM4, SSM_PORT, f"{SINK}&source={ADDRS['tx1'][0]}"))
        listeners.append(group_url(SSM6, SSM_PORT, f"{SINK}&source={ADDRS['tx1'][1]}"))
    else:
        listeners.append(group_url(SSM4, SSM_PORT, SINK))
        listeners.append(group_url(SSM6, SSM_PORT, SINK))
    command = ["serve", "--web", f"{address}:8000"]
    for url in listeners:
        command += ["--listen", url]
    return command


def sender_command(name: str) -> list[str]:
    command = ["serve", "--web", f"{ADDRS[name][0]}:8000", "--allow-multicast"]
    if name == "tx1":
        # A sink of the sender's own on the group: a receiver of this lab (loopback).
        command += ["--listen", group_url(GROUP4, PORT, SINK)]
    for net in ("239.0.0.0/8", "232.0.0.0/8", "ff15::/16", "ff35::/16"):
        command += ["--allow-target", net]
    for peer in ("rx1", "rx2"):
        command += ["--peer", f"http://{ADDRS[peer][0]}:8000"]
    return command


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    commands = {
        name: receiver_command(name) if name.startswith("rx") else sender_command(name)
        for name in ("rx1", "rx2", "tx1", "tx2")
    }
    with serve_nodes(tmp_path_factory.mktemp("multicast"), ADDRS, commands) as nodes:
        nodes.wait_for_peers({"tx1": 2, "tx2": 2})
        yield nodes


def rows_by_receiver(doc: dict[str, Any]) -> dict[tuple[str | None, str], dict[str, Any]]:
    """The run's receivers table keyed by (peer, listener id)."""
    assert doc["status"] == "finished", doc
    rows = doc["summary"]["receivers"]
    assert rows is not None
    return {(row["peer"], row["listener"]): row for row in rows}


def listener_ids(net: Nodes, receiver: str, group: str, port: int) -> list[str]:
    doc = net.get(receiver, "/api/listeners")
    assert doc is not None
    return [
        item["id"]
        for item in doc["items"]
        if item["port"] == port and item["host"].lower() == group.lower()
    ]


@dataclass
class Drop:
    """An nftables rule in a receiver's namespace dropping 5 % of a port's datagrams."""

    ns: str

    def __enter__(self) -> Drop:
        rules = (
            "table inet mcdrop {\n"
            "  counter dropped { }\n"
            "  chain input {\n"
            "    type filter hook input priority -10; policy accept;\n"
            f"    udp dport {PORT} numgen random mod 100 < 5 counter name dropped drop\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(in_ns(self.ns, "nft", "-f", "-"), input=rules, text=True, check=True)
        return self

    def dropped(self) -> int:
        out = subprocess.run(
            in_ns(self.ns, "nft", "-j", "list", "counter", "inet", "mcdrop", "dropped"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        counters = [e["counter"] for e in json.loads(out)["nftables"] if "counter" in e]
        return int(counters[0]["packets"])

    def __exit__(self, *exc: object) -> None:
        subprocess.run(in_ns(self.ns, "nft", "delete", "table", "inet", "mcdrop"), check=False)


pytestmark = [needs_netns]


@pytest.mark.parametrize("group", [GROUP4, GROUP6])
def test_every_receiver_counts_what_the_sender_sent(net: Nodes, group: str) -> None:
    count = 2000
    target = group_url(group, PORT)
    doc = net.fire(
        "tx1", target, "--pattern", "rate", "--rate", "1000", "--count", str(count),
        "--ttl", "1", "--iface", "veth0",
    )  # fmt: skip
    rows = rows_by_receiver(doc)
    # rx1's two sinks on the group and port each got a copy of everything, and rx2's one.
    rx1 = listener_ids(net, "rx1", group, PORT)
    rx2 = listener_ids(net, "rx2", group, PORT)
    own = listener_ids(net, "tx1", group, PORT)
    assert len(rx1) == (2 if group == GROUP4 else 1) and len(rx2) == 1
    assert len(own) == (1 if group == GROUP4 else 0)
    # A peer is named by its host; the sender's own sink by no peer.
    expected: set[tuple[str | None, str]] = {(ADDRS["rx1"][0], i) for i in rx1}
    expected |= {(ADDRS["rx2"][0], i) for i in rx2}
    expected |= {(None, i) for i in own}
    assert set(rows) == expected
    assert doc["summary"]["sent"] == count
    for row in rows.values():
        assert row["error"] is None
        assert (row["received"], row["lost"], row["duplicates"], row["reordered"]) == (
            count,
            0,
            0,
            0,
        ), row
        assert row["loss_pct"] == 0


@pytest.mark.parametrize("group", [GROUP4, GROUP6])
def test_a_drop_on_one_receivers_link_shows_there_only(net: Nodes, group: str) -> None:
    # 8,000 datagrams: 5 % of them is 400 ± 19 (one standard deviation), so 4 % to 6 %
    # holds but for a chance of about 1 in 20,000.
    count = 8000
    target = group_url(group, PORT)
    with Drop(net["rx2"].ns) as drop:
        doc = net.fire(
            "tx1", target, "--pattern", "rate", "--rate", "2000", "--count", str(count),
            "--iface", "veth0",
        )  # fmt: skip
        dropped = drop.dropped()
    rows = rows_by_receiver(doc)
    lossy = [row for (peer, _), row in rows.items() if peer == ADDRS["rx2"][0]]
    clean = [row for (peer, _), row in rows.items() if peer != ADDRS["rx2"][0]]
    assert len(lossy) == 1 and clean
    # The truth from outside: what the kernel's rule counted as dropped.
    assert 0.04 * count <= dropped <= 0.06 * count
    assert lossy[0]["lost"] == dropped
    assert lossy[0]["received"] == count - dropped
    assert 4.0 <= lossy[0]["loss_pct"] <= 6.0
    for row in clean:
        assert (row["received"], row["lost"], row["loss_pct"]) == (count, 0, 0), row


@pytest.mark.parametrize(("group", "family"), [(SSM4, 0), (SSM6, 1)])
def test_a_source_specific_join_ignores_a_second_sender(
    net: Nodes, group: str, family: int
) -> None:
    count = 500
    target = group_url(group, SSM_PORT)
    options = ("--pattern", "burst", "--burst", "100", "--interval", "0.1", "--count", str(count))
    # fmt: off
    from_tx1 = rows_by_receiver(net.fire("tx1", target, *options, "--iface", "veth0"))
    from_tx2 = rows_by_receiver(net.fire("tx2", target, *options, "--iface", "veth0"))
    # fmt: on
    rx1, rx2 = ADDRS["rx1"][0], ADDRS["rx2"][0]
    for rows in (from_tx1, from_tx2):
        assert {peer for peer, _ in rows} == {rx1, rx2}
    # rx2 joined for any source: it has both runs whole.
    for rows in (from_tx1, from_tx2):
        (any_source,) = [row for (peer, _), row in rows.items() if peer == rx2]
        assert (any_source["received"], any_source["lost"]) == (count, 0)
    # rx1 joined for tx1 only: all of tx1's run, nothing of tx2's.
    (specific,) = [row for (peer, _), row in from_tx1.items() if peer == rx1]
    assert (specific["received"], specific["lost"]) == (count, 0)
    (ignored,) = [row for (peer, _), row in from_tx2.items() if peer == rx1]
    assert ignored["received"] == 0 and ignored["lost"] == count


def test_the_cli_prints_the_table_of_receivers(net: Nodes) -> None:
    out = net.fire(
        "tx1", group_url(GROUP4, PORT),
        "--pattern", "rate", "--rate", "500", "--count", "200", as_json=False,
    )  # fmt: skip
    table = [
        line.split() for line in out.splitlines() if line.startswith(("  10.51.0.1", "  this lab"))
    ]
    assert len(table) == 4, out
    for cells in table:
        # name (two words for this lab's), listener, received, lost, loss %, dup, reord, jitter
        cells = cells[1:] if cells[0] == "this" else cells
        assert cells[2:7] == ["200", "0", "0.00", "0", "0"], out


def test_ttl_0_stays_on_the_host_and_no_loopback_leaves_it(net: Nodes) -> None:
    count = 300
    target = group_url(GROUP4, PORT)
    options = ("--pattern", "rate", "--rate", "1000", "--count", str(count), "--iface", "veth0")
    # TTL 0: the kernel loops the datagrams back to this host's members and sends none.
    local_only = rows_by_receiver(net.fire("tx1", target, *options, "--ttl", "0"))
    # No loopback: the link's members get them and this host's do not.
    remote_only = rows_by_receiver(net.fire("tx1", target, *options, "--no-loopback"))
    for rows, here, there in ((local_only, count, 0), (remote_only, 0, count)):
        assert len(rows) == 4
        for (peer, _), row in rows.items():
            assert row["received"] == (here if peer is None else there), row


def test_the_options_are_refused_for_a_unicast_target_and_other_patterns(net: Nodes) -> None:
    node = net["tx1"]
    for options, option in (
        (["udp://10.51.0.11:5000", "--pattern", "rate", "--rate", "10", "--ttl", "2"], "--ttl"),
        ([group_url(GROUP4, PORT), "--ttl", "2"], "--ttl"),
        ([group_url(GROUP4, PORT), "--pattern", "burst", "--reverse"], "--reverse"),
    ):
        command = [sys.executable, "-m", "app.cli", "fire", "--via", node.web, *options]
        result = subprocess.run(
            in_ns(node.ns, *command, "--token", net.token),
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"socketlab: error: {option}: "), result.stderr


def test_an_echo_on_a_group_answers_each_sender_by_unicast(net: Nodes) -> None:
    count = 50
    doc = net.fire(
        "tx1", group_url(GROUP4, ECHO_PORT), "--pattern", "rate", "--rate", "50",
        "--count", str(count), "--iface", "veth0",
    )  # fmt: skip
    assert doc["status"] == "finished"
    assert doc["summary"]["receivers"] == []  # an echo is no sink: it counts no probes
    (echo,) = [
        item
        for item in net.get("rx1", "/api/listeners")["items"]
        if item["port"] == ECHO_PORT and item["mode"] == "echo"
    ]
    assert (echo["msgs_in"], echo["msgs_out"], echo["errors"]) == (count, count, 0)
    assert echo["bytes_out"] == echo["bytes_in"] == count * 64


def test_the_cli_fires_at_a_group_from_its_own_process_when_allowed(net: Nodes) -> None:
    node = net["tx2"]
    command = [sys.executable, "-m", "app.cli", "fire", group_url(GROUP6, PORT)]
    command += ["--pattern", "rate", "--rate", "500", "--count", "100", "--iface", "veth0"]
    refused = subprocess.run(
        in_ns(node.ns, *command), capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert refused.returncode != 0 and "multicast" in refused.stderr
    fired = subprocess.run(
        in_ns(node.ns, *command, "--allow-multicast", "--json"),
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert fired.returncode == 0, fired.stderr
    doc = json.loads(fired.stdout)
    # Outside a lab there are no peers to ask: each receiver has the run all the same.
    assert (doc["summary"]["sent"], doc["summary"]["receivers"]) == (100, [])
    tag = f"{run_tag_of(doc['id']):08x}"
    for receiver in ("rx1", "rx2"):
        (sink,) = listener_ids(net, receiver, GROUP6, PORT)
        counted = net.get(receiver, f"/api/listeners/{sink}/probes/{tag}")
        assert (counted["received"], counted["duplicates"]) == (100, 0)
