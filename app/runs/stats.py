"""What a run measures: counters, RTT histograms, errors by kind, the per-second series.

Theory of operation: the per-message code bumps integer counters and records one RTT (in
nanoseconds) into the *interval* HDR histogram, about 0.6 µs. Once a second :meth:`tick`
closes the interval: it computes that second's figures, folds the interval histogram into the
run's total histogram and resets it. :meth:`RunStats.summary` is the one computation of a
run's summary, live or final, with the same keys either way: the final one folds the open
interval in first, so its percentiles are those of every message, with HDR's bounded
relative error (3 significant digits: 0.1 %); a live one leaves the interval alone and shows
the closed seconds.

The last interval of a run is whatever is left after the last whole second: often a few
milliseconds (the drain after the last reply), where one stray message reads as a rate of
thousands a second and none as a drop to zero. :meth:`close_series` folds a final interval
shorter than :data:`MIN_FINAL_INTERVAL` into the point before it, so every point's rates
are over at least half a second and the series, the page, the CLI's last progress line and
the API show the same last figure.

Errors are counted here by kind, with a few samples each; what the kinds are and how a
failure is classified and worded is :mod:`app.runs.error_kinds`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from app.runs.error_kinds import ERROR_MEANINGS, MAX_ERROR_SAMPLES, MAX_SAMPLE_CHARS, error_detail
from app.runs.flowstats import FlowStats
from app.runs.hdrfast import FastHistogram
from app.tcpinfo import UNSUPPORTED, TcpSums

# 1 ns to 60 s at 3 significant digits: every RTT a test can produce, 0.1 % precision.
_LOWEST_NS = 1
_HIGHEST_NS = 60_000_000_000
_DIGITS = 3

# A final interval shorter than this is folded into the point before it (see above).
MIN_FINAL_INTERVAL = 0.5

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class Summarised(Protocol):
    """Figures kept beside the counters that give their own part of the summary."""

    def summary(self) -> dict[str, Any]: ...


class DirectionFigures(Protocol):
    """The reverse direction of a run, as this end received it (app.runs.reverse)."""

    def summary(self, source: dict[str, Any] | None) -> dict[str, Any]: ...


def new_histogram() -> HdrHistogram:
    # The same counts as HdrHistogram's, recorded for a third of the cost (per message).
    return FastHistogram(_LOWEST_NS, _HIGHEST_NS, _DIGITS)


def rtt_summary(hist: HdrHistogram, *, with_mean: bool = False) -> dict[str, float | None]:
    """min/p50/p90/p99/p99.9/max (and mean) in ms; ``None`` everywhere when empty.

    The percentiles come from one pass over the histogram (hdrh's per-percentile call is a
    pass each); the mean is a slow pass in hdrh, so only final summaries ask for it.
    """
    if hist.get_total_count() == 0:
        return {"min": None, **dict.fromkeys(PERCENTILES), "max": None, "mean": None}
    values = hist.get_percentile_to_value_dict(list(PERCENTILES.values()))
    result: dict[str, float | None] = {"min": hist.get_min_value() / 1e6}
    for name, pct in PERCENTILES.items():
        result[name] = values[pct] / 1e6
    result["max"] = hist.get_max_value() / 1e6
    result["mean"] = hist.get_mean_value() / 1e6 if with_mean else None
    return result


class RunStats:
    """Counters and histograms of one run. Not thread-safe; one trio loop writes it."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.lost = 0
        self.late = 0
        self.connections_opened = 0
        self.errors: dict[str, int] = {}
        # A few messages per kind, saying why (a TLS handshake's reason, the OS's words).
        self.error_samples: dict[str, list[str]] = {}
        # Flows started, and those an error ended (a run whose every flow an error ended
        # lost its target: app.runs.outcome).
        self.flows = 0
        self.flows_failed = 0
        self.interval = new_histogram()
        self.total = new_histogram()
        # The closed interval of the newest point, kept for folding a short final one in.
        self._previous = new_histogram()
        self.series: list[dict[str, Any]] = []
        # UDP replies with a probe header: loss, duplicates, reordering, jitter per flow.
        self.flow_list: list[FlowStats] = []
        self.duplicates = 0
        self.reordered = 0
        # False for a run that expects no replies (aimed at a sink): its loss is not known
        # at this end, so the summary says null, not 0 and not 100 %.
        self.expect_replies = True
        # Open-loop senders: how late each counted send was after its intended time.
        self.paced_sends = 0
        self.send_lateness_ns = 0
        self.send_lateness_max_ns = 0
        self.late_sends = 0  # 2 ms or more late: charged to the latency
        # Trio times: when counting began (after the warm-up) and when the last flow stopped
        # sending; open-loop rates are over that window, not over the drain that follows.
        self.measure_start = 0.0
        self.send_end = 0.0
        self.reply: dict[str, Any] | None = None
        # A scenario run's per-step figures (app.runs.steps.StepTable).
        self.steps: Summarised | None = None
        self.bottleneck: dict[str, Any] | None = None
        self.remote: dict[str, Any] | None = None
        self.remote_error: str | None = None  # why ``remote`` is missing for a sink's run
        # A run to a multicast group: each receiver's figures (app.runs.receivers).
        self.receivers: list[dict[str, Any]] | None = None
        # Reverse and bidir runs: what the source sent this end, beside the source's count.
        self.reverse: DirectionFigures | None = None
        self._last = (0, 0, 0, 0)
        self._last_t = 0.0
        self._previous_t = 0.0  # where the newest point's interval began
        # How many intervals were folded into ``total``, and the live RTT figures of then.
        self._folds = 0
        self._rtt_cache: tuple[int, dict[str, float | None], list[list[float]]] | None = None
        # The kernel's retransmits over the run's TCP flows (app.tcpinfo); None for UDP.
        self.tcp: TcpSums | None = None
        self._last_retransmits = 0

    def tcp_sums(self) -> TcpSums:
        """The sums the run's TCP flows add their kernel retransmits to (made on first use)."""
        if self.tcp is None:
            self.tcp = TcpSums()
        return self.tcp

    def note_send_end(self, now: float) -> None:
        self.send_end = max(self.send_end, now)

    def record_error(self, kind: str, detail: BaseException | str | None = None) -> None:
        """Count one error of ``kind``; keep why (``detail``: a message or the exception, or
        else the kind's meaning) among its first few distinct samples."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        samples = self.error_samples.setdefault(kind, [])
        if len(samples) < MAX_ERROR_SAMPLES:
            text = error_detail(detail) if isinstance(detail, BaseException) else detail
            text = (text or ERROR_MEANINGS.get(kind, kind))[:MAX_SAMPLE_CHARS]
            if text not in samples:
                samples.append(text)

    def flow_failed(self, kind: str, detail: BaseException | str | None = None) -> None:
        """Count the error that ended a flow (one that did not get to its end)."""
        self.flows_failed += 1
        self.record_error(kind, detail)

    def count_unanswered(self, send_times_ns: Iterable[int], measure_from_ns: int) -> None:
        """Count lost the messages a flow gave up on, those sent after the warm-up."""
        self.lost += sum(1 for t0 in send_times_ns if t0 >= measure_from_ns)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def start(self, now: float) -> None:
        self._last_t = now

    def moved_since_tick(self) -> bool:
        """Whether anything was sent or received since the last closed interval."""
        return (self.sent, self.received, self.bytes_sent, self.bytes_received) != self._last

    def tick(self, now: float) -> dict[str, Any]:
        """Close the current interval at ``now`` (seconds since the run started)."""
        point = self._point(self._last, self._last_t, now, self.interval)
        point["retransmits"] = self._retransmits_since_tick()
        self._previous_t = self._last_t
        self._close_interval(now)
        self.series.append(point)
        return point

    def close_series(self, now: float) -> dict[str, Any] | None:
        """Close the run's last, partial interval at ``now``, once its flows have ended.

        An empty last interval (nothing moved since the last tick) adds no point: it would
        only draw a drop to zero at the end of every chart. One shorter than
        :data:`MIN_FINAL_INTERVAL` replaces the newest point by one over both intervals
        (counts added, rates over the joined length, RTT of both); a longer one is a point
        of its own. A run shorter than that still gets its one point.

        Returns:
            The series' new last point, or ``None`` when none was added or replaced.
        """
        if self.series and not self.moved_since_tick():
            return None
        if not self.series or now - self._last_t >= MIN_FINAL_INTERVAL:
            return self.tick(now)
        before = self.series.pop()
        start = (
            self._last[0] - before["sent"],
            self._last[1] - before["received"],
            self._last[2] - before["bytes_sent"],
            self._last[3] - before["bytes_received"],
        )
        if self.interval.get_total_count():
            self._previous.add(self.interval)
        point = self._point(start, self._previous_t, now, self._previous)
        retransmits = self._retransmits_since_tick()
        point["retransmits"] = (
            None
            if retransmits is None and before.get("retransmits") is None
            else (before.get("retransmits") or 0) + (retransmits or 0)
        )
        self._close_interval(now)
        self.series.append(point)
        return point

    def _point(
        self, since: tuple[int, int, int, int], start: float, now: float, rtts: HdrHistogram
    ) -> dict[str, Any]:
        """The point of the interval from ``start`` (counters ``since``) to ``now``."""
        elapsed = max(now - start, 1e-9)
        sent, received, bsent, breceived = since
        point: dict[str, Any] = {
            "t": round(now, 3),
            "sent": self.sent - sent,
            "received": self.received - received,
            "bytes_sent": self.bytes_sent - bsent,
            "bytes_received": self.bytes_received - breceived,
        }
        point["msgs_per_s"] = point["received"] / elapsed
        point["sent_per_s"] = point["sent"] / elapsed
        point["bits_per_s"] = point["bytes_sent"] * 8 / elapsed
        point["bits_per_s_received"] = point["bytes_received"] * 8 / elapsed
        rtt = rtt_summary(rtts)
        point["rtt_ms"] = {k: rtt[k] for k in ("min", "p50", "p99", "max")}
        return point

    def _close_interval(self, now: float) -> None:
        # The closed interval is copied, not swapped: flows hold ``self.interval`` itself.
        # Once a second, the cost of a second ``add``.
        if self._previous.get_total_count():
            self._previous.reset()
        if self.interval.get_total_count():
            self.total.add(self.interval)
            self._previous.add(self.interval)
            self._folds += 1
            self.interval.reset()
        self._last = (self.sent, self.received, self.bytes_sent, self.bytes_received)
        self._last_t = now

    def fold(self) -> None:
        """Move the open interval's samples into the total histogram.

        An empty histogram is never added: hdrh's ``add`` of an empty histogram resets the
        total's minimum to 0.
        """
        if self.interval.get_total_count():
            self.total.add(self.interval)
            self.interval.reset()
            self._folds += 1

    def histogram(self) -> list[list[float]]:
        """The RTT histogram of the folded intervals as ``[upper bound in ms, count]`` rows,
        buckets doubling from 1 µs."""
        if not self.total.get_total_count():
            return []
        rows = []
        for step in self.total.get_log_iterator(1000, 2.0):
            rows.append([step.value_iterated_to / 1e6, step.count_added_in_this_iter_step])
        while rows and rows[-1][1] == 0:
            rows.pop()
        start = next((i for i, row in enumerate(rows) if row[1]), 0)
        return rows[max(start - 1, 0) :]

    def summary(self, elapsed: float, *, final: bool) -> dict[str, Any]:
        """The run's summary: the same keys while it runs and when it has ended.

        This is the one place a run's figures are computed; the API, the browser, the CLI
        and ``/metrics`` read them from here. While the run goes (``final=False``) nothing
        is folded, so the per-second series keeps its intervals whole: the RTT figures and
        the histogram are those of the closed seconds (recomputed once per second, not per
        call), and what is not known yet is ``None`` (the RTT mean, the bottleneck, the
        receiver's side, a packet's reply).

        Args:
            elapsed: Seconds since the run started.
            final: The run has ended: fold the open interval in and compute everything.
        """
        if final:
            self.fold()
        elapsed = max(elapsed, 1e-9)
        span = self.send_end - self.measure_start if self.send_end else elapsed
        span = max(span, 1e-9)
        jitters = [f.jitter_ms for f in self.flow_list if f.received > 1]
        rtt, histogram = self._rtt_figures(final)
        return {
            "sent": self.sent,
            "received": self.received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "lost": self.lost if self.expect_replies else None,
            "loss_pct": self._loss_pct(),
            "late": self.late,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "jitter_ms": round(sum(jitters) / len(jitters), 6) if jitters else None,
            "send_lateness_ms": self._send_lateness(),
            "errors": self.error_count,
            "errors_by_kind": dict(self.errors),
            "error_samples": {kind: list(texts) for kind, texts in self.error_samples.items()},
            "connections_opened": self.connections_opened,
            "elapsed": round(elapsed, 6),
            "send_seconds": round(span, 6),
            "msgs_per_s": self.received / span,
            "sent_per_s": self.sent / span,
            "bits_per_s": self.bytes_sent * 8 / span,
            "bits_per_s_received": self.bytes_received * 8 / span,
            "rtt_ms": rtt,
            "histogram": histogram,
            "reply": self.reply,
            "scenario": None if self.steps is None else self.steps.summary(),
            "bottleneck": self.bottleneck,
            "remote": self.remote,
            "remote_error": self.remote_error,
            "receivers": self.receivers,
            "reverse": None if self.reverse is None else self.reverse.summary(self.remote),
            "tcp": self._tcp_summary(),
        }

    def _retransmits_since_tick(self) -> int | None:
        """Segments the kernel retransmitted since the last closed interval (``None``: UDP,
        or no flow's kernel figures could be read)."""
        tcp = self.tcp
        if tcp is None or not tcp.connections:
            return None
        delta = tcp.retransmits - self._last_retransmits
        self._last_retransmits = tcp.retransmits
        return delta

    def _tcp_summary(self) -> dict[str, Any] | None:
        """The kernel's figures over the run's TCP flows; ``None`` for a UDP run."""
        tcp = self.tcp
        if tcp is None:
            return None
        if not tcp.connections:
            reason = UNSUPPORTED or "no connection was made"
            return {"retransmits": None, "bytes_retrans": None, "sampled": 0, "reason": reason}
        return {
            "retransmits": tcp.retransmits,
            "bytes_retrans": tcp.bytes_retrans,
            "sampled": tcp.connections,
            "reason": None,
        }

    def _loss_pct(self) -> float | None:
        if not self.expect_replies:
            return None
        return round(100.0 * self.lost / self.sent, 4) if self.sent else 0.0

    def _send_lateness(self) -> dict[str, float | int] | None:
        """How late an open-loop sender sent (actual minus intended time); ``None`` for
        patterns that send when they can (pingpong, TCP bulk, packet)."""
        if not self.paced_sends:
            return None
        return {
            "mean": round(self.send_lateness_ns / self.paced_sends / 1e6, 6),
            "max": round(self.send_lateness_max_ns / 1e6, 6),
            "late_sends": self.late_sends,
        }

    def _rtt_figures(self, final: bool) -> tuple[dict[str, float | None], list[list[float]]]:
        if final:
            return rtt_summary(self.total, with_mean=True), self.histogram()
        # The total histogram changes only when an interval is folded in: reuse the figures.
        if self._rtt_cache is None or self._rtt_cache[0] != self._folds:
            self._rtt_cache = (self._folds, rtt_summary(self.total), self.histogram())
        return self._rtt_cache[1], self._rtt_cache[2]
