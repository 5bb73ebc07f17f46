// Telemetry, the series view: every collector's series (StatsD, InfluxDB line protocol,
// Graphite, syslog alike) from GET /api/telemetry/series, searchable by name, field or tag,
// each with its last value (kept when traffic stops); a click opens the series' chart over
// time: its older buckets (mean per bucket) then its raw points.
import { $, api, cell, el, fmtNum, timeEl } from "./util.js";
import { Chart } from "./charts.js";

const LIMIT = 200;
// Open charts by series id.
const charts = new Map();
let searched = "";

/** One series' id: collector, name, field and tags, as the page keys rows and charts. */
function seriesId(s) {
  const tags = Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(",");
  return `${s.listener_id}|${s.name}|${s.field}|${tags}`;
}

function tagsText(tags) {
  return Object.entries(tags).map(([k, v]) => (v === "" ? k : `${k}=${v}`)).join(", ");
}

/** A value as the page shows it: numbers through the one count formatter, the rest as sent. */
export function valueText(v) {
  if (typeof v === "number") return fmtNum(v, Math.abs(v) < 100 ? 3 : 1);
  if (typeof v === "boolean") return v ? "true" : "false";
  return v == null ? "–" : String(v);
}

function numeric(v) {
  if (typeof v === "boolean") return v ? 1 : 0;
  return typeof v === "number" ? v : null;
}

/** A series' history as chart columns: buckets (their mean, or last value) then points. */
export function chartColumns(doc) {
  const xs = [];
  const ys = [];
  for (const b of doc.buckets || []) { xs.push(b.t); ys.push(b.mean ?? numeric(b.last)); }
  for (const [t, v] of doc.points || []) { xs.push(t); ys.push(numeric(v)); }
  return [xs, ys];
}

function query(extra) {
  const params = new URLSearchParams({ limit: String(LIMIT), ...extra });
  return `/api/telemetry/series?${params}`;
}

/** A tag key or value in the series query's tag list: a comma or backslash escaped, as
 * InfluxDB tags may hold them ("host=web 1,eu=west"). */
export function tagText(text) {
  return text.replace(/[\\,]/g, (c) => `\\${c}`);
}

async function fetchOne(s) {
  const params = { listener: s.listener_id, name: s.name, field: s.field, limit: "50" };
  // A key with a colon cannot be told from its value in k:v: left out of the filter (the
  // exact match below still picks the series).
  const tags = Object.entries(s.tags).filter(([k]) => !k.includes(":"))
    .map(([k, v]) => `${tagText(k)}:${tagText(v)}`).join(",");
  if (tags) params.tag = tags;
  const doc = await api("GET", query(params));
  // The tag filter asks for "at least these tags": pick the series with exactly them.
  return doc.items.find((item) => seriesId(item) === seriesId(s)) || null;
}

async function toggleChart(s) {
  const id = seriesId(s);
  if (charts.has(id)) {
    charts.get(id).box.remove();
    charts.delete(id);
  } else {
    const container = el("div", { class: "chart", dataset: { points: "0" } });
    const caption = `${s.name} · ${s.field}${Object.keys(s.tags).length ? ` · ${tagsText(s.tags)}` : ""}`;
    const box = el("figure", { class: "chart-box", dataset: { series: id } },
      el("figcaption", { text: caption }), container);
    $("#tm-series-charts").append(box);
    const chart = new Chart(container, { series: [{ label: s.field, fmt: valueText }], x: { time: true }, height: 180 });
    charts.set(id, { box, chart, s });
    await drawChart(charts.get(id));
  }
  for (const b of document.querySelectorAll("#tm-series button.tm-metric")) {
    b.setAttribute("aria-pressed", charts.has(b.dataset.series) ? "true" : "false");
  }
}

async function drawChart(entry) {
  try {
    const doc = await fetchOne(entry.s);
    if (doc) entry.chart.setData(chartColumns(doc));
  } catch (err) {
    entry.box.dataset.error = err.message;
  }
}

function row(s) {
  const id = seriesId(s);
  const button = el("button", { type: "button", class: "tm-metric", title: s.name, text: s.name,
    "aria-pressed": charts.has(id) ? "true" : "false", dataset: { series: id } });
  button.addEventListener("click", () => toggleChart(s));
  const last = s.last;
  return el("tr", { dataset: { series: id, name: s.name, field: s.field } },
    cell(s.listener_id, "mono"), cell(button, "mono tm-name"), cell(s.field, "mono"),
    cell(tagsText(s.tags), "mono tm-name"),
    cell(last ? valueText(last.value) : "–", "num tm-last"),
    cell(last ? timeEl(last.t) : "–"));
}

/** Fetch the series list (the search box's text, if any) and redraw it and the open charts. */
export async function refreshSeries() {
  const text = $("#tm-search").value.trim();
  let doc;
  try {
    doc = await api("GET", query(text ? { q: text, history: "false" } : { history: "false" }));
  } catch (err) {
    $("#tm-series-status").textContent = err.message;
    return;
  }
  searched = text;
  const rows = doc.items.map(row);
  const empty = el("tr", {}, el("td", { colspan: "6", class: "muted", text: text ? "no series match" : "no series yet" }));
  $("#tm-series tbody").replaceChildren(...(rows.length ? rows : [empty]));
  const shown = doc.items.length < doc.total ? `the first ${fmtNum(doc.items.length)} of ` : "";
  $("#tm-series-status").textContent = `${shown}${fmtNum(doc.total)} series${searched ? ` matching “${searched}”` : ""}`;
  $("#tm-series-status").dataset.total = String(doc.total);
  await Promise.all([...charts.values()].map(drawChart));
}
