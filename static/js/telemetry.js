// Telemetry: the StatsD collector's metrics, polled from GET /api/telemetry while shown.
import { $, api, cell, el, fmtMs, fmtNum, timeEl } from "./util.js";
import { registerSection } from "./state.js";

let timer = null;

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

function num(v) {
  return typeof v === "number" ? fmtNum(v, Math.abs(v) < 100 ? 3 : 1) : "–";
}

function render(doc) {
  const srcs = sources(doc);
  const multi = srcs.length > 1;
  const name = (s, key) => (multi ? `${s.source} · ${key}` : key);
  const counters = [];
  const gauges = [];
  const timers = [];
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
      counters.push(el("tr", { dataset: { name: key } }, cell(name(s, key), "mono"), cell(num(c ? c.value : 0), "num"),
        cell(rate == null ? "–" : `${num(rate)}/s`, "num"), cell(l ? num(l.value) : "–", "num")));
    }
    const g = { ...(last.gauges || {}), ...(cur.gauges || {}) };
    for (const key of Object.keys(g).sort()) {
      gauges.push(el("tr", { dataset: { name: key } }, cell(name(s, key), "mono"), cell(num(g[key]), "num")));
    }
    const t = Object.keys(cur.timers || {}).length ? cur.timers : last.timers || {};
    for (const key of Object.keys(t).sort()) {
      const v = t[key];
      timers.push(el("tr", { dataset: { name: key } }, cell(name(s, key), "mono"), cell(num(v.count), "num"),
        cell(fmtMs(v.min), "num"), cell(fmtMs(v.p50), "num"), cell(fmtMs(v.p90), "num"),
        cell(fmtMs(v.p99), "num"), cell(fmtMs(v.max), "num"), cell(fmtMs(v.mean), "num")));
    }
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
    const st = Object.keys(cur.sets || {}).length ? cur.sets : last.sets || {};
    for (const key of Object.keys(st).sort()) {
      sets.push(el("tr", { dataset: { name: key } }, cell(name(s, key), "mono"), cell(fmtNum(st[key]), "num")));
    }
  }
  const empty = (n, text) => [el("tr", {}, el("td", { colspan: String(n), class: "muted", text }))];
  $("#tm-counters tbody").replaceChildren(...(counters.length ? counters : empty(4, "no counters")));
  $("#tm-gauges tbody").replaceChildren(...(gauges.length ? gauges : empty(2, "no gauges")));
  $("#tm-timers tbody").replaceChildren(...(timers.length ? timers : empty(8, "no timers")));
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

async function poll() {
  try {
    render(await api("GET", "/api/telemetry"));
  } catch (err) {
    $("#tm-status").textContent = err.status === 404 ? "This lab has no telemetry API." : err.message;
  }
}

registerSection("telemetry", {
  show() {
    poll();
    clearInterval(timer);
    timer = setInterval(poll, 1000);
  },
  hide() { clearInterval(timer); timer = null; },
});
