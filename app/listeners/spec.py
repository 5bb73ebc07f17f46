"""What a listener is: :class:`ListenerSpec`, and its URL and JSON forms.

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

Durations (``idle_timeout``, ``delay``, ``jitter``, ``flush_interval``) are seconds, as a
number or a string with a unit: ``"0.05"``, ``"50ms"``, ``"2s"``. ``loss`` and
``duplicate`` are percentages (0 to 100), and so is ``kernel_loss`` (in steps of 0.01).

Everything that can be wrong is found here, before anything binds: unknown options,
options that do not apply to the mode or protocol, rules that do not compile (or whose
regexes could cost too much on a message of ``max_message_size``), unreadable rules files
or certificates. Every error is a :class:`~app.errors.SpecError` naming the
option (``rules.2.pattern`` for a field of the third rule).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.endpoint import Endpoint
from app.errors import SpecError
from app.listeners.forward import parse_forward
from app.listeners.multicast import check_group
from app.listeners.nftrules import where_refused
from app.validation import spec_error_from
from app.wire.regex import MAX_MESSAGE_WORK
from app.wire.rules import Responder, Rule, RuleError

__all__ = [
    "COLLECTOR_MODES",
    "LISTENER_MODES",
    "LISTENER_PROTOCOLS",
    "ListenerSpec",
    "load_rules_file",
    "parse_listener",
    "parse_listener_url",
]

LISTENER_PROTOCOLS = ("tcp", "udp", "tls")
LISTENER_MODES = ("echo", "sink", "respond", "statsd", "source", "influx", "graphite", "syslog")
# The telemetry collectors: they take max_keys and forward, and keep their series in the
# one telemetry model (app.telemetry) with a bounded history.
COLLECTOR_MODES = ("statsd", "influx", "graphite", "syslog")

# The largest datagram a UDP socket can return, and a sane bound for one TCP read.
MAX_MESSAGE_SIZE = 65_536
# A sink frames TCP by a fixed message size; larger than this is surely a mistake.
MAX_FRAMED_MESSAGE = 16 * 1024 * 1024
# Rules files are small; this stops a wrong path (a log file, /dev/zero) from eating memory.
MAX_RULES_FILE = 1024 * 1024


# Which options apply to which modes (None: every mode).
_MODE_OPTIONS: dict[str, tuple[str, ...]] = {
    "delay": ("echo",),
    "jitter": ("echo",),
    "loss": ("echo",),
    "duplicate": ("echo",),
    "seed": ("echo",),
    "message_size": ("sink", "source"),
    "rules": ("respond",),
    "rules_file": ("respond",),
    "default_reply": ("respond",),
    "encoding": ("respond",),
    "framing": ("respond",),
    "flush_interval": ("statsd",),
    "max_keys": COLLECTOR_MODES,
    "forward": COLLECTOR_MODES,
    "precision": ("influx",),
    "percentiles": ("statsd",),
    "signed_gauges": ("statsd",),
    "delete_counters": ("statsd",),
    "history_points": COLLECTOR_MODES,
    "history_resolution": COLLECTOR_MODES,
    "history_buckets": COLLECTOR_MODES,
    "max_rate": ("source",),
    "max_duration": ("source",),
    "max_streams": ("source",),
}
_UDP_ONLY = ("loss", "duplicate", "rcvbuf", "reply_rate", "iface", "source")
_STREAM_ONLY = ("message_size", "framing")
_TLS_ONLY = ("cert", "key")

_UNITS = {"ms": 1e-3, "s": 1.0}


def _duration(value: Any) -> Any:
    """``"50ms"`` -> 0.05, ``"2s"`` -> 2.0; numbers and other strings pass through."""
    if isinstance(value, str):
        text = value.strip().lower()
        for unit in ("ms", "s"):
            if text.endswith(unit):
                number = text[: -len(unit)].strip()
                try:
                    return float(number) * _UNITS[unit]
                except ValueError:
                    return value  # pydantic reports it as "not a number"
    return value


class ListenerSpec(BaseModel):
    """A listener: protocol, bind address, mode, limits and mode options. Immutable.

    Attributes:
        protocol: ``tcp``, ``udp`` or ``tls`` (TCP with TLS on top).
        host: Address to bind (IPv4 or IPv6 literal, or a name).
        port: Port to bind; 0 picks a free one (the listener reports which).
        mode: ``echo``, ``sink``, ``respond``, ``statsd``, ``source``, or the telemetry
            collectors ``influx``, ``graphite``, ``syslog``.
        max_connections: TCP/TLS connections served at once. The next one is accepted and
            closed at once (the client sees EOF right away instead of hanging in the
            kernel's backlog) and counted in ``rejected``. For UDP, the most flows
            (peers) tracked at once: datagrams from a new peer past it are dropped and
            counted in ``rejected``.
        idle_timeout: Seconds without traffic after which a TCP connection is closed (the
            TLS handshake counts too), or a UDP flow forgotten.
        max_message_size: Largest single read, datagram or line. A larger datagram is
            counted in ``oversized`` and dropped; a longer line (respond and statsd over
            TCP) is counted and closes that connection, since the stream cannot be framed
            past it.
        delay: Echo: added delay in seconds before each reply (TCP: each chunk, order
            kept).
        jitter: Echo: each delay is drawn uniformly from ``delay ± jitter`` (never below
            0). UDP replies may then be reordered, as on a real network.
        loss: Echo over UDP: percent of datagrams dropped instead of echoed.
        duplicate: Echo over UDP: percent of echoed datagrams sent twice.
        seed: Echo: seed of the impairment's random source, for repeatable runs.
        message_size: Sink (and source, of what it receives) over TCP/TLS: frame the
            stream into messages of this many bytes and read the probe header at the
            start of each. Without it a TCP sink counts bytes and reads only (one-way
            loss and jitter then come from UDP sinks).
        rules: Respond: match-and-reply rules, ``{"match", "pattern", "reply",
            "encoding"}`` each (see :mod:`app.wire.rules`).
        rules_file: Respond: a JSON or TOML file with ``rules`` (and optionally
            ``default_reply`` and ``encoding``); read when the spec is parsed.
        default_reply: Respond: the reply template for messages no rule matches; without
            it such messages get no reply.
        encoding: Respond: how ``default_reply`` is written (``text`` or ``hex``).
        framing: Respond over TCP/TLS: ``line`` (one message per ``\\n``-terminated line)
            or ``read`` (one message per read). UDP is always one message per datagram.
        flush_interval: StatsD: seconds between flushes.
        max_keys: StatsD: most metric keys held at once; new keys past it are dropped and
            counted in ``overflow``. Influx, graphite, syslog: most series in the
            collector's series store (each field of a measurement is one); points of new
            series past it are refused and counted in ``overflow``.
        forward: Collectors (statsd, influx, graphite, syslog; tcp:// and udp://):
            ``host:port`` of an upstream of the same protocol and transport that receives
            everything unchanged (an allowed target, like a run's); counted in
            ``forwarded`` and ``forward_failed`` (see :mod:`app.listeners.forward`).
        precision: Influx: the unit of line protocol timestamps, ``ns`` (InfluxDB's
            default), ``us``, ``ms`` or ``s``.
        percentiles: StatsD: percentiles reported for timers.
        signed_gauges: StatsD: ``delta`` (etsy's StatsD) moves a gauge by ``+N|g`` or
            ``-N|g``; ``set`` (the DogStatsD agent) sets it to the signed value.
        delete_counters: StatsD: drop a counter idle for an interval instead of flushing
            it as 0 (etsy's ``deleteCounters``; off by default, as in etsy's StatsD).
        history_points: Collectors: raw points kept per series (StatsD: one per flush).
        history_resolution: Collectors: seconds per bucket for the points older than the
            raw ones (count, mean, min, max and last value of each bucket).
        history_buckets: Collectors: buckets kept per series beyond the raw points; with
            the defaults, 120 raw points and then an hour of one-minute buckets. The last
            value of a series is kept however old it is (see
            :mod:`app.telemetry.series`).
        max_rate: Source: messages per second one stream may send, whatever its request
            asks (a bulk request is paced at this rate).
        max_duration: Source: seconds one stream may send; a longer request ends there.
        max_streams: Source: streams sent at once; a request past it is refused (counted
            in ``refused``). UDP requesters get one stream each.
        rcvbuf: UDP: the socket's receive buffer (SO_RCVBUF) in bytes; the kernel doubles
            it. Larger buffers drop fewer datagrams in bursts.
        reply_rate: UDP: replies per second to one source outside loopback (a token
            bucket as deep as one second of it); 0 for no limit. See
            :class:`~app.listeners.udp.ReplyGuard`.
        cert: TLS: PEM certificate (chain) file; with ``key``. Without both, a self-signed
            certificate for the bind address is made at start.
        key: TLS: PEM private key file.
        kernel_loss: Any mode and protocol: percent of the listener's packets the kernel
            drops (nftables rules of socketlab's own, see
            :mod:`app.listeners.kernelloss`), so TCP retransmits for real. Needs root
            (CAP_NET_ADMIN) and the ``nft`` command; without them the listener refuses
            to start, naming what is missing.
        kernel_loss_direction: Which packets ``kernel_loss`` drops: ``in`` (those the
            listener receives; the default), ``out`` (those it sends) or ``both``.
            ``out`` and ``both`` need a loopback listener (see
            :mod:`app.listeners.nftrules`).
        iface: UDP on a multicast group (the host is a group address): the interface
            (its name, e.g. ``eth0``) the group is joined on; without it the kernel
            picks one by route. Several listeners may share one group and port.
        source: UDP on a multicast group: join source-specific (RFC 4607), so only
            datagrams from this address (of the group's family) arrive; without it, any
            source's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["tcp", "udp", "tls"]
    host: str = Field(min_length=1)
    port: int = Field(ge=0, le=65535)
    mode: Literal["echo", "sink", "respond", "statsd", "source", "influx", "graphite", "syslog"] = (
        "echo"
    )
    max_connections: int = Field(10_000, ge=1, le=1_000_000)
    idle_timeout: float = Field(300.0, gt=0, le=7 * 86_400)
    max_message_size: int = Field(MAX_MESSAGE_SIZE, ge=1, le=MAX_MESSAGE_SIZE)
    delay: float = Field(0.0, ge=0, le=60)
    jitter: float = Field(0.0, ge=0, le=60)
    loss: float = Field(0.0, ge=0, le=100)
    duplicate: float = Field(0.0, ge=0, le=100)
    seed: int | None = None
    message_size: int | None = Field(None, ge=1, le=MAX_FRAMED_MESSAGE)
    rules: tuple[dict[str, str | None], ...] = ()
    rules_file: str | None = None
    default_reply: str | None = None
    encoding: Literal["text", "hex"] = "text"
    framing: Literal["line", "read"] = "line"
    flush_interval: float = Field(10.0, ge=0.01, le=86_400)
    max_keys: int = Field(10_000, ge=1, le=10_000_000)
    percentiles: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
    signed_gauges: Literal["delta", "set"] = "delta"
    delete_counters: bool = False
    history_points: int = Field(120, ge=1, le=100_000)
    history_resolution: float = Field(60.0, ge=0.01, le=86_400)
    history_buckets: int = Field(60, ge=0, le=100_000)
    forward: str | None = Field(None, min_length=1)
    precision: Literal["ns", "us", "ms", "s"] = "ns"
    max_rate: float = Field(10_000.0, gt=0, le=1_000_000)
    max_duration: float = Field(60.0, gt=0, le=86_400)
    max_streams: int = Field(64, ge=1, le=10_000)
    rcvbuf: int | None = Field(None, ge=1024, le=1 << 30)
    reply_rate: float = Field(100.0, ge=0, le=10_000_000)
    cert: str | None = None
    key: str | None = None
    kernel_loss: float = Field(0.0, ge=0, le=100)
    kernel_loss_direction: Literal["in", "out", "both"] = "in"
    iface: str | None = Field(None, min_length=1, max_length=15, pattern=r"^[^/\s:]+$")
    source: str | None = None

    @field_validator(
        "idle_timeout",
        "delay",
        "jitter",
        "flush_interval",
        "max_duration",
        "history_resolution",
        mode="before",
    )
    @classmethod
    def _durations_take_units(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("percentiles", mode="before")
    @classmethod
    def _split_percentiles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part for part in value.split(",") if part.strip())
        return value

    @field_validator("percentiles")
    @classmethod
    def _percentiles_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("give at least one percentile")
        for pct in value:
            if not 0 < pct <= 100:
                raise ValueError(f"percentile {pct:g} is not in (0, 100]")
        return value

    @field_validator("host", "source")
    @classmethod
    def _host_is_bare(cls, value: str | None) -> str | None:
        return None if value is None else value.strip("[]")

    @property
    def endpoint(self) -> Endpoint:
        """Where the listener binds, as an :class:`~app.endpoint.Endpoint`."""
        return Endpoint(self.protocol, self.host, self.port)

    @property
    def url(self) -> str:
        """The URL form, with every option that differs from its default (rules excepted)."""
        query = "&".join(
            f"{name}={quote(_format_option(value), safe='')}"
            for name, value in self.options().items()
            if name != "rules"
        )
        return f"{self.endpoint.url}?mode={self.mode}" + (f"&{query}" if query else "")

    def options(self) -> dict[str, Any]:
        """The options that differ from their defaults (JSON ready)."""
        data = self.model_dump(exclude_defaults=True, mode="json")
        for name in ("protocol", "host", "port", "mode"):
            data.pop(name, None)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :func:`parse_listener` reads back."""
        return {"url": self.endpoint.url, **self.body()}

    def body(self) -> dict[str, Any]:
        return {"mode": self.mode, **self.options()}

    def build_rules(self) -> list[Rule]:
        """The respond rules, compiled (they were checked when the spec was made)."""
        return [Rule.from_dict(rule) for rule in self.rules]

    def build_responder(self) -> Responder:
        """A fresh :class:`~app.wire.rules.Responder` with its own hit counters."""
        return Responder(self.build_rules(), self.default_reply, default_encoding=self.encoding)


def _format_option(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_format_option(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_rules_file(path: Path) -> dict[str, Any]:
    """Read a rules file: JSON or TOML (by extension; ``.toml`` is TOML, anything else JSON).

    The file holds either a list of rules (JSON only) or an object/table with ``rules`` and
    optionally ``default_reply`` and ``encoding``. In TOML::

        default_reply = "unknown command\\n"

        [[rules]]
        match = "exact"
        pattern = "PING"
        reply = "PONG {counter}\\n"

        [[rules]]
        match = "regex"
        pattern = '^GET (?P<key>\\w+)'
        reply = "VALUE {key} {unix}\\n"

    Returns:
        ``{"rules": [...], "default_reply": ..., "encoding": ...}`` with only the keys the
        file gives.

    Raises:
        SpecError: The file cannot be read or parsed, or has other keys (field
            ``rules_file``).
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RULES_FILE + 1)
    except OSError as exc:
        raise SpecError(
            f"cannot read rules file {path}: {exc.strerror or exc}", "rules_file"
        ) from None
    if len(raw) > MAX_RULES_FILE:
        raise SpecError(f"rules file {path} is larger than {MAX_RULES_FILE} bytes", "rules_file")
    try:
        text = raw.decode("utf-8")
        doc: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"rules file {path}: {exc}", "rules_file") from None
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, dict):
        raise SpecError(f"rules file {path}: expected a list of rules or an object", "rules_file")
    unknown = set(doc) - {"rules", "default_reply", "encoding"}
    if unknown:
        raise SpecError(
            f"rules file {path}: unknown key {sorted(unknown)[0]!r}; "
            "expected rules, default_reply, encoding",
            "rules_file",
        )
    return doc


def _check_rules(rules: Any) -> None:
    if not isinstance(rules, list | tuple):
        raise SpecError("rules must be a list of rule objects", "rules")
    for index, rule in enumerate(rules):
        try:
            Rule.from_dict(rule)
        except RuleError as exc:
            where = f"rules.{index}" + (f".{exc.field}" if exc.field else "")
            raise SpecError(f"rules.{index}: {exc.message}", where) from None


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
    _check_applicable(values, protocol, str(mode))

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
        _check_rules(values["rules"])
    try:
        spec = ListenerSpec.model_validate(values)
    except ValidationError as exc:
        raise spec_error_from(exc, values, noun="listener option") from None
    _check_spec(spec)
    return spec


def parse_listener_url(url: str, field_name: str = "url") -> ListenerSpec:
    """Parse ``tcp://HOST:PORT?mode=echo&max_connections=100`` into a :class:`ListenerSpec`.

    Raises:
        SpecError: Anything malformed, naming the URL part or option that is wrong.
    """
    return parse_listener(url, field_name)


def _check_applicable(values: Mapping[str, Any], protocol: str, mode: str) -> None:
    for name in values:
        modes = _MODE_OPTIONS.get(name)
        if modes is not None and mode not in modes:
            raise SpecError(f"{name} applies to mode {' or '.join(modes)}, not {mode}", name)
        if name in _UDP_ONLY and protocol != "udp":
            raise SpecError(f"{name} applies to udp:// listeners only", name)
        if name in _STREAM_ONLY and protocol == "udp":
            raise SpecError(
                f"{name} frames a TCP stream; a UDP datagram is one message already", name
            )
        if name in _TLS_ONLY and protocol != "tls":
            raise SpecError(f"{name} applies to tls:// listeners only", name)


def _check_spec(spec: ListenerSpec) -> None:
    check_group(spec.host, spec.protocol, spec.mode, spec.iface, spec.source)
    _check_kernel_loss(spec)
    if spec.forward is not None:
        parse_forward(spec.forward, spec.protocol)
    if (spec.cert is None) != (spec.key is None):
        raise SpecError("give cert and key together (or neither, for a self-signed one)", "cert")
    for name in ("cert", "key"):
        path = getattr(spec, name)
        if path is not None and not Path(path).is_file():
            raise SpecError(f"{name}: no such file {path}", name)
    if spec.mode == "respond":
        if not spec.rules and spec.default_reply is None:
            raise SpecError("a respond listener needs rules or a default_reply", "rules")
        try:
            responder = spec.build_responder()
        except RuleError as exc:
            raise SpecError(exc.message, exc.field) from None
        _check_regex_work(responder.rules, spec.max_message_size)


def _check_kernel_loss(spec: ListenerSpec) -> None:
    if "kernel_loss_direction" in spec.model_fields_set and not spec.kernel_loss:
        raise SpecError(
            "kernel_loss_direction applies with kernel_loss (a percent above 0)",
            "kernel_loss_direction",
        )
    if spec.kernel_loss and round(spec.kernel_loss * 100) == 0:
        raise SpecError("kernel_loss: the smallest share is 0.01 (percent)", "kernel_loss")
    if spec.kernel_loss:
        reason = where_refused(spec.host, spec.kernel_loss_direction)
        if reason is not None:
            field = "kernel_loss_direction" if spec.kernel_loss_direction != "in" else "url"
            raise SpecError(reason, field)


def _check_regex_work(rules: Sequence[Rule], max_message_size: int) -> None:
    """Refuse regex rules that together could cost too much on one message.

    A message may be tried against every rule, and an RE2 search costs up to its program
    size per byte, so the bound is the sum of the costs times the longest message.
    """
    total = 0
    for index, rule in enumerate(rules):
        total += rule.cost
        if total * max_message_size > MAX_MESSAGE_WORK:
            fit = MAX_MESSAGE_WORK // total
            remedy = "simplify the regexes"
            if fit:
                remedy += f" or set max_message_size to {fit} or less"
            raise SpecError(
                f"rules.{index}: the regexes up to this rule cost {total} steps a "
                f"byte (RE2 program size), more than {MAX_MESSAGE_WORK} steps on a "
                f"{max_message_size}-byte message; {remedy}",
                f"rules.{index}.pattern",
            )
