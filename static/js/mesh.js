// Mesh: the all-pairs matrix (GET /api/mesh) as a heat map, source rows by destination
// columns, each cell coloured by its UDP loss and RTT p99; a click opens the pair's figures
// and its series (GET /api/mesh/pairs/SRC/DST/series) as a chart.
import { $, api, cell, el, figure, fmtMs, fmtPct, showError, timeEl } from "./util.js";
import { Chart, msAxis } from "./charts.js";
import { registerSection } from "./state.js";

const POLL_MS = 2000;
let timer = null;
let chosen = null; // {src, dst}
let chart = null;
let matrix = null;

// Heat levels, worst first: a level applies when loss or p99 reaches its bound.
const LEVELS = [
  { name: "bad", loss: 5, p99: 500 },
  { name: "poor", loss: 1, p99: 200 },
  { name: "fair", loss: 0.1, p99: 50 },
];

/** The heat of a pair: "failing", "unknown", or a level by its UDP loss and worst p99. */
export function heat(pair) {
  if (!pair || pair.state === "unknown" || !pair.udp) return "unknown";
  if (pair.state === "failing") return "failing";
  const loss = pair.udp.loss_pct || 0;
  const p99 = Math.max(pair.udp.rtt_p99_ms || 0, (pair.tcp && pair.tcp.rtt_p99_ms) || 0);
  for (const level of LEVELS) if (loss >= level.loss || p99 >= level.p99) return level.name;
  return "good";
}

function pairsBySrc(doc) {
  const out = new Map();
  for (const row of doc.rows) {
    for (const p of row.pairs) out.set(`${p.src}\u0000${p.dst}`, { pair: p, row });
  }
  return out;
}

function heatCell(found, src, dst) {
  if (src === dst) return el("td", { class: "mesh-self", text: "·", "aria-label": "itself" });
  if (!found) return el("td", { class: "mesh-cell heat-none", text: "–" });
  const { pair } = found;
  const level = heat(pair);
  const td = el("td", {
    class: `mesh-cell heat-${level}`,
    dataset: { src, dst, state: pair.state, heat: level, at: String(found.row.at ?? "") },
    tabindex: "0",
    role: "button",
  });
  if (pair.udp) {
    td.append(
      el("span", { class: "mesh-line" }, figure("udp.rtt_p99_ms", "ms", pair.udp.rtt_p99_ms)),
      el("span", { class: "mesh-line muted" }, figure("udp.loss_pct", "pct", pair.udp.loss_pct)),
    );
  } else {
    td.append(el("span", { class: "mesh-line", text: pair.state }));
  }
  td.title = `${src} → ${dst}: ${pair.state}${pair.last_error ? ` (${pair.last_error})` : ""}`;
  td.addEventListener("click", () => choose(src, dst));
  td.addEventListener("keydown", (ev) => { if (ev.key === "Enter") choose(src, dst); });
  if (chosen && chosen.src === src && chosen.dst === dst) td.classList.add("chosen");
  return td;
}

function render(doc) {
  matrix = doc;
  $("#mesh-empty").hidden = doc.enabled;
  $("#mesh-node").textContent = doc.enabled ? `this node: ${doc.node}` : "";
  const found = pairsBySrc(doc);
  const nodes = doc.nodes;
  const head = el("tr", {}, el("th", { text: "from \\ to" }), ...nodes.map((n) => el("th", { scope: "col", text: n })));
  const rows = nodes.map((src) => {
    const row = doc.rows.find((r) => r.src === src);
    const th = el("th", { scope: "row", dataset: { status: row ? row.status : "unknown" } }, src);
    if (row && row.status === "unreachable") th.append(el("span", { class: "pill bad", text: " unreachable" }));
    return el("tr", { dataset: { src } }, th, ...nodes.map((dst) => heatCell(found.get(`${src}\u0000${dst}`), src, dst)));
  });
  $("#mesh-matrix thead").replaceChildren(head);
  $("#mesh-matrix tbody").replaceChildren(...rows);
  $("#mesh-matrix").dataset.at = String(doc.rows[0]?.at ?? "");
  if (chosen) showPair(found.get(`${chosen.src}\u0000${chosen.dst}`));
}

function flowRows(name, f) {
  if (!f) return [el("tr", {}, cell(name), el("td", { colspan: "8", text: "not measured yet" }))];
  return [el("tr", { dataset: { flow: name } },
    cell(name),
    el("td", { class: "num" }, figure(`${name}.rtt_p50_ms`, "ms", f.rtt_p50_ms)),
    el("td", { class: "num" }, figure(`${name}.rtt_p99_ms`, "ms", f.rtt_p99_ms)),
    el("td", { class: "num" }, figure(`${name}.loss_pct`, "pct", f.loss_pct)),
    el("td", { class: "num" }, figure(`${name}.sent`, "count", f.sent)),
    el("td", { class: "num" }, figure(`${name}.duplicates`, "count", f.duplicates)),
    el("td", { class: "num" }, figure(`${name}.reordered`, "count", f.reordered)),
    el("td", { class: "num" }, figure(`${name}.jitter_ms`, "ms", f.jitter_ms)),
    el("td", { class: "num" }, f.retransmits == null ? "–" : figure(`${name}.retransmits`, "count", f.retransmits)))];
}

function showPair(found) {
  const box = $("#mesh-pair");
  if (!found) { box.hidden = true; return; }
  const { pair } = found;
  box.hidden = false;
  box.dataset.src = pair.src;
  box.dataset.dst = pair.dst;
  $("#mesh-pair-title").textContent = `${pair.src} → ${pair.dst}`;
  const state = $("#mesh-pair-state");
  state.replaceChildren(
    el("span", { class: `pill ${pair.state === "ok" ? "ok" : pair.state === "failing" ? "bad" : ""}`, text: pair.state }),
    " since ", pair.since ? timeEl(pair.since) : "–",
    pair.last_error ? el("span", { class: "muted" }, " · last error: ", pair.last_error, " ", pair.error_at ? timeEl(pair.error_at) : "") : "",
  );
  $("#mesh-pair-flows tbody").replaceChildren(...flowRows("udp", pair.udp), ...flowRows("tcp", pair.tcp));
}

async function loadSeries() {
  if (!chosen) return;
  const { src, dst } = chosen;
  const doc = await api("GET", `/api/mesh/pairs/${encodeURIComponent(src)}/${encodeURIComponent(dst)}/series`);
  if (!chosen || chosen.src !== src || chosen.dst !== dst) return;
  const columns = doc.columns;
  const pick = (name) => doc.points.map((p) => p[columns.indexOf(name)]);
  const xs = pick("t");
  if (!chart) {
    chart = new Chart($("#mesh-chart"), {
      series: [
        { label: "UDP p50", fmt: fmtMs, axisFmt: msAxis },
        { label: "UDP p99", fmt: fmtMs },
        { label: "TCP p50", fmt: fmtMs },
        { label: "TCP p99", fmt: fmtMs },
        { label: "UDP loss", fmt: fmtPct, scale: "pct" },
      ],
      x: { time: true, minSpan: 30 },
      height: 220,
    });
  }
  chart.setData([xs, pick("udp_rtt_p50_ms"), pick("udp_rtt_p99_ms"), pick("tcp_rtt_p50_ms"), pick("tcp_rtt_p99_ms"), pick("udp_loss_pct")]);
}

function choose(src, dst) {
  chosen = { src, dst };
  if (matrix) render(matrix);
  loadSeries().catch((err) => showError($("#mesh-error"), err));
}

async function poll() {
  try {
    render(await api("GET", "/api/mesh"));
    $("#mesh-error").hidden = true;
    if (chosen) await loadSeries();
  } catch (err) {
    showError($("#mesh-error"), err);
  }
}

registerSection("mesh", {
  show() {
    poll();
    if (!timer) timer = setInterval(poll, POLL_MS);
  },
  hide() {
    clearInterval(timer);
    timer = null;
  },
});
