// The per-step chart of a scenario run: one row per step, a bar of its sessions split into
// passed and failed, and for the steps that wait for a reply a bar of their latency (p50,
// with p99 behind it). Inline SVG drawn from summary.scenario, so it needs no asset and is
// the same on the dashboard, on a run's result and in the offline report.
import { fmtMs, fmtNum } from "./util.js";

const NS = "http://www.w3.org/2000/svg";
const ROW = 22;
const LABEL = 150;
const BAR = 260;
const GAP = 24;

function node(tag, attrs = {}, text = null) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text != null) n.textContent = text;
  return n;
}

/** An SVG chart of `figures` (summary.scenario): counts on the left, latency on the right. */
export function stepChart(figures) {
  const rows = figures.steps || [];
  const most = Math.max(1, ...rows.map((r) => r.count));
  const slowest = Math.max(1e-9, ...rows.map((r) => (r.latency_ms ? r.latency_ms.p99 || 0 : 0)));
  const width = LABEL + BAR + GAP + BAR + 90;
  const svg = node("svg", { class: "stepchart", width, height: ROW * (rows.length + 1), role: "img",
    "aria-label": "passed and failed per step, and latency per step" });
  svg.append(node("text", { x: LABEL, y: 14, class: "head" }, "sessions: passed / failed"));
  svg.append(node("text", { x: LABEL + BAR + GAP, y: 14, class: "head" }, "latency: p50 / p99"));
  rows.forEach((row, i) => {
    const y = ROW * (i + 1);
    const g = node("g", { "data-step": row.step, "data-passed": row.passed, "data-failed": row.failed });
    g.append(node("text", { x: 0, y: y + 14, class: "label" }, `${row.step} ${row.action}`));
    const passed = (BAR * row.passed) / most;
    const failed = (BAR * row.failed) / most;
    g.append(node("rect", { x: LABEL, y: y + 3, width: passed, height: ROW - 8, class: "passed" }));
    g.append(node("rect", { x: LABEL + passed, y: y + 3, width: failed, height: ROW - 8, class: "failed" }));
    const lat = row.latency_ms;
    if (lat && lat.p99 != null) {
      const x0 = LABEL + BAR + GAP;
      g.setAttribute("data-p50", lat.p50);
      g.setAttribute("data-p99", lat.p99);
      g.append(node("rect", { x: x0, y: y + 3, width: (BAR * lat.p99) / slowest, height: ROW - 8, class: "p99" }));
      g.append(node("rect", { x: x0, y: y + 6, width: (BAR * lat.p50) / slowest, height: ROW - 14, class: "p50" }));
      g.append(node("text", { x: x0 + BAR + 6, y: y + 14, class: "value" }, `${fmtMs(lat.p50)} / ${fmtMs(lat.p99)}`));
    }
    g.append(node("title", {}, `${row.step}: ${fmtNum(row.passed)} passed, ${fmtNum(row.failed)} failed`));
    svg.append(g);
  });
  return svg;
}
