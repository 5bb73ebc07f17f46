// socketlab dashboard: one WebSocket feed (full state, then diffs) and the JSON API.
"use strict";

const state = {
  conns: new Map(),
  total: 0,
  listeners: [],
  runs: new Map(),
  currentRun: null,
  renderQueued: false,
};

const $ = (sel) => document.querySelector(sel);

function fmtBytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
}

function fmtNum(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); }
function fmtMs(n) { return n == null ? "–" : Number(n).toFixed(3); }

function fmtTime(epoch) {
  const d = new Date(epoch * 1000);
  const ago = Math.max(0, (Date.now() - d.getTime()) / 1000);
  const rel = ago < 60 ? `${ago.toFixed(0)} s ago` : ago < 3600 ? `${(ago / 60).toFixed(0)} min ago`
    : `${(ago / 3600).toFixed(1)} h ago`;
  return `${d.toLocaleTimeString()} (${rel})`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderListeners() {
  const body = $("#listeners tbody");
  body.replaceChildren(...state.listeners.map((l) => {
    const tr = document.createElement("tr");
    tr.dataset.id = l.id;
    tr.append(cell(l.id), cell(l.url), cell(l.mode), cell(fmtNum(l.connections), "num"),
      cell(fmtNum(l.accepted), "num"), cell(fmtBytes(l.bytes_in), "num"),
      cell(fmtBytes(l.bytes_out), "num"), cell(fmtNum(l.msgs_in), "num"));
    return tr;
  }));
  const target = $("#fire-target");
  if (!target.value) {
    const tcp = state.listeners.find((l) => l.protocol === "tcp" && l.mode === "echo");
    if (tcp) {
      const host = tcp.host.includes(":") ? `[${tcp.host}]` : tcp.host;
      target.value = `tcp://${host}:${tcp.port}`;
    }
  }
}

function renderConnections() {
  const rows = [...state.conns.values()];
  $("#conn-count").textContent = fmtNum(state.total);
  const body = $("#connections tbody");
  body.replaceChildren(...rows.slice(0, 1000).map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    tr.append(cell(c.id), cell(c.protocol), cell(c.run_id ? `run ${c.run_id}` : c.listener_id),
      cell(c.local), cell(c.remote), cell(fmtBytes(c.bytes_in), "num"),
      cell(fmtBytes(c.bytes_out), "num"), cell(fmtTime(c.opened_at)));
    return tr;
  }));
}

function render() {
  state.renderQueued = false;
  renderListeners();
  renderConnections();
  renderProgress();
}

function queueRender() {
  if (!state.renderQueued) {
    state.renderQueued = true;
    requestAnimationFrame(render);
  }
}

function applyMessage(msg) {
  if (msg.type === "full") {
    state.conns = new Map(msg.connections.map((c) => [c.id, c]));
  } else if (msg.type === "diff") {
    for (const c of msg.connections.added) state.conns.set(c.id, c);
    for (const c of msg.connections.updated) state.conns.set(c.id, c);
    for (const id of msg.connections.removed) state.conns.delete(id);
  }
  state.total = msg.total;
  state.listeners = msg.listeners;
  const live = new Map(msg.runs.map((r) => [r.id, r]));
  const cur = state.currentRun;
  if (cur && state.runs.has(cur) && (!live.has(cur) || live.get(cur).status !== "running")) {
    finishRun(cur);
  }
  state.runs = live;
  queueRender();
}

// ---- live feed with reconnect ----------------------------------------------------------
let backoff = 500;
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.onopen = () => {
    backoff = 500;
    $("#banner").hidden = true;
    $("#status").textContent = "live";
    $("#status").className = "pill ok";
    loadRuns();
  };
  ws.onmessage = (ev) => applyMessage(JSON.parse(ev.data));
  ws.onclose = () => {
    $("#banner").hidden = false;
    $("#status").textContent = "offline";
    $("#status").className = "pill bad";
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

// ---- API --------------------------------------------------------------------------------
async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.error || `HTTP ${resp.status}`);
    err.field = data.field;
    throw err;
  }
  return data;
}

async function loadRuns() {
  try {
    const data = await api("GET", "/api/runs?limit=20");
    const body = $("#runs tbody");
    body.replaceChildren(...data.items.map((r) => {
      const tr = document.createElement("tr");
      const s = r.summary || {};
      const rtt = s.rtt_ms || {};
      tr.append(cell(r.id), cell(r.status), cell(r.spec.target), cell(fmtNum(s.sent), "num"),
        cell(fmtNum(s.received), "num"), cell(fmtMs(rtt.p50), "num"), cell(fmtMs(rtt.p99), "num"),
        cell(r.started_at ? fmtTime(r.started_at) : "–"));
      return tr;
    }));
  } catch (e) { /* the banner already says the lab is away */ }
}

function renderProgress() {
  const id = state.currentRun;
  const live = id && state.runs.get(id);
  if (!live) return;
  $("#run-progress").hidden = false;
  $("#progress-bar").value = live.progress;
  $("#progress-text").textContent =
    `${(live.progress * 100).toFixed(0)} % · ${fmtNum(live.received)} replies · ` +
    `${fmtNum(Math.round(live.msgs_per_s))} msg/s · p50 ${fmtMs(live.rtt_p50_ms)} ms`;
}

async function finishRun(id) {
  state.currentRun = null;
  $("#stop-button").disabled = true;
  $("#fire-button").disabled = false;
  $("#progress-bar").value = 1;
  try {
    const run = await api("GET", `/api/runs/${id}`);
    $("#progress-text").textContent = `100 % · ${run.status}`;
    showResult(run);
  } catch (e) {
    showError(e);
  }
  loadRuns();
}

function showResult(run) {
  const s = run.summary;
  const rtt = s.rtt_ms || {};
  const rows = [
    ["status", run.status + (run.error ? ` (${run.error})` : "")],
    ["sent", fmtNum(s.sent)], ["received", fmtNum(s.received)],
    ["lost", fmtNum(s.lost)], ["errors", fmtNum(s.errors)],
    ["throughput", `${fmtNum(Math.round(s.msgs_per_s))} msg/s`],
    ["RTT min", `${fmtMs(rtt.min)} ms`], ["RTT p50", `${fmtMs(rtt.p50)} ms`],
    ["RTT p90", `${fmtMs(rtt.p90)} ms`], ["RTT p99", `${fmtMs(rtt.p99)} ms`],
    ["RTT max", `${fmtMs(rtt.max)} ms`],
  ];
  $("#result-id").textContent = run.id;
  $("#result-table tbody").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.dataset.key = k;
    const th = document.createElement("th");
    th.textContent = k;
    tr.append(th, cell(v, "num"));
    return tr;
  }));
  $("#run-result").hidden = false;
}

function showError(e) {
  const p = $("#fire-error");
  p.textContent = e.field ? `${e.message} (${e.field})` : e.message;
  p.hidden = false;
}

$("#fire-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#fire-error").hidden = true;
  const f = new FormData(ev.target);
  const spec = {
    target: f.get("target"),
    pattern: f.get("pattern"),
    connections: Number(f.get("connections")),
    size: Number(f.get("size")),
    duration: Number(f.get("duration")),
  };
  try {
    $("#fire-button").disabled = true;
    const run = await api("POST", "/api/runs", spec);
    state.currentRun = run.id;
    state.runs.set(run.id, { id: run.id, status: "running", progress: 0, received: 0,
      msgs_per_s: 0, rtt_p50_ms: null });
    $("#run-result").hidden = true;
    $("#stop-button").disabled = false;
    renderProgress();
  } catch (e) {
    $("#fire-button").disabled = false;
    showError(e);
  }
});

$("#stop-button").addEventListener("click", async () => {
  const id = state.currentRun;
  if (id) {
    try { await api("POST", `/api/runs/${id}/stop`); } catch (e) { showError(e); }
  }
});

connect();
