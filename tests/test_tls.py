"""TLS listeners: a self-signed certificate made at start, reached by real TLS clients."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trio

from app.errors import SpecError
from app.lab import Lab
from app.listeners.tls import fingerprint, make_self_signed
from tests.helpers import http
from tests.listener_fixtures import open_manager, read_to_eof, read_until, start


async def test_python_ssl_client_verifies_the_self_signed_certificate_and_gets_echoes() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tls://127.0.0.1:0?mode=echo")
        assert listener.cert_pem is not None
        assert listener.tls == {
            "self_signed": True,
            "fingerprint_sha256": fingerprint(listener.cert_pem),
        }
        context = ssl.create_default_context(cadata=listener.cert_pem)
        with trio.fail_after(10):
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", listener.port, ssl_context=context
            )
            async with stream:
                await stream.send_all(b"over tls")
                assert await read_until(stream, b"tls") == b"over tls"
                der = stream.getpeercert(binary_form=True)
                assert der is not None
                assert ssl.DER_cert_to_PEM_cert(der).strip() == listener.cert_pem.strip()
        rows = [row for row in manager.registry if row.listener_id == listener.id]
        assert all(row.protocol == "tls" for row in rows)
        assert listener.bytes_in == len(b"over tls")


async def test_an_unverified_client_is_refused_by_its_own_check() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tls://127.0.0.1:0")
        with trio.fail_after(10):
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", listener.port)
            with pytest.raises(trio.BrokenResourceError):
                await stream.do_handshake()  # the system CAs do not know our certificate
            await trio.aclose_forcefully(stream)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_openssl_s_client_verifies_and_gets_echoes(tmp_path: Path) -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tls://127.0.0.1:0?mode=echo")
        assert listener.cert_pem is not None
        ca = tmp_path / "listener.pem"
        ca.write_text(listener.cert_pem, encoding="ascii")
        command = [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{listener.port}",
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-quiet",
        ]
        with trio.fail_after(20):
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert process.stdin and process.stdout and process.stderr
            try:
                await process.stdin.send_all(b"hello from openssl\n")
                got = await read_until(process.stdout, b"openssl\n")
            finally:
                process.terminate()
                await process.wait()
                errors = await read_to_eof(process.stderr)
                for pipe in (process.stdin, process.stdout, process.stderr):
                    await pipe.aclose()
    # -verify_return_error ends the handshake on a failed check, so an echo proves it held.
    assert got == b"hello from openssl\n", errors


async def test_a_given_certificate_and_key_are_served(tmp_path: Path) -> None:
    cert_pem, key_pem = make_self_signed("127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    spec = {
        "url": "tls://127.0.0.1:0?mode=respond",
        "cert": str(tmp_path / "cert.pem"),
        "key": str(tmp_path / "key.pem"),
        "default_reply": "tls says hi\\n",
    }
    async with open_manager() as manager:
        listener = await start(manager, spec)
        assert listener.tls is not None
        assert listener.tls["self_signed"] is False
        assert listener.tls["fingerprint_sha256"] == fingerprint(cert_pem.decode())
        context = ssl.create_default_context(cadata=cert_pem.decode())
        with trio.fail_after(10):
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", listener.port, ssl_context=context
            )
            async with stream:
                await stream.send_all(b"anything\n")
                assert await read_until(stream, b"\n") == b"tls says hi\n"


async def test_a_key_that_does_not_match_the_certificate_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(make_self_signed("127.0.0.1")[0])
    (tmp_path / "key.pem").write_bytes(make_self_signed("127.0.0.1")[1])
    spec = {"url": "tls://127.0.0.1:0", "cert": "cert.pem", "key": "key.pem"}
    async with open_manager() as manager:
        with pytest.raises(SpecError) as caught:
            from app.listeners.parse import parse_listener

            await manager.start(parse_listener(spec, base_dir=tmp_path))
    assert caught.value.field == "cert"


async def test_a_client_that_never_finishes_the_handshake_is_closed_at_the_idle_timeout() -> None:
    async with open_manager() as manager:
        listener = await start(manager, "tls://127.0.0.1:0?idle_timeout=0.2")
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", listener.port) as raw:
                assert await read_to_eof(raw) == b""
    assert listener.idle_closed == 1


async def test_the_api_serves_the_certificate_of_a_tls_listener(lab: Lab) -> None:
    assert lab.web_port is not None
    with trio.fail_after(10):
        created = await http(
            lab.web_port, "POST", "/api/listeners", body={"url": "tls://127.0.0.1:0"}
        )
        assert created.status == 201
        doc = created.json()
        assert doc["protocol"] == "tls"
        response = await http(lab.web_port, "GET", f"/api/listeners/{doc['id']}/certificate")
        assert response.status == 200
        assert response.headers["content-type"].startswith("application/x-pem-file")
        pem = response.body.decode("ascii")
        assert fingerprint(pem) == doc["tls"]["fingerprint_sha256"]
        echo_id = next(item.id for item in lab.listeners if item.spec.protocol == "tcp")
        missing = await http(lab.web_port, "GET", f"/api/listeners/{echo_id}/certificate")
        assert missing.status == 404
