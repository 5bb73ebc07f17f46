"""Listeners a client asks for bind only where the operator allowed; their number is capped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from app.errors import SpecError
from app.lab import Lab
from app.listeners.policy import ListenerPolicy, parse_bind_networks
from app.settings import load_settings, parse_listener_url
from tests.conftest import running_lab
from tests.helpers import http

WEB = 8000
LOOPBACK_WEB = ListenerPolicy(web_host="127.0.0.1", web_port=WEB)


def allowing(*networks: str, web_host: str | None = None) -> ListenerPolicy:
    """A policy allowing ``networks``, with a web server on ``web_host:WEB`` if given."""
    return ListenerPolicy(
        allow=parse_bind_networks(networks), web_host=web_host, web_port=WEB if web_host else None
    )


REFUSED: list[tuple[ListenerPolicy, str, int, str]] = [
    (LOOPBACK_WEB, "0.0.0.0", 9000, "loopback addresses only"),
    (LOOPBACK_WEB, "::", 9000, "loopback addresses only"),
    (LOOPBACK_WEB, "::ffff:0.0.0.0", 9000, "loopback addresses only"),
    (LOOPBACK_WEB, "192.168.1.10", 9000, "loopback addresses only"),
    (LOOPBACK_WEB, "fe80::1", 9000, "loopback addresses only"),
    (LOOPBACK_WEB, "lab.example", 9000, "not a name"),
    (LOOPBACK_WEB, "127.0.0.1", 80, "privileged"),
    (LOOPBACK_WEB, "::1", 1023, "privileged"),
    # The web port on every address a dashboard client may try.
    (LOOPBACK_WEB, "::1", WEB, "the dashboard's"),
    (LOOPBACK_WEB, "127.0.0.1", WEB, "the dashboard's"),
    (LOOPBACK_WEB, "127.0.0.2", WEB, "the dashboard's"),
    (LOOPBACK_WEB, "localhost", WEB, "the dashboard's"),
    (LOOPBACK_WEB, "::ffff:127.0.0.1", WEB, "the dashboard's"),
    (
        allowing("0.0.0.0/0", web_host="127.0.0.1"),
        "0.0.0.0",
        WEB,
        "the dashboard's",
    ),
    (
        allowing("10.0.0.0/8", web_host="0.0.0.0"),
        "10.1.2.3",
        WEB,
        "the dashboard's",
    ),
    (
        allowing("10.0.0.0/8", web_host="10.0.0.5"),
        "10.0.0.5",
        WEB,
        "the dashboard's",
    ),
    # An allowed network allows what it contains, not more.
    (allowing("10.0.0.0/8"), "0.0.0.0", 9000, "loopback"),
    (allowing("10.0.0.0/8"), "11.0.0.1", 9000, "loopback"),
    (allowing("10.0.0.0/8"), "10.0.0.1", 443, "privileged"),
]

ALLOWED: list[tuple[ListenerPolicy, str, int]] = [
    (LOOPBACK_WEB, "127.0.0.1", 0),
    (LOOPBACK_WEB, "::1", 9000),
    (LOOPBACK_WEB, "[::1]", 9000),
    (LOOPBACK_WEB, "localhost", 9000),
    (LOOPBACK_WEB, "127.0.0.1", 1024),
    (LOOPBACK_WEB, "127.0.0.1", WEB + 1),
    (ListenerPolicy(), "::1", WEB),  # a lab without a web server
    (allowing("10.0.0.0/8"), "10.9.8.7", 9000),
    (allowing("0.0.0.0/0", "::/0"), "0.0.0.0", 9000),
    (allowing("::"), "::", 9000),
    (allowing("192.0.2.1"), "192.0.2.1", 9000),
    # A web server on one address does not take its port on another allowed one.
    (
        allowing("10.0.0.0/8", web_host="127.0.0.1"),
        "10.0.0.1",
        WEB,
    ),
]


@pytest.mark.parametrize(("policy", "host", "port", "reason"), REFUSED)
def test_the_policy_refuses_a_bind_naming_url_and_the_reason(
    policy: ListenerPolicy, host: str, port: int, reason: str
) -> None:
    with pytest.raises(SpecError) as caught:
        policy.check(host, port)
    assert caught.value.field == "url"
    assert reason in caught.value.message


@pytest.mark.parametrize(("policy", "host", "port"), ALLOWED)
def test_the_policy_allows_loopback_and_what_the_operator_allowed(
    policy: ListenerPolicy, host: str, port: int
) -> None:
    policy.check(host.strip("[]"), port)


def test_allow_bind_comes_from_the_flag_and_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "socketlab.toml"
    config.write_text('allow_binds = ["10.0.0.0/8"]\n[caps]\nlisteners = 7\n')
    settings = load_settings(config=str(config), allow_bind=["::/0"], environ={})
    assert settings.allow_binds == ("10.0.0.0/8", "::/0")
    assert settings.max_listeners == 7
    with pytest.raises(SpecError) as caught:
        load_settings(allow_bind=["10.0.0.0/33"], environ={})
    assert caught.value.field == "allow_binds"


async def post_listener(lab: Lab, body: dict[str, Any]) -> tuple[int, Any]:
    assert lab.web_port is not None
    response = await http(lab.web_port, "POST", "/api/listeners", body=body)
    return response.status, response.json()


async def test_the_api_refuses_binds_beyond_loopback_privileged_ports_and_the_web_port(
    lab: Lab,
) -> None:
    web = lab.web_port
    urls = [
        "tcp://0.0.0.0:0",
        "udp://[::]:0",
        "tcp://192.0.2.1:0",
        "tcp://127.0.0.1:80",
        f"tcp://[::1]:{web}",
        f"udp://127.0.0.1:{web}",
        f"tls://[::1]:{web}",
    ]
    with trio.fail_after(10):
        for url in urls:
            status, doc = await post_listener(lab, {"url": url})
            assert (status, doc["field"]) == (422, "url"), url
    # Nothing was bound: only the lab's own two listeners run.
    assert len(lab.listeners) == 2


async def test_listeners_from_the_settings_bind_as_the_operator_wrote_them(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # The operator may bind beyond the API's policy and past the cap.
    listeners = tuple(
        parse_listener_url(url)
        for url in ("tcp://[::1]:0", "udp://[::1]:0", "tcp://127.0.0.1:0", "udp://127.0.0.1:0")
    )
    async with running_lab(nursery, tmp_path / "data", listeners=listeners, max_listeners=3) as lab:
        assert len(lab.listeners) == 4
        with trio.fail_after(10):
            status, _ = await post_listener(lab, {"url": "tcp://127.0.0.1:0"})
        assert status == 409


async def test_simultaneous_listener_posts_stop_exactly_at_the_cap(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with running_lab(nursery, tmp_path / "data", max_listeners=6) as lab:
        statuses: list[int] = []

        async def post(url: str) -> None:
            status, _ = await post_listener(lab, {"url": url})
            statuses.append(status)

        with trio.fail_after(20):
            async with trio.open_nursery() as posts:
                for i in range(20):
                    posts.start_soon(post, "udp://127.0.0.1:0" if i % 2 else "tcp://[::1]:0")
        # The lab's own two and four more.
        assert sorted(statuses) == [201] * 4 + [409] * 16
        assert len(lab.listeners) == 6
