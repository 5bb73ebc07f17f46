"""Who may talk to the web server: token, Host allowlist, Origin check, JSON-only writes.

The token arrives as ``Authorization: Bearer TOKEN`` (scripts) or as an HttpOnly,
SameSite=Strict cookie set by the login URL (browsers). It is compared in constant time and
never logged. Host is checked against an allowlist (DNS rebinding); Origin, when a browser
sends one, must match an allowed host exactly (scheme, host and port) on mutating requests
and WebSocket upgrades (cross-site requests and cross-site WebSocket hijacking).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import Settings

COOKIE_NAME = "socketlab_token"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison; no token configured means auth is off."""
    if expected is None:
        return True
    if not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``name:port``, ``[v6]:port`` or ``name`` → (lower-case name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    else:
        name, port_text = value, ""
    if port_text:
        # ASCII digits only: str.isdigit() is also true for '²' (which int() refuses) and
        # for other scripts' digits (which int() reads, letting '٨٠٠٠' pass for 8000).
        if not (port_text.isascii() and port_text.isdigit()):
            return "", None
        return name, int(port_text)
    return name, None


def allowed_hosts(settings: Settings) -> set[tuple[str, int | None]]:
    """(name, port) pairs the Host header may carry; port ``None`` means any port.

    Loopback names, the bind address (or, for a bind on every interface, the machine's host
    name) and ``allowed_hosts`` entries (``name`` or ``name:port``) are allowed. The port
    is not what stops DNS rebinding (the attacker's page can only send its own name), and
    published container ports differ from the bound one, so these names pass on any port.
    Anything else is refused.
    """
    host = settings.web_host.lower()
    names = {"localhost", "127.0.0.1", "::1"}
    if _is_unspecified(host):
        names.add(socket.gethostname().lower())
    else:
        names.add(host)
    allowed: set[tuple[str, int | None]] = {(name, None) for name in names}
    for entry in settings.allowed_hosts:
        allowed.add(split_host(entry))
    return allowed


def host_allowed(settings: Settings, host_header: str | None) -> bool:
    if not host_header:
        return False
    name, port = split_host(host_header)
    if not name:
        return False
    port = 80 if port is None else port
    allowed = allowed_hosts(settings)
    return (name, port) in allowed or (name, None) in allowed


def origin_allowed(settings: Settings, origin: str | None, host_header: str | None) -> bool:
    """An absent Origin (scripts, curl) passes; a present one must be exactly our own.

    Exact means scheme, host and port equal to the (already checked) Host the browser
    talked to, or one of the configured ``allowed_origins``: no prefix or pattern matching,
    and ``null`` never passes.
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if host_header:
        host = host_header.strip().lower()
        if origin in (f"http://{host}", f"https://{host}"):
            return True
    return origin in {o.strip().lower().rstrip("/") for o in settings.allowed_origins}


def body_is_json(mimetype: str, content_length: int | None, transfer_encoding: str | None) -> bool:
    """Whether a mutating request carries JSON or nothing at all.

    A Content-Type other than ``application/json`` is refused even with an empty body, and a
    body without a Content-Type is refused whether its length is declared or it arrives
    chunked: ``text/plain`` and form encodings are what a cross-site page can send without
    a CORS preflight, so accepting them would make the API forgeable.
    """
    if mimetype:
        return mimetype == "application/json"
    return not content_length and not transfer_encoding


def token_id(token: str | None) -> str:
    """A short, stable id of a token for the audit log; never the token itself."""
    if token is None:
        return "no-auth"
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def principal(settings: Settings, request: Any) -> str:
    """Who made an authorised request, as written in the audit log."""
    return token_id(settings.token)
