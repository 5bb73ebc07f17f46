"""What a listener is: :class:`ListenerSpec`, its options and their bounds. Immutable.

A listener is a protocol, a bind address, a mode and the mode's options; the model holds
each option once, with its type, default and bounds, so the URL query, the API body, the
dashboard's form and ``--help`` all follow it. The spec also writes itself back out: as a
URL (:attr:`ListenerSpec.url`, every option that differs from its default) and as the JSON
object (:meth:`ListenerSpec.to_dict`) that :func:`~app.listeners.parse.parse_listener`
reads back.

Durations (``idle_timeout``, ``delay``, ``jitter``, ``flush_interval``) are seconds, as a
number or a string with a unit: ``"0.05"``, ``"50ms"``, ``"2s"``. ``loss`` and
``duplicate`` are percentages (0 to 100), and so is ``kernel_loss`` (in steps of 0.01).

The model checks each field on its own; what depends on the mode, the protocol, other
fields or the world outside (files, interfaces, nftables) is checked by
:mod:`app.listeners.speccheck`, and a listener is made from its URL or JSON form by
:mod:`app.listeners.parse`, which runs both.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.endpoint import Endpoint
from app.wire.rules import Responder, Rule

__all__ = [
    "COLLECTOR_MODES",
    "LISTENER_MODES",
    "LISTENER_PROTOCOLS",
    "ListenerSpec",
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
        """The JSON form :func:`~app.listeners.parse.parse_listener` reads back."""
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
