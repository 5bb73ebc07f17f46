"""Configuration: config file + environment + flags → frozen :class:`Settings`.

Precedence, lowest first: built-in defaults, the TOML config file, environment variables
(``SOCKETLAB_TOKEN``, ``SOCKETLAB_DATA``), command-line flags. Every parse error is a
:class:`~app.errors.SpecError` naming the field, so the CLI can exit 2 with one line and the
API can answer 422.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.errors import SpecError

# Listener specs live with the listeners; re-exported here for config and CLI code.
from app.listeners.parse import parse_listener as parse_listener
from app.listeners.parse import parse_listener_url as parse_listener_url
from app.listeners.policy import DEFAULT_MAX_LISTENERS, parse_bind_networks
from app.listeners.spec import LISTENER_MODES as LISTENER_MODES
from app.listeners.spec import LISTENER_PROTOCOLS as LISTENER_PROTOCOLS
from app.listeners.spec import ListenerSpec as ListenerSpec
from app.mesh.config import MeshSettings, mesh_settings
from app.store import StoreLimits

DEFAULT_LISTENERS = ("tcp://127.0.0.1:9000?mode=echo", "udp://127.0.0.1:9000?mode=echo")


def _number(value: str, kind: type[int] | type[float], name: str, low: float) -> Any:
    try:
        number = kind(value)
    except ValueError as exc:
        raise SpecError(f"{name} must be a number, got {value!r}", name) from exc
    if number < low:
        raise SpecError(f"{name} must be at least {low}, got {value!r}", name)
    return number


def parse_hostport(text: str, field_name: str = "web") -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:8000`` for IPv6)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise SpecError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:8000", field_name)
    host = host.strip("[]")
    port = _number(port_text, int, field_name, 0)
    if port > 65535:
        raise SpecError(f"{text!r}: port must be at most 65535", field_name)
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` names only loopback addresses (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the lab needs to start. Frozen: change it by building a new one."""

    web_host: str = "127.0.0.1"
    web_port: int = 8000
    listeners: tuple[ListenerSpec, ...] = field(
        default_factory=lambda: tuple(parse_listener_url(u) for u in DEFAULT_LISTENERS)
    )
    token: str | None = None
    auth: bool = True
    data_dir: Path = Path("data")
    snapshot_interval: float = 0.25
    graceful_timeout: float = 1.0
    udp_flow_timeout: float = 30.0
    max_concurrent_runs: int = 16
    max_run_duration: float = 3600.0
    max_run_connections: int = 1000
    max_run_rate: float = 1_000_000.0
    max_run_bitrate: float = 100e9
    max_run_bytes: int = 1_000_000_000_000
    # Listeners at most (every source together), and where those a client asks for over
    # the API may bind besides loopback (app.listeners.policy).
    max_listeners: int = DEFAULT_MAX_LISTENERS
    allow_binds: tuple[str, ...] = ()
    log_requests: bool = True
    allow_targets: tuple[str, ...] = ()
    allow_multicast: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    peer_token: str | None = None
    peer_timeout: float = 5.0
    demo: bool = False
    store_limits: StoreLimits = field(default_factory=StoreLimits)
    mesh: MeshSettings = field(default_factory=MeshSettings)

    def with_token(self) -> Settings:
        """Return settings with a token: the given one, or a fresh random one."""
        if not self.auth or self.token:
            return self
        return replace(self, token=secrets.token_urlsafe(24))


_CAPS = {
    "duration": ("max_run_duration", float),
    "connections": ("max_run_connections", int),
    "rate": ("max_run_rate", float),
    "bitrate": ("max_run_bitrate", float),
    "bytes": ("max_run_bytes", int),
    "concurrent_runs": ("max_concurrent_runs", int),
    "listeners": ("max_listeners", int),
}


# [retention] keys of the config file → StoreLimits fields (how much the store keeps).
RETENTION = {
    "runs": "max_stored_runs",
    "audit": "max_audit_entries",
    "presets": "max_presets",
}


def store_limits(base: StoreLimits, values: dict[str, Any], where: str) -> StoreLimits:
    """``base`` with the retention limits in ``values`` (keys of :data:`RETENTION`)."""
    changes: dict[str, int] = {}
    for name, raw in values.items():
        if raw is None:
            continue
        if name not in RETENTION:
            raise SpecError(f"{where}: unknown retention limit {name!r}", f"retention.{name}")
        changes[RETENTION[name]] = int(_number(str(raw), int, f"retention.{name}", 1))
    return replace(base, **changes)


def _security_values(doc: dict[str, Any]) -> dict[str, Any]:
    """Target policy, Host/Origin allowlists and run caps from a config file."""
    values: dict[str, Any] = {}
    for key in ("allow_targets", "allow_binds", "allowed_hosts", "allowed_origins", "peers"):
        if key in doc:
            items = doc[key]
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise SpecError(f"config file: {key} must be a list of strings", key)
            values[key] = tuple(items)
    if "allow_multicast" in doc:
        values["allow_multicast"] = bool(doc["allow_multicast"])
    if "demo" in doc:
        values["demo"] = bool(doc["demo"])
    caps = doc.get("caps", {})
    if not isinstance(caps, dict):
        raise SpecError("config file: caps must be a table", "caps")
    for name, raw in caps.items():
        if name not in _CAPS:
            raise SpecError(f"config file: unknown cap {name!r}", f"caps.{name}")
        attr, kind = _CAPS[name]
        values[attr] = _number(str(raw), kind, f"caps.{name}", 1)
    return values


def _peer_values(doc: dict[str, Any]) -> dict[str, Any]:
    """The peers' token and answer timeout from a config file (``peers`` is a list above)."""
    values: dict[str, Any] = {}
    if "peer_token" in doc:
        if not isinstance(doc["peer_token"], str):
            raise SpecError("config file: peer_token must be a string", "peer_token")
        values["peer_token"] = doc["peer_token"]
    if "peer_timeout" in doc:
        values["peer_timeout"] = _peer_timeout(str(doc["peer_timeout"]), "peer_timeout")
    return values


def _peer_timeout(value: str, name: str) -> float:
    timeout: float = _number(value, float, name, 0.1)
    if not timeout <= 3600:  # NaN too
        raise SpecError(f"{name} must be at most 3600 seconds, got {value!r}", name)
    return timeout


def load_settings(
    *,
    web: str | None = None,
    listen: list[str] | None = None,
    token: str | None = None,
    no_auth: bool = False,
    data: str | None = None,
    config: str | None = None,
    environ: dict[str, str] | None = None,
    allow_target: list[str] | None = None,
    allow_bind: list[str] | None = None,
    allow_host: list[str] | None = None,
    allow_origin: list[str] | None = None,
    allow_multicast: bool = False,
    peer: list[str] | None = None,
    peer_token: str | None = None,
    peer_timeout: float | None = None,
    demo: bool = False,
    retention: dict[str, int | None] | None = None,
    mesh: dict[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from a config file, the environment and flags.

    ``retention`` maps :data:`RETENTION` keys to limits (None: keep the config's);
    ``mesh`` maps ``[mesh]`` keys to the flags' values (None: keep the config's).

    Raises:
        SpecError: A value is malformed, or ``--no-auth`` is combined with a non-loopback bind.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    listen_items: list[Any] | None = None
    config_dir: Path | None = None
    if config:
        path = Path(config)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"cannot read config file {config}: {exc.strerror}", "config") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"config file {config}: {exc}", "config") from exc
        if "web" in doc:
            values["web_host"], values["web_port"] = parse_hostport(str(doc["web"]), "web")
        if "listen" in doc:
            config_listeners = doc["listen"]
            if not isinstance(config_listeners, list):
                raise SpecError("config file: listen must be a list", "listen")
            # Items are URLs or tables ([[listen]] url = "..." plus options).
            listen_items = config_listeners
            config_dir = path.parent
        if "token" in doc:
            values["token"] = str(doc["token"])
        if "data" in doc:
            values["data_dir"] = Path(str(doc["data"]))
        if doc.get("no_auth"):
            values["auth"] = False
        values.update(_security_values(doc))
        kept = doc.get("retention", {})
        if not isinstance(kept, dict):
            raise SpecError("config file: retention must be a table", "retention")
        values["store_limits"] = store_limits(StoreLimits(), kept, "config file")
        values.update(_peer_values(doc))
        table = doc.get("mesh", {})
        if not isinstance(table, dict):
            raise SpecError("config file: mesh must be a table", "mesh")
        values["mesh"] = mesh_settings(MeshSettings(), table, "config file")
    if env.get("SOCKETLAB_TOKEN"):
        values["token"] = env["SOCKETLAB_TOKEN"]
    if env.get("SOCKETLAB_DATA"):
        values["data_dir"] = Path(env["SOCKETLAB_DATA"])
    if web:
        values["web_host"], values["web_port"] = parse_hostport(web, "web")
    if listen:
        listen_items, config_dir = list(listen), None
    if listen_items is not None:
        values["listeners"] = tuple(
            parse_listener(item, "listen", base_dir=config_dir) for item in listen_items
        )
    if token:
        values["token"] = token
    if data:
        values["data_dir"] = Path(data)
    if no_auth:
        values["auth"] = False
    for key, extra in (
        ("allow_targets", allow_target),
        ("allow_binds", allow_bind),
        ("allowed_hosts", allow_host),
        ("allowed_origins", allow_origin),
    ):
        if extra:
            values[key] = tuple(values.get(key, ())) + tuple(extra)
    if allow_multicast:
        values["allow_multicast"] = True
    if peer:
        values["peers"] = tuple(values.get("peers", ())) + tuple(peer)
    if env.get("SOCKETLAB_PEER_TOKEN"):
        values["peer_token"] = env["SOCKETLAB_PEER_TOKEN"]
    if peer_token:
        values["peer_token"] = peer_token
    if peer_timeout is not None:
        values["peer_timeout"] = _peer_timeout(str(peer_timeout), "peer-timeout")
    if demo:
        values["demo"] = True
    if retention:
        base = values.get("store_limits", StoreLimits())
        values["store_limits"] = store_limits(base, retention, "retention")
    if mesh:
        values["mesh"] = mesh_settings(values.get("mesh", MeshSettings()), mesh, "flags")
    settings = Settings(**values)
    parse_bind_networks(settings.allow_binds)  # refused here, with one line, if malformed
    if not settings.auth:
        if not is_loopback(settings.web_host):
            raise SpecError(
                f"--no-auth is allowed only on a loopback web bind, not {settings.web_host}",
                "no_auth",
            )
        settings = replace(settings, token=None)
    return settings.with_token()
