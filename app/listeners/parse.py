"""A listener from its URL or JSON form: :func:`parse_listener`.

A listener is written as a URL whose query string holds the options::

    tcp://127.0.0.1:9000?mode=echo&max_connections=100&idle_timeout=30
    udp://[::1]:9000?mode=echo&loss=10&delay=50ms
    tcp://127.0.0.1:9002?mode=echo&kernel_loss=5    (the kernel drops 5 %: root, nftables)
    tcp://127.0.0.1:9001?mode=respond&rules_file=rules.toml&framing=line
    udp://127.0.0.1:8125?mode=statsd&flush_interval=10
    udp://127.0.0.1:8094?mode=influx&precision=ms  (InfluxDB line protocol, as Telegraf)
    tcp://127.0.0.1:2003?mode=graphite&forward=127.0.0.1:2004  (and on to a carbon)
    udp://127.0.0.1:5514?mode=syslog               (RFC 3164 and 5424; TCP: RFC 6587)
    tls://127.0.0.1:9443?mode=echo                 (a self-signed certificate is made)
    tcp://127.0.0.1:9002?mode=source&max_rate=1000 (sends to whoever asks: reverse runs)
    udp://239.1.2.3:5000?mode=sink&iface=eth0       (joins a multicast group on eth0)
    udp://[ff15::1:2]:5000?mode=sink&source=fd00::1  (source-specific: only fd00::1's)

or as a JSON object (the API body, a config file table) with the URL plus options as keys:
``{"url": "tcp://127.0.0.1:0?mode=respond", "rules": [...], "default_reply": "?\\n"}``.
Options given in the object win over the same option in the URL's query string, and both
win over ``defaults`` (the CLI's ``--mode`` and friends).

The options, their units and bounds are :class:`~app.listeners.spec.ListenerSpec`'s.

Everything that can be wrong is found here, before anything binds: unknown options,
options that do not apply to the mode or protocol, rules that do not compile (or whose
regexes could cost too much on a message of ``max_message_size``), unreadable rules files
(:mod:`app.listeners.rulesfile`) or certificates (the checks are
:mod:`app.listeners.speccheck`'s). Every error is a :class:`~app.errors.SpecError` naming
the option (``rules.2.pattern`` for a field of the third rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from app.endpoint import Endpoint
from app.errors import SpecError
from app.listeners.rulesfile import load_rules_file
from app.listeners.spec import LISTENER_MODES, LISTENER_PROTOCOLS, ListenerSpec
from app.listeners.speccheck import check_applicable, check_rules, check_spec
from app.validation import spec_error_from

__all__ = ["parse_listener", "parse_listener_url"]


def parse_listener(
    data: str | Mapping[str, Any],
    field_name: str = "url",
    *,
    defaults: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> ListenerSpec:
    """Validate a listener from its URL, or from ``{"url": ..., **options}``.

    Args:
        data: The URL, or an object with ``url`` and options.
        field_name: What to call the URL in errors (``url``, ``listen``).
        defaults: Options used when neither the URL nor the object gives them.
        base_dir: Where relative ``rules_file``, ``cert`` and ``key`` paths start (the
            config file's folder); the current directory when None.

    Returns:
        The spec, with a ``rules_file`` already read into ``rules``.

    Raises:
        SpecError: Naming the option at fault.
    """
    if isinstance(data, str):
        body: dict[str, Any] = {"url": data}
    elif isinstance(data, Mapping):
        body = dict(data)
    else:
        raise SpecError("a listener is a URL or an object with a url", field_name)
    url = body.pop("url", None)
    if not isinstance(url, str):
        raise SpecError("url is required: e.g. tcp://127.0.0.1:9000?mode=echo", field_name)
    endpoint, query = Endpoint.split(url, field_name, LISTENER_PROTOCOLS)
    protocol, host, port = endpoint.protocol, endpoint.host, endpoint.port
    values: dict[str, Any] = dict(defaults or {})
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "rules":
            raise SpecError("rules go in a rules_file or the JSON body, not the URL", "rules")
        values[name] = value
    values.update(body)
    for name in ("protocol", "host", "port"):
        if name in values:
            raise SpecError(f"{name} is part of the url, not an option", name)
    values.update(protocol=protocol, host=host, port=port)
    mode = values.get("mode", "echo")
    if mode not in LISTENER_MODES:
        raise SpecError(f"mode must be one of {', '.join(LISTENER_MODES)}, got {mode!r}", "mode")
    check_applicable(values, protocol, str(mode))

    for name in ("rules_file", "cert", "key"):
        if isinstance(values.get(name), str) and base_dir is not None:
            path = Path(values[name]).expanduser()
            values[name] = str(path if path.is_absolute() else base_dir / path)
    if isinstance(values.get("rules_file"), str):
        if values.get("rules"):
            raise SpecError("give rules or rules_file, not both", "rules")
        loaded = load_rules_file(Path(values["rules_file"]))
        values["rules"] = loaded.get("rules", [])
        for name in ("default_reply", "encoding"):
            if name in loaded:
                values.setdefault(name, loaded[name])
    if "rules" in values:
        check_rules(values["rules"])
    try:
        spec = ListenerSpec.model_validate(values)
    except ValidationError as exc:
        raise spec_error_from(exc, values, noun="listener option") from None
    check_spec(spec)
    return spec


def parse_listener_url(url: str, field_name: str = "url") -> ListenerSpec:
    """Parse ``tcp://HOST:PORT?mode=echo&max_connections=100`` into a :class:`ListenerSpec`.

    Raises:
        SpecError: Anything malformed, naming the URL part or option that is wrong.
    """
    return parse_listener(url, field_name)
