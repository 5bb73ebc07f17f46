"""Compare transports: the same load over TCP and over UDP to the same host, at once.

A comparison is two ordinary runs (stored, audited and capped like any other) whose specs
differ only in the target's scheme. They are linked by a compare id, kept as a label
(``compare-<id>``) on both runs, so the link survives a restart and the runs stay in the
history with everything else. What this module knows: how one body becomes the two specs,
the label, and the side-by-side figures the CLI prints (the dashboard renders the same
summaries with static/js/compare_transports.js).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import trio

from app.endpoint import Endpoint, host_port
from app.errors import SpecError
from app.runs.fire import fire_in_process, lost_text, ms_text, per_s, rate_text
from app.runs.spec import RunSpec, parse_run_spec

TRANSPORTS = ("tcp", "udp")
# Patterns whose load means the same over a stream and over datagrams.
COMPARABLE_PATTERNS = ("pingpong", "rate", "bulk", "burst")
LABEL_PREFIX = "compare-"
COMPARE_ID = re.compile(r"^[0-9a-f]{8}$")


def new_compare_id() -> str:
    """A fresh compare id: 8 hex digits."""
    return secrets.token_hex(4)


def compare_label(compare_id: str) -> str:
    """The label both runs of comparison ``compare_id`` carry."""
    return f"{LABEL_PREFIX}{compare_id}"


def _host_port(target: Any) -> str:
    """``host:port`` of a compare target: ``host:port``, ``tcp://host:port`` or
    ``udp://host:port`` (the scheme is replaced by each transport's).

    Raises:
        SpecError: Naming ``target``.
    """
    if not isinstance(target, str) or not target.strip():
        raise SpecError("target: give host:port, such as 127.0.0.1:9000", "target")
    text = target.strip()
    if "://" not in text:
        text = f"tcp://{text}"
    elif not text.startswith(("tcp://", "udp://")):
        raise SpecError(
            f"target: {target!r}: compare runs TCP and UDP; give host:port, tcp:// or udp://",
            "target",
        )
    endpoint = Endpoint.parse(text, field="target")
    return host_port(endpoint.host, endpoint.port)


def transport_specs(
    body: dict[str, Any], transports: Sequence[str] = TRANSPORTS
) -> dict[str, RunSpec]:
    """The run spec of each transport: ``body`` (a ``POST /api/runs`` body) with its
    target's scheme set to the transport's.

    Raises:
        SpecError: The first thing wrong, naming the field (a field one transport refuses,
            such as a size above UDP's largest datagram, is refused for the comparison).
    """
    if not isinstance(body, dict):
        raise SpecError("body: the spec must be a JSON object", "body")
    pattern = body.get("pattern", "pingpong")
    if pattern not in COMPARABLE_PATTERNS:
        raise SpecError(
            f"pattern: compare runs {', '.join(COMPARABLE_PATTERNS)}, got {pattern!r}", "pattern"
        )
    address = _host_port(body.get("target"))
    return {t: parse_run_spec({**body, "target": f"{t}://{address}"}) for t in transports}


# ------------------------------------------------------------ side by side, as text


def _retransmits(s: dict[str, Any]) -> str:
    tcp = s.get("tcp")
    if tcp is None:
        return "- (UDP does not retransmit)"
    if tcp["retransmits"] is None:
        return f"- ({tcp['reason']})"
    return f"{tcp['retransmits']:,}"


def _jitter(s: dict[str, Any]) -> str:
    return ms_text(s.get("jitter_ms"))


# (label, the figure's text from a summary), one line each.
FIGURES: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("sent", lambda s: f"{s['sent']:,}"),
    ("received", lambda s: f"{s['received']:,}"),
    ("lost", lost_text),
    ("retransmits", _retransmits),
    ("jitter ms", _jitter),
    ("RTT p50 ms", lambda s: ms_text(s["rtt_ms"]["p50"])),
    ("RTT p99 ms", lambda s: ms_text(s["rtt_ms"]["p99"])),
    ("RTT p99.9 ms", lambda s: ms_text(s["rtt_ms"]["p999"])),
    ("RTT max ms", lambda s: ms_text(s["rtt_ms"]["max"])),
    ("received msg/s", lambda s: per_s(s["msgs_per_s"])),
    ("bit rate", lambda s: rate_text(s["bits_per_s"])),
    ("errors", lambda s: f"{s['errors']:,}"),
)


def format_side_by_side(docs: dict[str, dict[str, Any]]) -> str:
    """The runs of a comparison as a table: a column per transport, a line per figure."""
    names = list(docs)
    rows: list[tuple[str, list[str]]] = [
        ("", [name.upper() for name in names]),
        ("run", [docs[n]["id"] for n in names]),
        ("target", [docs[n]["spec"]["target"] for n in names]),
        ("status", [_status(docs[n]) for n in names]),
    ]
    for label, text in FIGURES:
        rows.append((label, [text(docs[n]["summary"]) for n in names]))
    first = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in rows) for i in range(len(names))]
    return "\n".join(
        f"{label:<{first}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        for label, values in rows
    )


def _status(doc: dict[str, Any]) -> str:
    return str(doc["status"]) + (f" ({doc['error']})" if doc.get("error") else "")


# ------------------------------------------------------------ from this process (the CLI)


async def fire_both_in_process(specs: dict[str, RunSpec]) -> dict[str, Any]:
    """Run every spec of ``specs`` at once from this process (``socketlab fire --both``);
    returns the document ``GET /api/compare/{id}`` answers for a comparison."""
    docs: dict[str, dict[str, Any]] = {}

    async def one(transport: str, spec: RunSpec) -> None:
        docs[transport] = await fire_in_process(spec, False)

    async with trio.open_nursery() as nursery:
        for transport, spec in specs.items():
            nursery.start_soon(one, transport, spec)
    runs = {t: docs[t] for t in specs}
    return compare_doc(new_compare_id(), runs)


def compare_doc(compare_id: str, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A comparison's document: its id, its status and each transport's run.

    The status is ``running`` while a run goes (or is paused), else the worst of the runs'
    ends: ``failed``, then ``stopped``, then ``finished``.
    """
    statuses = {doc["status"] for doc in runs.values()}
    if statuses & {"running", "paused"}:
        status = "running"
    else:
        status = next((s for s in ("failed", "stopped") if s in statuses), "finished")
    return {"id": compare_id, "status": status, "transports": list(runs), "runs": runs}
