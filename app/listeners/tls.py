"""TLS for ``tls://`` listeners: the server's SSL context and, when none is given, a
self-signed certificate made at start.

The self-signed certificate uses an ECDSA P-256 key (made in milliseconds, unlike RSA) and
names ``localhost``, ``127.0.0.1``, ``::1`` and the bind address, so clients that pin it
(``openssl s_client -CAfile``, Python's ``ssl.create_default_context(cadata=...)``) also
verify the host name. The listener shows its SHA-256 fingerprint in ``tls`` and serves the
PEM at ``GET /api/listeners/{id}/certificate``. The key never leaves the process: it is
written to a private temporary folder only for as long as ``load_cert_chain`` reads it.

Error handling: an unreadable or mismatched ``cert``/``key`` is a
:class:`~app.errors.SpecError` naming the field, raised before anything binds.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import tempfile
from pathlib import Path
from typing import Any

import trio

from app.errors import SpecError
from app.listeners.base import Listener

_VALIDITY = datetime.timedelta(days=365)


def make_self_signed(host: str) -> tuple[bytes, bytes]:
    """A new self-signed certificate and its private key, both PEM, valid for ``host``.

    Returns:
        (certificate PEM, unencrypted PKCS#8 key PEM).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    try:
        addresses.add(str(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    for address in sorted(addresses):
        names.append(x509.IPAddress(ipaddress.ip_address(address)))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"socketlab {host}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the certificate's DER form, as colon-separated upper-case hex."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _build_context(
    host: str, cert: str | None, key: str | None
) -> tuple[ssl.SSLContext, str, bool]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
            cert_pem = Path(cert).read_text(encoding="ascii")
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise SpecError(f"cannot use cert {cert} with key {key}: {exc}", "cert") from None
        return context, cert_pem, False
    cert_bytes, key_bytes = make_self_signed(host)
    with tempfile.TemporaryDirectory(prefix="socketlab-tls-") as folder:
        cert_path = Path(folder, "cert.pem")
        key_path = Path(folder, "key.pem")
        cert_path.write_bytes(cert_bytes)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_bytes)
        context.load_cert_chain(cert_path, key_path)
    return context, cert_bytes.decode("ascii"), True


async def server_context(listener: Listener) -> ssl.SSLContext:
    """The SSL context for ``listener``; fills in ``listener.tls`` and ``cert_pem``.

    Raises:
        SpecError: The given certificate or key cannot be loaded.
    """
    spec = listener.spec
    context, cert_pem, self_signed = await trio.to_thread.run_sync(
        _build_context, spec.host, spec.cert, spec.key
    )
    listener.cert_pem = cert_pem
    info: dict[str, Any] = {
        "self_signed": self_signed,
        "fingerprint_sha256": fingerprint(cert_pem),
    }
    listener.tls = info
    return context
