// The per-step table of a scenario run: each step's count, passed, failed by kind, latency
// percentiles and a few replies that did not match, read from summary.scenario as the API
// returns it (the same while the run goes and on its result). Used by the Scenarios
// section and by the Fire and Runs results of a scenario run.
import { stepChart } from "./stepchart.js";
import { el, figure } from "./util.js";

const cellOf = (...children) => el("td", { class: "num" }, ...children);

function kindsText(kinds, base) {
  const entries = Object.entries(kinds || {}).filter(([, n]) => n).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!entries.length) return ["–"];
  const out = [];
  entries.forEach(([kind, n], i) => {
    if (i) out.push(" · ");
    out.push(el("span", { class: "mono", text: `${kind} ` }), figure(`${base}.errors_by_kind.${kind}`, "count", n));
  });
  return out;
}

/** One row per step of `figures` (summary.scenario), in the scenario's order. */
export function stepRows(figures) {
  return (figures.steps || []).map((row, i) => {
    const base = `scenario.steps.${i}`;
    const lat = row.latency_ms || {};
    const tr = el("tr", { dataset: { step: row.step, index: String(i) } },
      el("th", { scope: "row", class: "mono", text: row.step }),
      el("td", { text: row.action }),
      cellOf(figure(`${base}.count`, "count", row.count)),
      cellOf(figure(`${base}.passed`, "count", row.passed)),
      cellOf(figure(`${base}.failed`, "count", row.failed)),
      el("td", { class: "kinds" }, ...kindsText(row.errors_by_kind, base)),
      cellOf(row.latency_ms ? figure(`${base}.latency_ms.p50`, "ms", lat.p50) : "–"),
      cellOf(row.latency_ms ? figure(`${base}.latency_ms.p99`, "ms", lat.p99) : "–"),
      el("td", { class: "samples" }, el("ul", {}, ...(row.samples || []).map((s) =>
        el("li", { class: "mono", title: s.hex, text: `${s.kind}: "${s.text}"` })))));
    if (row.step === figures.worst_step) tr.classList.add("worst");
    return tr;
  });
}

/**
 * Fill `table` with the per-step figures of `summary` (a run's summary); hide `box` when
 * the run is not a scenario run. Returns whether there was a table to show.
 */
export function showSteps(box, table, summary) {
  const figures = summary && summary.scenario;
  box.hidden = !figures;
  if (!figures) return false;
  const head = el("thead", {}, el("tr", {}, ...["step", "action", "count", "passed", "failed", "failed by kind", "p50", "p99", "samples"]
    .map((name, i) => el("th", { scope: "col", class: i >= 2 && i <= 7 && i !== 5 ? "num" : null, text: name }))));
  const caption = el("caption", {},
    "Sessions ", figure("scenario.sessions", "count", figures.sessions),
    " · failed ", figure("scenario.sessions_failed", "count", figures.sessions_failed),
    " · worst step ", el("span", { class: "mono worst-step", text: figures.worst_step || "none" }));
  table.replaceChildren(caption, head, el("tbody", {}, ...stepRows(figures)));
  // The chart beside the table, drawn again with it (live while the run goes).
  const old = box.querySelector("svg.stepchart");
  const chart = stepChart(figures);
  if (old) old.replaceWith(chart);
  else box.append(chart);
  return true;
}
