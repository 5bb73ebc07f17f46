// Small helpers shared by every section: DOM, number and time formats, the JSON API.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child != null) node.append(child);
  }
  return node;
}

export function cell(content, cls) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  if (cls) td.className = cls;
  return td;
}

const dash = "–";

// ---- figures: one formatter per unit --------------------------------------------------------
// Every figure on every page goes through these, so one value reads the same everywhere:
// three significant digits, no trailing zeros ("8 kB/s", "2.1 GB", "0.45 ms"), whole numbers
// from 1,000 up ("39,784 msg/s"), a unit on every figure. `FIGURES` names them by unit, for
// code (and tests) that pick the formatter from a figure's unit.

const SIGNIFICANT = 3;

function missing(n) {
  return n == null || Number.isNaN(Number(n));
}

/** `n` with three significant digits and no trailing zeros; whole from 1,000 up. */
export function fmtSig(n, digits = SIGNIFICANT) {
  if (missing(n)) return dash;
  const v = Number(n);
  if (Math.abs(v) >= 10 ** digits) return Math.round(v).toLocaleString("en-US");
  return v.toLocaleString("en-US", { maximumSignificantDigits: digits });
}

/** A count (messages, errors, connections): whole, with thousands separators. */
export function fmtNum(n, digits = 0) {
  if (missing(n)) return dash;
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function scaled(value, units, base) {
  let v = Math.abs(Number(value));
  let i = 0;
  // Move up a unit when the value would round to the base ("1,000 kB" reads "1 MB").
  while (i < units.length - 1 && Number(v.toPrecision(SIGNIFICANT)) >= base) { v /= base; i += 1; }
  return `${fmtSig(Math.sign(value) * v)} ${units[i]}`;
}

/** Bytes in SI units: 1 kB = 1000 B. */
export function fmtBytes(n) {
  return missing(n) ? dash : scaled(n, ["B", "kB", "MB", "GB", "TB", "PB"], 1000);
}

/** Bytes per second: B/s, kB/s, MB/s. */
export function fmtByteRate(n) {
  return missing(n) ? dash : scaled(n, ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"], 1000);
}

/** Bits per second: bit/s, kbit/s, Mbit/s, Gbit/s. */
export function fmtBitRate(n) {
  return missing(n) ? dash : scaled(n, ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"], 1000);
}

/** Messages per second: "0.5 msg/s", "20 msg/s", "39,784 msg/s". */
export function fmtMsgRate(n) {
  return missing(n) ? dash : `${fmtSig(n)} msg/s`;
}

/** Milliseconds with three significant digits and the unit: "0.0213 ms", "15 ms". */
export function fmtMs(ms) {
  return missing(ms) ? dash : `${fmtSig(ms)} ms`;
}

/** A duration in seconds: "0.13 s", "2 s", "1 min 30 s", "1.5 h". */
export function fmtSeconds(s) {
  if (missing(s)) return dash;
  if (s < 60) return `${fmtSig(s)} s`;
  if (s < 3600) return Math.round(s % 60) ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s / 60)} min`;
  return `${fmtSig(s / 3600)} h`;
}

/** A percentage; never rounded to 0 or 100 when it is not that ("99.95 %", not "100 %"). */
export function fmtPct(x) {
  if (missing(x)) return dash;
  let digits = SIGNIFICANT;
  while (digits < 7 && x > 0 && x < 100 && Number(Number(x).toPrecision(digits)) >= 100) digits += 1;
  return `${fmtSig(x, digits)} %`;
}

/** The formatter of each unit, by name: what a figure's `data-unit` says it is. */
export const FIGURES = Object.freeze({
  count: fmtNum,
  bytes: fmtBytes,
  byterate: fmtByteRate,
  bitrate: fmtBitRate,
  msgrate: fmtMsgRate,
  ms: fmtMs,
  seconds: fmtSeconds,
  pct: fmtPct,
});

/** One figure as an element that says which summary field it shows and in what unit. */
export function figure(field, unit, value) {
  return el("span", { class: "fig", dataset: { field, unit }, text: FIGURES[unit](value) });
}

export function relTime(epoch) {
  const ago = (Date.now() / 1000) - epoch;
  if (ago < -1) return "in the future";
  if (ago < 1.5) return "just now";
  if (ago < 60) return `${Math.round(ago)} s ago`;
  if (ago < 3600) return `${Math.round(ago / 60)} min ago`;
  if (ago < 86400) return `${(ago / 3600).toFixed(1)} h ago`;
  return `${Math.round(ago / 86400)} d ago`;
}

function absTime(epoch) {
  const d = new Date(epoch * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString("en-GB", { hour12: false });
  return d.toDateString() === today.toDateString()
    ? time
    : `${d.toISOString().slice(0, 10)} ${time}`;
}

/** A <time> element with the absolute time and, refreshed every second, the relative one. */
export function timeEl(epoch, { relOnly = false } = {}) {
  if (epoch == null) return document.createTextNode(dash);
  const node = document.createElement("time");
  node.dateTime = new Date(epoch * 1000).toISOString();
  node.title = new Date(epoch * 1000).toString();
  node.dataset.t = String(epoch);
  if (relOnly) node.dataset.rel = "1";
  node.textContent = timeText(epoch, relOnly);
  return node;
}

function timeText(epoch, relOnly) {
  return relOnly ? relTime(epoch) : `${absTime(epoch)} · ${relTime(epoch)}`;
}

export function setTime(node, epoch) {
  if (node.dataset.t === String(epoch)) return;
  node.dataset.t = String(epoch);
  node.dateTime = new Date(epoch * 1000).toISOString();
  node.title = new Date(epoch * 1000).toString();
  node.textContent = timeText(epoch, node.dataset.rel === "1");
}

export function refreshTimes() {
  for (const node of document.querySelectorAll("main section:not([hidden]) time[data-t]")) {
    node.textContent = timeText(Number(node.dataset.t), node.dataset.rel === "1");
  }
}

export class ApiError extends Error {
  constructor(message, field, status) {
    super(message);
    this.field = field;
    this.status = status;
  }
}

/** Call the JSON API with the session cookie; throws ApiError with the server's message. */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError("the lab did not answer", null, 0);
  }
  const text = await resp.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { error: text.slice(0, 200) }; }
  if (!resp.ok) {
    throw new ApiError(data.error || `HTTP ${resp.status}`, data.field || null, resp.status);
  }
  return data;
}

export function showError(node, err) {
  node.textContent = err.field ? `${err.message} (field: ${err.field})` : err.message;
  node.hidden = false;
}

/** Mark the input named by an API error's field, so a person sees where the problem is. */
export function markField(form, field) {
  for (const node of form.querySelectorAll(".field-error")) node.classList.remove("field-error");
  if (!field) return;
  const name = field.replace(/^spec\./, "").replace(/\./g, "_");
  const input = form.elements[name] || form.elements[field.split(".")[0]];
  if (input && input.classList) {
    input.classList.add("field-error");
    input.setAttribute("aria-invalid", "true");
  }
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Target URLs of the lab's own listeners, for the target inputs' suggestions. */
export function listenerTargets(listeners) {
  return listeners.map((l) => {
    const host = String(l.host).includes(":") ? `[${l.host}]` : l.host;
    return { url: `${l.protocol}://${host}:${l.port}`, listener: l };
  });
}

/** The table rows for key/value pairs: [[label, value, key], ...]. */
export function kvRows(pairs) {
  return pairs.map(([label, value, key]) => {
    const tr = el("tr", { dataset: { key: key || label } });
    tr.append(el("th", { scope: "row", text: label }));
    tr.append(cell(value instanceof Node ? value : String(value), "num"));
    return tr;
  });
}
