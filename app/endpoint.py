"""Where traffic goes or comes from: :class:`Endpoint` (protocol, host, port), parsed once.

A run's target (``tcp://127.0.0.1:9000``) and the base of a listener URL
(``udp://[::1]:9000?mode=echo``) are written the same way and read by one parser,
:meth:`Endpoint.split`; :meth:`Endpoint.parse` adds what a run target needs on top (no query
string, no port 0). Every ``host:port`` the program writes, for any layer, goes through
:func:`host_port`, the one place that knows an IPv6 literal needs brackets.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import SpecError

__all__ = ["TARGET_PROTOCOLS", "Endpoint", "bracket", "host_port"]

TARGET_PROTOCOLS = ("tcp", "udp", "tls")


def bracket(host: str) -> str:
    """``host`` as it goes in front of ``:port``: an IPv6 literal gets brackets."""
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int | str) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 literal."""
    return f"{bracket(host)}:{port}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A protocol, host and port, as written in ``tcp://host:port``.

    ``host`` is bare (no brackets); :attr:`url` writes it back with them where needed, so
    ``Endpoint.parse(endpoint.url) == endpoint``.
    """

    protocol: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.protocol}://{host_port(self.host, self.port)}"

    def __str__(self) -> str:
        return self.url

    @classmethod
    def split(
        cls, text: str, field: str, protocols: tuple[str, ...] = TARGET_PROTOCOLS
    ) -> tuple[Endpoint, str]:
        """``scheme://host:port?query`` → the endpoint and the raw query string.

        Raises:
            SpecError: Malformed, another scheme, no host or port, or a path; names ``field``.
        """
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise SpecError(f"{text!r} is not a valid URL: {exc}", field) from exc
        if parts.scheme not in protocols:
            wanted = ", ".join(f"{p}://" for p in protocols)
            raise SpecError(f"{text!r}: the scheme must be one of {wanted}", field)
        if not parts.hostname:
            raise SpecError(f"{text!r} has no host", field)
        if port is None:
            raise SpecError(f"{text!r} has no port (write host:port)", field)
        if parts.path not in ("", "/"):
            raise SpecError(f"{text!r}: a path is not allowed here", field)
        return cls(parts.scheme, parts.hostname, port), parts.query

    @classmethod
    def parse(cls, text: str, field: str = "target") -> Endpoint:
        """Parse a run target such as ``tcp://127.0.0.1:9000``.

        Raises:
            SpecError: The URL is malformed, has another scheme, a query string, port 0, or
                lacks a host or port; names ``field``.
        """
        endpoint, query = cls.split(text, field)
        if query:
            raise SpecError(f"{text!r}: a target takes no query string", field)
        if endpoint.port == 0:
            raise SpecError(f"{text!r}: port 0 cannot be a target", field)
        return endpoint
