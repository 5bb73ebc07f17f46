"""Who may talk to the web server: token, Host allowlist, Origin check, JSON-only writes.

The token arrives as ``Authorization: Bearer TOKEN`` (scripts) or as an HttpOnly,
SameSite=Strict cookie set by the login URL (browsers). It is compared in constant time and
never logged. Host is checked against an allowlist (DNS rebinding); Origin, when a browser
sends one, must match an allowed host exactly (scheme, host and port) on mutating requests
and WebSocket upgrades (cross-site requests and cross-site WebSocket hijacking).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.lab import Lab

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


def allowed_hosts(lab: Lab) -> set[str] | None:
    """Host header values accepted, or ``None`` when the bind is every interface."""
    settings = lab.settings
    port = lab.web_port or settings.web_port
    host = settings.web_host
    if _is_unspecified(host):
        return None
    names = {host}
    try:
        if ipaddress.ip_address(host).is_loopback:
            names |= {"localhost", "127.0.0.1", "::1"}
    except ValueError:
        pass
    allowed = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        allowed.add(f"{shown}:{port}")
        if port == 80:
            allowed.add(shown)
    return allowed


def host_allowed(lab: Lab, host_header: str | None) -> bool:
    hosts = allowed_hosts(lab)
    if hosts is None:
        return True
    return host_header is not None and host_header.lower() in hosts


def origin_allowed(lab: Lab, origin: str | None, host_header: str | None) -> bool:
    """An absent Origin (scripts, curl) passes; a present one must be our own, exactly."""
    if origin is None:
        return True
    hosts = allowed_hosts(lab)
    if hosts is None:
        hosts = {host_header.lower()} if host_header else set()
    return origin.lower() in {f"http://{h}" for h in hosts}
