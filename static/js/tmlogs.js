// Telemetry, the log view: the syslog collectors' newest records from GET /api/telemetry/logs,
// live while shown, filtered by facility, severity (that or worse), host, app and message
// text, with every collector's exact counts per severity (records no longer kept included).
import { $, api, cell, el, fmtNum, timeEl } from "./util.js";

const LIMIT = 200;

function filters() {
  const form = $("#tm-log-filter");
  const params = new URLSearchParams({ limit: String(LIMIT) });
  for (const name of ["facility", "severity", "host", "app", "q"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function structuredText(sd) {
  return Object.entries(sd || {}).map(([id, params]) =>
    `[${id}${Object.entries(params).map(([k, v]) => ` ${k}="${v}"`).join("")}]`).join(" ");
}

function row(r) {
  const sd = structuredText(r.structured);
  return el("tr", { dataset: { seq: String(r.seq), listener: r.listener_id, severity: r.severity_name, facility: r.facility_name } },
    cell(timeEl(r.time ?? r.received_at)), cell(r.facility_name), cell(r.severity_name, `sev sev-${r.severity}`),
    cell(r.host ?? "–", "mono"), cell(r.app ?? "–", "mono"),
    cell(sd ? `${r.message} ${sd}` : r.message, "mono tm-msg"));
}

/** Severity counts summed over the collectors, emerg first (the order of the severity
 * filter's options, which the server renders from its one list). */
function countsLine(counts) {
  const total = {};
  for (const c of Object.values(counts)) for (const [name, n] of Object.entries(c.by_severity)) total[name] = (total[name] || 0) + n;
  const order = [...$("#tm-log-filter select[name=severity]").options].map((o) => o.value).filter(Boolean);
  return order.filter((name) => name in total).map((name) => [name, total[name]]).map(([name, n]) =>
    el("span", { class: "tm-sev-count", dataset: { severity: name, count: String(n) } }, `${name} ${fmtNum(n)}`));
}

/** Fetch the records the filters pick and redraw the table and the counts. */
export async function refreshLogs() {
  let doc;
  try {
    doc = await api("GET", `/api/telemetry/logs?${filters()}`);
  } catch (err) {
    $("#tm-log-status").textContent = err.message;
    return;
  }
  const collectors = Object.keys(doc.counts).length;
  $("#tm-logs-box").hidden = collectors === 0;
  if (!collectors) return;
  const rows = doc.items.map(row);
  $("#tm-logs tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: "no records match" }))]));
  const parts = countsLine(doc.counts);
  $("#tm-log-counts").replaceChildren(...parts.flatMap((p, i) => (i ? [" · ", p] : [p])));
  const kept = Object.values(doc.counts).reduce((n, c) => n + c.kept, 0);
  $("#tm-log-status").textContent = `${fmtNum(rows.length)} shown of ${fmtNum(kept)} kept`;
}

let bound = false;

/** Redraw at once when a filter changes (not only at the next poll). */
export function bindLogFilters() {
  if (bound) return;
  bound = true;
  const form = $("#tm-log-filter");
  form.addEventListener("input", () => refreshLogs());
  form.addEventListener("submit", (event) => { event.preventDefault(); refreshLogs(); });
}
