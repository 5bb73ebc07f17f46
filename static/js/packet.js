// Packet tool: send one message as text (with escapes) or hex and show the reply both ways.
import { $, api, fmtMs, listenerTargets, markField, showError } from "./util.js";
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

function showReply(reply) {
  $("#packet-result").hidden = false;
  if (!reply || reply.hex == null) {
    $("#reply-hex").textContent = "(no reply)";
    $("#reply-text").textContent = reply && reply.error ? reply.error : "no reply within the timeout";
    $("#packet-rtt").textContent = "";
    return;
  }
  $("#reply-hex").textContent = hexdump(reply.hex);
  $("#reply-hex").dataset.hex = String(reply.hex).replace(/[^0-9a-fA-F]/g, "").toLowerCase();
  $("#reply-text").textContent = reply.text ?? "";
  $("#packet-rtt").textContent = reply.rtt_ms != null ? `after ${fmtMs(reply.rtt_ms)}` : "";
}

async function viaRun(target, payload, isHex, timeout) {
  const spec = { target, pattern: "packet", payload: { kind: isHex ? "hex" : "text", text: payload } };
  if (insecure(target)) spec.insecure = true;
  if (timeout) spec.timeout = timeout;
  const { id } = await api("POST", "/api/runs", spec);
  const deadline = Date.now() + ((timeout || 2) + 10) * 1000;
  for (;;) {
    const run = await api("GET", `/api/runs/${id}`);
    if (run.status !== "running") {
      const reply = run.summary.reply;
      if (!reply) return { error: run.error || "no reply" };
      return { hex: reply.hex, text: reply.text, rtt_ms: reply.rtt_ms };
    }
    if (Date.now() > deadline) return { error: "the run did not end" };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#packet-error").hidden = true;
  markField(form, null);
  const target = form.elements.target.value.trim();
  const payload = form.elements.payload.value;
  const isHex = form.elements.as.value === "hex";
  const timeout = form.elements.timeout.value ? Number(form.elements.timeout.value) : undefined;
  $("#packet-send").disabled = true;
  try {
    let reply;
    try {
      const body = { target, payload, hex: isHex };
      if (insecure(target)) body.insecure = true;
      if (timeout) body.timeout = timeout;
      const doc = await api("POST", "/api/send", body);
      reply = doc.reply_hex != null
        ? { hex: doc.reply_hex, text: doc.reply_text, rtt_ms: doc.rtt_ms }
        : doc.reply && doc.reply.hex != null ? { rtt_ms: doc.rtt_ms, ...doc.reply } : { error: doc.error || "no reply" };
    } catch (err) {
      if (err.status !== 404 && err.status !== 405) throw err;
      reply = await viaRun(target, payload, isHex, timeout); // a lab without /api/send
    }
    showReply(reply);
  } catch (err) {
    markField(form, err.field === "payload.text" ? "payload" : err.field);
    showError($("#packet-error"), err);
  } finally {
    $("#packet-send").disabled = false;
  }
});

feed.on("tick", () => {
  const input = form.elements.target;
  if (input.value) return;
  const targets = listenerTargets(state.listeners);
  const udp = targets.find((t) => t.listener.protocol === "udp" && t.listener.mode === "echo") || targets[0];
  if (udp) input.value = udp.url;
});

registerSection("packet", {});
