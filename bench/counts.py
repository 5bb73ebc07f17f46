# ruff: noqa: RUF001, RUF002 - the report is for people: the multiplication sign and en dash are meant
"""Section (j): socketlab's counters at full speed against netbench's own counts.

Each load runs against one socketlab listener; the listener's counters (``GET
/api/listeners``) are read before and after, and their differences are compared with what
netbench printed for the same run:

- ``udp-blast`` into the UDP echo, as fast as netbench sends: every datagram sent is read by
  the echo or dropped by the kernel (its socket's drop counter, /proc/net/udp), so
  ``msgs_in + kernel drops == sent`` exactly, ``bytes_in == 64 × msgs_in`` and every one
  read is answered or counted as an error.
- ``tcp-bulk`` into the TCP sink (128 KiB writes): ``bytes_in == bytes`` exactly, once
  netbench has closed and the sink has read to the end.
- ``tcp-pingpong`` (100 conns) into the TCP echo and ``udp-pingpong`` (10 flows) into the UDP
  echo: netbench counts the round trips that came back before it stopped, and stops with at
  most one message per connection in flight, so the echo's counts lie between netbench's
  and netbench's plus one message per connection (its ``lost`` and ``late`` included).
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.common import Context, fmt, lab_session
from bench.dashboard import listener_doc
from bench.harness import NB, Skip, log
from bench.servers import tcp_pingpong, udp_pingpong

SIZE = 64
LISTEN = [
    "tcp://127.0.0.1:0?mode=echo",
    "udp://127.0.0.1:0?mode=echo",
    "tcp://127.0.0.1:0?mode=sink",
]
COUNTERS = ("msgs_in", "msgs_out", "bytes_in", "bytes_out", "errors", "accepted", "oversized")


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {k: int(after.get(k) or 0) - int(before.get(k) or 0) for k in COUNTERS}


def _settled(lab: harness.Lab, port: int, timeout: float = 15.0) -> dict[str, Any]:
    """The listener's document once its connections have closed and its counts stopped
    moving (the last bytes of a closed connection are read after netbench has exited)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = listener_doc(lab, port) or {}
        same = {k: doc.get(k) for k in COUNTERS} == {k: last.get(k) for k in COUNTERS}
        if same and not doc.get("connections"):
            return doc
        last = doc
        time.sleep(0.3)
    return last


def _check(what: str, r: dict[str, Any], d: dict[str, int], drops: int) -> dict[str, Any]:
    """Compare the listener's differences ``d`` with netbench's result ``r``."""
    if what == "udp-blast echo":
        sent = int(r.get("sent") or 0)
        ok = (
            d["msgs_in"] + drops == sent
            and d["bytes_in"] == SIZE * d["msgs_in"]
            and d["msgs_out"] + d["errors"] == d["msgs_in"]
        )
        shown = (
            f"sent {fmt(sent)} = read {fmt(d['msgs_in'])} + kernel drops {fmt(drops)}; "
            f"answered {fmt(d['msgs_out'])}, errors {d['errors']}"
        )
        return {"exact": True, "ok": ok, "shown": shown}
    if what == "tcp-bulk sink":
        nb = int(r.get("bytes") or 0)
        ok = d["bytes_in"] == nb and d["accepted"] == 1
        return {
            "exact": True,
            "ok": ok,
            "shown": f"netbench {fmt(nb)} B, sink {fmt(d['bytes_in'])} B",
        }
    rtt = int(r.get("rtt_total") or 0)
    if what == "tcp-pingpong echo":
        conns = int(r.get("conns") or 0)
        low, high = SIZE * rtt, SIZE * (rtt + conns)
        ok = low <= d["bytes_out"] <= d["bytes_in"] <= high and d["accepted"] == conns
        shown = (
            f"netbench {fmt(rtt)} round trips = {fmt(low)} B; echo read {fmt(d['bytes_in'])} B,"
            f" wrote {fmt(d['bytes_out'])} B (in flight at the end ≤ {fmt(high - low)} B)"
        )
        return {"exact": False, "ok": ok, "shown": shown}
    flows = int(r.get("flows") or 0)
    late, lost = int(r.get("late") or 0), int(r.get("lost") or 0)
    low, high = rtt + late, rtt + late + lost + flows
    ok = (
        low <= d["msgs_in"] <= high
        and d["bytes_in"] == SIZE * d["msgs_in"]
        and d["msgs_out"] + d["errors"] == d["msgs_in"]
    )
    shown = (
        f"netbench {fmt(rtt)} round trips + {late} late (lost {lost}); echo read "
        f"{fmt(d['msgs_in'])}, answered {fmt(d['msgs_out'])} (bound {fmt(low)}–{fmt(high)})"
    )
    return {"exact": False, "ok": ok, "shown": shown}


def section_j(ctx: Context) -> None:
    """The echo's and the sink's counts at full speed equal netbench's."""
    d = ctx.duration
    for rep in range(ctx.reps):
        try:
            with lab_session(ctx, f"j-socketlab-{rep}", LISTEN, subscribe=False) as (lab, _):
                tcp, udp, sink = (lab.ports[k] for k in ("tcp:echo", "udp:echo", "tcp:sink"))
                blast = [str(NB), "udp-blast", "--host", "127.0.0.1", "--port", str(udp)]
                bulk = [str(NB), "tcp-bulk", "--host", "127.0.0.1", "--port", str(sink)]
                loads = [
                    ("tcp-pingpong echo", tcp, tcp_pingpong(tcp, 100, d)),
                    ("udp-pingpong echo", udp, udp_pingpong(udp, 10, d)),
                    ("udp-blast echo", udp, [*blast, "--size", str(SIZE), "--duration", str(d)]),
                    ("tcp-bulk sink", sink, [*bulk, "--size", "131072", "--duration", str(d)]),
                ]
                for what, port, argv in loads:
                    _one(ctx, rep, lab, what, port, argv)
        except Skip as exc:
            ctx.skip("j", "counters", str(exc))
            return


def _one(ctx: Context, rep: int, lab: harness.Lab, what: str, port: int, argv: list[str]) -> None:
    before = _settled(lab, port)
    udp = what.startswith("udp")
    drops0 = (harness.udp_drops(port) or 0) if udp else 0
    # One attempt only (not harness.measure, which runs a disturbed load again): the
    # counters' differences must cover exactly the load netbench reports.
    harness.wait_quiet()
    r = harness.run_load(argv, lab.pid, timeout=ctx.duration + 120)
    after = _settled(lab, port)
    drops = ((harness.udp_drops(port) or 0) - drops0) if udp else 0
    delta = _delta(before, after)
    verdict = _check(what, r, delta, drops)
    ctx.emit(
        {
            "section": "j",
            "rep": rep,
            "server": "socketlab",
            "what": what,
            "counts": delta,
            "kernel_drops": drops,
            **verdict,
            **r,
        }
    )
    log(
        f"[j {rep + 1}/{ctx.reps}] {what}: {'equal' if verdict['ok'] else 'DIFFERENT'}: "
        f"{verdict['shown']}"
    )


def counts_table(recs: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in recs if r.get("section") == "j" and r.get("what") and "ok" in r]
    out = [
        "| rep | load | check | verdict | figures |",
        "|---:|---|---|---|---|",
    ]
    for r in rows:
        kind = "exact" if r.get("exact") else "within what was in flight"
        out.append(
            f"| {r['rep'] + 1} | {r['what']} | {kind} | {'equal' if r['ok'] else 'DIFFERENT'} "
            f"| {r['shown']} |"
        )
    return out


__all__ = ["counts_table", "section_j"]
