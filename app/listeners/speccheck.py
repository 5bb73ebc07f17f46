"""The checks a listener spec needs beyond each field's own bounds.

Theory of operation: :class:`~app.listeners.spec.ListenerSpec` checks each option alone
(type, range, choices). What is left is checked here, in two steps of
:func:`~app.listeners.parse.parse_listener`, so everything that can be wrong is found
before anything binds:

- before the model is built, on the merged options: :func:`check_applicable` refuses an
  option that does not apply to the mode or protocol (``loss`` on a TCP listener,
  ``rules`` on an echo one), and :func:`check_rules` compiles each respond rule;
- after, on the spec: :func:`check_spec` checks what spans fields or reaches outside the
  process: a multicast group and its interface and source, ``kernel_loss`` (nftables
  can drop the packets asked for), ``forward``, ``cert`` and ``key`` (given together, and
  files that exist), and a respond listener's rules, whose regexes together must not cost
  too much on a message of ``max_message_size`` (:data:`~app.wire.regex.MAX_MESSAGE_WORK`).

Error handling: every check raises :class:`~app.errors.SpecError` naming the option at
fault (``rules.2.pattern`` for a field of the third rule); none returns a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.errors import SpecError
from app.listeners.forward import parse_forward
from app.listeners.multicast import check_group
from app.listeners.nftrules import where_refused
from app.listeners.spec import COLLECTOR_MODES, ListenerSpec
from app.wire.regex import MAX_MESSAGE_WORK
from app.wire.rules import Rule, RuleError

__all__ = ["check_applicable", "check_rules", "check_spec"]


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


def check_applicable(values: Mapping[str, Any], protocol: str, mode: str) -> None:
    """Refuse an option given that does not apply to ``mode`` or ``protocol``.

    Raises:
        SpecError: Naming the first such option.
    """
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


def check_rules(rules: Any) -> None:
    """Compile each respond rule, as given (the body's ``rules`` or a rules file's).

    Raises:
        SpecError: ``rules`` is not a list, or a rule does not compile (field
            ``rules.N`` or ``rules.N.<field>``).
    """
    if not isinstance(rules, list | tuple):
        raise SpecError("rules must be a list of rule objects", "rules")
    for index, rule in enumerate(rules):
        try:
            Rule.from_dict(rule)
        except RuleError as exc:
            where = f"rules.{index}" + (f".{exc.field}" if exc.field else "")
            raise SpecError(f"rules.{index}: {exc.message}", where) from None


def check_spec(spec: ListenerSpec) -> None:
    """Check what spans fields of ``spec`` or reaches outside the process.

    Raises:
        SpecError: Naming the option at fault.
    """
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
