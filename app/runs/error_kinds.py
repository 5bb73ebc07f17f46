"""How a run names its failures: the error kinds, and the sample message kept for each.

Theory of operation: a run counts its errors by kind (``errors_by_kind`` in
:meth:`app.runs.stats.RunStats.summary`), one of :data:`ERROR_KINDS`, and keeps a few sample
messages per kind that say why (``error_samples``, the failures table). When a flow fails
with an exception, :func:`error_kind` classifies it (a nursery's group by its first leaf) and
:func:`error_detail` words it: OpenSSL's reason or the certificate check's message for TLS,
the OS's words for a socket error. The failures that are no exception (the target's FIN, an
ICMP error read from a UDP socket, a reply's deadline) have their words here too, and
:data:`ERROR_MEANINGS` says what a kind means when the code that counted it had nothing to
quote. This runs on the error path only (a flow that fails), never per message sent.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

# "internal": a flow that raised an unexpected exception (a bug), ended alone.
ERROR_KINDS = (
    "refused",
    "reset",
    "closed",
    "timeout",
    "unreachable",
    "dns",
    "tls",
    "internal",
    "other",
    # A scenario's steps (app.runs.scenario): a reply that was not the one expected, a
    # capture that found nothing in it, a reply longer than the scenario allows.
    "mismatch",
    "capture",
    "oversized",
)
# The failures table shows a few sample messages per error kind: bounded, and only on the
# error path (a flow that fails), never per message sent.
MAX_ERROR_SAMPLES = 3
MAX_SAMPLE_CHARS = 200
# What a kind means when the code that counted it had no exception to quote.
ERROR_MEANINGS = {
    "refused": "the target refused the connection",
    "reset": "the peer reset the connection",
    "closed": "the peer closed the connection",
    "timeout": "no reply within the timeout",
    "unreachable": "the target is unreachable (ICMP port or host unreachable)",
    "dns": "the name did not resolve",
    "tls": "the TLS handshake failed",
    "internal": "a flow failed unexpectedly (see the lab's log)",
    "other": "an unclassified socket error",
    "mismatch": "a reply was not the one the scenario expects",
    "capture": "a capture found nothing in the reply",
    "oversized": "a reply was longer than the scenario's max_reply",
}


def error_kind(exc: BaseException) -> str:
    """Classify a failure into one of :data:`ERROR_KINDS`.

    A group (a flow's nursery raising) is classified by its first leaf: a reset seen by a
    flow's receiver task is a reset, not a bug.
    """
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "closed"  # the target closed the connection under TLS (a TLS-level EOF)
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
    ):
        return "unreachable"
    return "other"


# OpenSSL's verify codes for a certificate nobody vouches for (self-signed, unknown issuer):
# what the lab's own TLS listeners serve, and what ``insecure`` is for.
_UNTRUSTED_CODES = (18, 19, 20, 21)


def tls_reason(exc: ssl.SSLError) -> str:
    """Why a TLS handshake failed, in words: the verification's own message (self-signed,
    hostname mismatch, unknown issuer) or OpenSSL's reason without its file and line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {exc.verify_message}".rstrip(".")
        if exc.verify_code in _UNTRUSTED_CODES:
            reason += "; insecure accepts any certificate"
        return reason
    text = re.sub(r"^\[SSL: [A-Z0-9_]+\] | \(_ssl\.c:\d+\)$", "", str(exc)).strip()
    return f"handshake failed: {text or exc.reason or type(exc).__name__}"


# Samples of the kinds that are no exception: the target's FIN, an ICMP error read from a
# UDP socket, a reply's deadline.
CLOSED_DETAIL = "the target closed the connection"
UNREACHABLE_DETAIL = "ICMP port unreachable: nothing listens at the target's port"


def timeout_detail(timeout: float) -> str:
    return f"no reply within {timeout:g} s"


def error_detail(exc: BaseException) -> str:
    """The message kept as a sample of an error: the TLS reason, or the OS's words."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return f"{CLOSED_DETAIL} (TLS EOF)"
    if isinstance(exc, ssl.SSLError):
        return tls_reason(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
