// How a run reads in tables and charts; shared by the fire and runs sections.
import { el, figure, fmtBitRate, fmtMs, fmtMsgRate, fmtNum, fmtSeconds, timeEl } from "./util.js";
import { Chart, msAxis } from "./charts.js";
import { isGroupTarget, receiverRows } from "./receivers.js";

export const PCTS = [["min", "min"], ["p50", "p50"], ["p90", "p90"], ["p99", "p99"], ["p99.9", "p999"], ["max", "max"], ["mean", "mean"]];

export function statusPill(status) {
  const cls = { finished: "ok", running: "run", paused: "warn", stopped: "warn", failed: "bad", cancelled: "warn" }[status] || "";
  return el("span", { class: `pill ${cls}`, text: status || "–" });
}

export function describeSpec(spec) {
  if (!spec) return "";
  const parts = [spec.pattern || "pingpong", spec.target];
  if (spec.connections) parts.push(`${fmtNum(spec.connections)} conn`);
  if (spec.size) parts.push(spec.size_max ? `${spec.size}–${spec.size_max} B` : `${spec.size} B`);
  if (spec.rate) parts.push(fmtMsgRate(spec.rate));
  if (spec.bitrate) parts.push(fmtBitRate(spec.bitrate));
  if (spec.duration) parts.push(`${spec.duration} s`);
  if (spec.count) parts.push(`${fmtNum(spec.count)} msgs`);
  return parts.join(" · ");
}

function errorsText(s) {
  const kinds = Object.entries(s.errors_by_kind).filter(([, n]) => n);
  const parts = [figure("errors", "count", s.errors)];
  if (kinds.length) {
    parts.push(" (");
    kinds.forEach(([kind, n], i) => parts.push(i ? ", " : "", `${kind} `, figure(`errors_by_kind.${kind}`, "count", n)));
    parts.push(")");
  }
  return cellOf(...parts);
}

/** Several figures and words in one table cell. */
function cellOf(...parts) {
  return el("span", {}, ...parts);
}

/**
 * What a run's pattern and target measure, so its result shows those figures and says why
 * it has no others. Read from the run's spec and summary (a sink's run has `lost: null`).
 *
 * stream: TCP or TLS, which deliver once and in order (no duplicates or reordering to
 * count); bytes: bulk over a stream, which counts bytes and no messages or round trips;
 * replies: the target answers (not one of the lab's sinks).
 */
export function measures(run) {
  const spec = run.spec || {};
  const s = run.summary || {};
  const protocol = String(spec.target || "").split(":")[0];
  const stream = protocol !== "udp";
  const bytes = spec.pattern === "bulk" && stream;
  const replies = s.lost !== null && s.lost !== undefined;
  let noRtt = null;
  let noRttShort = null;
  if (spec.reverse || spec.bidir) {
    noRtt = "One-way traffic: the source sends and this end counts what arrives; there are no round trips to time.";
    noRttShort = "none: one-way traffic";
  } else if (!replies && isGroupTarget(spec.target)) {
    noRtt = "A multicast group's members do not reply: there are no round trips to time. What each received is in the result.";
    noRttShort = "none: a group's members do not reply";
  } else if (!replies) {
    noRtt = "A sink does not reply: there are no round trips to time. What arrived there is in the result.";
    noRttShort = "none: a sink does not reply";
  } else if (bytes) {
    noRtt = `Bulk over ${protocol.toUpperCase()} measures throughput, a byte stream with no round trips to time.`;
    noRttShort = "none: a byte stream";
  }
  return { stream, bytes, replies, noRtt, noRttShort };
}

// A TCP sink without message_size sees a byte stream: it cannot count messages in it.
const UNFRAMED = "a TCP sink counts messages when it is given a message_size";

function receiverPairs(s) {
  const r = s.remote;
  if (!r) {
    const why = s.remote_error || "the sink kept no figures of this run";
    return [["at the receiver", `not known: ${why}`, "remote"]];
  }
  const pairs = [];
  if (r.received == null) {
    pairs.push(["at the receiver", `no messages counted: ${UNFRAMED}`, "remote"]);
  } else {
    pairs.push(
      ["at the receiver", cellOf(figure("remote.received", "count", r.received), " msgs · lost ",
        figure("remote.lost", "count", r.lost), " (", figure("remote.loss_pct", "pct", r.loss_pct), ")"), "remote"],
      ["receiver duplicates", cellOf(figure("remote.duplicates", "count", r.duplicates)), "remote_duplicates"],
      ["receiver reordered", cellOf(figure("remote.reordered", "count", r.reordered)), "remote_reordered"],
    );
    if (r.jitter_ms != null) pairs.push(["receiver jitter", cellOf(figure("remote.jitter_ms", "ms", r.jitter_ms)), "remote_jitter"]);
  }
  // Sinks that count bytes per run: what the path delivered, beside what was sent.
  if (r.rx_bytes != null) {
    const parts = [figure("remote.rx_bytes", "bytes", r.rx_bytes)];
    if (r.rx_bits_per_s != null) parts.push(" · ", figure("remote.rx_bits_per_s", "bitrate", r.rx_bits_per_s));
    pairs.push(["bytes at the receiver", cellOf(...parts), "remote_bytes"]);
  }
  return pairs;
}

// A reverse or bidir run: what the source sent, as this end received it.
function reversePairs(s, stream) {
  const r = s.reverse;
  const pairs = [["received", cellOf(figure("reverse.received", "count", r.received), " msgs · ",
    figure("reverse.rx_bytes", "bytes", r.rx_bytes), " from the source"), "received"]];
  if (r.lost != null) pairs.push(["lost", cellOf(figure("reverse.lost", "count", r.lost)), "reverse_lost"]);
  if (!stream) {
    pairs.push(["duplicates", cellOf(figure("reverse.duplicates", "count", r.duplicates)), "reverse_duplicates"]);
    pairs.push(["reordered", cellOf(figure("reverse.reordered", "count", r.reordered)), "reverse_reordered"]);
  }
  if (r.jitter_ms != null) pairs.push(["jitter", cellOf(figure("reverse.jitter_ms", "ms", r.jitter_ms)), "reverse_jitter"]);
  const src = r.source;
  pairs.push(src
    ? ["source sent", cellOf(figure("reverse.source.tx_messages", "count", src.tx_messages), " msgs · ",
      figure("reverse.source.tx_bytes", "bytes", src.tx_bytes)), "source"]
    : ["source sent", "not known: the source was not asked", "source"]);
  return pairs;
}

/**
 * [label, value, key] rows of a run's summary (the same keys while running and after).
 *
 * Every figure is a `figure()` element naming its summary field and unit, so what a row shows
 * can be checked against the API's document; a figure the run does not measure is left out
 * (bulk over TCP counts no messages back, a sink's run has no replies) rather than shown as 0.
 */
export function summaryPairs(run) {
  const s = run.summary;
  const m = measures(run);
  const pairs = [
    ["status", run.status + (run.error ? ` (${run.error})` : ""), "status"],
    ["started", run.started_at ? timeEl(run.started_at) : "–", "started"],
    ["took", cellOf(figure("elapsed", "seconds", s.elapsed)), "elapsed"],
    ["sent", cellOf(figure("sent", "count", s.sent), " msgs · ", figure("bytes_sent", "bytes", s.bytes_sent)), "sent"],
  ];
  if (m.bytes && m.replies) {
    pairs.push(["received", cellOf(figure("bytes_received", "bytes", s.bytes_received), " (a byte stream: no messages counted)"), "received"]);
  } else if (m.replies) {
    pairs.push(["received", cellOf(figure("received", "count", s.received), " msgs · ", figure("bytes_received", "bytes", s.bytes_received)), "received"]);
    pairs.push(["lost", cellOf(figure("lost", "count", s.lost), " (", figure("loss_pct", "pct", s.loss_pct), ")"), "lost"]);
    // TCP and TLS deliver once and in order: only datagrams can come back twice or late.
    if (!m.stream) {
      pairs.push(["duplicates", cellOf(figure("duplicates", "count", s.duplicates)), "duplicates"]);
      pairs.push(["reordered", cellOf(figure("reordered", "count", s.reordered)), "reordered"]);
    }
  }
  // null: a pattern that does not measure jitter (TCP, or UDP replies without a header).
  if (s.jitter_ms != null) pairs.push(["jitter", cellOf(figure("jitter_ms", "ms", s.jitter_ms)), "jitter"]);
  // null: a pattern that sends when it can (pingpong, TCP bulk, packet).
  const late = s.send_lateness_ms;
  if (late) {
    pairs.push(["send lateness", cellOf("mean ", figure("send_lateness_ms.mean", "ms", late.mean),
      " · max ", figure("send_lateness_ms.max", "ms", late.max)), "send_lateness"]);
  }
  // A reverse or bidir run: what came from the source; a bidir run's forward half and a
  // run at one of the lab's sinks: what arrived there, beside what was sent.
  if (s.reverse) pairs.push(...reversePairs(s, m.stream));
  // A run to a multicast group: one row per receiver on the group instead.
  if (s.receivers) pairs.push(...receiverRows(s));
  else if (!m.replies && !(run.spec || {}).reverse) pairs.push(...receiverPairs(s));
  pairs.push(["errors", errorsText(s), "errors"]);
  pairs.push(["send rate", cellOf(figure("sent_per_s", "msgrate", s.sent_per_s)), "sent_per_s"]);
  if (m.replies && !m.bytes) pairs.push(["reply rate", cellOf(figure("msgs_per_s", "msgrate", s.msgs_per_s)), "msgs_per_s"]);
  const tput = [figure("bits_per_s", "bitrate", s.bits_per_s), " sent"];
  if (m.replies) tput.push(" · ", figure("bits_per_s_received", "bitrate", s.bits_per_s_received), " received");
  pairs.push(["throughput", cellOf(...tput), "bits_per_s"]);
  return pairs;
}

/** The RTT rows of a run; one row saying why when the run times no round trips. */
export function pctPairs(run) {
  const rtt = run.summary.rtt_ms;
  const why = measures(run).noRttShort;
  if (why) return [["round trips", why, "no_rtt"]];
  if (rtt.p50 == null) return [["round trips", "none: no reply came back", "no_rtt"]];
  return PCTS.map(([label, key]) => [label, cellOf(figure(`rtt_ms.${key}`, "ms", rtt[key])), key]);
}

/**
 * Two live charts for a run: RTT percentiles and throughput, x in seconds since start.
 *
 * Each chart keeps its own data (see Chart.setData), so both grow with every pushed point.
 * explain(run) hides what the run does not measure: the RTT chart gives way to a note saying
 * why, the replies line goes for runs that count none.
 */
export function runCharts(rttNode, tputNode, height = 220, { log = false } = {}) {
  const x = { time: false, fmt: fmtSeconds, label: "since start", seconds: true, minSpan: 5, from0: true };
  const rtt = new Chart(rttNode, {
    height,
    log,
    x,
    series: [
      { label: "p50", fmt: fmtMs, axisFmt: msAxis },
      { label: "p99", fmt: fmtMs, axisFmt: msAxis },
      { label: "max", fmt: fmtMs, axisFmt: msAxis },
    ],
  });
  const tput = new Chart(tputNode, {
    height,
    x,
    series: [
      { label: "sent", fmt: fmtMsgRate },
      { label: "replies", fmt: fmtMsgRate },
      { label: "bits sent", scale: "bits", fmt: fmtBitRate },
      { label: "bits received", scale: "bits", fmt: fmtBitRate },
      // What the path delivered, counted by the receiving end (a sink or this end of a
      // reverse run), once the run has ended: the kernel's buffers do not inflate it.
      { label: "bits at the receiver", scale: "bits", fmt: fmtBitRate },
    ],
  });
  const note = el("p", { class: "muted chart-note", hidden: true });
  rttNode.after(note);
  const tputYs = (p) => [p.sent_per_s ?? null, p.msgs_per_s ?? null, p.bits_per_s ?? null, p.bits_per_s_received ?? null, null];
  return {
    rtt,
    tput,
    push(point) {
      const r = point.rtt_ms || {};
      rtt.push(point.t, [r.p50 ?? null, r.p99 ?? null, r.max ?? null]);
      tput.push(point.t, tputYs(point));
    },
    setSeries(series) {
      const points = series || [];
      const xs = points.map((p) => p.t);
      const r = (key) => points.map((p) => (p.rtt_ms ? p.rtt_ms[key] ?? null : null));
      rtt.setData([xs, r("p50"), r("p99"), r("max")]);
      const ys = points.map(tputYs);
      tput.setData([xs, ...[0, 1, 2, 3, 4].map((i) => ys.map((y) => y[i]))]);
    },
    explain(run) {
      const m = measures(run);
      rttNode.hidden = Boolean(m.noRtt);
      note.hidden = !m.noRtt;
      note.textContent = m.noRtt || "";
      tput.showSeries(2, m.replies && !m.bytes);
      tput.showSeries(4, m.replies);
      // The receiver's second i beside the run's interval i (both from their first byte).
      const s = run.summary || {};
      const rx = (s.remote && s.remote.rx_series) || (s.reverse && s.reverse.rx_series) || null;
      if (rx && rx.length && tput.data[0].length) {
        const d = tput.data;
        tput.setData([...d.slice(0, 5), d[0].map((_, i) => rx[i] ?? null)]);
      }
      tput.showSeries(5, Boolean(rx && rx.length));
    },
    lastT() {
      const xs = rtt.data[0];
      return xs.length ? xs[xs.length - 1] : -Infinity;
    },
  };
}
