"""Every error kind a run reports, each produced by a real situation.

Name resolution goes through Trio's hostname-resolver hook with a table the test owns, so a
name that does not resolve fails for real inside getaddrinfo and no query leaves the machine.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

import pytest
import trio
import trustme

from app.lab import Lab
from app.runs.spec import parse_run_spec


class TableResolver(trio.abc.HostnameResolver):
    """Resolves names from a dict; anything else is EAI_NONAME, as a real resolver says."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        self.calls.append(name)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await trio.to_thread.run_sync(
            socket.getaddrinfo, self.table[name], port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


async def run_to_end(lab: Lab, spec: dict[str, object]) -> dict[str, Any]:
    run = await lab.runs.start(parse_run_spec(spec))
    with trio.fail_after(20):
        await run.done.wait()
    doc = await lab.runs.get(run.id)
    stored = await lab.store.get_run(run.id)
    assert stored is not None and stored["summary"] is not None  # a stored summary
    return doc


async def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with trio.socket.socket(socket.AF_INET, kind) as probe:
        await probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_closed_tcp_port_is_refused(lab: Lab) -> None:
    doc = await run_to_end(lab, {"target": f"tcp://127.0.0.1:{await free_port()}", "count": 2})
    assert doc["summary"]["errors_by_kind"] == {"refused": 1}
    assert doc["status"] == "failed"


async def test_a_peer_that_resets_is_reset(lab: Lab, nursery: trio.Nursery) -> None:
    async def resetter(stream: trio.SocketStream) -> None:
        await stream.receive_some(1)
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    listeners = await nursery.start(trio.serve_tcp, resetter, 0)
    port = listeners[0].socket.getsockname()[1]
    doc = await run_to_end(lab, {"target": f"tcp://127.0.0.1:{port}", "count": 5})
    assert doc["summary"]["errors_by_kind"] == {"reset": 1}


async def test_udp_port_without_listener_is_icmp_unreachable(lab: Lab) -> None:
    port = await free_port(socket.SOCK_DGRAM)
    doc = await run_to_end(lab, {"target": f"udp://127.0.0.1:{port}", "count": 3, "timeout": 0.2})
    kinds = doc["summary"]["errors_by_kind"]
    assert set(kinds) == {"unreachable"}
    assert kinds["unreachable"] >= 1
    assert doc["summary"]["received"] == 0


async def test_a_name_that_does_not_resolve_is_dns(lab: Lab) -> None:
    resolver = TableResolver({"echo.lab.test": "127.0.0.1"})
    trio.socket.set_custom_hostname_resolver(resolver)
    doc = await run_to_end(lab, {"target": "tcp://missing.lab.test:9", "count": 1})
    assert doc["summary"]["errors_by_kind"] == {"dns": 1}
    assert doc["status"] == "failed"
    assert "missing.lab.test" in doc["error"]
    assert resolver.calls == ["missing.lab.test"]


async def test_a_name_that_resolves_is_used(lab: Lab) -> None:
    from tests.conftest import listener_port

    trio.socket.set_custom_hostname_resolver(TableResolver({"echo.lab.test": "127.0.0.1"}))
    port = listener_port(lab, "tcp")
    doc = await run_to_end(lab, {"target": f"tcp://echo.lab.test:{port}", "count": 10})
    assert doc["summary"]["received"] == 10


@pytest.fixture
def untrusted_tls_server_context() -> ssl.SSLContext:
    ca = trustme.CA()  # a CA the client has never heard of
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


async def test_a_tls_server_with_an_untrusted_certificate_is_tls(
    lab: Lab, nursery: trio.Nursery, untrusted_tls_server_context: ssl.SSLContext
) -> None:
    async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
        async with stream:
            try:
                async for data in stream:
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass  # the client rejected our certificate

    listeners = await nursery.start(trio.serve_ssl_over_tcp, echo, 0, untrusted_tls_server_context)
    port = listeners[0].transport_listener.socket.getsockname()[1]
    refused = await run_to_end(lab, {"target": f"tls://127.0.0.1:{port}", "count": 3})
    assert refused["summary"]["errors_by_kind"] == {"tls": 1}
    assert refused["status"] == "failed"
    # The same server is fine when the user says so: the handshake, not the socket, failed.
    accepted = await run_to_end(
        lab, {"target": f"tls://127.0.0.1:{port}", "count": 3, "insecure": True}
    )
    assert accepted["summary"]["received"] == 3
