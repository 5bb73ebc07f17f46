// Telemetry, the StatsD view: the StatsD collectors' open interval and last flush (from the
// GET /api/telemetry document the section polls); every configured timer percentile; each
// metric's chart over the kept flushes, the last flush that had traffic and a sample of bad
// lines, from GET /api/telemetry/{id}/history.
import { $, api, cell, el, fmtMs, fmtNum, timeEl } from "./util.js";
import { Chart } from "./charts.js";

const DEFAULT_PCTS = ["p50", "p90", "p95", "p99"];
let shownPcts = [];
// Histories by listener id, fetched once per flush (or when a chart opens).
const histories = new Map();
const fetchedAt = new Map();
// Open charts by "listener|section|key".
const charts = new Map();

/** The timers' percentile keys (p50, p95, p99.9, ...), in numeric order; without timers,
 * those the collectors are configured with (from their history), else StatsD's defaults. */
export function percentileKeys(timerDocs) {
  const keys = new Set();
  for (const t of timerDocs) for (const k of Object.keys(t)) if (/^p\d/.test(k)) keys.add(k);
  if (!keys.size) for (const h of histories.values()) for (const p of h.percentiles || []) keys.add(`p${p}`);
  const list = keys.size ? [...keys] : DEFAULT_PCTS;
  return list.sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
}

function timersHeader(pcts) {
  if (pcts.join() === shownPcts.join()) return;
  shownPcts = pcts;
  const th = (text, cls) => el("th", { scope: "col", class: cls, text });
  $("#tm-timers thead").replaceChildren(el("tr", {}, th("name"), th("count", "num"), th("min", "num"),
    ...pcts.map((p) => th(p, "num")), th("max", "num"), th("mean", "num")));
}

/** A metric's name cell: ellipsis when long, the whole name on hover, a click for its chart. */
function nameCell(label, source, section, key) {
  const id = `${source}|${section}|${key}`;
  const button = el("button", { type: "button", class: "tm-metric", title: label, text: label,
    "aria-pressed": charts.has(id) ? "true" : "false", dataset: { chart: id } });
  button.addEventListener("click", () => toggleChart(source, section, key));
  return cell(button, "mono tm-name");
}

/**
 * Every shape the collector may answer with, as [{source, current, last}]: a bare snapshot,
 * {current, last_flush}, {items: [...]} or {listeners: {id: ...}}.
 */
function sources(doc) {
  if (!doc || typeof doc !== "object") return [];
  const one = (source, d) => ({
    source,
    current: d.current || (d.counters ? d : null) || {},
    last: d.last_flush || d.last || d.flushed || {},
    meta: d,
  });
  if (Array.isArray(doc.items)) return doc.items.map((d, i) => one(d.listener_id || d.listener || d.id || `#${i + 1}`, d));
  if (doc.listeners && !Array.isArray(doc.listeners)) return Object.entries(doc.listeners).map(([id, d]) => one(id, d));
  return [one("", doc)];
}

/** The StatsD collectors of a GET /api/telemetry document (the other modes have no intervals). */
function statsdOnly(doc) {
  const items = (doc && Array.isArray(doc.items)) ? doc.items : [];
  return { items: items.filter((item) => !item.mode || item.mode === "statsd") };
}

/** The first of the tables that has any key (the open interval, the last flush, the last
 * flush with traffic). */
function pick(...tables) {
  return tables.find((t) => t && Object.keys(t).length) || {};
}

function num(v) {
  return typeof v === "number" ? fmtNum(v, Math.abs(v) < 100 ? 3 : 1) : "–";
}

/** Draw the StatsD tables from the GET /api/telemetry document (its StatsD items). */
export function renderStatsd(doc) {
  const srcs = sources(statsdOnly(doc));
  const multi = srcs.length > 1;
  const name = (s, key) => (multi ? `${s.source} · ${key}` : key);
  const counters = [];
  const gauges = [];
  const timers = [];
  const timerRows = [];
  const sets = [];
  const checks = [];
  const events = [];
  let received = 0;
  let bad = 0;
  let dropped = 0;
  let flushedAt = null;
  for (const s of srcs) {
    const cur = s.current;
    const last = s.last;
    received += cur.metrics_received ?? last.metrics_received ?? s.meta.metrics_received ?? 0;
    bad += cur.bad_lines ?? last.bad_lines ?? s.meta.bad_lines ?? 0;
    dropped += s.meta.dropped ?? s.meta.kernel_drops ?? s.meta.drops ?? 0;
    const at = s.meta.last_flush_at ?? last.flushed_at;
    if (typeof at === "number" && at > 1e9) flushedAt = Math.max(flushedAt || 0, at);
    const keys = new Set([...Object.keys(cur.counters || {}), ...Object.keys(last.counters || {})]);
    for (const key of [...keys].sort()) {
      const c = (cur.counters || {})[key];
      const l = (last.counters || {})[key];
      const rate = (l && l.rate) ?? (c && c.rate);
      counters.push(el("tr", { dataset: { name: key } }, nameCell(name(s, key), s.source, "counters", key), cell(num(c ? c.value : 0), "num"),
        cell(rate == null ? "–" : `${num(rate)}/s`, "num"), cell(l ? num(l.value) : "–", "num")));
    }
    const g = { ...(last.gauges || {}), ...(cur.gauges || {}) };
    for (const key of Object.keys(g).sort()) {
      gauges.push(el("tr", { dataset: { name: key } }, nameCell(name(s, key), s.source, "gauges", key), cell(num(g[key]), "num")));
    }
    // When traffic stops, the timers and sets of the last flush that had traffic stay shown.
    const hist = histories.get(s.source);
    const active = (hist && hist.last_active_flush) || {};
    const t = pick(cur.timers, last.timers, active.timers);
    for (const key of Object.keys(t).sort()) timerRows.push([s, key, t[key]]);
    // DogStatsD: the newest run of each service check, and the events of both intervals.
    const sc = { ...(last.service_checks || {}), ...(cur.service_checks || {}) };
    for (const key of Object.keys(sc).sort()) {
      const c = sc[key];
      checks.push(el("tr", { dataset: { name: key, status: c.status_name || "" } }, cell(name(s, key), "mono"),
        cell(c.status_name || String(c.status)), cell(c.message || "")));
    }
    for (const e of [...(cur.events || []), ...(last.events || [])]) {
      events.push(el("tr", { dataset: { title: e.title } }, cell(e.title), cell(e.text),
        cell(e.alert_type || "info"), cell((e.tags || []).join(", "), "mono")));
    }
    const st = pick(cur.sets, last.sets, active.sets);
    for (const key of Object.keys(st).sort()) {
      sets.push(el("tr", { dataset: { name: key } }, cell(name(s, key), "mono"), cell(fmtNum(st[key]), "num")));
    }
  }
  const pcts = percentileKeys(timerRows.map(([, , v]) => v));
  timersHeader(pcts);
  for (const [s, key, v] of timerRows) {
    timers.push(el("tr", { dataset: { name: key } }, nameCell(name(s, key), s.source, "timers", key), cell(num(v.count), "num"),
      cell(fmtMs(v.min), "num"), ...pcts.map((p) => cell(fmtMs(v[p]), "num")), cell(fmtMs(v.max), "num"), cell(fmtMs(v.mean), "num")));
  }
  const empty = (n, text) => [el("tr", {}, el("td", { colspan: String(n), class: "muted", text }))];
  $("#tm-counters tbody").replaceChildren(...(counters.length ? counters : empty(4, "no counters")));
  $("#tm-gauges tbody").replaceChildren(...(gauges.length ? gauges : empty(2, "no gauges")));
  $("#tm-timers tbody").replaceChildren(...(timers.length ? timers : empty(5 + pcts.length, "no timers")));
  $("#tm-sets tbody").replaceChildren(...(sets.length ? sets : empty(2, "no sets")));
  $("#tm-checks tbody").replaceChildren(...(checks.length ? checks : empty(3, "no service checks")));
  $("#tm-events tbody").replaceChildren(...(events.length ? events : empty(4, "no events")));
  const status = $("#tm-status");
  if (!srcs.length) {
    status.textContent = "No statsd listener. Add one in Listeners (mode statsd).";
    return;
  }
  status.replaceChildren(`${fmtNum(srcs.length)} collector${srcs.length > 1 ? "s" : ""} · ${fmtNum(received)} metrics received · ${fmtNum(bad)} bad lines`
    + (dropped ? ` · ${fmtNum(dropped)} dropped by the kernel` : ""));
  if (flushedAt) status.append(" · last flush ", timeEl(flushedAt));
}

async function fetchHistory(id) {
  try {
    histories.set(id, await api("GET", `/api/telemetry/${encodeURIComponent(id)}/history`));
  } catch (err) {
    histories.delete(id);
  }
}

/** Fetch each collector's history when it has flushed since the last fetch. */
export async function refreshHistories(doc) {
  const items = statsdOnly(doc).items;
  const ids = new Set();
  await Promise.all(items.map(async (item) => {
    const id = item.listener_id;
    if (!id) return;
    ids.add(id);
    const at = item.last_flush_at ?? null;
    if (fetchedAt.has(id) && fetchedAt.get(id) === at) return;
    fetchedAt.set(id, at);
    await fetchHistory(id);
  }));
  for (const id of [...histories.keys()]) if (!ids.has(id)) { histories.delete(id); fetchedAt.delete(id); }
  renderHistory();
}

/** The series of one metric's chart: [{label, fmt}], and its y values at a point. */
function metricSeries(section, key, history) {
  if (section === "timers") {
    const pcts = (history.percentiles || []).map((p) => `p${p}`);
    return {
      series: [...pcts, "mean"].map((p) => ({ label: p, fmt: fmtMs })),
      values: (pt) => [...pcts, "mean"].map((p) => (pt.timers[key] ? pt.timers[key][p] ?? null : null)),
    };
  }
  const label = section === "counters" ? "per flush" : section === "gauges" ? "value" : "distinct";
  return { series: [{ label, fmt: num }], values: (pt) => [pt[section][key] ?? null] };
}

function chartData(section, key, history) {
  const { values } = metricSeries(section, key, history);
  const pts = history.points || [];
  const xs = pts.map((p) => p.t);
  const ys = pts.map(values);
  const width = ys.length ? ys[0].length : 1;
  return [xs, ...Array.from({ length: width }, (_, i) => ys.map((row) => row[i]))];
}

async function toggleChart(source, section, key) {
  const id = `${source}|${section}|${key}`;
  if (charts.has(id)) {
    charts.get(id).box.remove();
    charts.delete(id);
  } else {
    if (!histories.has(source)) await fetchHistory(source);
    const history = histories.get(source);
    if (!history) return;
    const container = el("div", { class: "chart", dataset: { points: "0" } });
    const box = el("figure", { class: "chart-box", dataset: { chart: id } },
      el("figcaption", { text: `${key} · ${section}${source ? ` · ${source}` : ""}` }), container);
    $("#tm-charts").append(box);
    const chart = new Chart(container, { series: metricSeries(section, key, history).series, x: { time: true }, height: 180 });
    charts.set(id, { box, chart, source, section, key });
  }
  for (const b of document.querySelectorAll(".tm-metric")) b.setAttribute("aria-pressed", charts.has(b.dataset.chart) ? "true" : "false");
  renderHistory();
}

function renderHistory() {
  for (const c of charts.values()) {
    const history = histories.get(c.source);
    if (history) c.chart.setData(chartData(c.section, c.key, history));
  }
  const lines = [];
  const bad = [];
  for (const [id, h] of histories) {
    const a = h.last_active_flush;
    if (a) {
      const parts = Object.entries(a.counters).map(([k, v]) => `${k} = ${num(v.value)}`)
        .concat(Object.entries(a.gauges).map(([k, v]) => `${k} = ${num(v)}`));
      lines.push(el("span", { dataset: { listener: id } }, `${histories.size > 1 ? `${id}: ` : ""}last flush with traffic `,
        timeEl(a.flushed_at), parts.length ? ` · ${parts.slice(0, 8).join(" · ")}` : ""));
    }
    for (const b of [...(h.bad_samples || [])].reverse()) {
      bad.push(el("tr", {}, cell(id, "mono"), cell(b.line, "mono tm-name"), cell(b.error)));
    }
  }
  $("#tm-last-active").replaceChildren(...(lines.length ? lines.flatMap((l) => [l, el("br")]) : ["no flush with traffic yet"]));
  $("#tm-bad tbody").replaceChildren(...(bad.length ? bad : [el("tr", {}, el("td", { colspan: "3", class: "muted", text: "no bad lines" }))]));
}
