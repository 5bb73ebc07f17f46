// Listeners: every listener with its totals and a stop button; a form to add one.
import { $, $$, api, cell, el, fmtBytes, fmtNum, fmtSeconds, markField, showError } from "./util.js";
import { feed } from "./feed.js";
import { registerSection, state } from "./state.js";
import { openRules } from "./rules.js";

const form = $("#listener-form");
const f = form.elements;
let visible = false;
const stopping = new Set();

const rowsById = new Map();

function render() {
  // Rows are kept per listener and only their cells rewritten, so a focused Stop button
  // keeps the keyboard focus while the totals change.
  const body = $("#listeners-table tbody");
  const ids = new Set(state.listeners.map((l) => l.id));
  for (const [id, row] of rowsById) if (!ids.has(id)) { row.tr.remove(); rowsById.delete(id); }
  state.listeners.forEach((l, index) => {
    let row = rowsById.get(l.id);
    if (!row) {
      const stop = el("button", { type: "button", class: "danger small", "aria-label": `Stop listener ${l.id}`, text: "Stop" });
      stop.addEventListener("click", () => stopListener(l.id));
      const tr = el("tr", { dataset: { id: l.id } });
      row = { tr, stop, stopCell: cell(stop) };
      rowsById.set(l.id, row);
    }
    const conns = el("a", { href: `#connections/listener=${l.id}`, text: fmtNum(l.connections) });
    const cells = [
      cell(l.id, "mono"), urlCell(l), cell(l.mode), cell(conns, "num"),
      cell(fmtNum(l.max_connections), "num"), cell(l.idle_timeout != null ? fmtSeconds(l.idle_timeout) : "–", "num"),
      cell(`${fmtBytes(l.bytes_in)} · ${fmtNum(l.msgs_in)} msgs`, "num"),
      cell(`${fmtBytes(l.bytes_out)} · ${fmtNum(l.msgs_out)} msgs`, "num"),
      cell(fmtNum((l.errors || 0) + (l.rejected || 0) + (l.oversized || 0)), "num"),
    ];
    const key = cells.map((c) => c.textContent).join("|");
    if (row.key !== key) {
      row.key = key;
      row.tr.replaceChildren(...cells, row.stopCell);
    }
    row.stop.disabled = stopping.has(l.id);
    row.stop.textContent = stopping.has(l.id) ? "Stopping…" : "Stop";
    if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
  });
}

/** A listener URL as a person reads it: percent-escapes decoded, control bytes escaped. */
export function displayUrl(url) {
  let text = String(url);
  try { text = decodeURIComponent(text); } catch (e) { return text; }
  const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => named[c] || `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** The URL cell: the decoded URL, the TLS certificate download and the rules editor. */
function urlCell(l) {
  const td = cell(el("span", { class: "listener-url", text: displayUrl(l.url), title: displayUrl(l.url) }), "url");
  const extras = [];
  if (l.protocol === "tls") {
    extras.push(el("a", { href: `/api/listeners/${encodeURIComponent(l.id)}/certificate`, download: `socketlab-${l.id}.pem`,
      class: "cert-link", text: "certificate (PEM)" }));
  }
  if (l.mode === "respond") {
    const edit = el("button", { type: "button", class: "secondary small", "aria-label": `Rules of listener ${l.id}`, text: "Rules" });
    edit.addEventListener("click", () => openRules(l.id));
    extras.push(edit);
  }
  if (extras.length) td.append(el("span", { class: "listener-extras" }, ...extras.flatMap((x) => [" ", x])));
  return td;
}

async function loadFailed() {
  let doc;
  try { doc = await api("GET", "/api/listeners/failed"); } catch (err) { return; }
  const rows = doc.items.map((f) => {
    const forget = el("button", { type: "button", class: "danger small", "aria-label": `Forget listener ${displayUrl(f.url)}`, text: "Forget" });
    forget.addEventListener("click", async () => {
      try { await api("DELETE", `/api/listeners/failed/${encodeURIComponent(f.key)}`); } catch (err) { showError($("#listener-error"), err); }
      loadFailed();
    });
    return el("tr", { dataset: { key: f.key } }, cell(displayUrl(f.url), "url"), cell(el("span", { class: "bad", text: f.error })), cell(forget));
  });
  $("#listeners-failed tbody").replaceChildren(...rows);
  $("#listeners-failed").hidden = rows.length === 0;
}

async function stopListener(id) {
  stopping.add(id);
  render();
  $("#listener-error").hidden = true;
  try {
    await api("DELETE", `/api/listeners/${encodeURIComponent(id)}`);
    $("#listener-msg").textContent = `Listener ${id} stopped.`;
    $("#listener-msg").hidden = false;
  } catch (err) {
    showError($("#listener-error"), err);
  } finally {
    stopping.delete(id);
  }
}

function applyVisibility() {
  const mode = f.mode.value;
  const proto = f.protocol.value;
  for (const node of $$("[data-mode], [data-proto]", form)) {
    const modes = node.dataset.mode ? node.dataset.mode.split(" ") : null;
    const protos = node.dataset.proto ? node.dataset.proto.split(" ") : null;
    node.hidden = (modes && !modes.includes(mode)) || (protos && !protos.includes(proto));
  }
}
f.mode.addEventListener("change", applyVisibility);
f.protocol.addEventListener("change", applyVisibility);

/** The POST /api/listeners body: the URL plus every option that applies and is set. */
export function listenerBody() {
  const host = f.host.value.trim();
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const body = { url: `${f.protocol.value}://${hostPart}:${f.port.value || 0}?mode=${f.mode.value}` };
  for (const input of form.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (["protocol", "host", "port", "mode"].includes(input.name) || input.closest("[hidden]")) continue;
    const raw = input.value.trim();
    if (raw === "") continue;
    if (input.name === "rules") {
      try { body.rules = JSON.parse(raw); } catch (e) { throw Object.assign(new Error("rules: not valid JSON"), { field: "rules" }); }
    } else if (input.dataset.unit) {
      body[input.name] = `${Number(raw)}${input.dataset.unit}`;
    } else {
      body[input.name] = input.type === "number" ? Number(raw) : raw;
    }
  }
  return body;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#listener-error").hidden = true;
  $("#listener-msg").hidden = true;
  markField(form, null);
  try {
    const body = listenerBody();
    $("#listener-add").disabled = true;
    const made = await api("POST", "/api/listeners", body);
    const url = made.url || `${f.protocol.value}://${f.host.value}:${made.port}`;
    const msg = $("#listener-msg");
    msg.textContent = `Listener ${made.id || ""} is serving ${url}`;
    msg.dataset.port = String(made.port ?? "");
    msg.hidden = false;
  } catch (err) {
    markField(form, err.field);
    showError($("#listener-error"), err);
  } finally {
    $("#listener-add").disabled = false;
  }
});

let queued = false;
feed.on("tick", () => {
  if (!visible || queued) return;
  queued = true;
  requestAnimationFrame(() => { queued = false; render(); });
});

applyVisibility();
registerSection("listeners", {
  show() { visible = true; render(); loadFailed(); },
  hide() { visible = false; },
});
