// How a run reads in tables and charts; shared by the fire and runs sections.
import { el, fmtBitRate, fmtBytes, fmtMs, fmtMsgRate, fmtNum, fmtPct, fmtSeconds, timeEl } from "./util.js";
import { Chart, msAxis } from "./charts.js";

export const PCTS = [["min", "min"], ["p50", "p50"], ["p90", "p90"], ["p99", "p99"], ["p99.9", "p999"], ["max", "max"], ["mean", "mean"]];

export function statusPill(status) {
  const cls = { finished: "ok", running: "run", stopped: "warn", failed: "bad", cancelled: "warn" }[status] || "";
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
  const total = fmtNum(s.errors);
  return kinds.length ? `${total} (${kinds.map(([k, n]) => `${k} ${fmtNum(n)}`).join(", ")})` : total;
}

/** [label, value, key] rows of a run's summary (the same keys while running and after). */
export function summaryPairs(run) {
  const s = run.summary;
  const pairs = [
    ["status", run.status + (run.error ? ` (${run.error})` : ""), "status"],
    ["started", run.started_at ? timeEl(run.started_at) : "–", "started"],
    ["took", fmtSeconds(s.elapsed), "elapsed"],
    ["sent", `${fmtNum(s.sent)} msgs · ${fmtBytes(s.bytes_sent)}`, "sent"],
    ["received", `${fmtNum(s.received)} msgs · ${fmtBytes(s.bytes_received)}`, "received"],
    ["lost", `${fmtNum(s.lost)} (${fmtPct(s.loss_pct)})`, "lost"],
    ["duplicates", fmtNum(s.duplicates), "duplicates"],
    ["reordered", fmtNum(s.reordered), "reordered"],
  ];
  // null: a pattern that does not measure jitter (TCP, or UDP replies without a header).
  if (s.jitter_ms !== null) pairs.push(["jitter", fmtMs(s.jitter_ms), "jitter"]);
  // null: a pattern that sends when it can (pingpong, TCP bulk, packet).
  const late = s.send_lateness_ms;
  if (late) pairs.push(["send lateness", `mean ${fmtMs(late.mean)} · max ${fmtMs(late.max)}`, "send_lateness"]);
  // A run at one of the lab's sinks: what arrived there, beside what was sent.
  const r = s.remote;
  if (r && r.received != null) {
    pairs.push(["at the receiver", `${fmtNum(r.received)} msgs · lost ${fmtNum(r.lost)} (${fmtPct(r.loss_pct)})`, "remote"]);
  }
  pairs.push(["errors", errorsText(s), "errors"]);
  pairs.push(["message rate", fmtMsgRate(s.msgs_per_s), "msgs_per_s"]);
  pairs.push(["throughput", fmtBitRate(s.bits_per_s), "bits_per_s"]);
  return pairs;
}

export function pctPairs(run) {
  const rtt = run.summary.rtt_ms;
  return PCTS.map(([label, key]) => [label, fmtMs(rtt[key]), key]);
}

/** Two live charts for a run: RTT percentiles (log: on a log scale) and throughput, x in
 * seconds since start. */
export function runCharts(rttNode, tputNode, height = 220, { log = false } = {}) {
  const secs = (v) => `${+v.toFixed(1)} s`;
  const rtt = new Chart(rttNode, {
    height,
    log,
    x: { time: false, fmt: secs, label: "since start", seconds: true, minSpan: 5, from0: true },
    series: [
      { label: "p50", fmt: fmtMs, axisFmt: msAxis },
      { label: "p99", fmt: fmtMs, axisFmt: msAxis },
      { label: "max", fmt: fmtMs, axisFmt: msAxis },
    ],
  });
  const tput = new Chart(tputNode, {
    height,
    x: { time: false, fmt: secs, label: "since start", seconds: true, minSpan: 5, from0: true },
    series: [
      { label: "replies", fmt: fmtMsgRate, axisFmt: (v) => `${fmtNum(v)}/s` },
      { label: "sent", scale: "bits", fmt: fmtBitRate, axisFmt: fmtBitRate },
    ],
  });
  return {
    rtt,
    tput,
    push(point) {
      const r = point.rtt_ms || {};
      rtt.push(point.t, [r.p50 ?? null, r.p99 ?? null, r.max ?? null]);
      tput.push(point.t, [point.msgs_per_s ?? null, point.bits_per_s ?? null]);
    },
    setSeries(series) {
      const points = series || [];
      const xs = points.map((p) => p.t);
      const r = (key) => points.map((p) => (p.rtt_ms ? p.rtt_ms[key] ?? null : null));
      rtt.setData([xs, r("p50"), r("p99"), r("max")]);
      tput.setData([xs, points.map((p) => p.msgs_per_s ?? null), points.map((p) => p.bits_per_s ?? null)]);
    },
    lastT() {
      const xs = rtt.data[0];
      return xs.length ? xs[xs.length - 1] : -Infinity;
    },
  };
}
