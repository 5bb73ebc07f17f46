"""The nftables text of kernel_loss, reading nft's listings back, and the spec's checks."""

from __future__ import annotations

import json

import pytest

from app.errors import SpecError
from app.listeners.nftrules import (
    LossRules,
    chain_drops,
    chain_pid,
    delete_script,
    netem_missing,
    stale_chains,
)
from app.listeners.parse import parse_listener

# What `nft -j list chain inet socketlab sl_29150_l1` printed for a UDP listener on
# 127.0.0.1:9100 with kernel_loss=5, after a 10,000-datagram run (523 dropped).
CAPTURED = json.dumps(
    {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "socketlab", "handle": 2}},
            {
                "chain": {
                    "family": "inet",
                    "table": "socketlab",
                    "name": "sl_29150_l1",
                    "handle": 1,
                    "type": "filter",
                    "hook": "input",
                    "prio": -150,
                    "policy": "accept",
                }
            },
            {
                "rule": {
                    "family": "inet",
                    "table": "socketlab",
                    "chain": "sl_29150_l1",
                    "handle": 3,
                    "comment": "socketlab l1 in",
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"protocol": "udp", "field": "dport"}},
                                "right": 9100,
                            }
                        },
                        {
                            "match": {
                                "op": "<",
                                "left": {"numgen": {"mode": "random", "mod": 10000, "offset": 0}},
                                "right": 500,
                            }
                        },
                        {"counter": {"packets": 523, "bytes": 48116}},
                        {"drop": None},
                    ],
                }
            },
        ]
    }
)


def test_inbound_rule_matches_only_the_listeners_port_on_loopback() -> None:
    rules = LossRules("l3", "tcp", "127.0.0.1", 9000, 5.0)
    assert rules.add_script(4242) == (
        "add table inet socketlab\n"
        "add chain inet socketlab sl_4242_l3 "
        "{ type filter hook input priority -150; policy accept; }\n"
        'add rule inet socketlab sl_4242_l3 iif "lo" ip daddr 127.0.0.1 tcp dport 9000 '
        'numgen random mod 10000 < 500 counter drop comment "socketlab l3 in"\n'
    )


def test_both_directions_on_ipv6_loopback_add_two_rules() -> None:
    script = LossRules("l1", "udp", "::1", 53000, 20.0, "both").add_script(7)
    rules = [line for line in script.splitlines() if line.startswith("add rule")]
    assert rules == [
        'add rule inet socketlab sl_7_l1 iif "lo" ip6 daddr ::1 udp dport 53000 '
        'numgen random mod 10000 < 2000 counter drop comment "socketlab l1 in"',
        'add rule inet socketlab sl_7_l1 iif "lo" ip6 saddr ::1 udp sport 53000 '
        'numgen random mod 10000 < 2000 counter drop comment "socketlab l1 out"',
    ]


def test_wildcard_listener_matches_its_port_on_every_interface() -> None:
    script = LossRules("l2", "tcp", "0.0.0.0", 9000, 1.0).add_script(1)
    assert "add rule inet socketlab sl_1_l2 tcp dport 9000 numgen random mod 10000 < 100" in script
    assert "iif" not in script and "daddr" not in script


@pytest.mark.parametrize(("percent", "threshold"), [(0.01, 1), (1, 100), (5.5, 550), (100, 10000)])
def test_share_is_applied_in_hundredths_of_a_percent(percent: float, threshold: int) -> None:
    assert LossRules("l1", "udp", "127.0.0.1", 1, percent).threshold == threshold


def test_delete_script_flushes_then_deletes_the_chain() -> None:
    assert delete_script("sl_7_l1") == (
        "flush chain inet socketlab sl_7_l1\ndelete chain inet socketlab sl_7_l1\n"
    )


def test_drops_are_read_from_the_rules_counter() -> None:
    assert chain_drops(CAPTURED, "sl_29150_l1") == {"in": 523}
    assert chain_drops(CAPTURED, "sl_1_l1") == {}


def test_stale_chains_are_ours_of_dead_processes_only() -> None:
    doc = json.loads(CAPTURED)
    for name in ("sl_100_l2", "someone_elses", "sl_x_l1"):
        doc["nftables"].append({"chain": {"family": "inet", "table": "socketlab", "name": name}})
    assert stale_chains(doc, alive=lambda pid: pid == 100) == ["sl_29150_l1"]
    assert stale_chains(doc, alive=lambda pid: False) == ["sl_29150_l1", "sl_100_l2"]
    assert chain_pid("sl_29150_l1") == 29150
    assert chain_pid("someone_elses") is None


def test_netem_is_found_or_its_absence_explained() -> None:
    unset = "CONFIG_NF_TABLES=y\n# CONFIG_NET_SCH_NETEM is not set\n"
    assert netem_missing(unset, [], False, "6.18") == (
        "kernel 6.18 has no sch_netem (CONFIG_NET_SCH_NETEM is not set)"
    )
    assert netem_missing("CONFIG_NET_SCH_NETEM=y\n", [], False, "6.1") is None
    assert netem_missing("CONFIG_NET_SCH_NETEM=m\n", ["sch_netem.ko.xz"], False, "6.1") is None
    assert netem_missing("CONFIG_NET_SCH_NETEM=m\n", [], False, "6.1") == (
        "kernel 6.1 has no sch_netem module (tc netem needs it)"
    )
    assert netem_missing(None, [], True, "6.1") is None


def test_kernel_loss_is_a_listener_option_of_every_mode() -> None:
    spec = parse_listener("tcp://127.0.0.1:0?mode=sink&kernel_loss=5")
    assert spec.kernel_loss == 5.0 and spec.kernel_loss_direction == "in"
    assert "kernel_loss=5" in spec.url
    both = parse_listener(
        {"url": "udp://[::1]:0", "kernel_loss": 2.5, "kernel_loss_direction": "both"}
    )
    assert both.options() == {"kernel_loss": 2.5, "kernel_loss_direction": "both"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"url": "tcp://127.0.0.1:0", "kernel_loss": 0.001}, "kernel_loss", "0.01"),
        ({"url": "tcp://127.0.0.1:0", "kernel_loss": 101}, "kernel_loss", "100"),
        (
            {"url": "tcp://127.0.0.1:0", "kernel_loss_direction": "out"},
            "kernel_loss_direction",
            "applies",
        ),
        (
            {"url": "tcp://0.0.0.0:0", "kernel_loss": 5, "kernel_loss_direction": "out"},
            "kernel_loss_direction",
            "loopback",
        ),
        ({"url": "tcp://lab.example:0", "kernel_loss": 5}, "url", "IP address"),
    ],
)
def test_kernel_loss_refuses_what_it_cannot_do(
    body: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_listener(body)
    assert caught.value.field == field
    assert words in caught.value.message
