// Packet tool: send one message as text (with escapes) or hex and show the reply both ways,
// or the error as an error; saved packets (save, load, delete) and the send log, both kept
// by the lab across restarts. A send is logged, not stored as a run.
import { $, api, cell, el, fmtMs, listenerTargets, markField, showError, timeEl } from "./util.js";
import { feed } from "./feed.js";
import { registerSection, state } from "./state.js";
import { isTls } from "./tls.js";

const form = $("#packet-form");
const tlsOnly = form.querySelector("[data-tls]");
function applyTls() { tlsOnly.hidden = !isTls(form.elements.target.value); }
for (const type of ["input", "change"]) form.elements.target.addEventListener(type, applyTls);
applyTls();
/** Accept any certificate: asked for TLS targets only (refused for others). */
function insecure(target) { return isTls(target) && form.elements.insecure.checked; }

function hexBytes(hex) {
  const clean = String(hex || "").replace(/[^0-9a-fA-F]/g, "");
  const bytes = [];
  for (let i = 0; i + 1 < clean.length; i += 2) bytes.push(parseInt(clean.slice(i, i + 2), 16));
  return bytes;
}

/** A classic hex dump: offset, 16 bytes in hex, the same bytes as ASCII. */
export function hexdump(hex) {
  const bytes = hexBytes(hex);
  if (!bytes.length) return "(empty)";
  const lines = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const chunk = bytes.slice(off, off + 16);
    const hexPart = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(4, "0")}  ${hexPart.padEnd(47)}  |${ascii}|`);
  }
  return lines.join("\n");
}

/** Nothing of an earlier send stays on screen once a new one is asked for. */
function clearResult() {
  $("#packet-result").hidden = true;
  $("#reply-hex").textContent = "";
  delete $("#reply-hex").dataset.hex;
  $("#reply-text").textContent = "";
  $("#packet-rtt").textContent = "";
  const outcome = $("#packet-outcome");
  outcome.hidden = true;
  outcome.textContent = "";
  delete outcome.dataset.status;
  delete outcome.dataset.kind;
  $("#packet-error").hidden = true;
}

/** The words for a send without a reply: the error with its kind, or the timeout. */
export function outcomeText(entry) {
  if (entry.status === "error") return `Error${entry.error_kind ? ` (${entry.error_kind})` : ""}: ${entry.error}`;
  return entry.error || "no reply";
}

function showEntry(entry) {
  if (entry.status === "reply") {
    const reply = entry.reply;
    $("#packet-result").hidden = false;
    $("#reply-hex").textContent = hexdump(reply.hex);
    $("#reply-hex").dataset.hex = String(reply.hex).replace(/[^0-9a-fA-F]/g, "").toLowerCase();
    $("#reply-text").textContent = reply.text ?? "";
    $("#packet-rtt").textContent = reply.rtt_ms != null ? `after ${fmtMs(reply.rtt_ms)}` : "";
    return;
  }
  const outcome = $("#packet-outcome");
  outcome.className = `banner ${entry.status === "error" ? "error" : "warn"}`;
  outcome.dataset.status = entry.status;
  if (entry.error_kind) outcome.dataset.kind = entry.error_kind;
  outcome.textContent = outcomeText(entry);
  outcome.hidden = false;
}

function formPacket() {
  const body = {
    target: form.elements.target.value.trim(),
    payload: form.elements.payload.value,
    hex: form.elements.as.value === "hex",
  };
  if (form.elements.timeout.value) body.timeout = Number(form.elements.timeout.value);
  if (insecure(body.target)) body.insecure = true;
  return body;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearResult();
  markField(form, null);
  const body = formPacket();
  const name = form.elements.name.value.trim();
  if (name) body.name = name;
  $("#packet-send").disabled = true;
  try {
    showEntry(await api("POST", "/api/packets/send", body));
  } catch (err) {
    markField(form, err.field);
    showError($("#packet-error"), err);
  } finally {
    $("#packet-send").disabled = false;
    loadLog();
  }
});

$("#packet-save").addEventListener("click", async () => {
  $("#packet-error").hidden = true;
  markField(form, null);
  const body = { name: form.elements.name.value.trim(), ...formPacket() };
  delete body.insecure; // a choice made per send: a saved packet keeps what to send, not trust
  try {
    await api("POST", "/api/packets", body);
    $("#packet-msg").textContent = `Saved packet ${body.name}.`;
    loadSaved();
  } catch (err) {
    markField(form, err.field);
    showError($("#packet-error"), err);
  }
});

function loadPacket(packet) {
  form.elements.name.value = packet.name;
  form.elements.target.value = packet.target;
  form.elements.payload.value = packet.payload;
  form.elements.timeout.value = String(packet.timeout);
  for (const radio of form.querySelectorAll("input[name=as]")) radio.checked = radio.value === (packet.hex ? "hex" : "text");
  $("#packet-msg").textContent = `Loaded packet ${packet.name}.`;
}

async function deletePacket(name) {
  try {
    await api("DELETE", `/api/packets/${encodeURIComponent(name)}`);
    $("#packet-msg").textContent = `Deleted packet ${name}.`;
  } catch (err) {
    showError($("#packet-error"), err);
  }
  loadSaved();
}

async function loadSaved() {
  let doc;
  try { doc = await api("GET", "/api/packets"); } catch (err) { return; }
  const rows = doc.items.map((p) => {
    const load = el("button", { type: "button", class: "secondary small", "aria-label": `Load packet ${p.name}`, text: "Load" });
    load.addEventListener("click", () => loadPacket(p));
    const del = el("button", { type: "button", class: "danger small", "aria-label": `Delete packet ${p.name}`, text: "Delete" });
    del.addEventListener("click", () => deletePacket(p.name));
    return el("tr", { dataset: { name: p.name } }, cell(p.name), cell(p.target, "mono"), cell(p.payload, "mono"),
      cell(p.hex ? "hex" : "text"), cell(el("span", { class: "row-actions" }, load, " ", del)));
  });
  const empty = el("tr", {}, el("td", { colspan: "5", class: "muted", text: "no saved packets: give a name and Save" }));
  $("#packet-saved tbody").replaceChildren(...(rows.length ? rows : [empty]));
}

function resultCell(entry) {
  if (entry.status === "reply") return cell(entry.reply.text, "mono");
  return cell(el("span", { class: entry.status === "error" ? "bad" : "muted", text: outcomeText(entry) }));
}

async function loadLog() {
  let doc;
  try { doc = await api("GET", "/api/packet-log?limit=50"); } catch (err) { return; }
  const rows = doc.items.map((e) => el("tr", { dataset: { seq: String(e.seq), status: e.status } },
    cell(timeEl(e.at)), cell(e.name || "–"), cell(e.target, "mono"),
    cell(`${e.payload}${e.hex ? " (hex)" : ""}`, "mono"), resultCell(e),
    cell(e.reply && e.reply.rtt_ms != null ? fmtMs(e.reply.rtt_ms) : "–", "num")));
  const empty = el("tr", {}, el("td", { colspan: "6", class: "muted", text: "nothing sent yet" }));
  $("#packet-log tbody").replaceChildren(...(rows.length ? rows : [empty]));
}

$("#packet-log-clear").addEventListener("click", async () => {
  try { await api("DELETE", "/api/packet-log"); } catch (err) { showError($("#packet-error"), err); }
  loadLog();
});

feed.on("tick", () => {
  const input = form.elements.target;
  if (input.value) return;
  const targets = listenerTargets(state.listeners);
  const udp = targets.find((t) => t.listener.protocol === "udp" && t.listener.mode === "echo") || targets[0];
  if (udp) input.value = udp.url;
});

registerSection("packet", {
  show() { loadSaved(); loadLog(); },
});
