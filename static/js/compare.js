// Compare any number of saved runs: their figures side by side, their RTT histograms overlaid,
// and one percentile of each over time, all from the API's documents of each run.
import { $, api, cell, el, fmtMs, fmtMsgRate, fmtNum } from "./util.js";
import { Chart, msAxis } from "./charts.js";
import { Histogram } from "./histogram.js";
import { PCTS, describeSpec } from "./runview.js";

let docs = [];
let overTime = null;
let histogram = null;
let logScale = false;

function delta(a, b) {
  if (a == null || b == null || a === 0) return "–";
  const pct = ((b - a) / Math.abs(a)) * 100;
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(1)} %`;
}

function renderTable() {
  // Two runs keep their "B vs A" column; more runs are read across the row.
  const pair = docs.length === 2;
  $("#compare-table thead").replaceChildren(el("tr", {},
    el("th", { scope: "col", text: "" }),
    ...docs.map((d) => el("th", { scope: "col", class: "num", text: `run ${d.id}` })),
    pair ? el("th", { scope: "col", class: "num", text: "B vs A" }) : null));
  const row = (label, values, d = null) => [label, values, d];
  const each = (fn) => docs.map((d) => fn(d.summary, d));
  const pairDelta = (fn) => (pair ? delta(fn(docs[0].summary), fn(docs[1].summary)) : null);
  const rows = [
    row("spec", each((s, d) => describeSpec(d.spec)), pair ? "" : null),
    row("labels", each((s, d) => (d.labels || []).join(", ") || "–"), pair ? "" : null),
    row("status", each((s, d) => d.status), pair ? "" : null),
    row("sent", each((s) => fmtNum(s.sent)), pairDelta((s) => s.sent)),
    row("received", each((s) => fmtNum(s.received)), pairDelta((s) => s.received)),
    row("lost", each((s) => fmtNum(s.lost)), pair ? "" : null),
    row("errors", each((s) => fmtNum(s.errors)), pair ? "" : null),
    row("message rate", each((s) => fmtMsgRate(s.msgs_per_s)), pairDelta((s) => s.msgs_per_s)),
    ...PCTS.map(([label, key]) => row(`RTT ${label}`, each((s) => fmtMs(s.rtt_ms[key])), pairDelta((s) => s.rtt_ms[key]))),
  ];
  // Specs and labels wrap: with many runs, one line each would push columns off the table.
  const cls = (label) => (label === "spec" || label === "labels" ? "num wrap" : "num");
  $("#compare-table tbody").replaceChildren(...rows.map(([label, values, d]) => el("tr", { dataset: { key: label } },
    el("th", { scope: "row", text: label }), ...values.map((v) => cell(v, cls(label))), d == null ? null : cell(d, "num"))));
}

function renderOverTime() {
  const pct = $("#compare-pct").value;
  const label = { p50: "p50", p99: "p99", max: "max" }[pct];
  if (overTime) overTime.destroy();
  overTime = new Chart($("#chart-compare"), {
    log: logScale,
    x: { time: false, fmt: (v) => `${+v.toFixed(1)} s`, label: "since start", seconds: true, minSpan: 5, from0: true },
    series: docs.map((d) => ({ label: `${d.id} ${label}`, fmt: fmtMs, axisFmt: msAxis, spanGaps: true })),
  });
  // Every run on one x axis: seconds since each run's own start.
  const key = (t) => Math.round(t * 100) / 100;
  const xs = [...new Set(docs.flatMap((d) => (d.series || []).map((p) => key(p.t))))].sort((a, b) => a - b);
  const column = (series) => {
    const at = new Map((series || []).map((p) => [key(p.t), p.rtt_ms ? p.rtt_ms[pct] ?? null : null]));
    return xs.map((x) => at.get(x) ?? null);
  };
  overTime.setData([xs, ...docs.map((d) => column(d.series))]);
}

/** Show runs `ids` side by side (any number, two or more). */
export async function compareRuns(ids, { log = false } = {}) {
  logScale = log;
  const [runs, hists] = await Promise.all([
    Promise.all(ids.map((id) => api("GET", `/api/runs/${id}`))),
    Promise.all(ids.map((id) => api("GET", `/api/runs/${id}/histogram`))),
  ]);
  docs = runs;
  $("#compare-count").textContent = `(${fmtNum(docs.length)} runs)`;
  renderTable();
  $("#run-compare").hidden = false;
  if (!histogram) histogram = new Histogram($("#chart-compare-hist"), $("#compare-hist-markers"));
  histogram.show(docs.map((d, i) => ({ id: d.id, label: `run ${d.id}`, histogram: hists[i] })));
  renderOverTime();
}

/** Redraw the RTT-over-time chart on a log (or linear) scale. */
export function setCompareLog(log) {
  logScale = log;
  if (docs.length) renderOverTime();
}

$("#compare-pct").addEventListener("change", () => { if (docs.length) renderOverTime(); });
