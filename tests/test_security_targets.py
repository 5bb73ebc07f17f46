"""The target policy under attack: 40+ bypass forms, all refused, and nothing sent.

Every form goes through the real API and the real resolver path. Names resolve through
Trio's hostname-resolver hook with a table the test owns (numeric forms are parsed by the
system resolver with AI_NUMERICHOST), so no query leaves the machine.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from app.lab import Lab
from app.runs.targets import TargetPolicy
from tests.helpers import http


class ScriptedResolver(trio.abc.HostnameResolver):
    """Names from a table (a list of answers is served one per call, the last repeating);
    anything else is parsed as a numeric address or fails as an unknown name."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: dict[str, int] = {}

    async def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.table:
            answers = self.table[name]
            addresses = answers[min(self.calls[name], len(answers)) - 1]
            result = []
            for address in addresses:
                result += socket.getaddrinfo(
                    address, port, family, type, proto, socket.AI_NUMERICHOST
                )
            return result
        return socket.getaddrinfo(name, port, family, type, proto, socket.AI_NUMERICHOST)

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


BYPASS_HOSTS = [
    # "This network": connecting to 0.0.0.0 or :: reaches this very machine.
    "0.0.0.0",
    "0",
    "0x0",
    "00",
    "0.0",
    "0.0.0",
    "000.000.000.000",
    "0x00.0x00.0x00.0x00",
    "[::]",
    "[0:0:0:0:0:0:0:0]",
    "[::ffff:0.0.0.0]",
    "[::ffff:0:0]",
    "[64:ff9b::]",
    # The cloud metadata address in every spelling.
    "169.254.169.254",
    "2852039166",
    "0xa9fea9fe",
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376",
    "169.254.43518",
    "169.16689662",
    "0251.0xfe.43518",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[64:ff9b::169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::a9fe:a9fe]",
    "[2002:a9fe:a9fe::1]",
    "[::169.254.169.254]",
    "169.254.0.1",
    # Broadcast and reserved.
    "255.255.255.255",
    "4294967295",
    "0xffffffff",
    "240.0.0.1",
    "[::ffff:255.255.255.255]",
    # Multicast (not enabled).
    "224.0.0.1",
    "239.255.255.250",
    "3758096385",
    "[ff02::1]",
    "[::ffff:224.0.0.251]",
    # IPv6 link-local.
    "[fe80::1]",
    # Not on the allowlist: private and public networks.
    "10.0.0.1",
    "167772161",
    "192.168.1.1",
    "0xc0a80101",
    "[::ffff:10.0.0.1]",
    "172.16.0.1",
    "100.64.0.1",
    "8.8.8.8",
    "[2001:db8::1]",
    "[64:ff9b::7f00:1]",
    # Names: a mix of allowed and denied answers, a rebinding resolver, the metadata name.
    "mixed.lab.test",
    "rebind.lab.test",
    "metadata.lab.test",
]


@pytest.fixture
async def resolver() -> ScriptedResolver:
    resolver = ScriptedResolver(
        {
            "mixed.lab.test": [["127.0.0.1", "169.254.169.254"]],
            # Denied answers for the two runs that ask, then loopback for a checker that
            # would ask again at connect time.
            "rebind.lab.test": [["10.0.0.1"], ["169.254.169.254"], ["127.0.0.1"]],
            "metadata.lab.test": [["169.254.169.254"]],
            "flip.lab.test": [["127.0.0.1"], ["169.254.169.254"]],
        }
    )
    trio.socket.set_custom_hostname_resolver(resolver)
    return resolver


async def test_forty_bypass_forms_are_refused_and_nothing_is_sent(
    lab: Lab, resolver: ScriptedResolver
) -> None:
    assert len(BYPASS_HOSTS) >= 40
    assert lab.web_port is not None
    tcp_sink = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp_sink = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tcp_sink, udp_sink:
        await tcp_sink.bind(("127.0.0.1", 0))
        port = tcp_sink.getsockname()[1]
        tcp_sink.listen(100)
        await udp_sink.bind(("127.0.0.1", port))
        for host in BYPASS_HOSTS:
            for protocol in ("tcp", "udp"):
                response = await http(
                    lab.web_port,
                    "POST",
                    "/api/runs",
                    body={"target": f"{protocol}://{host}:{port}", "count": 1},
                )
                assert response.status == 403, (host, response.body)
                assert response.json()["field"] == "target"
        assert await lab.runs.list() == []
        # Nothing reached the sinks: no connection is waiting, no datagram is queued.
        with pytest.raises(BlockingIOError):
            tcp_sink._sock.accept()  # type: ignore[attr-defined]  # trio has no accept_nowait
        with pytest.raises(BlockingIOError):
            udp_sink._sock.recv(10, socket.MSG_DONTWAIT)  # type: ignore[attr-defined]
    assert resolver.calls["rebind.lab.test"] == 2  # once per protocol: resolved once a run
    audit = (await http(lab.web_port, "GET", "/api/audit?limit=1000")).json()["items"]
    assert len(audit) == 2 * len(BYPASS_HOSTS)
    assert all(item["outcome"].startswith("refused") for item in audit)
    assert all(item["run_id"] is None for item in audit)


async def test_a_name_is_resolved_once_and_the_checked_address_is_used(
    lab: Lab, resolver: ScriptedResolver
) -> None:
    from tests.conftest import listener_port

    assert lab.web_port is not None
    port = listener_port(lab, "tcp")
    created = await http(
        lab.web_port,
        "POST",
        "/api/runs",
        body={"target": f"tcp://flip.lab.test:{port}", "connections": 3, "count": 30},
    )
    assert created.status == 201
    run = lab.runs.live[created.json()["id"]]
    with trio.fail_after(10):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    # Three connections, one resolution: a changed answer could not redirect any of them.
    assert resolver.calls["flip.lab.test"] == 1
    assert doc["summary"]["received"] == 30


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "10.1.255.254", "lab-peer"],
)
def test_configured_networks_and_names_are_allowed(address: str) -> None:
    import ipaddress

    policy = TargetPolicy(["10.1.0.0/16", "lab-peer"])
    ip = ipaddress.ip_address("192.0.2.7" if address == "lab-peer" else address)
    policy.check(ip, address)


def test_always_denied_ranges_stay_denied_even_when_configured() -> None:
    import ipaddress

    from app.errors import TargetNotAllowedError

    policy = TargetPolicy(["0.0.0.0/0", "::/0", "metadata"])
    for address in (
        "169.254.169.254",
        "0.0.0.0",
        "255.255.255.255",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "fe80::1",
        "224.0.0.1",
    ):
        with pytest.raises(TargetNotAllowedError):
            policy.check(ipaddress.ip_address(address), "metadata")
    TargetPolicy(allow_multicast=True, allow_any=True).check(
        ipaddress.ip_address("224.0.0.1"), "224.0.0.1"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "tcp://127.0.0.1:0?mode=respond", "rules_file": "/etc/passwd"}, "rules_file"),
        ({"url": "tcp://127.0.0.1:0?mode=respond&rules_file=/etc/shadow"}, "rules_file"),
        ({"url": "tls://127.0.0.1:0?mode=echo", "cert": "/etc/ssl/x.pem"}, "cert"),
        ({"url": "tls://127.0.0.1:0?mode=echo&key=/root/.ssh/id_rsa"}, "key"),
    ],
)
async def test_the_api_never_opens_files_named_by_a_client(
    lab: Lab, body: dict[str, str], field: str
) -> None:
    assert lab.web_port is not None
    before = len(list(lab.listeners))
    response = await http(lab.web_port, "POST", "/api/listeners", body=body)
    assert (response.status, response.json()["field"]) == (422, field)
    assert len(list(lab.listeners)) == before


# Teredo (2001::/32) carries a server address in bits 32-63 and a client address, inverted,
# in the last 32 bits (RFC 4380's example: server 65.54.227.120, client 192.0.2.45);
# IPv4-translated (SIIT) is ::ffff:0:a.b.c.d. With ::/0 allowed, only rule 1 stands between
# these and a denied IPv4 address.
@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", None),
        ("2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2", "169.254.169.254"),  # denied server
        ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"),  # denied client
        ("2001:0:4136:e378:8000:63bf:ffff:ffff", "0.0.0.0"),  # client 0.0.0.0
        ("2001:0:4136:e378:8000:63bf:0:0", "255.255.255.255"),  # client broadcast
        ("2001:0:4136:e378:8000:63bf:1fff:fffe", "224.0.0.1"),  # client multicast
        ("2001:0:ffff:ffff:8000:63bf:3fff:fdd2", "255.255.255.255"),  # server broadcast
        ("2001::", "0.0.0.0"),  # server 0.0.0.0 (and client 255.255.255.255)
        ("2001:db8::a9fe:a9fe", None),  # documentation range, not Teredo
        ("::ffff:0:a9fe:a9fe", "169.254.169.254"),
        ("::ffff:0:169.254.169.254", "169.254.169.254"),
        ("::ffff:0:0:0", "0.0.0.0"),
        ("::ffff:0:ffff:ffff", "255.255.255.255"),
        ("::ffff:0:e000:1", "224.0.0.1"),
        ("::ffff:0:808:808", None),
        ("::ffff:0:7f00:1", None),
    ],
)
def test_teredo_and_siit_forms_are_unwrapped_where_ipv6_is_allowed(
    address: str, refused: str | None
) -> None:
    import ipaddress

    from app.errors import TargetNotAllowedError

    policy = TargetPolicy(["::/0"])
    ip = ipaddress.ip_address(address)
    if refused is None:
        policy.check(ip, address)
        return
    with pytest.raises(TargetNotAllowedError) as info:
        policy.check(ip, address)
    assert "always refused" in info.value.message
    assert f"embedded in {ip}" in info.value.message
    reason = policy.denied_reason(ipaddress.ip_address(refused))
    assert reason is not None and reason in info.value.message


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ("65.54.227.120", "192.0.2.45")),
        ("::ffff:0:c000:22d", ("192.0.2.45",)),
        ("::ffff:c000:22d", ("192.0.2.45",)),
        ("64:ff9b::c000:22d", ("192.0.2.45",)),
        ("2002:c000:22d::1", ("192.0.2.45",)),
        ("::c000:22d", ("192.0.2.45",)),
        ("2001:db8::c000:22d", ()),
        ("::1", ()),
    ],
)
def test_embedded_ipv4s_names_every_ipv4_address_an_ipv6_address_carries(
    address: str, embedded: tuple[str, ...]
) -> None:
    import ipaddress

    from app.runs.targets import embedded_ipv4s

    got = embedded_ipv4s(ipaddress.IPv6Address(address))
    assert tuple(str(ip) for ip in got) == embedded
