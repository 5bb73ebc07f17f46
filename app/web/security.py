"""Who may talk to the web server: token, Host allowlist, Origin check, JSON-only writes.

The token arrives as ``Authorization: Bearer TOKEN`` (scripts) or as an HttpOnly,
SameSite=Strict cookie set by the login URL (browsers). It is compared in constant time and
never logged. Host is parsed strictly (:func:`split_host`: a bracketed IPv6 literal or a
name, each with an optional port; nothing else) and checked against an allowlist (DNS
rebinding); Origin, when a browser sends one, must match the Host exactly (the scheme this
server serves, host and port) on mutating requests and WebSocket upgrades (cross-site
requests and cross-site WebSocket hijacking).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
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


# A name or an IPv4 address in a Host header: ASCII letters, digits, '-' and '_' (compose
# service names) in dot-separated labels of 1 to 63 bytes (DNS's limit, which werkzeug's
# IDNA step enforces too), with one trailing dot at most. No userinfo, no percent-escapes,
# no spaces: nothing a browser sends for a host it reached by name.
_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?", re.ASCII)
# A port: ASCII digits without a leading zero (str.isdigit() is also true for '²', which
# int() refuses, and for other scripts' digits, which int() reads: '٨٠٠٠' for 8000).
_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header (or an origin's host part) as (lower-case name, port or None).

    Exactly two forms are taken: ``[IPv6]`` and ``name`` (a host name or an IPv4 address),
    each with an optional ``:port`` (1 to 65535). An IPv6 literal is given in its compressed
    form (``[0:0::1]`` is ``::1``). Anything else (``[::1]evil``, ``[127.0.0.1]:8000``, a
    zone id, ``name:``, a second colon, non-ASCII) is refused as ``("", None)``.
    """
    value = value.strip().lower()
    port_text: str | None = None
    if value.startswith("["):
        literal, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or "%" in literal:
            return "", None
        try:
            name = str(ipaddress.IPv6Address(literal))
        except ValueError:  # not IPv6 ('[127.0.0.1]', '[evil]'), or with a zone id
            return "", None
        if rest:
            port_text = rest[1:]
    else:
        name, sep, port = value.partition(":")
        if not _NAME.fullmatch(name):
            return "", None
        if sep:
            port_text = port
    if port_text is None:
        return name, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        return "", None
    return name, int(port_text)


def served_scheme(scheme: str) -> str:
    """The scheme of the page a browser loaded from a connection served as ``scheme``.

    A request's ASGI scheme is ``http`` or ``https``, a WebSocket's ``ws`` or ``wss``.
    """
    return "https" if scheme in ("https", "wss") else "http"


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
        names.add(_configured_host(host)[0])
    allowed: set[tuple[str, int | None]] = {(name, None) for name in names}
    for entry in settings.allowed_hosts:
        allowed.add(_configured_host(entry))
    return allowed


def _configured_host(entry: str) -> tuple[str, int | None]:
    """A configured host as :func:`split_host` gives it; a bare IPv6 address is taken too
    (a bind address is written so), in the compressed form a Host header's is compared in."""
    try:
        return str(ipaddress.IPv6Address(entry.strip())), None
    except ValueError:
        return split_host(entry)


def host_allowed(settings: Settings, host_header: str | None) -> bool:
    if not host_header:
        return False
    name, port = split_host(host_header)
    if not name:
        return False
    port = 80 if port is None else port
    allowed = allowed_hosts(settings)
    return (name, port) in allowed or (name, None) in allowed


def origin_allowed(
    settings: Settings, origin: str | None, host_header: str | None, scheme: str = "http"
) -> bool:
    """An absent Origin (scripts, curl) passes; a present one must be exactly our own.

    Exact means the scheme this server serves the request on (``scheme``: ``http`` unless
    the connection is TLS, so an ``https://`` origin never passes for a plain-HTTP Host),
    and the host and port of the (already checked) Host header the browser talked to; or
    one of the configured ``allowed_origins`` (the way to name a TLS-terminating proxy's
    origin). No prefix or pattern matching, no path or userinfo, and ``null`` never passes.
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if host_header:
        origin_scheme, sep, authority = origin.partition("://")
        if sep and origin_scheme == served_scheme(scheme):
            name, port = split_host(authority)
            host = split_host(host_header)
            default = 443 if origin_scheme == "https" else 80
            if name and (name, port or default) == (host[0], host[1] or default):
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
