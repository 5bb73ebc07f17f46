// Runs: the history, one run's details (percentiles, histogram, series), two side by side.
import { $, api, cell, el, fmtMs, fmtMsgRate, fmtNum, fmtSeconds, kvRows, showError, timeEl } from "./util.js";
import { Chart, msAxis } from "./charts.js";
import { feed } from "./feed.js";
import { registerSection, state } from "./state.js";
import { PCTS, describeSpec, pctPairs, runCharts, statusPill, summaryPairs } from "./runview.js";
import { showFailures } from "./failures.js";

let items = [];
const ticked = new Set();
let detailCharts = null;
let histChart = null;
let compareChart = null;
let visible = false;

function renderList() {
  $("#runs-table tbody").replaceChildren(...items.map((r) => {
    const s = r.summary;
    const rtt = s.rtt_ms;
    const box = el("input", { type: "checkbox", "aria-label": `compare run ${r.id}`, checked: ticked.has(r.id) });
    box.addEventListener("change", () => {
      if (box.checked) ticked.add(r.id); else ticked.delete(r.id);
      while (ticked.size > 2) ticked.delete(ticked.values().next().value);
      renderList();
    });
    const open = el("a", { href: `#runs/${r.id}`, class: "mono", text: r.id });
    return el("tr", { dataset: { id: r.id } },
      cell(box), cell(open), cell(statusPill(r.status)), cell(r.spec?.pattern || "pingpong"),
      cell(r.spec?.target || "–"), cell(fmtNum(s.sent), "num"), cell(fmtNum(s.received), "num"),
      cell(fmtMs(rtt.p50), "num"), cell(fmtMs(rtt.p99), "num"), cell(fmtMsgRate(s.msgs_per_s), "num"),
      cell(timeEl(r.started_at || r.created_at)), cell(fmtSeconds(s.elapsed), "num"));
  }));
  $("#compare-button").disabled = ticked.size !== 2;
  $("#runs-msg").textContent = items.length ? `${fmtNum(items.length)} runs, newest first` : "no runs yet";
}

async function loadList() {
  try {
    items = (await api("GET", "/api/runs?limit=200")).items || [];
    renderList();
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

function ensureDetailCharts() {
  if (detailCharts) return;
  const hist = $("#chart-detail-hist");
  histChart = new Chart(hist, {
    x: { time: false, fmt: (v) => labelOf(v), label: "RTT up to", integer: true },
    series: [{ label: "messages", fmt: (v) => fmtNum(v), bars: true, integer: true }],
  });
  const series = $("#chart-detail-series");
  const rtt = el("div", { class: "chart", "data-points": "0", id: "chart-detail-rtt" });
  const tput = el("div", { class: "chart", "data-points": "0", id: "chart-detail-tput" });
  series.replaceChildren(rtt, tput);
  detailCharts = runCharts(rtt, tput);
}

let histLabels = [];
function labelOf(index) {
  const upper = histLabels[Math.round(index)];
  return upper == null ? "" : fmtMs(upper);
}

async function showDetail(id) {
  const box = $("#run-detail");
  try {
    const run = await api("GET", `/api/runs/${id}`);
    ensureDetailCharts();
    $("#detail-id").textContent = run.id;
    $("#detail-status").replaceWith(Object.assign(statusPill(run.status), { id: "detail-status" }));
    $("#detail-spec").textContent = describeSpec(run.spec);
    $("#export-json").href = `/api/runs/${run.id}/export?format=json`;
    $("#export-json").download = `run-${run.id}.json`;
    $("#export-csv").href = `/api/runs/${run.id}/export?format=csv`;
    $("#export-csv").download = `run-${run.id}.csv`;
    $("#export-html").href = `/api/runs/${run.id}/report.html`;
    $("#export-html").download = `run-${run.id}-report.html`;
    $("#detail-summary tbody").replaceChildren(...kvRows(summaryPairs(run)));
    $("#detail-pct tbody").replaceChildren(...kvRows(pctPairs(run)));
    showFailures($("#detail-failures-box"), $("#detail-failures"), run.summary);
    const hist = run.summary.histogram;
    histLabels = hist.map((b) => b[0]);
    histChart.setData([hist.map((b, i) => i), hist.map((b) => b[1])]);
    $("#chart-detail-hist").closest("figure").hidden = hist.length === 0;
    detailCharts.setSeries(run.series);
    $("#chart-detail-series").dataset.points = String((run.series || []).length);
    box.hidden = false;
    $("#run-compare").hidden = true;
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

function delta(a, b) {
  if (a == null || b == null || a === 0) return "–";
  const pct = ((b - a) / Math.abs(a)) * 100;
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(1)} %`;
}

async function compare() {
  const ids = [...ticked];
  if (ids.length !== 2) return;
  try {
    const [a, b] = await Promise.all(ids.map((id) => api("GET", `/api/runs/${id}`)));
    const sa = a.summary;
    const sb = b.summary;
    const ra = sa.rtt_ms;
    const rb = sb.rtt_ms;
    $("#compare-table thead").replaceChildren(el("tr", {},
      el("th", { scope: "col", text: "" }), el("th", { scope: "col", class: "num", text: `run ${a.id}` }),
      el("th", { scope: "col", class: "num", text: `run ${b.id}` }), el("th", { scope: "col", class: "num", text: "B vs A" })));
    const rows = [
      ["spec", describeSpec(a.spec), describeSpec(b.spec), ""],
      ["status", a.status, b.status, ""],
      ["sent", fmtNum(sa.sent), fmtNum(sb.sent), delta(sa.sent, sb.sent)],
      ["received", fmtNum(sa.received), fmtNum(sb.received), delta(sa.received, sb.received)],
      ["lost", fmtNum(sa.lost), fmtNum(sb.lost), ""],
      ["errors", fmtNum(sa.errors), fmtNum(sb.errors), ""],
      ["message rate", fmtMsgRate(sa.msgs_per_s), fmtMsgRate(sb.msgs_per_s), delta(sa.msgs_per_s, sb.msgs_per_s)],
      ...PCTS.map(([label, key]) => [`RTT ${label}`, fmtMs(ra[key]), fmtMs(rb[key]), delta(ra[key], rb[key])]),
    ];
    $("#compare-table tbody").replaceChildren(...rows.map(([label, va, vb, d]) => el("tr", { dataset: { key: label } },
      el("th", { scope: "row", text: label }), cell(va, "num"), cell(vb, "num"), cell(d, "num"))));
    if (!compareChart) {
      compareChart = new Chart($("#chart-compare"), {
        x: { time: false, fmt: (v) => `${+v.toFixed(1)} s`, label: "since start", seconds: true, minSpan: 5, from0: true },
        series: [
          { label: "A p50", fmt: fmtMs, axisFmt: msAxis, spanGaps: true },
          { label: "B p50", fmt: fmtMs, axisFmt: msAxis, spanGaps: true },
        ],
      });
    }
    // Both series on one x axis: seconds since each run's own start.
    const key = (t) => Math.round(t * 100) / 100;
    const xs = [...new Set([...(a.series || []), ...(b.series || [])].map((p) => key(p.t)))].sort((x, y) => x - y);
    const at = (series) => {
      const map = new Map((series || []).map((p) => [key(p.t), p.rtt_ms ? p.rtt_ms.p50 : null]));
      return xs.map((x) => map.get(x) ?? null);
    };
    compareChart.setData([xs, at(a.series), at(b.series)]);
    $("#run-compare").hidden = false;
    $("#run-detail").hidden = true;
    $("#run-compare").scrollIntoView({ block: "nearest" });
  } catch (err) {
    $("#runs-msg").textContent = err.message;
  }
}

$("#compare-button").addEventListener("click", compare);
$("#runs-refresh").addEventListener("click", loadList);
document.addEventListener("socketlab:run-ended", () => { if (visible) loadList(); });

// Runs started elsewhere (the API, the CLI, another browser) appear in the list when a tick
// first carries them, and take their final status when the feed says they ended.
let liveKey = "";
feed.on("tick", () => {
  const key = state.runs.map((r) => r.id).join(",");
  if (key === liveKey) return;
  const appeared = state.runs.some((r) => !liveKey.split(",").includes(r.id));
  liveKey = key;
  if (appeared && visible) loadList();
});
feed.on("run.ended", () => { if (visible) loadList(); });

registerSection("runs", {
  show(arg) {
    visible = true;
    loadList();
    if (arg) showDetail(arg);
  },
  hide() { visible = false; },
});
