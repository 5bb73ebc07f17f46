// Peers: other socketlab nodes (--peer URL), their listeners and connections, runs on them;
// and the kill switch in the header, which stops every run of this lab.
import { $, api, cell, el, fmtBytes, fmtMs, fmtNum, markField, showError, timeEl } from "./util.js";
import { registerSection } from "./state.js";

const POLL_MS = 2000;
let timer = null;
let peers = [];
const watching = new Map(); // local run id -> {peer, remote_id}

function peerTargets(peer) {
  const host = new URL(peer.url).hostname;
  return (peer.listeners || []).map((l) => `${l.protocol}://${host}:${l.port}`);
}

function renderPeers() {
  const body = $("#peers-table tbody");
  $("#peers-empty").hidden = peers.length > 0;
  body.replaceChildren(...peers.map((p) => {
    const bad = p.status === "down" || p.status === "failing";
    const pill = el("span", { class: `pill ${p.status === "up" ? "ok" : bad ? "bad" : ""}`, text: p.status });
    // Why it is down or failing, in words (the peer's own text is shown as text only).
    const status = el("span", { class: "peer-status" }, pill,
      p.error ? el("span", { class: "muted peer-error", text: ` ${p.error}` }) : null);
    const listeners = (p.listeners || []).map((l) => `${l.protocol}:${l.port} ${l.mode}`).join(", ");
    const tr = el("tr", { dataset: { peer: p.name, status: p.status } },
      cell(p.name), cell(p.url), cell(status), cell(listeners || "–"),
      cell(fmtNum(p.connection_total), "num"),
      cell(p.last_seen ? timeEl(p.last_seen) : "–"));
    if (p.error) tr.title = p.error;
    return tr;
  }));
  const conns = $("#peer-connections tbody");
  const rows = [];
  for (const p of peers) {
    for (const c of (p.connections || []).slice(0, 50)) {
      rows.push(el("tr", {},
        cell(p.name), cell(c.protocol), cell(c.run_id ? `run ${c.run_id}` : c.listener_id || "–"),
        cell(c.local), cell(c.remote), cell(fmtBytes(c.bytes_in), "num"), cell(fmtBytes(c.bytes_out), "num")));
    }
  }
  conns.replaceChildren(...rows);
  const select = $("#peer-run-form select[name=peer]");
  const chosen = select.value;
  select.replaceChildren(...peers.map((p) => el("option", { value: p.name, text: `${p.name} (${p.status})` })));
  if (chosen) select.value = chosen;
  const targetInput = $("#peer-run-form input[name=target]");
  const peer = peers.find((p) => p.name === select.value) || peers[0];
  if (peer && !targetInput.value) {
    const tcp = peerTargets(peer).find((t) => t.startsWith("tcp://"));
    if (tcp) targetInput.value = tcp;
  }
}

async function poll() {
  try {
    peers = (await api("GET", "/api/peers")).items;
    renderPeers();
    for (const [localId, ref] of watching) {
      const run = await api("GET", `/api/peers/${encodeURIComponent(ref.peer)}/runs/${encodeURIComponent(ref.remote_id)}`);
      const s = run.summary;
      const rtt = s.rtt_ms;
      $("#peer-run-status").textContent =
        `run ${localId} on ${ref.peer}: ${run.status} · ${fmtNum(s.received)} replies` +
        (rtt.p50 != null ? ` · p50 ${fmtMs(rtt.p50)}` : "");
      $("#peer-run-status").dataset.status = run.status;
      if (run.status !== "running") watching.delete(localId);
    }
  } catch (err) {
    showError($("#peer-error"), err);
  }
}

$("#peer-run-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  $("#peer-error").hidden = true;
  const f = new FormData(form);
  const spec = {
    target: f.get("target"),
    pattern: f.get("pattern"),
    connections: Number(f.get("connections")),
    duration: Number(f.get("duration")),
  };
  if (spec.pattern === "rate") spec.rate = Number(f.get("rate"));
  try {
    const ref = await api("POST", `/api/peers/${encodeURIComponent(f.get("peer"))}/runs`, spec);
    watching.set(ref.id, ref);
    $("#peer-run-status").textContent = `run ${ref.id} on ${ref.peer}: running`;
    $("#peer-run-status").dataset.status = "running";
    poll();
  } catch (err) {
    markField(form, err.field);
    showError($("#peer-error"), err);
  }
});

$("#kill-switch").addEventListener("click", async () => {
  if (!window.confirm("Stop every run of this lab?")) return;
  const button = $("#kill-switch");
  button.disabled = true;
  try {
    const { stopped } = await api("POST", "/api/runs/stop-all", {});
    button.title = `stopped ${stopped} runs`;
    $("#kill-result").textContent = `stopped ${stopped} runs`;
  } catch (err) {
    $("#kill-result").textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

registerSection("peers", {
  show() {
    poll();
    clearInterval(timer);
    timer = setInterval(poll, POLL_MS);
  },
  hide() {
    clearInterval(timer);
    timer = null;
  },
});
