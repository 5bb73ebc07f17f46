// The failures table of a run: each error kind with its count and a few sample messages,
// read from the run's summary (errors_by_kind, error_samples) as the API returns it.
import { el, fmtNum } from "./util.js";

/** [kind, count, samples] of every kind that happened, the most frequent first. */
export function failureRows(summary) {
  const samples = summary.error_samples || {};
  return Object.entries(summary.errors_by_kind || {})
    .filter(([, n]) => n)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([kind, n]) => [kind, n, samples[kind] || []]);
}

/** Fill `table` with the failures of `summary`; hide `box` when there were none. */
export function showFailures(box, table, summary) {
  const rows = failureRows(summary);
  const head = el("thead", {}, el("tr", {},
    el("th", { scope: "col", text: "error kind" }), el("th", { scope: "col", class: "num", text: "count" }),
    el("th", { scope: "col", text: "sample messages" })));
  const body = el("tbody", {}, ...rows.map(([kind, n, texts]) => el("tr", { dataset: { kind } },
    el("th", { scope: "row", class: "mono", text: kind }),
    el("td", { class: "num", text: fmtNum(n) }),
    el("td", { class: "samples" }, el("ul", {}, ...texts.map((t) => el("li", { class: "mono", text: t })))))));
  table.replaceChildren(el("caption", { class: "sr-only", text: "Failures by error kind" }), head, body);
  box.hidden = rows.length === 0;
  return rows.length;
}
